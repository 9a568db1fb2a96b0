"""Points from tracks with known cameras: a linear multi-view triangulation (DLT) of all tracks at once,
then observations that do not fit (behind the camera, far from the projection) are dropped and the track
triangulated again, and points seen under too small an angle are left out. In torch, on refinement's device: at
1,000 views (2.1 M observations) numpy took 1.1-1.3 s per call in 16 processes, torch on an H100 0.24-0.30 s (its eigenproblems on the GPU then)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import numpy as np

from vggt_sparse_ns.camera_models import array_namespace
from vggt_sparse_ns.refine.cameras import CameraSet, normalised_points, project_points, reprojection_errors

if TYPE_CHECKING:
    import torch

    from vggt_sparse_ns.camera_models import Array

REFIT_ROUNDS = 4
GAUSS_NEWTON_STEPS = 3

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SparseModel:
    """Triangulated points and their observations (tracks), sorted by point: numpy arrays, or tensors on one
    device (``to``) inside ``triangulate``."""

    xyz: Array
    """[N, 3] float64 world points."""
    point: Array
    """[M] int64 index into xyz of each observation."""
    frame: Array
    """[M] int64 frame of each observation."""
    keypoint: Array
    """[M] int64 index of the keypoint in its frame's features."""
    pixel: Array
    """[M, 2] float64 full-resolution pixel of the keypoint."""

    def __len__(self) -> int:
        return len(self.xyz)

    def errors(self, cameras: CameraSet, device: torch.device | None = None) -> Array:
        """[M] reprojection error of each observation, in full-resolution pixels (infinite behind the camera);
        computed on ``device`` when given (numpy in and out: 0.3 s for 2 M observations in numpy)."""
        if device is not None:
            return self.to(device).errors(cameras.to_tensors(device)).cpu().numpy()
        return reprojection_errors(cameras, self.frame, self.xyz[self.point], self.pixel)

    def select(self, keep_observation: Array, min_views: int = 2) -> SparseModel:
        """The model with only the kept observations and the points that still have ``min_views`` of them."""
        kept_points = self.points_kept(keep_observation, min_views)
        keep = keep_observation & kept_points[self.point]
        renumber = array_namespace(self.xyz).cumsum(kept_points, 0) - 1
        return SparseModel(
            self.xyz[kept_points], renumber[self.point[keep]], self.frame[keep], self.keypoint[keep], self.pixel[keep]
        )

    def points_kept(self, keep_observation: Array, min_views: int = 2) -> Array:
        """[N] which points ``select(keep_observation, min_views)`` keeps (in order: they become 0, 1, ...)."""
        xp = array_namespace(self.xyz)
        return xp.bincount(self.point[keep_observation], minlength=len(self.xyz)) >= min_views

    def to(self, device: torch.device) -> SparseModel:
        """This model as tensors on ``device`` (float64 points and pixels, int64 indices)."""
        import torch

        return SparseModel(
            *(
                torch.as_tensor(value, dtype=torch.float64 if name in ("xyz", "pixel") else torch.int64, device=device)
                for name, value in self._values()
            )
        )

    def numpy(self) -> SparseModel:
        """This model as numpy arrays."""
        return SparseModel(*(value.cpu().numpy() for _, value in self._values()))

    def _values(self) -> list[tuple[str, Array]]:
        return [(field.name, getattr(self, field.name)) for field in fields(self)]


def linear_triangulation(
    cameras: CameraSet, track: torch.Tensor, frame: torch.Tensor, pixel: torch.Tensor
) -> torch.Tensor:
    """[T, 3] points minimising the algebraic error of all their observations (track ids 0..T-1); NaN where
    the solution is at infinity. Tensors (``cameras`` too, ``CameraSet.to_tensors``); the T 4x4 eigenproblems are
    solved on the CPU: on CUDA torch's batched ``eigh`` took about 0.5 MiB of workspace per matrix (measured on
    the H100 machine: 120k tracks asked for 61 GiB), where the CPU solves 120k in 0.2 s on two cores."""
    import torch

    normalised = normalised_points(cameras, frame, pixel)
    pose = cameras.T_camera_world[frame]
    rows = torch.cat([normalised[:, :1] * pose[:, 2] - pose[:, 0], normalised[:, 1:] * pose[:, 2] - pose[:, 1]])
    rows = rows / torch.linalg.norm(rows, dim=1, keepdim=True)
    rows[~torch.isfinite(rows).all(1)] = 0.0  # an undistortion that diverged: the observation says nothing
    count = int(track.max()) + 1 if len(track) else 0
    normal = rows.new_zeros(count, 16).index_add_(
        0, torch.cat([track, track]), (rows[:, :, None] * rows[:, None, :]).reshape(-1, 16)
    )
    _, vectors = torch.linalg.eigh(normal.view(count, 4, 4).cpu())
    homogeneous = vectors[:, :, 0].to(rows.device)
    xyz = homogeneous[:, :3] / homogeneous[:, 3:]
    xyz[homogeneous[:, 3].abs() < 1e-12] = float("nan")
    return xyz


