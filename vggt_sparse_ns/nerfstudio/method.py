"""The ``vggt-splatfacto`` method: splatfacto set up for feed-forward poses.

It is nerfstudio's own splatfacto configuration with two changes: the ``vggt-sparse`` dataparser (a plain
folder of images is reconstructed by VGGT, whose point cloud seeds the Gaussians; a processed dataset is
read as it is) and camera pose optimisation switched on (SO3xR3), since feed-forward poses are less
exact than bundle-adjusted ones. The specification is built on first access (PEP 562), because nerfstudio
loads this entry point while its own method registry is still being built.
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

METHOD_NAME = "vggt-splatfacto"
DESCRIPTION = "Splatfacto from VGGT cameras and points, with camera pose optimisation (vggt-sparse-ns)."
POSE_OPTIMISATION = "SO3xR3"


@cache
def _specification() -> Any:
    from nerfstudio.cameras.camera_optimizers import CameraOptimizerConfig
    from nerfstudio.configs.method_configs import method_configs
    from nerfstudio.plugins.types import MethodSpecification

    from vggt_sparse_ns.nerfstudio.dataparser import VGGTSparseDataParserConfig

    config = copy.deepcopy(method_configs["splatfacto"])
    config.method_name = METHOD_NAME
    config.pipeline.datamanager.dataparser = VGGTSparseDataParserConfig()
    config.pipeline.model.camera_optimizer = CameraOptimizerConfig(mode=POSE_OPTIMISATION)
    return MethodSpecification(config=config, description=DESCRIPTION)


def __getattr__(name: str) -> Any:
    if name == "vggt_splatfacto":
        return _specification()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
