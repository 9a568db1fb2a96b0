"""Proof, independent of weights: a synthetic scene's exact predictions, exported and loaded by
nerfstudio's own dataparser, put ground-truth points on the right full-resolution pixels, the PLY
points on the ground-truth surfaces and the depth maps at the ground-truth depth."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic_scene import (
    SCENE_SIZE,
    VGGT_SCALE,
    Scene,
    distance_to_surfaces,
    make_scene,
    pixel_grid,
    ray_cast,
    render,
    texture,
    to_vggt_world,
)

from vggt_sparse_ns.export import ExportConfig, export_dataset

pytestmark = pytest.mark.slow

MIXED_SIZES = [(640, 480), (480, 640), (1000, 750), (800, 600)]
EXPORT = ExportConfig(confidence_percentile=0.0, min_confidence=1.5, max_points=20_000, depth=True, colmap=True)
EXPORT_NPY = ExportConfig(
    confidence_percentile=0.0, min_confidence=1.5, max_points=20_000, depth=True, depth_format="npy"
)
MAX_REPROJECTION_PX = 0.05
"""The issue asks for < 0.5 px; exact predictions must do far better, so a half-pixel slip fails."""


@dataclass
class Loaded:
    scene: Scene
    folder: Path
    outputs: object
    """nerfstudio's DataparserOutputs."""
    frame_of: dict[str, int]
    """Our frame index for each file name nerfstudio lists."""


def _load(
    tmp_path_factory: pytest.TempPathFactory, mode: str, sizes: list, config: ExportConfig, shared: bool = False
) -> Loaded:
    """Export the scene, then load it as ns-train would: nerfstudio-data defaults, points loaded (as
    splatfacto does) and, for PNG depth, the depth unit the export summary names."""
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    folder = tmp_path_factory.mktemp(f"scene_{mode}")
    scene = make_scene(folder, sizes, mode, shared_intrinsics=shared)
    summary = export_dataset(scene.reconstruction, folder, scene.names, config)
    parser_config = NerfstudioDataParserConfig(data=folder, load_3D_points=True)
    if config.depth_format == "png":
        parser_config = NerfstudioDataParserConfig(
            data=folder, load_3D_points=True, depth_unit_scale_factor=summary.depth_unit_scale_factor
        )
    else:
        assert summary.depth_unit_scale_factor == parser_config.depth_unit_scale_factor, "npy works with the default"
    outputs = parser_config.setup().get_dataparser_outputs("train")
    index_of_name = {Path(name).name: index for index, name in enumerate(scene.names)}
    frame_of = {Path(path).name: index_of_name[Path(path).name] for path in outputs.image_filenames}
    assert len(frame_of) == len(scene.names), "nerfstudio must list every frame in the train split"
    return Loaded(scene, folder, outputs, frame_of)


@pytest.fixture(scope="module")
def crop_scene(tmp_path_factory) -> Loaded:
    return _load(tmp_path_factory, "crop", MIXED_SIZES, EXPORT)


@pytest.fixture(scope="module")
def pad_scene(tmp_path_factory) -> Loaded:
    return _load(tmp_path_factory, "pad", [(640, 480), (480, 640), (800, 600)], EXPORT_NPY)


@pytest.fixture(scope="module")
def shared_scene(tmp_path_factory) -> Loaded:
    return _load(tmp_path_factory, "crop", [(640, 480)] * 2, EXPORT, shared=True)


def _to_nerfstudio(loaded: Loaded, points_world: np.ndarray) -> np.ndarray:
    """Ground-truth world points in nerfstudio's output frame: VGGT world, dataparser transform, scale."""
    transform = loaded.outputs.dataparser_transform.double().numpy()
    points_vggt = to_vggt_world(points_world, loaded.scene.cameras[0], VGGT_SCALE)
    return loaded.outputs.dataparser_scale * (points_vggt @ transform[:, :3].T + transform[:, 3])


def _from_nerfstudio(loaded: Loaded, points: np.ndarray) -> np.ndarray:
    """nerfstudio output points back to the ground-truth world."""
    transform = loaded.outputs.dataparser_transform.double().numpy()
    points_vggt = (points / loaded.outputs.dataparser_scale - transform[:, 3]) @ transform[:, :3]
    reference = loaded.scene.cameras[0].T_camera_world
    return (points_vggt / VGGT_SCALE - reference[:, 3]) @ reference[:, :3]


