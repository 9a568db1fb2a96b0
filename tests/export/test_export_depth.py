"""Depth maps on the full-resolution grid, in the units nerfstudio's depth loader expects."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vggt_sparse_ns.export import depth as depth_module
from vggt_sparse_ns.export.config import ExportConfig, ExportError
from vggt_sparse_ns.export.depth import png16_file, up_filtered_rows, write_depth_maps
from vggt_sparse_ns.export.points import confident_pixels
from vggt_sparse_ns.images import ImageTransform
from vggt_sparse_ns.pipeline.reconstruction import Reconstruction

CROPPED = ImageTransform((300, 400), (42, 56), (0, 7), (0, 0), (42, 42))
"""A portrait 300x400 image, resized to 42x56 model pixels, 7 rows cropped off the top and bottom."""
PADDED = ImageTransform((400, 300), (42, 32), (0, 0), (0, 5), (42, 42))
"""A landscape 400x300 image, resized to 42x32, 5 rows of padding above (and 5 below)."""


def resample_depth(depth: np.ndarray, keep: np.ndarray, transform: ImageTransform, size: tuple[int, int]):
    """One frame through the batched resampler, as numpy."""
    batch = depth_module.resample_depth(torch.from_numpy(depth)[None], torch.from_numpy(keep)[None], transform, size)
    return batch[0].numpy()


def _plane_depth(transform: ImageTransform, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """z-depth of a tilted plane seen by a pinhole camera: 1/z is affine in original pixels."""
    x_original, y_original = np.meshgrid(x, y)
    return 1.0 / (0.3 + 0.0004 * x_original + 0.0007 * y_original)


def _model_depth(transform: ImageTransform) -> np.ndarray:
    width, height = transform.model_size
    x = (np.arange(width) + 0.5 - transform.offset[0]) / transform.scale[0]
    y = (np.arange(height) + 0.5 - transform.offset[1]) / transform.scale[1]
    return _plane_depth(transform, x, y).astype(np.float32)


def test_a_plane_is_resampled_exactly_and_cropped_rows_get_no_depth() -> None:
    depth = _model_depth(CROPPED)
    result = resample_depth(depth, np.ones_like(depth, bool), CROPPED, CROPPED.original_size)
    expected = _plane_depth(CROPPED, np.arange(300) + 0.5, np.arange(400) + 0.5)
    rows_in_model = (np.arange(400) + 0.5) * CROPPED.scale[1] + CROPPED.offset[1]
    seen = (rows_in_model >= 0) & (rows_in_model < 42)
    assert (result[~seen] == 0).all() and (result[seen] > 0).all()
    # Inside the outermost half model pixel the interpolation is exact; at the border the edge value holds.
    cols_in_model = (np.arange(300) + 0.5) * CROPPED.scale[0] + CROPPED.offset[0]
    inner = np.ix_(
        seen & (rows_in_model > 0.5) & (rows_in_model < 41.5), (cols_in_model > 0.5) & (cols_in_model < 41.5)
    )
    np.testing.assert_allclose(result[inner], expected[inner], rtol=1e-5)


def test_padding_never_becomes_depth() -> None:
    depth = _model_depth(PADDED)
    depth[:5] = depth[-5:] = 99.0
    result = resample_depth(depth, np.ones_like(depth, bool), PADDED, PADDED.original_size)
    assert result.max() < 99.0 and (result > 0).all()


def test_no_depth_is_invented_between_surfaces_at_a_depth_edge() -> None:
    depth = np.where(np.arange(42) < 20, 1.0, 2.0)[None, :].repeat(42, axis=0).astype(np.float32)
    result = resample_depth(depth, np.ones_like(depth, bool), CROPPED, CROPPED.original_size)
    assert set(np.unique(result)) <= {0.0, 1.0, 2.0}


def test_dropped_model_pixels_only_affect_the_full_resolution_pixels_they_cover() -> None:
    depth = np.full((42, 42), 3.0, np.float32)
    keep = np.ones_like(depth, bool)
    keep[20, 20] = False
    result = resample_depth(depth, keep, PADDED, PADDED.original_size)
    covers = np.zeros_like(result, bool)
    x_model = (np.arange(400) + 0.5) * PADDED.scale[0] + PADDED.offset[0]
    y_model = (np.arange(300) + 0.5) * PADDED.scale[1] + PADDED.offset[1]
    covers[np.ix_(np.floor(y_model) == 20, np.floor(x_model) == 20)] = True
    assert (result[covers] == 0).all() and np.allclose(result[~covers], 3.0)


def _reconstruction(transform: ImageTransform, depth: np.ndarray, confidence: np.ndarray) -> Reconstruction:
    return Reconstruction(
        image_paths=[Path("a.png")],
        transforms=[transform],
        T_camera_world=np.eye(3, 4, dtype=np.float32)[None],
        intrinsics=np.eye(3, dtype=np.float32)[None],
        depth=depth[None],
        depth_conf=confidence[None],
        colors=np.zeros((1, *depth.shape, 3), np.uint8),
    )


@pytest.mark.parametrize("depth_format", ["png", "npy"])
def test_nerfstudio_reads_written_depth_as_world_depth_with_the_returned_unit(
    tmp_path: Path, depth_format: str
) -> None:
    from nerfstudio.data.utils.data_utils import get_depth_image_from_path

    depth = _model_depth(PADDED)
    confidence = np.full_like(depth, 5.0)
    confidence[30, :] = 1.0
    reconstruction = _reconstruction(PADDED, depth, confidence)
    config = ExportConfig(confidence_percentile=0.0, min_confidence=2.0)
    confident = confident_pixels(reconstruction, "depth", config)
    maps = write_depth_maps(reconstruction, tmp_path, ["frame_00001"], confident, depth_format, num_downscales=2)
    assert maps.file_paths == [f"depth/frame_00001.{depth_format}"]
    expected = resample_depth(depth, confidence >= 2.0, PADDED, PADDED.original_size)
    read = get_depth_image_from_path(tmp_path / maps.file_paths[0], 300, 400, scale_factor=maps.unit)[..., 0].numpy()
    np.testing.assert_allclose(read, expected, rtol=1e-4, atol=0)
    assert ((read == 0) == (expected == 0)).all()
    for factor, size in ((2, (150, 200)), (4, (75, 100))):
        downscaled = get_depth_image_from_path(
            tmp_path / f"depths_{factor}" / f"frame_00001.{depth_format}", *size, scale_factor=maps.unit
        )[..., 0].numpy()
        np.testing.assert_allclose(downscaled, resample_depth(depth, confidence >= 2.0, PADDED, size[::-1]), rtol=1e-4)
    deepest_kept = depth[5:37][confidence[5:37] >= 2.0].max()  # image rows only, confident only
    assert maps.unit == (1e-3 if depth_format == "npy" else pytest.approx(deepest_kept / 65535))


@pytest.mark.slow
def test_a_frame_over_max_depth_pixels_gets_depth_maps_halved_to_fit_that_nerfstudio_reads_at_its_size(
    tmp_path: Path,
) -> None:
    from nerfstudio.data.utils.data_utils import get_depth_image_from_path

    large = ImageTransform((8192, 4608), (42, 24), (0, 0), (0, 9), (42, 42))  # 37.7 megapixels
    assert 4096 * 2304 <= depth_module.MAX_DEPTH_PIXELS < 8192 * 4608
    depth = _model_depth(large)
    reconstruction = _reconstruction(large, depth, np.full_like(depth, 5.0))
    confident = confident_pixels(reconstruction, "depth", ExportConfig(confidence_percentile=0.0, min_confidence=2.0))

    maps = write_depth_maps(reconstruction, tmp_path, ["frame_00001"], confident, "png")

    with Image.open(tmp_path / maps.file_paths[0]) as written:
        assert written.size == (4096, 2304), "the largest (w // 2**k, h // 2**k) within the limit"
    assert depth_module.depth_map_size(large.original_size, 1) == (4096, 2304), "images_2's size fits already"
    assert depth_module.depth_map_size(large.original_size, 2) == (2048, 1152)
    read = get_depth_image_from_path(tmp_path / maps.file_paths[0], 4608, 8192, maps.unit)[..., 0].numpy()
    assert read.shape == (4608, 8192), "nerfstudio resizes a depth map to its image"
    expected = resample_depth(depth, depth > 0, large, (4096, 2304))
    np.testing.assert_allclose(read[::2, ::2], expected, rtol=0, atol=maps.unit)
    np.testing.assert_array_equal(read[1::2, 1::2], read[::2, ::2])


def test_depth_maps_with_no_confident_depth_are_refused_before_any_file(tmp_path: Path) -> None:
    depth = _model_depth(PADDED)
    reconstruction = _reconstruction(PADDED, depth, np.full_like(depth, 1.0))
    confident = confident_pixels(reconstruction, "depth", ExportConfig(confidence_percentile=0.0, min_confidence=2.0))
    assert confident.total == 0 and confident.deepest == 0.0
    with pytest.raises(ExportError, match="No depth passed the confidence filter"):
        write_depth_maps(reconstruction, tmp_path, ["frame_00001"], confident, "png", num_downscales=1)
    assert not any(tmp_path.rglob("*.png"))


def _reference_resample(depth: np.ndarray, keep: np.ndarray, transform: ImageTransform, size: tuple[int, int]):
    """The resampling rule written per output pixel (float64): 1 / bilinear(1 / depth) of the four taps where
    they are all kept and within EDGE_RATIO of each other, else the nearest model pixel; 0 off the image."""
    width, height = size
    x0, y0, x1, y1 = transform.valid_box
    x = (np.arange(width) + 0.5) * (transform.original_size[0] / width) * transform.scale[0] + transform.offset[0]
    y = (np.arange(height) + 0.5) * (transform.original_size[1] / height) * transform.scale[1] + transform.offset[1]
    x, y = np.meshgrid(x, y)
    kept = np.where(keep, depth, 0.0).astype(np.float64)
    left, top = np.floor(x - 0.5), np.floor(y - 0.5)
    wx, wy = x - 0.5 - left, y - 0.5 - top
    cols = [np.clip(left + i, x0, x1 - 1).astype(int) for i in (0, 1)]
    rows = [np.clip(top + i, y0, y1 - 1).astype(int) for i in (0, 1)]
    taps = np.stack([kept[rows[i], cols[j]] for i in (0, 1) for j in (0, 1)])
    lowest, highest = taps.min(axis=0), taps.max(axis=0)
    smooth = (lowest > 0) & (highest <= 1.05 * lowest)
    with np.errstate(divide="ignore"):
        inverse = 1.0 / np.where(smooth, taps, 1.0)
    blended = (1 - wy) * ((1 - wx) * inverse[0] + wx * inverse[1]) + wy * ((1 - wx) * inverse[2] + wx * inverse[3])
    nearest = kept[np.clip(np.floor(y), y0, y1 - 1).astype(int), np.clip(np.floor(x), x0, x1 - 1).astype(int)]
    inside = (x >= x0) & (x < x1) & (y >= y0) & (y < y1)
    return np.where(inside, np.where(smooth, 1.0 / blended, nearest), 0.0)


@pytest.mark.parametrize("transform", [CROPPED, PADDED], ids=["cropped", "padded"])
@pytest.mark.parametrize("factor", [1, 2, 8])
def test_resampling_follows_the_per_pixel_rule_on_rough_depth_with_dropped_pixels(transform, factor) -> None:
    rng = np.random.default_rng(factor)
    depth = rng.uniform(1.0, 1.08, (42, 42)).astype(np.float32)  # some neighbours within 5 %, some not
    depth[:, 25:] *= 2.0  # and a depth edge
    keep = rng.random((42, 42)) > 0.2
    size = (transform.original_size[0] // factor, transform.original_size[1] // factor)
    result = resample_depth(depth, keep, transform, size)
    np.testing.assert_allclose(result, _reference_resample(depth, keep, transform, size), rtol=1e-5, atol=0)


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (40, 7)])
def test_depth_pngs_read_back_exactly_with_pil_and_opencv(shape: tuple[int, int]) -> None:
    import cv2  # nerfstudio's depth loader reads PNGs with OpenCV

    values = np.random.default_rng(0).integers(0, 65536, shape, dtype=np.uint16)
    data = png16_file(up_filtered_rows(torch.from_numpy(values.astype(np.int32))).numpy())
    with Image.open(io.BytesIO(data)) as image:
        assert image.mode == "I;16"
        np.testing.assert_array_equal(np.asarray(image), values)
    np.testing.assert_array_equal(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_ANYDEPTH), values)


@pytest.mark.parametrize("depth_format", ["png", "npy"])
def test_parallel_writers_produce_the_same_depth_files_as_one(tmp_path: Path, depth_format: str) -> None:
    rng = np.random.default_rng(3)
    depth = rng.uniform(1.0, 4.0, (6, 42, 42)).astype(np.float32)
    reconstruction = Reconstruction(
        image_paths=[Path(f"{i}.png") for i in range(6)],
        transforms=[CROPPED, PADDED] * 3,
        T_camera_world=np.tile(np.eye(3, 4, dtype=np.float32), (6, 1, 1)),
        intrinsics=np.tile(np.eye(3, dtype=np.float32), (6, 1, 1)),
        depth=depth,
        depth_conf=rng.uniform(1.0, 5.0, depth.shape).astype(np.float32),
        colors=np.zeros((*depth.shape, 3), np.uint8),
    )
    confident = confident_pixels(reconstruction, "depth", ExportConfig())
    stems = [f"frame_{i:05d}" for i in range(6)]
    for workers, folder in ((1, tmp_path / "serial"), (4, tmp_path / "parallel")):
        write_depth_maps(reconstruction, folder, stems, confident, depth_format, num_downscales=2, workers=workers)
    serial = {path.relative_to(tmp_path / "serial"): path.read_bytes() for path in (tmp_path / "serial").rglob("*.*")}
    parallel = {
        path.relative_to(tmp_path / "parallel"): path.read_bytes() for path in (tmp_path / "parallel").rglob("*.*")
    }
    assert len(serial) == 18 and serial == parallel


def test_a_batch_of_frames_resamples_as_each_frame_alone() -> None:
    rng = np.random.default_rng(4)
    depth = rng.uniform(1.0, 1.1, (3, 42, 42)).astype(np.float32)
    keep = rng.random((3, 42, 42)) > 0.2
    batch = depth_module.resample_depth(torch.from_numpy(depth), torch.from_numpy(keep), PADDED, (200, 150))
    for frame in range(3):
        np.testing.assert_array_equal(
            batch[frame].numpy(), resample_depth(depth[frame], keep[frame], PADDED, (200, 150))
        )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the GPU path of the depth maps")
def test_depth_resampled_on_the_gpu_matches_the_cpu() -> None:
    rng = np.random.default_rng(5)
    depth = torch.from_numpy(rng.uniform(1.0, 1.1, (2, 42, 42)).astype(np.float32))
    keep = torch.from_numpy(rng.random((2, 42, 42)) > 0.2)
    on_cpu = depth_module.resample_depth(depth, keep, CROPPED, (300, 400))
    on_gpu = depth_module.resample_depth(depth.cuda(), keep.cuda(), CROPPED, (300, 400)).cpu()
    torch.testing.assert_close(on_gpu, on_cpu, rtol=1e-6, atol=0)
