"""Points from tracks with known cameras: a linear multi-view triangulation (DLT) of all tracks at once,
then observations that do not fit (behind the camera, far from the projection) are dropped and the track
triangulated again, and points seen under too small an angle are left out."""

from __future__ import annotations

import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial

import numpy as np

from vggt_sparse_ns.cpus import usable_cpus
from vggt_sparse_ns.refine.cameras import CameraSet, normalised_points, project_points

REFIT_ROUNDS = 4
GAUSS_NEWTON_STEPS = 3
RUN_OBSERVATIONS = 100_000
"""Fewest observations a triangulation worker process gets: enough work (0.5-1 s) to pay for its start and the
arrays' transfer (measured: 2 workers on 60k observations 0.26-0.28 s in all, against 0.29 s in one process)."""

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SparseModel:
    """Triangulated points and their observations (tracks), sorted by point."""

    xyz: np.ndarray
    """[N, 3] float64 world points."""
    point: np.ndarray
    """[M] int64 index into xyz of each observation."""
    frame: np.ndarray
    """[M] int64 frame of each observation."""
    keypoint: np.ndarray
    """[M] int64 index of the keypoint in its frame's features."""
    pixel: np.ndarray
    """[M, 2] float64 full-resolution pixel of the keypoint."""

    def __len__(self) -> int:
        return len(self.xyz)

    def errors(self, cameras: CameraSet) -> np.ndarray:
        """[M] reprojection error of each observation, in full-resolution pixels."""
        projected, z = project_points(cameras, self.frame, self.xyz[self.point])
        errors = np.linalg.norm(projected - self.pixel, axis=1)
        return np.where((z > 0) & np.isfinite(errors), errors, np.inf)

    def select(self, keep_observation: np.ndarray, min_views: int = 2) -> SparseModel:
        """The model with only the kept observations and the points that still have ``min_views`` of them."""
        kept_points = self.points_kept(keep_observation, min_views)
        keep = keep_observation & kept_points[self.point]
        renumber = np.cumsum(kept_points) - 1
        return SparseModel(
            self.xyz[kept_points], renumber[self.point[keep]], self.frame[keep], self.keypoint[keep], self.pixel[keep]
        )

    def points_kept(self, keep_observation: np.ndarray, min_views: int = 2) -> np.ndarray:
        """[N] which points ``select(keep_observation, min_views)`` keeps (in order: they become 0, 1, ...)."""
        return np.bincount(self.point[keep_observation], minlength=len(self.xyz)) >= min_views


