"""The ``vggt-sparse`` dataparser: nerfstudio-data over a plain folder of images.

Pointed at a folder without transforms.json, it reconstructs the scene once with VGGT into a cached
nerfstudio dataset (by default a sibling folder ``<data>-vggt-sparse``, so the input folder is never
written to), then reads that dataset exactly like ``nerfstudio-data`` with the 3D points loaded. The
cache is reused while its key (input files' names, sizes and modification times, and the settings)
is unchanged. A folder that already holds transforms.json is read as it is.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nerfstudio.data.dataparsers.base_dataparser import DataParser, DataparserOutputs
from nerfstudio.data.dataparsers.nerfstudio_dataparser import Nerfstudio, NerfstudioDataParserConfig

from vggt_sparse_ns.export.config import ExportConfig
from vggt_sparse_ns.output_layout import CACHE_KEY_FILE, SUMMARY_FILE, TRANSFORMS_FILE
from vggt_sparse_ns.pipeline.config import MIN_FRAMES, ReconstructionConfig
from vggt_sparse_ns.refine.config import RefineConfig

CACHE_SUFFIX = "-vggt-sparse"


@dataclass
class VGGTSparseDataParserConfig(NerfstudioDataParserConfig):
    """nerfstudio-data for a folder of images: VGGT reconstructs it once into a cached dataset."""

    _target: type = field(default_factory=lambda: VGGTSparseDataParser)
    data: Path = Path()
    """Folder of images of one scene (no transforms.json needed), or a processed dataset folder."""
    cache_dir: Path | None = None
    """Where the reconstructed dataset is written and reused; default: the sibling folder <data>-vggt-sparse."""
    num_downscales: int = 3
    """Downscaled copies of the images to make in the cache (images_2, images_4, ...)."""
    reconstruction: ReconstructionConfig = field(default_factory=ReconstructionConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    refinement: RefineConfig = field(default_factory=RefineConfig)
    """Refinement of VGGT's cameras (refinement.refine turns it on)."""
    load_3D_points: bool = True
    """Whether to load the 3D points of the reconstruction (splatfacto's initial Gaussians)."""

    @property
    def dataset_dir(self) -> Path:
        """The folder nerfstudio-data reads: ``data`` itself when it is a dataset, else the cache."""
        if (self.data / TRANSFORMS_FILE).is_file():
            return self.data
        data = self.data.resolve()  # a relative path such as "." or "sub/.." has no usable name
        return self.cache_dir or data.with_name(data.name + CACHE_SUFFIX)


def _cache_key(config: VGGTSparseDataParserConfig, images: list[Path]) -> dict[str, Any]:
    files = [
        [path.relative_to(config.data).as_posix(), path.stat().st_size, path.stat().st_mtime_ns] for path in images
    ]
    settings = {
        "reconstruction": dataclasses.asdict(config.reconstruction),
        "export": dataclasses.asdict(config.export),
        "refinement": dataclasses.asdict(config.refinement),
        "num_downscales": config.num_downscales,
    }
    return json.loads(json.dumps({"files": files, "settings": settings}, default=str))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def cached_depth_unit(dataset_dir: Path) -> float | None:
    """World units per stored depth value of the cache's depth maps, as its export recorded in
    vggt/summary.json; None when it has no depth maps."""
    summary = _read_json(dataset_dir / SUMMARY_FILE)
    export = summary.get("export") if isinstance(summary, dict) else None
    return export.get("depth_unit_scale_factor") if isinstance(export, dict) else None


def ensure_dataset(config: VGGTSparseDataParserConfig) -> Path:
    """The dataset folder for ``config.data``, reconstructing it first when the cache is missing or stale: with
    the same builder and transaction as ``ns-process-data vggt-sparse``, so an interrupted or failed
    reconstruction leaves the previous cache as it was."""
    from nerfstudio.utils.rich_utils import CONSOLE

    from vggt_sparse_ns.dataset import DatasetTransaction, build_dataset, probe_image_folder
    from vggt_sparse_ns.dataset.inputs import list_image_files
    from vggt_sparse_ns.export.atomic import write_json_atomic
    from vggt_sparse_ns.nerfstudio.report import StageSpinner, warn_skipped
    from vggt_sparse_ns.timing import StageTimer

    dataset_dir = config.dataset_dir
    if dataset_dir == config.data:
        return dataset_dir
    key = _cache_key(config, list_image_files(config.data))
    key_file = dataset_dir / CACHE_KEY_FILE
    if (dataset_dir / TRANSFORMS_FILE).is_file() and _read_json(key_file) == key:
        CONSOLE.log(f"Using the VGGT reconstruction cached in {dataset_dir}")
        return dataset_dir
    CONSOLE.log(f"[bold yellow]Reconstructing {config.data} with VGGT into {dataset_dir}")
    group, skipped = probe_image_folder(
        config.data,
        dataset_dir,
        prefix="frame_",
        in_place=False,
        min_frames=MIN_FRAMES,
    )
    warn_skipped(skipped)
    with StageSpinner() as spinner:
        timer = StageTimer(on_start=spinner)
        with DatasetTransaction(dataset_dir, replaces_images=True, timer=timer) as staging:
            build_dataset(
                [group],
                staging,
                config.reconstruction,
                config.export,
                copy_images=True,
                num_downscales=config.num_downscales,
                log=timer,
                refinement=config.refinement,
            )
            write_json_atomic(staging / CACHE_KEY_FILE, key)
    return dataset_dir


class VGGTSparseDataParser(DataParser):
    """Reconstructs (or reuses) the dataset, then hands it to nerfstudio-data's parser; the cache's depth maps
    are read in the units its export wrote them in."""

    config: VGGTSparseDataParserConfig

    def __init__(self, config: VGGTSparseDataParserConfig) -> None:
        super().__init__(config)
        self._nerfstudio: Nerfstudio | None = None

    def _generate_dataparser_outputs(self, split: str = "train", **kwargs: Any) -> DataparserOutputs:
        if self._nerfstudio is None:
            dataset_dir = ensure_dataset(self.config)
            settings: dict[str, Any] = {"data": dataset_dir}
            depth_unit = cached_depth_unit(dataset_dir) if dataset_dir != self.config.data else None
            if depth_unit is not None:
                settings["depth_unit_scale_factor"] = depth_unit
            self._nerfstudio = Nerfstudio(dataclasses.replace(self.config, **settings))
        return self._nerfstudio._generate_dataparser_outputs(split, **kwargs)


def _specification() -> Any:
    from nerfstudio.plugins.registry_dataparser import DataParserSpecification

    return DataParserSpecification(
        config=VGGTSparseDataParserConfig(),
        description="A folder of images reconstructed once by VGGT (vggt-sparse-ns), then read as nerfstudio-data.",
    )


vggt_sparse = _specification()
