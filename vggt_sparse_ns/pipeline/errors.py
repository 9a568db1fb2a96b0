"""Errors of a reconstruction run that the CLI reports as one message."""

from __future__ import annotations


class InputError(ValueError):
    """The input images cannot make a dataset (missing folder, too few usable images, bad paths)."""


class ReconstructionOutOfMemoryError(RuntimeError):
    """The accelerator ran out of memory; the message names the settings that reduce memory."""

    @classmethod
    def advice(cls, frames: int, strategy: str, device: str) -> ReconstructionOutOfMemoryError:
        return cls(
            f"Out of memory on {device} while reconstructing {frames} frames with {strategy} global attention. "
            "What helps: --attention covisibility (memory grows linearly with frames instead of quadratically), "
            "--taps host (what the heads read waits in host memory; auto chooses it only when the estimate says the GPU "
            "is too small), --global-queries chunks (each global layer keeps only k and v for all tokens; auto chooses "
            "it only when the estimate says the GPU is too small), a smaller --neighbors, --preprocess crop (fewer tokens than pad), fewer frames (for a video: a lower "
            "--num-frames-target), a smaller --frames-chunk, or --device cpu (slow, but uses system memory)."
        )