def refine_points(cameras: CameraSet, model: SparseModel, steps: int = GAUSS_NEWTON_STEPS) -> SparseModel:
    """The points moved to minimise their squared reprojection error with the cameras fixed: a few Gauss-Newton
    steps, all points at once (a 3x3 system each). The Jacobian leaves out lens distortion (small near the
    optimum). Points that are not finite or sit behind a camera are left as they are. Tensors."""
    import torch

    xyz = model.xyz
    count = len(xyz)
    pose = cameras.T_camera_world[model.frame]
    focal = cameras.intrinsics[model.frame][:, :2, :2]
    for _ in range(steps):
        world = xyz[model.point]
        projected, z = project_points(cameras, model.frame, world)
        camera = torch.einsum("mij,mj->mi", pose[:, :, :3], world) + pose[:, :, 3]
        usable = torch.isfinite(projected).all(1) & torch.isfinite(model.pixel).all(1) & (z > 0)
        d_normalised = z.new_zeros(len(z), 2, 3)
        d_normalised[:, 0, 0] = d_normalised[:, 1, 1] = 1 / z
        d_normalised[:, 0, 2] = -camera[:, 0] / z**2
        d_normalised[:, 1, 2] = -camera[:, 1] / z**2
        jacobian = focal @ d_normalised @ pose[:, :, :3]  # not finite for points at infinity: unusable
        jacobian[~usable] = 0
        residual = torch.where(usable[:, None], projected - model.pixel, 0.0)
        transposed = jacobian.transpose(1, 2)
        normal = xyz.new_zeros(count, 3, 3).index_add_(0, model.point, transposed @ jacobian)
        gradient = xyz.new_zeros(count, 3).index_add_(0, model.point, (transposed @ residual[..., None])[..., 0])
        solvable = torch.linalg.det(normal) > 1e-12 * normal.abs().amax((1, 2)) ** 3
        step = torch.zeros_like(xyz)
        step[solvable] = torch.linalg.solve(normal[solvable], gradient[solvable][..., None])[..., 0]
        xyz = xyz - step
    return SparseModel(xyz, model.point, model.frame, model.keypoint, model.pixel)


def triangulation_angles(cameras: CameraSet, model: SparseModel) -> torch.Tensor:
    """[N] largest angle (degrees) between a point's ray to its first observing camera and its other rays.
    Tensors."""
    import torch

    rays = cameras.centres[model.frame] - model.xyz[model.point]
    rays = rays / torch.linalg.norm(rays, dim=1, keepdim=True).clamp(min=1e-12)
    count, observations = len(model.xyz), len(model.point)
    index = torch.arange(observations, device=rays.device)
    first = index.new_full((count,), observations).scatter_reduce(0, model.point, index, "amin")
    cosine = (rays * rays[first[model.point]]).sum(1)
    smallest = rays.new_ones(count).scatter_reduce(0, model.point, cosine, "amin")
    return torch.rad2deg(torch.arccos(smallest.clamp(-1.0, 1.0)))


