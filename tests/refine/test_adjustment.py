"""Bundle adjustment: large problems with the priors' Python costs solve on several threads, and by sparse Schur
at any frame count."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vggt_sparse_ns.refine.adjustment import AdjustmentFailed, bundle_adjust
from vggt_sparse_ns.refine.cameras import CameraSet, project_points
from vggt_sparse_ns.refine.triangulation import SparseModel

# 12 cameras on an arc looking at 2,500 points, every point seen by every camera: 60,000 residuals, above the
# 50,000 from which pycolmap has Ceres evaluate on several threads. The focal prior is a Python cost.
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


def test_an_adjustment_with_python_prior_costs_on_several_threads_finishes() -> None:
    # pycolmap's own solve holds the GIL while Ceres' threads wait for it to evaluate the Python costs: it hangs.
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
    with pytest.raises(AdjustmentFailed):  # nothing was solved
        bundle_adjust(
            cameras,
            SparseModel(xyz, point, frame, np.arange(len(point)), pixel),
            frames=np.arange(frames),
            anchor=0,
            sizes=[(640, 480)] * frames,
            camera_model="PINHOLE",
            shared_intrinsics=True,
            loss_scale=1.0,
        )
    assert used == [pyceres.LinearSolverType.SPARSE_SCHUR]
