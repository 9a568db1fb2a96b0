"""refine() on a scene with exact ground truth: the prediction is the truth perturbed (rotations 1-3 degrees,
positions 3-5 % of the scene, focal lengths up to 5 %); one frame shows a blank wall."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from textured_scene import (
    AERIAL_SIZE,
    BOX_RING_SIZE,
    CORRIDOR_SIZE,
    OUTWARD_RING_SIZE,
    SCENE_SIZE,
    TABLE_ORBIT_SIZE,
    TexturedScene,
    at_model_resolution,
    centre_errors,
    make_aerial_scene,
    make_box_ring_scene,
    make_corridor_scene,
    make_outward_ring_scene,
    make_scene,
    make_table_orbit_scene,
    perturb,
    perturb_depth,
    random_rotation,
    rotation_errors_deg,
)

from benchmarks.refine import generate_views, known_cameras
from benchmarks.refine_stages import prediction
from vggt_sparse_ns.images import ImageTransform
from vggt_sparse_ns.pipeline.reconstruction import Reconstruction
from vggt_sparse_ns.refine import RefineConfig, refine, refinement
from vggt_sparse_ns.refine.cameras import CameraSet, project_points
from vggt_sparse_ns.refine.config import RefineError
from vggt_sparse_ns.refine.consistency import to_model_pixels
from vggt_sparse_ns.refine.refinement import _depth_kept, _frame_shift
from vggt_sparse_ns.refine.triangulation import SparseModel

CPU = torch.device("cpu")

BLANK_FRAME = 3


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> TexturedScene:
    return make_scene(tmp_path_factory.mktemp("scene"), frames=8, blank_frame=BLANK_FRAME)


@pytest.fixture(scope="module")
def predicted(scene: TexturedScene) -> Reconstruction:
    return perturb(scene.truth, seed=1)


@pytest.fixture(scope="module")
def refined(predicted: Reconstruction) -> Reconstruction:
    return refine(predicted)


def _textured(scene: TexturedScene) -> np.ndarray:
    return np.array([i for i in range(1, scene.truth.num_frames) if i != BLANK_FRAME])


def test_refinement_cuts_the_median_rotation_error_at_least_five_fold(scene, predicted, refined) -> None:
    frames = _textured(scene)
    before = np.median(rotation_errors_deg(predicted.T_camera_world, scene.truth.T_camera_world)[frames])
    after = np.median(rotation_errors_deg(refined.T_camera_world, scene.truth.T_camera_world)[frames])
    assert before > 1.0
    assert after * 5 <= before, (before, after)


def test_refinement_cuts_the_median_position_error_at_least_five_fold(scene, predicted, refined) -> None:
    frames = _textured(scene)
    before = np.median(centre_errors(predicted.T_camera_world, scene.truth.T_camera_world)[frames])
    after = np.median(centre_errors(refined.T_camera_world, scene.truth.T_camera_world)[frames])
    assert before > 0.03 * SCENE_SIZE
    assert after * 5 <= before, (before, after)


def test_focal_lengths_move_toward_the_truth(scene, predicted, refined) -> None:
    frames = _textured(scene)
    truth = scene.truth.intrinsics[frames, 0, 0]
    before = np.abs(predicted.intrinsics[frames, 0, 0] / truth - 1)
    after = np.abs(refined.intrinsics[frames, 0, 0] / truth - 1)
    assert np.median(after) * 3 <= np.median(before)


@pytest.fixture(scope="module")
def refined_with_torch_sift(predicted: Reconstruction) -> Reconstruction:
    return refine(predicted, RefineConfig(refine_features="torch"))


def test_refinement_with_the_torch_sift_cuts_the_median_errors_at_least_five_fold(
    scene, predicted, refined_with_torch_sift
) -> None:
    # Measured (seed 1): rotations 24.1x and positions 28.0x better (pycolmap's SIFT: 19.6x and 22.8x).
    frames = _textured(scene)
    refined = refined_with_torch_sift
    assert refined.refinement["feature_extractor"] == "torch"
    for errors in (rotation_errors_deg, centre_errors):
        before = np.median(errors(predicted.T_camera_world, scene.truth.T_camera_world)[frames])
        after = np.median(errors(refined.T_camera_world, scene.truth.T_camera_world)[frames])
        assert after * 5 <= before, (errors.__name__, before, after)


def test_refinement_with_the_torch_sift_ends_under_one_pixel_and_keeps_the_blank_frame(refined_with_torch_sift) -> None:
    figures = refined_with_torch_sift.refinement
    assert figures["reprojection_error_px"] < 1.0
    assert figures["kept_frames"] == [BLANK_FRAME]


def test_affine_features_with_the_torch_sift_are_refused_with_a_clear_message() -> None:
    with pytest.raises(RefineError, match="--refine-affine-features needs pycolmap"):
        RefineConfig(refine_features="torch", refine_affine_features=True)


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has an MPS device")
def test_a_refine_device_that_is_not_here_is_refused_with_a_clear_message(small_prediction) -> None:
    with pytest.raises(RefineError, match="--refine-device mps: there is no mps device here"):
        refine(small_prediction, RefineConfig(refine_device="mps"))


def test_the_mean_reprojection_error_ends_under_one_pixel(refined) -> None:
    figures = refined.refinement
    assert figures["reprojection_error_px"] < 1.0
    assert figures["reprojection_error_px_before"] > figures["reprojection_error_px"]


def test_frame_zero_stays_the_world_frame(refined) -> None:
    np.testing.assert_allclose(refined.T_camera_world[0], np.eye(3, 4), atol=1e-6)


def test_a_frame_without_texture_keeps_its_predicted_camera_and_is_listed(predicted, refined) -> None:
    assert refined.refinement["kept_frames"] == [BLANK_FRAME]
    assert refined.refinement["registered_frames"] == predicted.num_frames - 1
    np.testing.assert_array_equal(refined.T_camera_world[BLANK_FRAME], predicted.T_camera_world[BLANK_FRAME])
    np.testing.assert_array_equal(refined.intrinsics[BLANK_FRAME], predicted.intrinsics[BLANK_FRAME])


def test_the_summary_reports_counts_and_seconds_per_stage(refined) -> None:
    figures = refined.refinement
    sparse = refined.sparse_points
    assert figures["points"] == len(sparse.xyz) > 100
    assert figures["observations"] == len(sparse.frame) >= 2 * figures["points"]
    assert 0 < figures["pairs_verified"] <= figures["pairs_matched"]
    for stage in ("features", "pairs", "matching", "verification", "triangulation", "bundle adjustment"):
        assert figures["seconds"][stage] >= 0.0


def test_triangulated_points_reproject_onto_their_observations(refined) -> None:
    sparse = refined.sparse_points
    assert not np.isin(sparse.frame, refined.refinement["kept_frames"]).any()
    pose = refined.T_camera_world.astype(np.float64)[sparse.frame]
    camera = np.einsum("nij,nj->ni", pose[:, :, :3], sparse.xyz[sparse.point]) + pose[:, :, 3]
    k = refined.intrinsics.astype(np.float64)[sparse.frame]  # model pixels = image pixels in this scene
    pixels = np.einsum("nij,nj->ni", k, camera / camera[:, 2:])[:, :2]
    assert np.mean(np.linalg.norm(pixels - sparse.pixel, axis=1)) < 1.0


def test_depth_agrees_with_the_triangulated_points(scene, refined) -> None:
    sparse = refined.sparse_points
    pose = refined.T_camera_world.astype(np.float64)[sparse.frame]
    z = np.einsum("nj,nj->n", pose[:, 2, :3], sparse.xyz[sparse.point]) + pose[:, 2, 3]
    cols, rows = np.floor(sparse.pixel).astype(int).T
    depth = refined.depth[sparse.frame, rows, cols]
    assert np.median(np.abs(depth / z - 1)) < 0.01


def test_the_refined_cameras_keep_vggts_scale(scene, refined) -> None:
    frames = _textured(scene)
    origin = np.tile(np.eye(3, 4, dtype=np.float32), (scene.truth.num_frames, 1, 1))
    distances = centre_errors(refined.T_camera_world, origin)[frames]  # from camera 0, the world origin
    assert np.median(distances / centre_errors(scene.truth.T_camera_world, origin)[frames]) == pytest.approx(
        1, abs=0.02
    )


def test_without_any_texture_every_frame_keeps_its_camera_with_one_warning(tmp_path: Path, caplog) -> None:
    blank = make_scene(tmp_path, frames=3, blank_frame=None)
    for path in blank.truth.image_paths:
        Image.new("RGB", (320, 240), (128, 128, 128)).save(path)
    predicted = perturb(blank.truth, seed=2)
    with caplog.at_level(logging.WARNING):
        result = refine(predicted, RefineConfig())
    np.testing.assert_array_equal(result.T_camera_world, predicted.T_camera_world)
    np.testing.assert_array_equal(result.intrinsics, predicted.intrinsics)
    assert result.refinement["kept_frames"] == [0, 1, 2]
    assert result.refinement["registered_frames"] == 0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "kept the predicted cameras" in warnings[0].getMessage()


def _with_radial_distortion(paths: list[Path], intrinsics: np.ndarray, k1: float, folder: Path) -> list[Path]:
    """The images as seen through a lens with COLMAP's SIMPLE_RADIAL distortion ``k1`` (same intrinsics): each
    distorted pixel centre samples the undistorted image where its undistorted ray lands (bilinear). Written out
    here rather than through ``refine.cameras.undistort``, so that the images do not share a convention error with
    the code under test."""
    from scipy.ndimage import map_coordinates

    folder.mkdir(parents=True, exist_ok=True)
    distorted = []
    for path, intrinsic in zip(paths, intrinsics, strict=True):
        image = np.asarray(Image.open(path), dtype=np.float64)
        focal, cx, cy = intrinsic[0, 0], intrinsic[0, 2], intrinsic[1, 2]
        rows, cols = np.mgrid[0 : image.shape[0], 0 : image.shape[1]] + 0.5
        x_distorted, y_distorted = (cols - cx) / focal, (rows - cy) / focal
        x, y = x_distorted.copy(), y_distorted.copy()
        for _ in range(20):  # fixed point of x_distorted = x (1 + k1 r^2)
            scale = 1 + k1 * (x**2 + y**2)
            x, y = x_distorted / scale, y_distorted / scale
        where = [y * focal + cy - 0.5, x * focal + cx - 0.5]
        channels = [map_coordinates(image[..., c], where, order=1, mode="constant") for c in range(3)]
        distorted.append(folder / path.name)
        Image.fromarray(np.clip(np.stack(channels, axis=-1), 0, 255).astype(np.uint8)).save(distorted[-1], quality=95)
    return distorted


def test_a_lens_with_barrel_distortion_is_recovered_with_the_simple_radial_model(tmp_path: Path) -> None:
    # VGGT predicts pinhole cameras; the images here come through a lens with k1 = -0.15 (barrel). SIMPLE_RADIAL
    # must find k1 and still cut the pose errors; PINHOLE cannot fit such images (measured: it falls back).
    size, frames, k1 = (640, 360), 16, -0.15
    views = generate_views(tmp_path / "pinhole", frames, *size, quality=90)
    paths = _with_radial_distortion(views, known_cameras(frames, size)[1], k1, tmp_path / "distorted")
    predicted, truth = prediction(paths, size, neighbors=16, seed=0, depth=True)
    refined = refine(predicted, RefineConfig(refine=True, refine_camera_model="SIMPLE_RADIAL"))
    assert "fallback" not in refined.refinement
    assert refined.refinement["reprojection_error_px"] < 1.0
    assert np.allclose(refined.distortion[:, 0], k1, atol=0.01)
    before = np.median(rotation_errors_deg(predicted.T_camera_world, truth)[1:])
    after = np.median(rotation_errors_deg(refined.T_camera_world, truth)[1:])
    assert after < before / 5, (before, after)


@pytest.fixture(scope="module")
def small_prediction(tmp_path_factory: pytest.TempPathFactory) -> Reconstruction:
    return perturb(make_scene(tmp_path_factory.mktemp("small"), frames=4).truth, seed=3)


def _single_warning(caplog) -> str:
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    return warnings[0]


def test_a_failed_adjustment_keeps_the_predicted_cameras_with_one_warning_saying_why(
    small_prediction, monkeypatch, caplog
) -> None:
    from vggt_sparse_ns.refine import refinement
    from vggt_sparse_ns.refine.adjustment import AdjustmentFailed

    def fail(*args, **kwargs):
        raise AdjustmentFailed("the solver stopped with FAILURE")

    monkeypatch.setattr(refinement, "bundle_adjust", fail)
    with caplog.at_level(logging.WARNING):
        result = refine(small_prediction)
    np.testing.assert_array_equal(result.T_camera_world, small_prediction.T_camera_world)
    np.testing.assert_array_equal(result.intrinsics, small_prediction.intrinsics)
    assert result.refinement["kept_frames"] == [0, 1, 2, 3]
    assert "solver stopped with FAILURE" in _single_warning(caplog)
    assert "FAILURE" in result.refinement["fallback"]


def test_an_adjustment_that_raises_the_reprojection_error_is_not_kept(small_prediction, monkeypatch, caplog) -> None:
    from vggt_sparse_ns.refine import refinement

    transform_world = refinement.transform_world

    def worsen(*args, **kwargs):
        cameras, model = transform_world(*args, **kwargs)
        noise = np.random.default_rng(0).normal(0, 0.2, model.xyz.shape)  # points that fit worse than before
        return cameras, dataclasses.replace(model, xyz=model.xyz + noise)

    monkeypatch.setattr(refinement, "transform_world", worsen)
    with caplog.at_level(logging.WARNING):
        result = refine(small_prediction)
    np.testing.assert_array_equal(result.T_camera_world, small_prediction.T_camera_world)
    assert "did not lower the mean reprojection error" in _single_warning(caplog)


def test_an_adjusted_world_whose_depth_and_camera_positions_disagree_on_the_scale_is_not_kept(
    small_prediction, caplog
) -> None:
    # VGGT's depth and cameras share one scale; an adjustment that found another world (a ring of views around a
    # box collapsed so: depth scale 0.065, centres 1.02) shows it as two scales. Here the depth is 10 times off.
    inconsistent = dataclasses.replace(small_prediction, depth=small_prediction.depth * 10)
    with caplog.at_level(logging.WARNING):
        result = refine(inconsistent)
    np.testing.assert_array_equal(result.T_camera_world, small_prediction.T_camera_world)
    assert result.refinement["kept_frames"] == [0, 1, 2, 3]
    assert "not a refinement of the prediction" in _single_warning(caplog)


def test_model_pixels_that_differ_from_image_pixels_and_no_depth_still_refine(scene: TexturedScene) -> None:
    transform = ImageTransform((320, 240), (280, 210), (0, 0), (0, 3), (280, 216))  # resized, padded
    truth = at_model_resolution(scene.truth, transform)
    predicted = perturb(truth, seed=5)
    refined = refine(predicted)
    frames = _textured(scene)
    for errors in (rotation_errors_deg, centre_errors):
        before = np.median(errors(predicted.T_camera_world, truth.T_camera_world)[frames])
        after = np.median(errors(refined.T_camera_world, truth.T_camera_world)[frames])
        assert after * 5 <= before, (errors.__name__, before, after)
    focal_error = np.abs(refined.intrinsics[frames, 0, 0] / truth.intrinsics[frames, 0, 0] - 1)
    assert np.median(focal_error) < 0.01
    np.testing.assert_allclose(refined.intrinsics[frames, :2, 2], truth.intrinsics[frames, :2, 2], atol=1e-3)
    assert refined.refinement["scale_source"] == "camera centres"
    np.testing.assert_array_equal(refined.depth, 0.0)


def test_a_frame_vggt_got_badly_wrong_rejoins_through_its_absolute_pose(scene, predicted) -> None:
    T_camera_world = predicted.T_camera_world.astype(np.float64)
    T_camera_world[5, :, :3] = random_rotation(np.random.default_rng(9), 40.0) @ T_camera_world[5, :, :3]
    T_camera_world[5, :, 3] += 0.1 * SCENE_SIZE
    far_off = dataclasses.replace(predicted, T_camera_world=T_camera_world.astype(np.float32))
    # 40 of frame 5's observations happen to fit its wrong camera: more are needed to adjust it directly.
    refined = refine(far_off, RefineConfig(refine_min_observations=60))
    assert refined.refinement["kept_frames"] == [BLANK_FRAME]
    assert rotation_errors_deg(refined.T_camera_world, scene.truth.T_camera_world)[5] < 0.5
    assert centre_errors(refined.T_camera_world, scene.truth.T_camera_world)[5] < 0.01 * SCENE_SIZE


def test_when_frame_zero_has_no_texture_the_others_are_placed_by_all_their_predictions(tmp_path: Path) -> None:
    scene = make_scene(tmp_path, frames=6, blank_frame=0)
    predicted = perturb(scene.truth, seed=1)
    refined = refine(predicted)
    assert refined.refinement["kept_frames"] == [0]
    np.testing.assert_array_equal(refined.T_camera_world[0], predicted.T_camera_world[0])
    # Frame 0 holds the world but cannot be matched: one anchor's prediction would pass its whole error on;
    # the mean over the adjusted frames' predictions does better than the typical prediction.
    before = np.median(rotation_errors_deg(predicted.T_camera_world, scene.truth.T_camera_world)[1:])
    after = np.median(rotation_errors_deg(refined.T_camera_world, scene.truth.T_camera_world)[1:])
    assert after < before / 2, (before, after)


@pytest.mark.parametrize("seed", [1, 2])
def test_two_frames_looking_at_one_subject_get_better_poses_not_a_focal_length_traded_for_worse_ones(
    tmp_path: Path, seed: int
) -> None:
    # Two views whose optical axes meet do not determine a focal length: refined, it went 18-74 % off and the
    # rotations 4-8 times worse than predicted. Kept, the poses can only improve (not 5-fold: the predicted
    # focal length's error stays in them).
    scene = make_scene(tmp_path, frames=2, seed=seed)
    predicted = perturb(scene.truth, seed=seed)
    refined = refine(predicted)
    assert refined.refinement["kept_frames"] == []
    for errors in (rotation_errors_deg, centre_errors):
        before = errors(predicted.T_camera_world, scene.truth.T_camera_world)[1]
        after = errors(refined.T_camera_world, scene.truth.T_camera_world)[1]
        assert after < before, (errors.__name__, before, after)
    focal_error = np.abs(refined.intrinsics[:, 0, 0] / scene.truth.intrinsics[:, 0, 0] - 1)
    assert focal_error.max() <= np.abs(predicted.intrinsics[:, 0, 0] / scene.truth.intrinsics[:, 0, 0] - 1).max()


def _median_errors(predicted: Reconstruction, refined: Reconstruction, truth: Reconstruction) -> dict:
    """(before, after) median rotation (degrees) and camera-position errors over frames 1..n (0 is the world)."""
    return {
        errors.__name__: (
            float(np.median(errors(predicted.T_camera_world, truth.T_camera_world)[1:])),
            float(np.median(errors(refined.T_camera_world, truth.T_camera_world)[1:])),
        )
        for errors in (rotation_errors_deg, centre_errors)
    }


@pytest.mark.parametrize("seed", [1, 2])
def test_views_linked_only_by_two_view_tracks_get_better_poses_instead_of_drifting(tmp_path: Path, seed: int) -> None:
    # Eight views around a box: SIFT matches few points across the 45 degrees between neighbours (2-44 correct per
    # pair, 14 of 28 pairs verified), so nearly every track has two views and the images leave a direction all but
    # undetermined. Without the predicted poses as a prior the adjustment drifted along it to a lower reprojection
    # error: rotations 2.2-2.6 -> 8-10 degrees off. With it, two passes stopped in a local minimum (2.0-2.5x);
    # passes repeated until the cameras settle reach 4-4.8x (positions 8.6-10x). Asked: 3-fold; the 5 needs
    # --refine-affine-features (next test).
    scene = make_box_ring_scene(tmp_path)
    predicted = perturb(scene.truth, seed=seed, scene_size=BOX_RING_SIZE)
    refined = refine(predicted)
    assert "fallback" not in refined.refinement
    for name, (before, after) in _median_errors(predicted, refined, scene.truth).items():
        assert after < before / 3, (name, before, after)


@pytest.fixture(scope="module")
def box_ring(tmp_path_factory: pytest.TempPathFactory) -> TexturedScene:
    return make_box_ring_scene(tmp_path_factory.mktemp("box_ring"))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_affine_features_cut_the_errors_of_views_45_degrees_apart_five_fold(box_ring, seed: int) -> None:
    # With SIFT's disk-shaped regions, neighbouring views of the box (45 degrees apart) share 2-21 correct matches, 3 of
    # the 8 neighbouring pairs fail verification and rotations improve only 3.7-4.8x (seeds 1-3). Affine-adapted
    # regions keep 23-96 correct matches per neighbouring pair, every one verified: measured 6.1-10.1x.
    predicted = perturb(box_ring.truth, seed=seed, scene_size=BOX_RING_SIZE)
    refined = refine(predicted, RefineConfig(refine_affine_features=True))
    assert "fallback" not in refined.refinement
    for name, (before, after) in _median_errors(predicted, refined, box_ring.truth).items():
        assert after * 5 <= before, (name, before, after)


def test_depth_maps_each_off_by_their_own_scale_leave_the_box_rings_scale_to_the_predicted_camera_positions(
    box_ring,
) -> None:
    # Seed 2, each frame's depth scaled by 0.7-1.4 and shifted by up to 30 %: pooled over all observations the depth
    # ratios look like one factor. Measured with only that pooled check (the frames' own medians not compared), the
    # depth set the scale and positions came out 1.7x better than predicted; from the camera centres, 5.1x. pycolmap's
    # SIFT, the CPU's default, as measured: ours (a GPU's default) finds about as many correct matches here (within
    # two of pycolmap's on each pair of first and second neighbours), but one marginal pair fewer verifies (13, not
    # 14) and positions came out 2.2x better (the CPU and an H200 alike).
    predicted = perturb(box_ring.truth, seed=2, scene_size=BOX_RING_SIZE)
    refined = refine(perturb_depth(predicted, seed=2), RefineConfig(refine_prior_depth=0.0, refine_features="pycolmap"))
    assert refined.refinement["scale_source"] == "camera centres"
    before, after = _median_errors(predicted, refined, box_ring.truth)["centre_errors"]
    assert after * 3 <= before, (before, after)


@pytest.mark.parametrize("seed", [1, 2])
def test_a_camera_turning_outward_in_a_room_gets_poses_from_its_tracks_not_a_local_minimum(
    tmp_path: Path, seed: int
) -> None:
    # Sixteen views panning around a room (3-view tracks between every other view). Seed 1's second adjustment
    # stopped in a local minimum that 1,067 of the tracks do not fit: rotations 1.9 -> 1.6 degrees (1.2x), positions
    # 3.8x. Adjusting again from the tracks it re-triangulates until the cameras settle: 4.5x and 13x. Rotations
    # reach 4.2-11x over seeds 1-3: started from the exact cameras without the pose prior, the adjustment settles
    # 1 degree off them at a lower cost than theirs (the tracks' own error, not the prior's pull).
    scene = make_outward_ring_scene(tmp_path)
    predicted = perturb(scene.truth, seed=seed, scene_size=OUTWARD_RING_SIZE)
    refined = refine(predicted)
    assert refined.refinement["kept_frames"] == []
    errors = _median_errors(predicted, refined, scene.truth)
    before, after = errors["rotation_errors_deg"]
    assert after < before / 3, (before, after)
    before, after = errors["centre_errors"]
    assert after < before / 5, (before, after)


def test_frames_whose_tracks_cannot_triangulate_from_their_predicted_cameras_are_placed_through_a_neighbour(
    tmp_path: Path,
) -> None:
    # Twelve views turning outward, 0.26 apart: predicted positions off by 0.25-0.39 leave frames 5 and 6 (seed 2)
    # with no track that triangulates from their predicted cameras (every track has two views), so absolute pose
    # had no points and both were kept 2.7-2.8 degrees off. Placed by their relative pose to a neighbour (measured:
    # 0.59 and 0.63 degrees after the adjustment), they join the rest.
    scene = make_outward_ring_scene(tmp_path, frames=12)
    predicted = perturb(scene.truth, seed=2, scene_size=OUTWARD_RING_SIZE)
    refined = refine(predicted)
    assert refined.refinement["kept_frames"] == []
    before = rotation_errors_deg(predicted.T_camera_world, scene.truth.T_camera_world)[[5, 6]]
    after = rotation_errors_deg(refined.T_camera_world, scene.truth.T_camera_world)[[5, 6]]
    assert np.all(after < before / 3), (before, after)


@pytest.mark.parametrize("seed", [1, 2])
def test_cameras_predicted_several_degrees_off_still_follow_their_matches(tmp_path: Path, seed: int) -> None:
    # The prior on the predicted poses must not hold back what the matches determine: walking down a corridor
    # (baselines along the optical axis), predictions 5-8 degrees and 6-10 % of its width off are still cut at
    # least 5-fold (a Gaussian prior of the same width left the positions of seed 1 as they were).
    scene = make_corridor_scene(tmp_path)
    predicted = perturb(scene.truth, seed=seed, scene_size=2 * CORRIDOR_SIZE, rotation_degrees=(5.0, 8.0))
    refined = refine(predicted)
    for errors in (rotation_errors_deg, centre_errors):
        before = np.median(errors(predicted.T_camera_world, scene.truth.T_camera_world)[1:])
        after = np.median(errors(refined.T_camera_world, scene.truth.T_camera_world)[1:])
        assert after < before / 5, (errors.__name__, before, after)


@pytest.mark.parametrize("seed", [1, 3])
def test_a_flat_ground_seen_face_on_keeps_the_predicted_focal_length_instead_of_trading_it_for_distance(
    tmp_path: Path, seed: int
) -> None:
    # A drone's grid over flat ground, one frame predicted 20 degrees off and one over water (no texture): the
    # images fix only focal length / height. Without a prior on the focal length the adjustment traded one for the
    # other: seed 1 was rejected by VGGT's depth (every camera kept, 1x), seed 3 accepted with positions 0.26 ->
    # 0.98 off (worse). Held to the prediction, the focal length stays as good as predicted and the poses improve:
    # rotations at least 5-fold, positions only as far as the predicted focal length's error allows.
    scene = make_aerial_scene(tmp_path, blank_frame=5)
    predicted = perturb(scene.truth, seed=seed, scene_size=AERIAL_SIZE)
    T_camera_world = predicted.T_camera_world.astype(np.float64)
    T_camera_world[3, :, :3] = random_rotation(np.random.default_rng(seed), 20.0) @ T_camera_world[3, :, :3]
    predicted = dataclasses.replace(predicted, T_camera_world=T_camera_world.astype(np.float32))
    refined = refine(predicted)
    assert "fallback" not in refined.refinement
    assert refined.refinement["kept_frames"] == [5]

    def median_error(errors, cameras: Reconstruction) -> float:
        textured = [frame for frame in range(1, scene.truth.num_frames) if frame != 5]
        return float(np.median(errors(cameras.T_camera_world, scene.truth.T_camera_world)[textured]))

    assert median_error(rotation_errors_deg, refined) < median_error(rotation_errors_deg, predicted) / 5
    assert median_error(centre_errors, refined) < median_error(centre_errors, predicted) / 2

    def focal_error(cameras: Reconstruction) -> float:
        return float(np.median(np.abs(cameras.intrinsics[:, 0, 0] / scene.truth.intrinsics[:, 0, 0] - 1)))

    assert focal_error(refined) < focal_error(predicted)


@pytest.mark.parametrize("depth", [False, True])
def test_views_circling_over_one_plane_keep_their_focal_length_instead_of_trading_it_for_distance(
    tmp_path: Path, depth: bool
) -> None:
    # 12 views circling over a plane papered with photographs (benchmarks/refine.py's scene), tilting by at most 8
    # degrees: the images barely tell a focal length from the distance to the plane, and the first adjustment's
    # loose loss leans towards a far camera with a long lens. Under a Cauchy prior on the focal length (which pulls
    # ever more weakly) it went 17x the truth: rotations 1.81 -> 0.74 degrees, and with depth the run fell back.
    size = (640, 360)
    paths = generate_views(tmp_path, 12, *size, quality=90)
    predicted, truth = prediction(paths, size, neighbors=16, seed=0, depth=depth)
    refined = refine(predicted)
    assert "fallback" not in refined.refinement
    before = np.median(rotation_errors_deg(predicted.T_camera_world, truth)[1:])
    after = np.median(rotation_errors_deg(refined.T_camera_world, truth)[1:])
    assert after < before / 5, (before, after)
    true_focal = to_model_pixels(known_cameras(12, size)[1], refined.transforms)[:, 0, 0]
    assert np.median(np.abs(refined.intrinsics[:, 0, 0] / true_focal - 1)) < 0.05


@pytest.fixture(scope="module")
def table_orbit(tmp_path_factory: pytest.TempPathFactory) -> TexturedScene:
    return make_table_orbit_scene(tmp_path_factory.mktemp("table_orbit"))


@pytest.mark.parametrize("seed", [4, 5])
def test_repeated_photographs_seen_from_opposite_sides_do_not_carry_a_frame_far_off(table_orbit, seed) -> None:
    # Twenty views circling three boxes whose faces repeat six photographs: retrieval pairs views from opposite sides
    # that see one photograph on two boxes, and one epipolar geometry explains those matches. Seed 5's adjustment
    # carried frames 5, 6 and 9 to 22-51 degrees off (predicted 1.5-2.4), as many observations fitting them there:
    # held out, they keep their prediction. Seed 4's wrong matches move frames 2, 5 and 6 to about 5 degrees off
    # (predicted 1.7-3.0), within what the adjustment may move a frame, and they stay there.
    predicted = perturb(table_orbit.truth, seed=seed, scene_size=TABLE_ORBIT_SIZE)
    refined = refine(predicted)
    assert "fallback" not in refined.refinement
    after = rotation_errors_deg(refined.T_camera_world, table_orbit.truth.T_camera_world)
    assert np.all(after < 10.0), after
    for errors in (rotation_errors_deg, centre_errors):
        before = errors(predicted.T_camera_world, table_orbit.truth.T_camera_world)
        after = errors(refined.T_camera_world, table_orbit.truth.T_camera_world)
        assert np.median(after[1:]) * 3 <= np.median(before[1:]), (errors.__name__, before, after)


@pytest.fixture(scope="module")
def outward_ring_12(tmp_path_factory: pytest.TempPathFactory) -> TexturedScene:
    return make_outward_ring_scene(tmp_path_factory.mktemp("outward_ring_12"), frames=12)


def test_views_turning_outward_take_the_distances_between_them_from_the_predicted_depth(outward_ring_12) -> None:
    # Twelve views panning around a room, every track seen by two of them: the images leave the step lengths between
    # neighbours open, and without the depth prior the positions improve only 2.2x (rotations 3.8x). With depth
    # rendered from the truth held at 5 %: measured 110x and 32x with every observation held (12 frames are well within
    # the affordable depth costs), 38x and 20x with 50 per frame.
    predicted = perturb(outward_ring_12.truth, seed=1, scene_size=OUTWARD_RING_SIZE)
    refined = refine(predicted)
    for name, (before, after) in _median_errors(predicted, refined, outward_ring_12.truth).items():
        assert after * 10 <= before, (name, before, after)
    assert refined.refinement["depth_prior"] is True


def test_depth_maps_each_off_by_their_own_scale_and_shift_are_not_used_and_change_nothing(outward_ring_12) -> None:
    # Each frame's depth scaled by 0.7-1.4 and shifted by up to 30 %: the passes with the prior raise the mean
    # reprojection error (measured 0.085 -> 0.995 px) and keep fewer observations (4,852 -> 3,640): discarded.
    predicted = perturb(outward_ring_12.truth, seed=1, scene_size=OUTWARD_RING_SIZE)
    wrong_depth = perturb_depth(predicted, seed=1)
    refined = refine(wrong_depth)
    without = refine(wrong_depth, RefineConfig(refine_prior_depth=0.0))
    assert refined.refinement["depth_prior"] is False
    assert without.refinement["depth_prior"] is False
    with_errors = _median_errors(wrong_depth, refined, outward_ring_12.truth)
    for name, (_, after) in _median_errors(wrong_depth, without, outward_ring_12.truth).items():
        assert with_errors[name][1] <= after * 1.01, (name, with_errors[name][1], after)


def test_the_passes_settle_on_each_frames_median_shift_not_on_one_points_largest() -> None:
    # Two cameras 1 apart looking down z at 50 points 10 away and one point 0.05 in front of camera 1: moving camera 1
    # by 0.001 shifts the far points by 0.05 px and the near one by 10 px; moving it by 0.01 shifts them all by 0.5 px.
    poses = np.stack([np.eye(4)[:3], np.eye(4)[:3]])
    poses[1, 0, 3] = -1.0
    intrinsics = np.repeat(np.array([[[500.0, 0, 320], [0, 500, 240], [0, 0, 1]]]), 2, 0)
    rng = np.random.default_rng(0)
    xyz = np.concatenate([np.column_stack([rng.uniform(-1, 2, (50, 2)), np.full(50, 10.0)]), [[1.0, 0.0, 0.05]]])
    point, frame = np.repeat(np.arange(51), 2), np.tile([0, 1], 51)
    model = SparseModel(xyz, point, frame, np.arange(102), np.zeros((102, 2)))
    before = CameraSet(poses, intrinsics, np.zeros((2, 4)))

    def moved(step: float) -> CameraSet:
        shifted = poses.copy()
        shifted[1, 0, 3] += step
        return CameraSet(shifted, intrinsics, np.zeros((2, 4)))

    assert _frame_shift(before, moved(0.001), model, CPU) == pytest.approx(0.05)
    assert _frame_shift(before, moved(0.01), model, CPU) == pytest.approx(0.5)
    # An even count of observations: numpy's median, the mean of the middle two shifts.
    depths = rng.uniform(2, 20, 50)
    model = SparseModel(
        np.column_stack([np.zeros((50, 2)), depths]), np.arange(50), np.ones(50, int), np.arange(50), np.zeros((50, 2))
    )
    middle = np.sort(500 * 0.01 / depths)[24:26]
    assert _frame_shift(before, moved(0.01), model, CPU) == pytest.approx(middle.mean())


@pytest.mark.parametrize(("lost", "kept"), [(0, True), (9, True), (11, False), (250, False)])
def test_passes_with_the_depth_prior_may_lose_at_most_one_percent_of_the_observations(
    monkeypatch: pytest.MonkeyPatch, lost: int, kept: bool
) -> None:
    # Right depth moves a few of 1,000 observations across the outlier threshold; depth that disagrees with the
    # images loses a quarter of them.
    poses = np.stack([np.eye(4)[:3], np.eye(4)[:3]])
    poses[1, 0, 3] = -1.0
    cameras = CameraSet(
        poses, np.repeat(np.array([[[500.0, 0, 320], [0, 500, 240], [0, 0, 1]]]), 2, 0), np.zeros((2, 4))
    )
    rng = np.random.default_rng(0)
    xyz = np.column_stack([rng.uniform(-2, 2, (500, 2)), rng.uniform(5, 10, 500)])
    point, frame = np.repeat(np.arange(500), 2), np.tile([0, 1], 500)
    model = SparseModel(xyz, point, frame, np.arange(1000), project_points(cameras, frame, xyz[point])[0])
    monkeypatch.setattr(refinement, "depth_agrees", lambda *arguments: True)
    trial = model.select(np.arange(1000) >= lost)
    assert _depth_kept(None, (cameras, model, np.arange(2)), (cameras, trial, np.arange(2))) is kept
