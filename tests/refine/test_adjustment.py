"""Bundle adjustment: large problems solve on several threads, with the priors' costs (the focal prior's written in
Python, the depth prior's compiled), and by sparse Schur at any frame count."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vggt_sparse_ns.images import ImageTransform
from vggt_sparse_ns.pipeline.reconstruction import Reconstruction
from vggt_sparse_ns.refine import adjustment
from vggt_sparse_ns.refine import depth_prior as depth_prior_module
from vggt_sparse_ns.refine.adjustment import AdjustmentFailed, bundle_adjust
from vggt_sparse_ns.refine.cameras import CameraSet, project_points
from vggt_sparse_ns.refine.depth_prior import DepthPrior, depth_cost, depth_prior
from vggt_sparse_ns.refine.triangulation import SparseModel

# 12 cameras on an arc looking at 2,500 points, every point seen by every camera: 60,000 residuals, above the
# 50,000 from which pycolmap has Ceres evaluate on several threads, with the pose and focal priors.
LARGE_ADJUSTMENT = """
import numpy as np
from textured_scene import look_at
from vggt_sparse_ns.refine import adjustment
from vggt_sparse_ns.refine.cameras import CameraSet, project_points
from vggt_sparse_ns.refine.triangulation import SparseModel

adjustment.usable_cpus = lambda: 4
rng = np.random.default_rng(0)
frames, points = 12, 2500
poses = np.stack([look_at(np.array([np.sin(a) * 6, -1.0, -np.cos(a) * 6]), np.zeros(3))
                  for a in np.linspace(-0.6, 0.6, frames)])