def triangulate(
    cameras: CameraSet,
    track: np.ndarray,
    frame: np.ndarray,
    keypoint: np.ndarray,
    pixel: np.ndarray,
    *,
    max_error: float,
    min_angle: float,
    device: torch.device | None = None,
) -> SparseModel:
    """Triangulate every track with ``cameras``. While a point's worst observation is farther than
    ``max_error`` pixels from its projection (or behind the camera), that observation is dropped and the point
    refitted (a few rounds); then observations still too far, points with fewer than two observations and
    points seen under an angle below ``min_angle`` degrees are left out.

    Args:
        cameras: every frame's camera (numpy).
        track, frame, keypoint, pixel: [M] each observation's track (ids 0..T-1; sorted, as ``build_tracks``
            gives them, for a model sorted by point), frame, keypoint and [M, 2] full-resolution pixel.
        max_error: pixels.
        min_angle: degrees.
        device: where to compute, in float64 (the CPU when None; not mps, which has no float64).

    Returns:
        The points (renumbered 0..N-1 in track order) and their kept observations, as numpy arrays.

    Example:
        >>> model = triangulate(cameras, track, frame, keypoint, pixel, max_error=4.0, min_angle=1.5)
    """
    import torch

    device = torch.device("cpu") if device is None else device
    observations = SparseModel(np.zeros((0, 3)), track, frame, keypoint, pixel)
    try:
        model = _triangulate_tracks(
            cameras.to_tensors(device), observations.to(device), max_error=max_error, min_angle=min_angle
        )
    except torch.OutOfMemoryError:  # a large model on a small GPU
        if device.type == "cpu":
            raise
        logger.warning("Triangulation ran out of memory on %s; it runs on the CPU instead.", device)
        model = None
    if model is None:  # outside the except block, whose traceback holds the device's tensors
        torch.cuda.empty_cache()
        cpu = torch.device("cpu")
        model = _triangulate_tracks(
            cameras.to_tensors(cpu), observations.to(cpu), max_error=max_error, min_angle=min_angle
        )
    return model.numpy()


def _triangulate_tracks(cameras: CameraSet, model: SparseModel, *, max_error: float, min_angle: float) -> SparseModel:
    """``triangulate`` on tensors: ``model``'s points are the tracks, its xyz unused."""
    refit = None  # every point
    for _ in range(REFIT_ROUNDS):
        if len(model.point) == 0:
            break
        model = _fit_points(cameras, model, refit)
        errors = model.errors(cameras)
        misfit = _worst_of_each_point(model.point, errors) & (errors > max_error)
        if not misfit.any():
            break
        # Only each point's worst observation goes: a wrong match pulls the point away from its good views.
        # Only the points that lost one are fitted again (the others' fit would come out bit for bit the same).
        lost = misfit.new_zeros(len(model.xyz))
        lost[model.point[misfit]] = True
        refit = lost[model.points_kept(~misfit)]
        model = model.select(~misfit)
    if len(model.point) == 0:
        return SparseModel(model.pixel.new_zeros(0, 3), *(model.point[:0],) * 3, model.pixel[:0])
    finite = model.xyz.isfinite().all(1)
    model = model.select(finite[model.point] & (model.errors(cameras) <= max_error))
    return model.select(triangulation_angles(cameras, model)[model.point] >= min_angle)


def _fit_points(cameras: CameraSet, model: SparseModel, refit: torch.Tensor | None) -> SparseModel:
    """The model with the points flagged in ``refit`` (all when None) triangulated from their observations
    (linear, then Gauss-Newton); each point's fit uses its own observations alone."""
    if refit is None:
        xyz = linear_triangulation(cameras, model.point, model.frame, model.pixel)
        return refine_points(cameras, SparseModel(xyz, model.point, model.frame, model.keypoint, model.pixel))
    if not refit.any():
        return model
    observed = refit[model.point]
    point = (refit.cumsum(0) - 1)[model.point[observed]]
    frame, pixel = model.frame[observed], model.pixel[observed]
    linear = SparseModel(
        linear_triangulation(cameras, point, frame, pixel), point, frame, model.keypoint[observed], pixel
    )
    xyz = model.xyz.clone()
    xyz[refit] = refine_points(cameras, linear).xyz
    return SparseModel(xyz, model.point, model.frame, model.keypoint, model.pixel)


def _worst_of_each_point(point: torch.Tensor, errors: torch.Tensor) -> torch.Tensor:
    """[M] whether each observation is its point's largest error (the first one on ties)."""
    import torch

    count = int(point.max()) + 1 if len(point) else 0
    largest = errors.new_full((count,), -float("inf")).scatter_reduce(0, point, errors, "amax")
    index = torch.arange(len(point), device=point.device)
    candidate = errors == largest[point]
    first = index.new_full((count,), len(point)).scatter_reduce(0, point[candidate], index[candidate], "amin")
    return candidate & (index == first[point])
