"""Fixtures for the sparse-attention tests: a six-frame scene for the tiny model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

SCENE_SIZE = (112, 154)
"""Height and width of the test scene: 8 x 11 patches (T = 93 tokens per frame), so a forward takes well under a second."""


@pytest.fixture(scope="session")
def six_frame_scene(vggt_tiny_expected) -> torch.Tensor:
    """[6, 3, H, W]: the fixture's four images, then mirrored copies of the first and third."""
    images = torch.from_numpy(vggt_tiny_expected["input_images"])
    images = F.interpolate(images, size=SCENE_SIZE, mode="bilinear", antialias=True, align_corners=False)
    return torch.cat((images, images[[0, 2]].flip(-1))).clamp(0.0, 1.0)