intrinsics = np.repeat(np.array([[[500.0, 0, 320], [0, 500, 240], [0, 0, 1]]]), frames, 0)
truth = CameraSet(poses, intrinsics, np.zeros((frames, 4)))
xyz = rng.uniform(-1, 1, (points, 3))
point, frame = np.repeat(np.arange(points), frames), np.tile(np.arange(frames), points)
pixel = project_points(truth, frame, xyz[point])[0] + rng.normal(0, 0.3, (len(point), 2))
model = SparseModel(xyz + rng.normal(0, 0.01, xyz.shape), point, frame, np.arange(len(point)), pixel)
start = CameraSet(poses, intrinsics * np.array([[[1.03], [1.03], [1]]]), np.zeros((frames, 4)))
prior = adjustment.PosePrior(start, np.arange(frames), rotation_sigma=0.03, position_sigma=0.1, focal_sigma=0.1)
adjusted, _ = adjustment.bundle_adjust(
    start, model, frames=np.arange(frames), anchor=0, sizes=[(640, 480)] * frames, camera_model="PINHOLE",
    shared_intrinsics=True, loss_scale=1.0, prior=prior,
)
assert abs(adjusted.intrinsics[0, 0, 0] / 500.0 - 1) < 0.01, adjusted.intrinsics[0]
"""


def test_a_large_adjustment_with_the_priors_on_several_threads_finishes_with_the_right_focal_length() -> None:
    # It hung while the focal prior was a Python cost and pycolmap's own solve held the GIL its threads waited for.
    tests_dir = Path(__file__).resolve().parent
    result = subprocess.run(
        [sys.executable, "-c", LARGE_ADJUSTMENT],
        cwd=tests_dir,
        env={"PYTHONPATH": f"{tests_dir}{':'.join([''] + sys.path)}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_more_than_a_thousand_frames_are_solved_by_sparse_schur_not_iterative(monkeypatch: pytest.MonkeyPatch) -> None:
    # pycolmap's automatic choice turns to iterative Schur above 1,000 images.
    import pyceres

    frames = 1001
    poses = np.repeat(np.eye(4)[None, :3], frames, 0)
    poses[:, 0, 3] = -0.1 * np.arange(frames)  # a line of cameras looking down z
    intrinsics = np.repeat(np.array([[[500.0, 0, 320], [0, 500, 240], [0, 0, 1]]]), frames, 0)
    cameras = CameraSet(poses, intrinsics, np.zeros((frames, 4)))
    xyz = np.column_stack([0.1 * np.arange(frames - 2) + 0.1, np.zeros(frames - 2), np.full(frames - 2, 5.0)])
    point, frame = np.repeat(np.arange(frames - 2), 3), (np.arange(frames - 2)[:, None] + np.arange(3)).ravel()
    pixel = project_points(cameras, frame, xyz[point])[0]
    used = []
    monkeypatch.setattr(pyceres, "solve", lambda options, problem, summary: used.append(options.linear_solver_type))
    _adjust_unsolved(cameras, SparseModel(xyz, point, frame, np.arange(len(point)), pixel), None)
    assert used == [pyceres.LinearSolverType.SPARSE_SCHUR]


def _four_frames_with_depth(points: int) -> tuple[CameraSet, SparseModel, Reconstruction]:
    """Four cameras 0.2 apart looking down z at ``points`` points 5 away, each seen by all four; a prediction whose
    depth map is constant per frame: 5 + the frame's index (a depth cost's target names its frame)."""
    frames = 4
    poses = np.repeat(np.eye(4)[None, :3], frames, 0)
    poses[:, 0, 3] = -0.2 * np.arange(frames)
    intrinsics = np.repeat(np.array([[[500.0, 0, 320], [0, 500, 240], [0, 0, 1]]]), frames, 0)
    cameras = CameraSet(poses, intrinsics, np.zeros((frames, 4)))
    rng = np.random.default_rng(0)
    xyz = np.column_stack([rng.uniform(-1, 1, (points, 2)), np.full(points, 5.0)])
    point, frame = np.repeat(np.arange(points), frames), np.tile(np.arange(frames), points)
    pixel = project_points(cameras, frame, xyz[point])[0]
    transform = ImageTransform((640, 480), (80, 60), (0, 0), (0, 0), (80, 60))
    prediction = Reconstruction(
        image_paths=[Path(f"frame_{i}.png") for i in range(frames)],
        transforms=[transform] * frames,
        T_camera_world=poses.astype(np.float32),
        intrinsics=intrinsics.astype(np.float32),
        depth=np.repeat(5.0 + np.arange(frames, dtype=np.float32)[:, None, None], 60, 1).repeat(80, 2),
        depth_conf=np.ones((frames, 60, 80), np.float32),
        colors=np.zeros((frames, 60, 80, 3), np.uint8),
    )
    return cameras, SparseModel(xyz, point, frame, np.arange(len(point)), pixel), prediction


def _adjust_unsolved(cameras: CameraSet, model: SparseModel, depth: DepthPrior | None) -> None:
    """``bundle_adjust`` on every frame of ``model`` with ``depth``, up to the solve (the solve patched away)."""
    frames = len(cameras.T_camera_world)
    with pytest.raises(AdjustmentFailed):  # nothing was solved
        bundle_adjust(
            cameras,
            model,
            frames=np.arange(frames),
            anchor=0,
            sizes=[(640, 480)] * frames,
            camera_model="PINHOLE",
            shared_intrinsics=True,
            loss_scale=1.0,
            depth_prior=depth,
        )


@pytest.mark.parametrize("with_depth", [False, True])
def test_ceres_runs_on_every_usable_thread_with_or_without_the_depth_prior(
    monkeypatch: pytest.MonkeyPatch, with_depth: bool
) -> None:
    # The depth prior's costs are pycolmap's compiled ones: no GIL for Ceres' threads to take turns at.
    import pyceres

    cameras, model, prediction = _four_frames_with_depth(points=40)
    threads = []
    monkeypatch.setattr(adjustment, "usable_cpus", lambda: 4)

    def unsolved(options, config, problem) -> pyceres.SolverSummary:
        # The threads asked for (pycolmap then keeps problems under 50,000 residuals on one thread anyway).
        threads.append(options.ceres.solver_options.num_threads)
        return pyceres.SolverSummary()

    monkeypatch.setattr(adjustment, "_solve", unsolved)
    _adjust_unsolved(cameras, model, depth_prior(prediction, 0.05, 50) if with_depth else None)
    assert threads == [4]


@pytest.mark.parametrize(("per_frame", "affordable"), [(1, 0), (7, 0), (40, 0), (7, 100), (7, 50_000)])
def test_each_frame_holds_its_share_of_the_affordable_depth_costs_or_its_floor_weighted_as_all(
    monkeypatch: pytest.MonkeyPatch, per_frame: int, affordable: int
) -> None:
    # Each depth cost adds two residuals to the solve: their number must grow with the frames, not with the
    # observations (1.1-1.4 million at 1,000 frames of 1920x1080).
    import pyceres

    cameras, model, prediction = _four_frames_with_depth(points=60)
    targets, weights = [], []

    def counted_depth_cost(point_in_frame: np.ndarray, target: float, width: float) -> object:
        targets.append(target)
        weights.append((0.05 / width) ** 2)
        return depth_cost(point_in_frame, target, width)

    monkeypatch.setattr(adjustment, "depth_cost", counted_depth_cost)
    monkeypatch.setattr(adjustment, "_solve", lambda options, config, problem: pyceres.SolverSummary())
    monkeypatch.setattr(depth_prior_module, "AFFORDABLE_DEPTH_COSTS", affordable)
    _adjust_unsolved(cameras, model, depth_prior(prediction, 0.05, per_frame))
    frame = np.round(np.array(targets) - 5.0).astype(np.int64)
    held = min(max(per_frame, affordable // 4), 60)  # the floor per frame, or an equal share of the affordable costs
    np.testing.assert_array_equal(np.bincount(frame, minlength=4), [held] * 4)
    # Weighted so that each frame's prior pulls as hard as its 60 observations held at the prior's width would.
    np.testing.assert_allclose(np.bincount(frame, weights, minlength=4), [60.0] * 4)


@pytest.mark.parametrize(
    ("model", "params", "focal_count"),
    [
        ("PINHOLE", [520.0, 530.0, 320.0, 240.0], 2),
        ("SIMPLE_RADIAL", [520.0, 320.0, 240.0, 0.2], 1),
        ("OPENCV", [520.0, 530.0, 320.0, 240.0, 0.2, -0.1, 0.01, 0.02], 2),
    ],
)
def test_the_focal_prior_is_each_focal_lengths_error_in_sigmas_whatever_the_distortion(
    model: str, params: list[float], focal_count: int
) -> None:
    import pyceres
    import pycolmap

    reconstruction = pycolmap.Reconstruction()
    reconstruction.add_camera(pycolmap.Camera(model=model, width=640, height=480, params=params, camera_id=1))
    # Two frames' predicted focal lengths, (500, 505) and (510, 515): their mean (505, 510) is the target.
    intrinsics = np.array([[[500.0, 0, 320], [0, 505, 240], [0, 0, 1]], [[510.0, 0, 320], [0, 515, 240], [0, 0, 1]]])
    predicted = CameraSet(np.repeat(np.eye(4)[None, :3], 2, 0), intrinsics, np.zeros((2, 4)))
    prior = adjustment.PosePrior(predicted, np.arange(2), rotation_sigma=0.03, position_sigma=0.1, focal_sigma=0.1)
    problem = pyceres.Problem()
    block = reconstruction.camera(1).params
    problem.add_parameter_block(block, len(block))
    alive = adjustment._add_focal_priors(problem, reconstruction, prior, {0: 1, 1: 1})
    options = pyceres.EvaluateOptions()
    options.apply_loss_function = False
    residuals = np.array(problem.evaluate_residuals(options))
    if focal_count == 2:
        expected = [(520 - 505) / 50.5, (530 - 510) / 51.0]
    else:  # one focal length held to the mean of all four: both residuals on it, each at sqrt(2) sigma
        expected = [(520 - 507.5) / (50.75 * np.sqrt(2))] * 2
    # OPENCV's tangential terms move the probe's projection by 1e-4 of a sigma.
    np.testing.assert_allclose(residuals, expected, rtol=1e-3)
    del alive