def _project_with_nerfstudio_camera(cameras, index: int, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels and depth of points in nerfstudio camera ``index`` (camera-to-world, OpenGL axes: the
    camera looks down -z, image y grows downwards while camera y points up)."""
    camera_to_world = cameras.camera_to_worlds[index].double().numpy()
    local = (points - camera_to_world[:, 3]) @ camera_to_world[:, :3]
    depth = -local[:, 2]
    u = cameras.cx[index].item() + cameras.fx[index].item() * local[:, 0] / depth
    v = cameras.cy[index].item() - cameras.fy[index].item() * local[:, 1] / depth
    return np.stack([u, v], axis=1), depth


def _ground_truth_samples(loaded: Loaded, frame: int, step: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Full-resolution pixel centres of ``frame`` that see a surface, and the world points they see."""
    camera = loaded.scene.cameras[frame]
    pixels = pixel_grid(*camera.size, step=step)
    depth, points, _ = ray_cast(camera.intrinsic, camera.T_camera_world, pixels)
    hit = np.isfinite(depth)
    return pixels[hit], points[hit]


def _max_reprojection_error(loaded: Loaded) -> float:
    cameras = loaded.outputs.cameras
    errors = []
    for index, path in enumerate(loaded.outputs.image_filenames):
        frame = loaded.frame_of[Path(path).name]
        assert (int(cameras.width[index]), int(cameras.height[index])) == loaded.scene.cameras[frame].size
        pixels, points = _ground_truth_samples(loaded, frame)
        projected, depth = _project_with_nerfstudio_camera(cameras, index, _to_nerfstudio(loaded, points))
        assert (depth > 0).all()
        errors.append(np.linalg.norm(projected - pixels, axis=1).max())
    return float(max(errors))


@pytest.mark.parametrize("scene_name", ["crop_scene", "pad_scene", "shared_scene"])
def test_ground_truth_points_project_to_their_full_resolution_pixels(scene_name: str, request) -> None:
    error = _max_reprojection_error(request.getfixturevalue(scene_name))
    print(f"{scene_name}: max reprojection error {error:.2e} px")
    assert error < MAX_REPROJECTION_PX


def test_nerfstudio_rays_through_ground_truth_pixels_pass_through_the_points(crop_scene: Loaded) -> None:
    cameras = crop_scene.outputs.cameras
    for index, path in enumerate(crop_scene.outputs.image_filenames):
        frame = crop_scene.frame_of[Path(path).name]
        pixels, points = _ground_truth_samples(crop_scene, frame, step=23)
        coords = torch.from_numpy(pixels[:, ::-1].copy()).float()  # nerfstudio's coords are (y, x)
        rays = cameras.generate_rays(camera_indices=index, coords=coords)
        targets = _to_nerfstudio(crop_scene, points)
        to_point = targets - rays.origins.double().numpy()
        directions = rays.directions.double().numpy()
        along = (to_point * directions).sum(axis=1)
        miss = np.linalg.norm(to_point - along[:, None] * directions, axis=1) / along
        assert (along > 0).all()
        assert miss.max() * cameras.fx[index].item() < MAX_REPROJECTION_PX


def test_intrinsics_are_per_frame_for_mixed_sizes_and_global_when_shared(crop_scene, shared_scene) -> None:
    import json

    mixed = json.loads((crop_scene.folder / "transforms.json").read_text())
    shared = json.loads((shared_scene.folder / "transforms.json").read_text())
    assert "fl_x" not in mixed and all("fl_x" in frame and "w" in frame for frame in mixed["frames"])
    assert shared["w"] == 640 and shared["h"] == 480 and all("fl_x" not in frame for frame in shared["frames"])


@pytest.mark.parametrize("scene_name", ["crop_scene", "pad_scene"])
def test_ply_points_loaded_by_nerfstudio_lie_on_the_ground_truth_surfaces(scene_name: str, request) -> None:
    loaded = request.getfixturevalue(scene_name)
    points = _from_nerfstudio(loaded, loaded.outputs.metadata["points3D_xyz"].double().numpy())
    distance = distance_to_surfaces(points)
    print(f"{scene_name}: {len(points)} points, max surface distance {distance.max():.2e} (scene size {SCENE_SIZE})")
    assert 0.5 * EXPORT.max_points <= len(points) <= EXPORT.max_points
    assert distance.max() < 1e-5 * SCENE_SIZE


def test_ply_colours_loaded_by_nerfstudio_match_the_texture(crop_scene: Loaded) -> None:
    points = _from_nerfstudio(crop_scene, crop_scene.outputs.metadata["points3D_xyz"].double().numpy())
    colours = crop_scene.outputs.metadata["points3D_rgb"].numpy().astype(float)
    difference = np.abs(colours - texture(points).astype(float))
    assert np.median(difference) < 4 and difference.mean() < 10


@pytest.mark.parametrize("scene_name", ["crop_scene", "pad_scene"])
def test_depth_maps_read_by_nerfstudio_equal_ground_truth_depth_in_its_scaled_world(scene_name: str, request) -> None:
    from nerfstudio.data.datasets.depth_dataset import DepthDataset

    loaded_scene = request.getfixturevalue(scene_name)
    dataset = DepthDataset(loaded_scene.outputs)
    cameras = loaded_scene.outputs.cameras
    for index, path in enumerate(loaded_scene.outputs.image_filenames):
        frame = loaded_scene.frame_of[Path(path).name]
        camera = loaded_scene.scene.cameras[frame]
        loaded = dataset.get_metadata({"image_idx": index})["depth_image"][..., 0].numpy()
        depth, points, _ = ray_cast(camera.intrinsic, camera.T_camera_world, pixel_grid(*camera.size))
        surface = np.isfinite(depth)
        _, truth = _project_with_nerfstudio_camera(cameras, index, _to_nerfstudio(loaded_scene, points[surface]))
        expected = np.zeros(loaded.shape)
        expected[surface.reshape(loaded.shape)] = truth
        # A model pixel covers ~2 full-resolution pixels: next to the sky the nearest model pixel decides.
        margin = 1 + int(np.ceil(1 / loaded_scene.scene.reconstruction.transforms[frame].scale[0]))
        inner_surface = _erode(expected > 0, margin)
        inner_sky = _erode(expected == 0, margin)
        seen = _seen_by_model(loaded_scene, frame, loaded.shape)
        assert (loaded[inner_sky] == 0).all(), "sky (low confidence) must have no depth"
        assert (loaded[~seen] == 0).all(), "pixels cropped away from the model input must have no depth"
        assert (loaded[inner_surface & seen] > 0).all()
        checked = inner_surface & seen
        relative = np.abs(loaded - expected)[checked] / expected[checked]
        print(
            f"frame {frame}: median relative depth error {np.median(relative):.1e}, 98th pct {np.percentile(relative, 98):.1e}"
        )
        assert np.median(relative) < 2e-4 and np.percentile(relative, 98) < 2e-3


def _erode(mask: np.ndarray, radius: int) -> np.ndarray:
    """True where the whole (2 radius + 1)^2 neighbourhood is True."""
    padded = np.pad(mask, radius, constant_values=False)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (2 * radius + 1, 2 * radius + 1))
    return windows.all(axis=(2, 3))


