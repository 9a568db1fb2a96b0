"""Conversions between VGGT's cameras and nerfstudio's, and between model and full-resolution pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from synthetic_scene import random_rotation

from vggt_sparse_ns.export.geometry import (
    applied_transform,
    common_intrinsic,
    full_resolution_intrinsics,
    invert_rigid,
    model_pixel_centres,
    nerfstudio_camera_to_world,
    project,
    to_nerfstudio_world,
    unproject,
)
from vggt_sparse_ns.images import ImageTransform


def _random_pose(rng: np.random.Generator) -> np.ndarray:
    return np.concatenate([random_rotation(rng), rng.normal(size=(3, 1))], axis=1)


def test_camera_centre_and_viewing_direction_survive_the_conversion_to_nerfstudio() -> None:
    rng = np.random.default_rng(0)
    T_camera_world = np.stack([_random_pose(rng) for _ in range(4)])
    camera_to_world = nerfstudio_camera_to_world(T_camera_world)
    for pose, converted in zip(T_camera_world, camera_to_world, strict=True):
        centre = -pose[:, :3].T @ pose[:, 3]
        forward, down = pose[2, :3], pose[1, :3]  # OpenCV camera z and y axes in world coordinates
        np.testing.assert_allclose(converted[:3, 3], to_nerfstudio_world(centre), atol=1e-12)
        np.testing.assert_allclose(-converted[:3, 2], to_nerfstudio_world(forward), atol=1e-12)
        np.testing.assert_allclose(-converted[:3, 1], to_nerfstudio_world(down), atol=1e-12)
        np.testing.assert_allclose(converted[3], [0, 0, 0, 1])


def test_nerfstudio_up_is_camera_zero_up_and_applied_transform_is_that_rotation() -> None:
    transform = np.array(applied_transform())
    np.testing.assert_allclose(transform[:, :3] @ transform[:, :3].T, np.eye(3))
    assert np.isclose(np.linalg.det(transform[:, :3]), 1.0)
    np.testing.assert_allclose(to_nerfstudio_world(np.array([0.0, -1.0, 0.0])), [0, 0, 1])  # OpenCV up is -y
    np.testing.assert_allclose(transform[:, :3] @ [0.0, 0.0, 1.0], to_nerfstudio_world(np.array([0.0, 0.0, 1.0])))


def test_unprojected_pixel_centres_project_back_to_themselves() -> None:
    rng = np.random.default_rng(1)
    pose = _random_pose(rng)
    intrinsic = np.array([[300.0, 0.0, 160.0], [0.0, 310.0, 120.0], [0.0, 0.0, 1.0]])
    pixels = model_pixel_centres(torch.tensor([0, 5, 239]), torch.tensor([0, 7, 319])).double()
    np.testing.assert_allclose(pixels[0], [0.5, 0.5])
    depth = torch.tensor([1.0, 2.5, 7.0], dtype=torch.float64)
    points = unproject(pixels, depth, torch.from_numpy(intrinsic), torch.from_numpy(pose)).numpy()
    pixels, depth = pixels.numpy(), depth.numpy()
    pixels_back, depth_back = project(points, intrinsic, pose)
    np.testing.assert_allclose(pixels_back, pixels, atol=1e-9)
    np.testing.assert_allclose(depth_back, depth, atol=1e-12)


def test_inverting_a_rigid_transform_twice_gives_it_back() -> None:
    pose = _random_pose(np.random.default_rng(2))
    np.testing.assert_allclose(invert_rigid(invert_rigid(pose)), pose, atol=1e-12)


@pytest.mark.parametrize(
    "transform",
    [
        ImageTransform((1000, 750), (518, 388), (0, 0), (0, 65), (518, 518)),
        ImageTransform((480, 640), (518, 686), (0, 84), (0, 0), (518, 518)),
        ImageTransform((480, 640), (392, 518), (0, 0), (63, 0), (518, 518)),
    ],
)
def test_full_resolution_intrinsics_project_points_where_the_model_pixels_map_to(transform: ImageTransform) -> None:
    rng = np.random.default_rng(3)
    pose = _random_pose(rng)
    model = np.array([[400.0, 0.0, 259.0], [0.0, 405.0, 259.0], [0.0, 0.0, 1.0]])
    pixels, depth = (torch.from_numpy(a) for a in (rng.uniform(0, 518, (20, 2)), rng.uniform(1, 5, 20)))
    points = unproject(pixels, depth, torch.from_numpy(model), torch.from_numpy(pose)).numpy()
    in_model, _ = project(points, model, pose)
    in_original, _ = project(points, full_resolution_intrinsics(model[None], [transform])[0], pose)
    scale = np.array(transform.resized_size) / np.array(transform.original_size)
    offset = np.array(transform.pad) - np.array(transform.crop)
    np.testing.assert_allclose(in_original * scale + offset, in_model, atol=1e-9)


def test_intrinsics_are_shared_only_with_equal_sizes_and_values_within_a_hundredth_pixel() -> None:
    base = np.array([[500.0, 0.0, 320.0], [0.0, 500.0, 240.0], [0.0, 0.0, 1.0]])
    nearly = base + np.array([[0.004, 0, 0], [0, 0, 0], [0, 0, 0]])
    np.testing.assert_allclose(common_intrinsic(np.stack([base, nearly]), [(640, 480)] * 2)[0, 0], 500.002)
    assert common_intrinsic(np.stack([base, base + 0.05 * np.eye(3)]), [(640, 480)] * 2) is None
    assert common_intrinsic(np.stack([base, base]), [(640, 480), (480, 640)]) is None