class WorkerPool:
    """Worker processes for ``triangulate``, started on first use and kept until the ``with`` block ends, so that
    the calls of one refinement share them. A spawned process imports its parent's main module first: 3.0 s for
    benchmarks.refine_stages (it imports torch); on 212k observations triangulated with good cameras on this 2-core
    machine, a pool of two per call took 2.8 s against 1.4-1.6 s in one process.

    Example:
        >>> with WorkerPool() as pool:
        ...     model = triangulate(cameras, track, frame, keypoint, pixel, max_error=4.0, min_angle=1.0, pool=pool)
    """

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or usable_cpus()
        self._executor: ProcessPoolExecutor | None = None

    def executor(self) -> ProcessPoolExecutor:
        """The processes (spawned: the parent may hold a CUDA context), started on the first call."""
        if self._executor is None:
            context = multiprocessing.get_context("spawn")
            self._executor = ProcessPoolExecutor(max_workers=self.workers, mp_context=context)
        return self._executor

    def warm(self, observations: int) -> None:
        """Start the processes now, in the background, if ``triangulate`` would share this many observations out
        between them, so that it does not wait for them to import their parent's main module."""
        if _run_count(observations, self.workers) < 2:
            return
        executor = self.executor()
        for _ in range(self.workers):
            executor.submit(int)

    def close(self) -> None:
        """End the processes (a later ``executor()`` starts new ones)."""
        if self._executor is not None:
            self._executor.shutdown()
            self._executor = None

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def linear_triangulation(cameras: CameraSet, track: np.ndarray, frame: np.ndarray, pixel: np.ndarray) -> np.ndarray:
    """[T, 3] points minimising the algebraic error of all their observations (track ids 0..T-1); NaN where
    the solution is at infinity."""
    normalised = normalised_points(cameras, frame, pixel)
    pose = cameras.T_camera_world[frame]
    rows = np.concatenate(
        [
            normalised[:, :1] * pose[:, 2] - pose[:, 0],
            normalised[:, 1:] * pose[:, 2] - pose[:, 1],
        ]
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    rows[~np.isfinite(rows).all(1)] = 0.0  # an undistortion that diverged: the observation says nothing
    owners = np.concatenate([track, track])
    count = int(track.max()) + 1 if len(track) else 0
    outer = rows[:, :, None] * rows[:, None, :]
    normal = np.stack([np.bincount(owners, outer[:, a, b], minlength=count) for a in range(4) for b in range(4)], 1)
    _, vectors = np.linalg.eigh(normal.reshape(count, 4, 4))
    homogeneous = vectors[:, :, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        xyz = homogeneous[:, :3] / homogeneous[:, 3:]
    xyz[np.abs(homogeneous[:, 3]) < 1e-12] = np.nan
    return xyz


def refine_points(cameras: CameraSet, model: SparseModel, steps: int = GAUSS_NEWTON_STEPS) -> SparseModel:
    """The points moved to minimise their squared reprojection error with the cameras fixed: a few Gauss-Newton
    steps, all points at once (a 3x3 system each). The Jacobian leaves out lens distortion (small near the
    optimum). Points that are not finite or sit behind a camera are left as they are."""
    xyz = model.xyz.copy()
    count = len(xyz)
    pose = cameras.T_camera_world[model.frame]
    focal = cameras.intrinsics[model.frame][:, :2, :2]
    for _ in range(steps):
        projected, z = project_points(cameras, model.frame, xyz[model.point])
        camera = np.einsum("mij,mj->mi", pose[:, :, :3], xyz[model.point]) + pose[:, :, 3]
        usable = np.isfinite(projected).all(1) & np.isfinite(model.pixel).all(1) & (z > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            d_normalised = np.zeros((len(z), 2, 3))
            d_normalised[:, 0, 0] = d_normalised[:, 1, 1] = 1 / z
            d_normalised[:, 0, 2] = -camera[:, 0] / z**2
            d_normalised[:, 1, 2] = -camera[:, 1] / z**2
            jacobian = focal @ d_normalised @ pose[:, :, :3]  # not finite for points at infinity: unusable
        jacobian[~usable] = 0
        residual = np.where(usable[:, None], projected - model.pixel, 0.0)
        normal = np.einsum("mki,mkj->mij", jacobian, jacobian).reshape(-1, 9)
        gradient = np.einsum("mki,mk->mi", jacobian, residual)
        normal = np.stack([np.bincount(model.point, normal[:, k], minlength=count) for k in range(9)], 1)
        gradient = np.stack([np.bincount(model.point, gradient[:, k], minlength=count) for k in range(3)], 1)
        normal = normal.reshape(count, 3, 3)
        solvable = np.linalg.det(normal) > 1e-12 * np.abs(normal).max(axis=(1, 2)) ** 3
        step = np.zeros_like(xyz)
        step[solvable] = np.linalg.solve(normal[solvable], gradient[solvable][..., None])[..., 0]
        xyz = xyz - step
    return SparseModel(xyz, model.point, model.frame, model.keypoint, model.pixel)


def triangulation_angles(cameras: CameraSet, model: SparseModel) -> np.ndarray:
    """[N] largest angle (degrees) between a point's ray to its first observing camera and its other rays."""
    rays = cameras.centres[model.frame] - model.xyz[model.point]
    rays /= np.maximum(np.linalg.norm(rays, axis=1, keepdims=True), 1e-12)
    first = np.searchsorted(model.point, np.arange(len(model.xyz)))
    cosine = np.einsum("ij,ij->i", rays, rays[first[model.point]])
    smallest = np.full(len(model.xyz), 1.0)
    np.minimum.at(smallest, model.point, cosine)
    return np.rad2deg(np.arccos(np.clip(smallest, -1.0, 1.0)))


def triangulate(
    cameras: CameraSet,
    track: np.ndarray,
    frame: np.ndarray,
    keypoint: np.ndarray,
    pixel: np.ndarray,
    *,
    max_error: float,
    min_angle: float,
    workers: int | None = None,
    pool: WorkerPool | None = None,
) -> SparseModel:
    """Triangulate every track with ``cameras``. While a point's worst observation is farther than
    ``max_error`` pixels from its projection (or behind the camera), that observation is dropped and the point
    refitted (a few rounds); then observations still too far, points with fewer than two observations and
    points seen under an angle below ``min_angle`` degrees are left out.

    numpy runs this on one core (5-12 us per observation measured), so observations sorted by track (as
    ``build_tracks`` gives them) of at least ``2 * RUN_OBSERVATIONS`` are shared out in runs of whole tracks
    between worker processes: ``pool``'s (kept for the next call), else one per usable CPU or ``workers`` for this
    call. Each point is computed from its own observations alone: the result is the one process's, bit for bit.
    """
    bounds = _track_runs(track, pool.workers if pool is not None else workers or usable_cpus())
    if len(bounds) > 2:
        runs = [
            (cameras, track[a:b] - track[a], frame[a:b], keypoint[a:b], pixel[a:b])
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        ]
        with nullcontext(pool) if pool is not None else WorkerPool(len(runs)) as processes:
            try:
                parts = list(processes.executor().map(partial(_run, max_error=max_error, min_angle=min_angle), runs))
                return _concatenate(parts)
            except BrokenProcessPool as error:  # e.g. a script without `if __name__ == "__main__":` cannot spawn
                processes.close()
                logger.warning("Triangulation worker processes failed (%s); triangulating in this process.", error)
    return _triangulate_tracks(cameras, track, frame, keypoint, pixel, max_error=max_error, min_angle=min_angle)


def _track_runs(track: np.ndarray, workers: int) -> np.ndarray:
    """Bounds [0, ..., M] of up to ``workers`` runs of about equal size, each of whole tracks and at least
    ``RUN_OBSERVATIONS`` long; [0, M] (one run) when ``track`` is not sorted."""
    runs = _run_count(len(track), workers)
    if runs < 2 or np.any(track[1:] < track[:-1]):
        return np.array([0, len(track)])
    cuts = np.searchsorted(track, track[np.linspace(0, len(track), runs + 1)[1:-1].astype(np.int64)])
    return np.unique(np.concatenate([[0], cuts, [len(track)]]))


def _run_count(observations: int, workers: int) -> int:
    """Runs that ``observations`` are shared out in: up to ``workers``, each at least ``RUN_OBSERVATIONS`` long."""
    return min(workers, observations // RUN_OBSERVATIONS)


def _run(arrays: tuple, *, max_error: float, min_angle: float) -> SparseModel:
    """One worker's run: ``_triangulate_tracks`` of (cameras, track, frame, keypoint, pixel)."""
    return _triangulate_tracks(*arrays, max_error=max_error, min_angle=min_angle)


def _concatenate(parts: list[SparseModel]) -> SparseModel:
    """One model of runs of whole tracks, in order (point numbers shifted past the runs before)."""
    offsets = np.cumsum([0] + [len(part.xyz) for part in parts[:-1]])
    return SparseModel(
        np.concatenate([part.xyz for part in parts]),
        np.concatenate([part.point + offset for part, offset in zip(parts, offsets, strict=True)]),
        np.concatenate([part.frame for part in parts]),
        np.concatenate([part.keypoint for part in parts]),
        np.concatenate([part.pixel for part in parts]),
    )


def _triangulate_tracks(
    cameras: CameraSet,
    track: np.ndarray,
    frame: np.ndarray,
    keypoint: np.ndarray,
    pixel: np.ndarray,
    *,
    max_error: float,
    min_angle: float,
) -> SparseModel:
    """``triangulate`` in this process."""
    model = SparseModel(np.zeros((0, 3)), track, frame, keypoint, pixel)
    refit = None  # every point
    for _ in range(REFIT_ROUNDS):
        if len(model.point) == 0:
            break
        model = _fit_points(cameras, model, refit)
        errors = model.errors(cameras)
        worst = _worst_of_each_point(model.point, errors)
        misfit = worst & (errors > max_error)
        if not misfit.any():
            break
        # Only each point's worst observation goes: a wrong match pulls the point away from its good views.
        # Only the points that lost one are fitted again (the others' fit would come out bit for bit the same).
        lost = np.zeros(len(model.xyz), dtype=bool)
        lost[model.point[misfit]] = True
        refit = lost[model.points_kept(~misfit)]
        model = model.select(~misfit)
    if len(model.point) == 0:
        return SparseModel(np.zeros((0, 3)), *(np.zeros(0, dtype=np.int64),) * 3, np.zeros((0, 2)))
    finite = np.isfinite(model.xyz).all(1)
    model = model.select(finite[model.point] & (model.errors(cameras) <= max_error))
    return model.select(triangulation_angles(cameras, model)[model.point] >= min_angle)


def _fit_points(cameras: CameraSet, model: SparseModel, refit: np.ndarray | None) -> SparseModel:
    """The model with the points flagged in ``refit`` (all when None) triangulated from their observations
    (linear, then Gauss-Newton); each point's fit uses its own observations alone."""
    if refit is None:
        linear = SparseModel(
            linear_triangulation(cameras, model.point, model.frame, model.pixel),
            model.point,
            model.frame,
            model.keypoint,
            model.pixel,
        )
        return refine_points(cameras, linear)
    if not refit.any():
        return model
    observed = refit[model.point]
    point = (np.cumsum(refit) - 1)[model.point[observed]]
    frame, pixel = model.frame[observed], model.pixel[observed]
    linear = SparseModel(
        linear_triangulation(cameras, point, frame, pixel), point, frame, model.keypoint[observed], pixel
    )
    xyz = model.xyz.copy()
    xyz[refit] = refine_points(cameras, linear).xyz
    return SparseModel(xyz, model.point, model.frame, model.keypoint, model.pixel)


def _worst_of_each_point(point: np.ndarray, errors: np.ndarray) -> np.ndarray:
    """[M] whether each observation is its point's largest error (the first one on ties); ``point`` sorted, as a
    SparseModel's is (a maximum per run of equal points: linear time, where sorting by error was not)."""
    worst = np.zeros(len(point), dtype=bool)
    if len(point) == 0:
        return worst
    starts = np.flatnonzero(np.r_[True, point[1:] != point[:-1]])
    largest = np.maximum.reduceat(errors, starts)
    run = np.cumsum(np.r_[True, point[1:] != point[:-1]]) - 1
    candidates = np.flatnonzero(errors == largest[run])
    first = np.r_[True, run[candidates][1:] != run[candidates][:-1]]
    worst[candidates[first]] = True
    return worst