def _seen_by_model(loaded: Loaded, frame: int, shape: tuple[int, int]) -> np.ndarray:
    """Full-resolution pixels whose centre falls inside the model input (crop mode cuts rows away)."""
    transform = loaded.scene.reconstruction.transforms[frame]
    rows = (np.arange(shape[0]) + 0.5) * transform.scale[1] + transform.offset[1]
    x0, y0, x1, y1 = transform.valid_box
    return np.broadcast_to(((rows >= y0) & (rows < y1))[:, None], shape)


def test_sky_and_padding_never_reach_the_outputs(pad_scene: Loaded) -> None:
    _, _, face = render(pad_scene.scene.cameras[0])
    assert (face < 0).any(), "the scene must show sky for this test to mean anything"
    assert any(t.pad != (0, 0) for t in pad_scene.scene.reconstruction.transforms)


@pytest.mark.parametrize("exported", ["transforms.json", "colmap/sparse/0"])
def test_the_exported_cameras_are_the_ground_truth_ones_for_the_evaluate_command(
    crop_scene: Loaded, tmp_path: Path, exported: str
) -> None:
    from camera_sets import write_pycolmap_model

    from vggt_sparse_ns.evaluate import EvaluationReport, evaluate
    from vggt_sparse_ns.evaluate.cameras import CameraSet

    cameras = crop_scene.scene.cameras
    truth = CameraSet(
        names=tuple(crop_scene.scene.names),
        T_camera_world=np.stack([camera.T_camera_world for camera in cameras]),
        focal_lengths=np.array([(camera.intrinsic[0, 0], camera.intrinsic[1, 1]) for camera in cameras]),
        sizes=np.array([camera.size for camera in cameras]),
        source="ground truth",
    )
    report: EvaluationReport = evaluate(crop_scene.folder / exported, write_pycolmap_model(tmp_path / "truth", truth))
    assert report.frames.matched == len(cameras)
    assert report.relative_pose.rotation_error_median < 1e-3 and report.relative_pose.auc[5.0] > 0.9999
    assert report.trajectory.rmse_fraction_of_extent < 1e-6
    assert report.trajectory.scale == pytest.approx(1 / VGGT_SCALE, rel=1e-5)
    assert report.focal_length.relative_error_max < 1e-5
