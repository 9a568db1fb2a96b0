"""Every file and folder of an output dataset, named once: the writers, the readers (viewer, dataparser) and
the run's transaction take the names from here.

```
<output>/
  images/  images_2/  images_4/ ...   the images (frame_00001.jpg, ...) and their downscales
  depth/   depths_2/  depths_4/ ...   depth maps (--depth), the same names with .png or .npy
  colmap/sparse/0/                    COLMAP model (--colmap)
  sparse_pc.ply                       point cloud
  vggt/graph.json  vggt/summary.json  the frame graph and the run summary
  vggt_sparse_cache.json              the vggt-sparse dataparser's cache key (its cached datasets only)
  transforms.json                     cameras: what nerfstudio reads first
```

Nothing here imports anything: every layer may import it.
"""

from __future__ import annotations

import re
from pathlib import Path

IMAGES_DIR = "images"
DEPTH_DIR = "depth"
DOWNSCALED_DEPTH_PREFIX = "depths_"
"""nerfstudio's dataparser reads depth for images_N from depths_N/ (same file names)."""
COLMAP_DIR = "colmap"
COLMAP_MODEL_DIR = f"{COLMAP_DIR}/sparse/0"
PLY_FILE = "sparse_pc.ply"
RUN_DIR = "vggt"
GRAPH_FILE = f"{RUN_DIR}/graph.json"
SUMMARY_FILE = f"{RUN_DIR}/summary.json"
CACHE_KEY_FILE = "vggt_sparse_cache.json"
TRANSFORMS_FILE = "transforms.json"

_IMAGE_ENTRY = re.compile(rf"{IMAGES_DIR}(_\d+)?")
_DERIVED_ENTRY = re.compile(
    "|".join(re.escape(name) for name in (DEPTH_DIR, COLMAP_DIR, PLY_FILE, RUN_DIR, CACHE_KEY_FILE, TRANSFORMS_FILE))
    + rf"|{DOWNSCALED_DEPTH_PREFIX}\d+"
)
_DERIVED_FOLDER = re.compile(rf"{IMAGES_DIR}_\d+|{DEPTH_DIR}|{DOWNSCALED_DEPTH_PREFIX}\d+|{COLMAP_DIR}|{RUN_DIR}")


def downscaled_images_dir(level: int) -> str:
    """images_2, images_4, ... for level 1, 2, ...: the images at 1 / 2**level of their size."""
    return f"{IMAGES_DIR}_{2**level}"


def downscaled_depth_dir(level: int) -> str:
    """depths_2, depths_4, ... for level 1, 2, ...: the depth maps of downscaled_images_dir(level)'s images."""
    return f"{DOWNSCALED_DEPTH_PREFIX}{2**level}"


def present_downscales(output_dir: Path) -> int:
    """The number of downscaled image folders in ``output_dir``: images_2, images_4, ... up to the first missing."""
    count = 0
    while (output_dir / downscaled_images_dir(count + 1)).is_dir():
        count += 1
    return count


def dataset_entries(output_dir: Path, *, with_images: bool) -> list[str]:
    """The names of ``output_dir``'s entries that a dataset consists of (sorted): everything named above, the
    image folders (images/, images_N) only ``with_images``. Anything else there is not ours."""
    if not output_dir.is_dir():
        return []
    return sorted(
        path.name
        for path in output_dir.iterdir()
        if _DERIVED_ENTRY.fullmatch(path.name) or (with_images and _IMAGE_ENTRY.fullmatch(path.name))
    )


def derived_folders(output_dir: Path) -> list[Path]:
    """Folders of ``output_dir`` that hold derived files, never input: downscaled images, depth maps, COLMAP,
    vggt/."""
    if not output_dir.is_dir():
        return []
    return [path for path in output_dir.iterdir() if path.is_dir() and _DERIVED_FOLDER.fullmatch(path.name)]
