"""Where a scene's frame graph comes from: a given graph, given descriptors, or the patch tokens."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import tyro
from torch import Tensor

from vggt_sparse_ns.sparse.descriptors import pooled_descriptors
from vggt_sparse_ns.sparse.graph import FrameGraph
from vggt_sparse_ns.sparse.graph_build import FrameGraphSettings


@dataclass(frozen=True)
class FrameGraphSource(FrameGraphSettings):
    """Frame-graph settings plus the optional inputs that replace the default descriptors.

    Precedence: ``graph`` if given; else a graph built from ``descriptors`` if given (e.g. from an
    image-retrieval model); else from the patch-embed ViT's patch tokens, GeM-pooled."""

    graph: Annotated[FrameGraph | None, tyro.conf.Suppress] = None
    """A ready frame graph, used for every scene of the batch (overrides the settings above)."""
    descriptors: Annotated[Tensor | None, tyro.conf.Suppress] = None
    """Per-frame descriptors [S, D] (one scene) or [B, S, D] to build the graph from."""

    def describe(self) -> dict[str, Any]:
        """Where the graph comes from and, when it is built here, the settings that build it."""
        if self.graph is not None:
            return {"graph_source": "given graph"}
        source = "given descriptors" if self.descriptors is not None else "patch tokens (GeM)"
        settings = {
            name: getattr(self, name) for name in ("neighbors", "symmetric", "threshold", "window", "min_degree")
        }
        return {"graph_source": source, **settings}

    def graphs(self, patch_tokens: Tensor) -> list[FrameGraph]:
        """One frame graph per scene of patch_tokens [B, S, P, C], on their device. Given their GeM descriptors
        [B, S, D] instead (frames shared out between processes gather those), it builds the same graphs."""
        batch, frames = patch_tokens.shape[:2]
        if self.graph is not None:
            if self.graph.frames != frames:
                raise ValueError(
                    f"the given frame graph has {self.graph.frames} frames but the scene has {frames}; "
                    "build the graph for the frames passed to the model"
                )
            return [self.graph.to(patch_tokens.device)] * batch
        if self.descriptors is not None:
            descriptors = self.descriptors
            if descriptors.dim() == 2:
                descriptors = descriptors.expand(batch, -1, -1)
            if descriptors.dim() != 3 or descriptors.shape[:2] != (batch, frames):
                raise ValueError(
                    f"descriptors must be [frames, dim] or [batch, frames, dim] for {batch} scene(s) of {frames} "
                    f"frames, got shape {tuple(self.descriptors.shape)}"
                )
            return [self.build(scene.to(patch_tokens.device)) for scene in descriptors]
        return [self.build(scene if scene.dim() == 2 else pooled_descriptors(scene)) for scene in patch_tokens]
