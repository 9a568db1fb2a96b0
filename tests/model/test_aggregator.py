"""The aggregator embeds the frames into one preallocated token stream: while the patch-embed ViT runs, the
tokens of all frames exist once (not as a list of chunks and their concatenation, nor again with the special
tokens prepended), so this phase's memory is the stream and one chunk's work."""

from __future__ import annotations

import pytest
import torch
from live_tensors import LiveTensorBytes

FRAMES = 128


class Embedded(Exception):
    """Raised by the strategy once the frames are embedded, to stop the forward there."""


class PeakAtPrepare:
    """A strategy whose prepare notes the peak of live tensor bytes so far and the token stream's bytes."""

    def __init__(self, tracker: LiveTensorBytes) -> None:
        self.tracker = tracker

    def prepare(self, layout, patch_tokens):
        self.peak = self.tracker.peak
        self.stream_bytes = layout.batch * layout.frames * layout.tokens_per_frame * patch_tokens.shape[-1] * 4
        self.patch_tokens_shape = tuple(patch_tokens.shape)
        raise Embedded


def test_while_embedding_the_frames_the_aggregator_holds_their_tokens_once(vggt_tiny):
    images = torch.rand(1, FRAMES, 3, 56, 70, generator=torch.Generator().manual_seed(0))
    tracker = LiveTensorBytes([images, *vggt_tiny.parameters()])
    strategy = PeakAtPrepare(tracker)
    with pytest.raises(Embedded), tracker:
        vggt_tiny.aggregator(images, strategy, {}, frames_chunk=1)
    assert strategy.patch_tokens_shape == (1, FRAMES, 4 * 5, vggt_tiny.config.embed_dim)
    # One frame's images and ViT activations are a small share of 128 frames' tokens; a list of the chunks'
    # outputs and their concatenation would be 1.8 streams (each chunk keeps its 5 special tokens).
    assert strategy.peak < 1.5 * strategy.stream_bytes
