"""Bundle adjustment in PyTorch: the problem ``bundle_adjust`` hands Ceres (the same residuals, robust losses,
priors and gauge), solved by Levenberg-Marquardt with the points eliminated (Schur complement) and the reduced camera
system factorized densely, on the GPU by cuSOLVER.

Why: at 1,000 frames Ceres spends about 3 s per iteration factorizing the camera system on the CPU, whatever the
residual count or core count (docs/benchmarks, "What an iteration costs at 1,000 frames"); the pip wheels of
pycolmap and pyceres have no CUDA solver. Here an iteration at 1,000 frames costs about 0.12 s on an H100, and the
cameras end where Ceres' would (docs/benchmarks, "Bundle adjustment on the GPU").

The model is Gauss-Newton on iteratively reweighted residuals (each residual block weighted by its loss's slope),
which has the same minima as Ceres' robustified model; the step control is Nielsen's, with Ceres' defaults and our
tolerances. Every quantity is float64.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch.func import jacfwd, vmap

from vggt_sparse_ns.refine.config import CameraModelName

FOCAL_SLOTS = {"PINHOLE": [0, 1], "SIMPLE_RADIAL": [0], "OPENCV": [0, 1]}
"""Where each COLMAP model keeps its focal length(s) among its parameters."""
EXTRA_SLOTS = {"PINHOLE": [], "SIMPLE_RADIAL": [3], "OPENCV": [4, 5, 6, 7]}
"""Where each keeps its distortion terms."""
INITIAL_DAMPING = 1e-4
"""Levenberg-Marquardt's first damping: Ceres' initial trust region radius of 1e4, inverted."""
MIN_RELATIVE_DECREASE = 1e-3
"""A step is taken when the cost fell by at least this fraction of what the linear model predicted (Ceres')."""
MIN_DIAGONAL, MAX_DIAGONAL = 1e-6, 1e32
"""The damping's diagonal is the Gauss-Newton matrix's, clamped to these (Ceres' ``min/max_lm_diagonal``)."""
PAIR_BLOCK_BUDGET = 1 << 26
"""Entries of camera-pair blocks accumulated at once while the points are eliminated (bounds the memory: about
24 bytes each)."""


class SolveFailed(RuntimeError):
    """The solver found no usable solution (a residual not finite at the start, or the camera system never
    factorizable)."""


@dataclass(frozen=True)
class Loss:
    """A robust loss per residual block, ``multiplier * rho(s)`` of its squared norm ``s``: Cauchy
    (``a^2 log(1 + s / a^2)``) or Huber (``s`` up to ``a^2``, then ``2 a sqrt(s) - a^2``), scale ``a``."""

    kind: Literal["cauchy", "huber"]
    scale: torch.Tensor
    multiplier: torch.Tensor
    """Per block (a depth prior's weight) or one for all."""

    def rho(self, squared: torch.Tensor) -> torch.Tensor:
        a2 = self.scale**2
        if self.kind == "cauchy":
            return self.multiplier * a2 * torch.log1p(squared / a2)
        root = torch.sqrt(squared)
        return self.multiplier * torch.where(squared <= a2, squared, 2 * self.scale * root - a2)

    def slope(self, squared: torch.Tensor) -> torch.Tensor:
        """d rho / d s, the weight of the block's Gauss-Newton terms."""
        a2 = self.scale**2
        if self.kind == "cauchy":
            return self.multiplier / (1 + squared / a2)
        return self.multiplier * torch.where(squared <= a2, torch.ones_like(squared), self.scale / squared.sqrt())


@dataclass
class Parameters:
    """What the adjustment moves: ``F`` frames' poses, ``C`` cameras' COLMAP parameters, ``N`` points."""

    rotation: torch.Tensor
    """[F, 3, 3] camera-from-world."""
    translation: torch.Tensor
    """[F, 3]."""
    intrinsics: torch.Tensor
    """[C, P] each camera's COLMAP parameters."""
    points: torch.Tensor
    """[N, 3] world."""

    def moved(
        self, step_frames: torch.Tensor, step_cameras: torch.Tensor, free_slots: list[int], step_points: torch.Tensor
    ) -> Parameters:
        """These parameters after a step: [F, 6] (rotation vector applied on the left, translation), [C, q] (the
        cameras' ``free_slots``) and [N, 3]."""
        return Parameters(
            _exp_so3(step_frames[:, :3]) @ self.rotation,
            self.translation + step_frames[:, 3:],
            _with_increment(self.intrinsics, free_slots, step_cameras),
            self.points + step_points,
        )


def _with_increment(params: torch.Tensor, free_slots: list[int], increment: torch.Tensor) -> torch.Tensor:
    """COLMAP parameters [..., P] with ``increment`` [..., q] added to their ``free_slots``."""
    slots = torch.tensor(free_slots, dtype=torch.int64, device=params.device)
    return params.index_add(params.dim() - 1, slots, increment)


@dataclass(frozen=True)
class PointBlocks:
    """Residual blocks on one frame and one point: reprojection errors (2 residuals) or, with ``is_depth``, depth
    priors (1 residual, padded to 2)."""

    frame: torch.Tensor
    """[B] frame index."""
    point: torch.Tensor
    """[B] point index."""
    observed: torch.Tensor
    """[B, 2] pixels (reprojection) or [B, 2] (target depth, relative width) (depth)."""
    loss: Loss
    is_depth: bool


@dataclass(frozen=True)
class PosePriorBlocks:
    """One 6-residual block per prior frame: its rotation's angle-axis from the predicted one over
    ``rotation_sigma`` and its centre's offset over ``position_sigma``."""

    frame: torch.Tensor
    rotation: torch.Tensor
    """[B, 3, 3] predicted camera-from-world."""
    centre: torch.Tensor
    """[B, 3] predicted camera centres."""
    rotation_sigma: float
    position_sigma: float
    loss: Loss


@dataclass(frozen=True)
class FocalPriorBlocks:
    """One block per refined camera: its focal length(s) relative to ``focal`` over ``sigma``; ``frame`` is one of
    its frames (whose columns hold the camera's)."""

    frame: torch.Tensor
    camera: torch.Tensor
    focal: torch.Tensor
    """[B, 2] (both the same for a model with one focal length)."""
    sigma: float
    loss: Loss


@dataclass(frozen=True)
class Problem:
    """The adjustment as tensors (one device, float64)."""

    camera_model: CameraModelName
    camera_of_frame: torch.Tensor
    """[F] camera index of each frame."""
    pose_free: torch.Tensor
    """[F] bool: frames whose pose is adjusted (all but the anchor)."""
    free_slots: list[int]
    """COLMAP parameter slots refined (the same for every camera)."""
    fixed_translation: tuple[int, int] | None
    """(frame, coordinate) of a translation held constant to fix the scale, or None."""
    blocks: list[PointBlocks]
    pose_priors: PosePriorBlocks | None
    focal_priors: FocalPriorBlocks | None


@dataclass(frozen=True)
class Report:
    """How the solve went."""

    iterations: int
    initial_cost: float
    final_cost: float
    converged: bool


def solve(
    problem: Problem, start: Parameters, max_iterations: int, function_tolerance: float
) -> tuple[Parameters, Report]:
    """Levenberg-Marquardt on ``problem`` from ``start``: at most ``max_iterations`` steps (taken or not), stopping
    once a taken step lowers the cost by less than ``function_tolerance`` of it, or no step lowers it at all.

    Args:
        problem: the residual blocks, priors and gauge.
        start: the initial parameters (the predicted or previous cameras, triangulated points).
        max_iterations: Ceres' ``max_num_iterations``.
        function_tolerance: Ceres' ``function_tolerance``.

    Returns:
        The adjusted parameters and a report.

    Raises:
        SolveFailed: a residual is not finite at the start, or the camera system cannot be factorized at any
            damping.
    """
    layout = _Layout(problem, start)
    parameters, cost = start, _cost(problem, start)
    if not torch.isfinite(cost):
        raise SolveFailed("a residual is not finite at the start")
    initial_cost, damping, growth, iterations, converged = float(cost), INITIAL_DAMPING, 2.0, 0, False
    while iterations < max_iterations and not converged:
        system = layout.linearize(problem, parameters)
        iterations += 1
        while True:
            step = layout.step(system, damping)
            if step is None:  # not positive definite at this damping
                damping, growth = damping * growth, growth * 2
                if damping > 1e16:
                    raise SolveFailed("the camera system could not be factorized")
                continue
            frames_step, cameras_step, points_step, predicted = step
            trial = parameters.moved(frames_step, cameras_step, problem.free_slots, points_step)
            trial_cost = _cost(problem, trial)
            decrease = cost - trial_cost
            ratio = float(decrease / predicted) if predicted > 0 else -1.0
            if torch.isfinite(trial_cost) and ratio > MIN_RELATIVE_DECREASE:
                converged = bool(decrease < function_tolerance * cost)
                parameters, cost = trial, trial_cost
                damping *= max(1 / 3, 1 - (2 * ratio - 1) ** 3)
                growth = 2.0
                break
            damping, growth = damping * growth, growth * 2
            if damping > 1e16 or iterations >= max_iterations:
                converged = damping > 1e16  # no step lowers the cost: a minimum at this precision
                break
            iterations += 1
    return parameters, Report(iterations, initial_cost, float(cost), converged)


# Residuals. Each takes the local increments (frame: rotation vector, translation, free COLMAP slots; point: xyz)
# at which it is linearized, and the current values; the rotation increment enters to first order, exact for the
# Jacobian at zero.


def _in_camera(increment: torch.Tensor, point_step: torch.Tensor, rotation, translation, point) -> torch.Tensor:
    omega = increment[:3]
    rotated = rotation @ (point + point_step)
    return rotated + torch.linalg.cross(omega, rotated) + translation + increment[3:6]


def project(camera_model: CameraModelName, params: torch.Tensor, in_camera: torch.Tensor) -> torch.Tensor:
    """Pixels of points in camera coordinates [..., 3] through COLMAP ``camera_model`` with ``params`` [..., P]."""
    u, v = in_camera[..., 0] / in_camera[..., 2], in_camera[..., 1] / in_camera[..., 2]
    if camera_model == "SIMPLE_RADIAL":
        f, cx, cy, k = params.unbind(-1)
        radial = 1 + k * (u * u + v * v)
        return torch.stack([f * u * radial + cx, f * v * radial + cy], -1)
    fx, fy, cx, cy = params[..., :4].unbind(-1)
    if camera_model == "OPENCV":
        k1, k2, p1, p2 = params[..., 4:8].unbind(-1)
        r2 = u * u + v * v
        radial = k1 * r2 + k2 * r2 * r2
        u, v = (
            u + u * radial + 2 * p1 * u * v + p2 * (r2 + 2 * u * u),
            v + v * radial + 2 * p2 * u * v + p1 * (r2 + 2 * v * v),
        )
    return torch.stack([fx * u + cx, fy * v + cy], -1)


def _reprojection(camera_model: CameraModelName, free_slots: list[int]) -> Callable[..., torch.Tensor]:
    def residual(increment, point_step, rotation, translation, params, point, observed):
        params = _with_increment(params, free_slots, increment[6:])
        in_camera = _in_camera(increment, point_step, rotation, translation, point)
        return _in_front(in_camera, project(camera_model, params, in_camera) - observed)

    return residual


def _depth(increment, point_step, rotation, translation, params, point, observed):
    """(z - target) / (width z), and a zero: the depth error in widths of the depth (``observed``: target, width)."""
    in_camera = _in_camera(increment, point_step, rotation, translation, point)
    z, target, width = in_camera[2], observed[0], observed[1]
    return _in_front(in_camera, torch.stack([(z - target) / (width * z), torch.zeros_like(z)]))


def _in_front(in_camera: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """The residual where the point is in front of the camera, else zero (with a zero Jacobian), as COLMAP's costs
    do: a point that crosses behind a camera frees that observation instead of failing the step."""
    return torch.where(in_camera[2] > torch.finfo(in_camera.dtype).eps, residual, torch.zeros_like(residual))


def _pose_prior(increment, rotation, translation, predicted_rotation, predicted_centre):
    omega = increment[:3]
    adjusted = rotation + torch.linalg.cross(omega.expand(3, 3), rotation.T).T  # (I + [omega]x) R
    translation = translation + increment[3:6]
    relative = adjusted @ predicted_rotation.T
    centre = -adjusted.T @ translation
    return torch.cat([_log_so3(relative), centre - predicted_centre])


def _focal_prior(increment, params, focal, free_slots: list[int], focal_slots: list[int]):
    params = _with_increment(params, free_slots, increment[6:])
    focals = params[focal_slots]
    return (focals if len(focal_slots) == 2 else focals.expand(2)) / focal - 1


def _log_so3(rotation: torch.Tensor) -> torch.Tensor:
    """The rotation vector of a rotation matrix (angles below 180 degrees), differentiable at the identity."""
    skew = (
        torch.stack([rotation[2, 1] - rotation[1, 2], rotation[0, 2] - rotation[2, 0], rotation[1, 0] - rotation[0, 1]])
        / 2
    )  # sin(angle) * axis
    sine2 = skew.square().sum()
    cosine = (rotation.diagonal().sum() - 1) / 2
    small = sine2 < 1e-12
    sine = torch.sqrt(torch.where(small, torch.ones_like(sine2), sine2))
    factor = torch.where(small, 1 + sine2 / 6, torch.atan2(sine, cosine) / sine)
    return factor * skew


def _exp_so3(vector: torch.Tensor) -> torch.Tensor:
    """[..., 3, 3] rotations of rotation vectors [..., 3] (Rodrigues)."""
    angle2 = vector.square().sum(-1, keepdim=True)[..., None]
    angle = angle2.sqrt()
    small = angle2 < 1e-12
    safe = torch.where(small, torch.ones_like(angle), angle)
    a = torch.where(small, 1 - angle2 / 6, torch.sin(safe) / safe)
    b = torch.where(small, 0.5 - angle2 / 24, (1 - torch.cos(safe)) / safe**2)
    x, y, z = vector.unbind(-1)
    zero = torch.zeros_like(x)
    skew = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*vector.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=vector.dtype, device=vector.device).expand_as(skew)
    return eye + a * skew + b * (skew @ skew)


def _evaluate(problem: Problem, parameters: Parameters, blocks: PointBlocks, jacobians: bool):
    """Residuals [B, 2] of ``blocks`` (and their Jacobians [B, 2, 6 + q], [B, 2, 3] when asked)."""
    function = _depth if blocks.is_depth else _reprojection(problem.camera_model, problem.free_slots)
    frame, point = blocks.frame, blocks.point
    params = parameters.intrinsics[problem.camera_of_frame[frame]]
    args = (
        parameters.rotation[frame],
        parameters.translation[frame],
        params,
        parameters.points[point],
        blocks.observed,
    )
    increment = torch.zeros(len(frame), 6 + len(problem.free_slots), dtype=params.dtype, device=params.device)
    point_step = torch.zeros(len(frame), 3, dtype=params.dtype, device=params.device)
    if not jacobians:
        return vmap(function)(increment, point_step, *args)

    def with_value(*inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        value = function(*inputs)
        return value, value

    # One forward pass gives the residuals (as jacfwd's auxiliary output) and their Jacobians.
    (frame_jacobian, point_jacobian), residual = vmap(jacfwd(with_value, argnums=(0, 1), has_aux=True))(
        increment, point_step, *args
    )
    return residual, frame_jacobian, point_jacobian


def _frame_blocks(problem: Problem, parameters: Parameters, jacobians: bool):
    """The priors on frames only: residuals [B, 6] and Jacobians [B, 6, 6 + q], frames and losses."""
    out = []
    q = len(problem.free_slots)
    dtype, device = parameters.rotation.dtype, parameters.rotation.device
    if problem.pose_priors is not None:
        p = problem.pose_priors
        scale = torch.tensor([1 / p.rotation_sigma] * 3 + [1 / p.position_sigma] * 3, dtype=dtype, device=device)
        args = (parameters.rotation[p.frame], parameters.translation[p.frame], p.rotation, p.centre)
        increment = torch.zeros(len(p.frame), 6 + q, dtype=dtype, device=device)
        residual = vmap(_pose_prior)(increment, *args) * scale
        jacobian = vmap(jacfwd(_pose_prior))(increment, *args) * scale[:, None] if jacobians else None
        out.append((residual, jacobian, p.frame, p.loss))
    if problem.focal_priors is not None:
        p = problem.focal_priors
        slots = FOCAL_SLOTS[problem.camera_model]

        def focal(increment, params, focal_length):
            return _focal_prior(increment, params, focal_length, problem.free_slots, slots)

        args = (parameters.intrinsics[p.camera], p.focal)
        increment = torch.zeros(len(p.frame), 6 + q, dtype=dtype, device=device)
        # One focal length: both residuals hold it, each at sqrt(2) sigma, together at sigma.
        sigma = p.sigma * (np.sqrt(2.0) if len(slots) == 1 else 1.0)
        residual = vmap(focal)(increment, *args) / sigma
        jacobian = vmap(jacfwd(focal))(increment, *args) / sigma if jacobians else None
        out.append((residual, jacobian, p.frame, p.loss))
    return out


def _cost(problem: Problem, parameters: Parameters) -> torch.Tensor:
    """The total cost, half the sum of the blocks' losses (Ceres' convention)."""
    total = torch.zeros((), dtype=parameters.points.dtype, device=parameters.points.device)
    for blocks in problem.blocks:
        residual = _evaluate(problem, parameters, blocks, jacobians=False)
        total = total + blocks.loss.rho(residual.square().sum(-1)).sum()
    for residual, _, _, loss in _frame_blocks(problem, parameters, jacobians=False):
        total = total + loss.rho(residual.square().sum(-1)).sum()
    return total / 2


@dataclass
class _System:
    """One linearization: the camera system's undamped part, its gradient, the points' 3x3 blocks and the
    frame-point couplings, merged per (point, frame)."""

    cameras: torch.Tensor
    """[n + 1, n + 1] (the last row and column collect constant parameters)."""
    camera_gradient: torch.Tensor
    """[n + 1]."""
    points: torch.Tensor
    """[N, 3, 3]."""
    point_gradient: torch.Tensor
    """[N, 3]."""
    coupling: torch.Tensor
    """[K, 6 + q, 3] per (point, frame) key."""


class _Layout:
    """Where each parameter sits in the camera system, and which (point, frame) keys couple."""

    def __init__(self, problem: Problem, start: Parameters) -> None:
        device = start.points.device
        frames = len(problem.camera_of_frame)
        q = len(problem.free_slots)
        pose_free = problem.pose_free.cpu().numpy()
        pose_columns = np.full((frames, 6), -1, dtype=np.int64)
        pose_columns[pose_free] = np.arange(6 * int(pose_free.sum())).reshape(-1, 6)
        if problem.fixed_translation is not None:
            frame, coordinate = problem.fixed_translation
            pose_columns[frame, 3 + coordinate] = -1
        used = np.unique(pose_columns[pose_columns >= 0])
        renumber = np.full(6 * frames + 1, -1, dtype=np.int64)
        renumber[used] = np.arange(len(used))
        pose_columns = np.where(pose_columns >= 0, renumber[pose_columns], -1)
        cameras = int(problem.camera_of_frame.max()) + 1 if frames else 0
        camera_columns = len(used) + np.arange(cameras * q).reshape(cameras, q)
        self.size = len(used) + cameras * q
        columns = np.concatenate([pose_columns, camera_columns[problem.camera_of_frame.cpu().numpy()]], axis=1)
        columns[columns < 0] = self.size  # the constant parameters' row and column
        self.columns = torch.from_numpy(columns).to(device)
        self.pose_columns = torch.from_numpy(np.where(pose_columns >= 0, pose_columns, self.size)).to(device)
        self.camera_columns = torch.from_numpy(camera_columns).to(device)
        self.frames, self.q = frames, q
        self.points = len(start.points)
        # (point, frame) keys, sorted by point.
        frame = torch.cat([b.frame for b in problem.blocks])
        point = torch.cat([b.point for b in problem.blocks])
        keys, self.key_of_block = torch.unique(point * frames + frame, return_inverse=True)
        self.key_point, self.key_frame = keys // frames, keys % frames
        # Every ordered pair of keys of one point couples their frames: the points in groups of equal key count L,
        # each group in chunks ([P, L] keys), and each pair's frame pair numbered (its slot, [P * L * L]).
        counts = torch.bincount(self.key_point, minlength=self.points)
        starts = torch.cumsum(counts, 0) - counts
        width = 6 + q
        chunk_keys = []
        for length in torch.unique(counts[counts > 0]).tolist():
            group = (counts == length).nonzero()[:, 0]
            for chunk in group.split(max(1, PAIR_BLOCK_BUDGET // (length * width) ** 2)):
                chunk_keys.append(starts[chunk, None] + torch.arange(length, device=device))
        pair_frames = [
            (self.key_frame[k][:, :, None] * frames + self.key_frame[k][:, None, :]).flatten() for k in chunk_keys
        ]
        # Each pair's block lands in the camera system at its two frames' columns: summed per frame pair first (a few
        # tens of thousands), so that the system itself takes one scattered addition per step.
        frame_pairs, slots = torch.unique(torch.cat(pair_frames or [keys[:0]]), return_inverse=True)
        self.chunks = list(zip(chunk_keys, slots.split([len(f) for f in pair_frames]), strict=True))
        self.slot_indices = self._linear(self.columns[frame_pairs // frames], self.columns[frame_pairs % frames])
        self.key_columns = self.columns[self.key_frame]

    def linearize(self, problem: Problem, parameters: Parameters) -> _System:
        n, width = self.size + 1, 6 + self.q
        dtype, device = parameters.points.dtype, parameters.points.device
        frame_hessian = torch.zeros(self.frames, width, width, dtype=dtype, device=device)
        frame_gradient = torch.zeros(self.frames, width, dtype=dtype, device=device)
        points = torch.zeros(self.points, 3, 3, dtype=dtype, device=device)
        point_gradient = torch.zeros(self.points, 3, dtype=dtype, device=device)
        couplings = []
        for blocks in problem.blocks:
            residual, frame_jacobian, point_jacobian = _evaluate(problem, parameters, blocks, jacobians=True)
            weight = blocks.loss.slope(residual.square().sum(-1))[:, None, None]
            weighted_frame = weight * frame_jacobian
            frame_hessian.index_add_(0, blocks.frame, weighted_frame.transpose(1, 2) @ frame_jacobian)
            frame_gradient.index_add_(0, blocks.frame, (weighted_frame.transpose(1, 2) @ residual[..., None])[..., 0])
            weighted_point = weight * point_jacobian
            points.index_add_(0, blocks.point, weighted_point.transpose(1, 2) @ point_jacobian)
            point_gradient.index_add_(0, blocks.point, (weighted_point.transpose(1, 2) @ residual[..., None])[..., 0])
            couplings.append(weighted_frame.transpose(1, 2) @ point_jacobian)
        for residual, jacobian, frame, loss in _frame_blocks(problem, parameters, jacobians=True):
            weighted = loss.slope(residual.square().sum(-1))[:, None, None] * jacobian
            frame_hessian.index_add_(0, frame, weighted.transpose(1, 2) @ jacobian)
            frame_gradient.index_add_(0, frame, (weighted.transpose(1, 2) @ residual[..., None])[..., 0])
        coupling = torch.zeros(len(self.key_point), width, 3, dtype=dtype, device=device)
        coupling.index_add_(0, self.key_of_block, torch.cat(couplings))
        cameras = torch.zeros(n * n, dtype=dtype, device=device)
        cameras.index_add_(0, self._linear(self.columns, self.columns).flatten(), frame_hessian.flatten())
        camera_gradient = torch.zeros(n, dtype=dtype, device=device)
        camera_gradient.index_add_(0, self.columns.flatten(), frame_gradient.flatten())
        return _System(cameras.view(n, n), camera_gradient, points, point_gradient, coupling)

    def _linear(self, rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
        """Flat indices into the (n + 1) x (n + 1) camera system of each row x column pair: [B, w, w]."""
        return rows[:, :, None] * (self.size + 1) + columns[:, None, :]

    def step(self, system: _System, damping: float):
        """The damped Gauss-Newton step (frames [F, 6], cameras [C, P-slots as free ones], points [N, 3]) and the
        cost decrease the linear model predicts; None when the damped camera system is not positive definite."""
        n = self.size
        camera_diagonal = system.cameras.diagonal()[:n].clamp(MIN_DIAGONAL, MAX_DIAGONAL)
        point_diagonal = system.points.diagonal(dim1=1, dim2=2).clamp(MIN_DIAGONAL, MAX_DIAGONAL)
        points = system.points + torch.diag_embed(damping * point_diagonal)
        inverse = torch.linalg.inv(points)
        key_columns = self.key_columns
        eliminated = system.coupling @ inverse[self.key_point]  # W V^-1 per key
        width = key_columns.shape[1]
        per_frame_pair = torch.zeros(len(self.slot_indices), width, width, dtype=inverse.dtype, device=inverse.device)
        for keys, slots in self.chunks:
            # All pairs of a chunk's points in one product per point, [L * width, 3] x [3, L * width] (as pairs of
            # [width, 3] blocks: small matrix products that ran at a tenth of the memory's speed, 65 % of a step).
            count, length = keys.shape
            left = eliminated[keys].reshape(count, length * width, 3)
            right = system.coupling[keys].reshape(count, length * width, 3)
            blocks = (left @ right.transpose(1, 2)).view(count, length, width, length, width).transpose(2, 3)
            per_frame_pair.index_add_(0, slots, blocks.reshape(-1, width, width))
        reduced = system.cameras.flatten().clone()
        reduced.index_add_(0, self.slot_indices.flatten(), -per_frame_pair.flatten())
        reduced = reduced.view(n + 1, n + 1)[:n, :n]
        reduced.diagonal().add_(damping * camera_diagonal)
        rhs = -system.camera_gradient.clone()
        rhs.index_add_(
            0, key_columns.flatten(), (eliminated @ system.point_gradient[self.key_point][..., None]).flatten()
        )
        factor, info = torch.linalg.cholesky_ex(reduced)
        if int(info) != 0:
            return None
        camera_step = torch.cholesky_solve(rhs[:n, None], factor)[:, 0]
        extended = torch.cat([camera_step, camera_step.new_zeros(1)])
        coupled = torch.zeros_like(system.point_gradient)
        coupled.index_add_(
            0, self.key_point, (system.coupling.transpose(1, 2) @ extended[key_columns][..., None])[..., 0]
        )
        point_step = -(inverse @ (system.point_gradient + coupled)[..., None])[..., 0]
        gradient_step = (system.camera_gradient[:n] * camera_step).sum() + (system.point_gradient * point_step).sum()
        damped = (camera_diagonal * camera_step.square()).sum() + (point_diagonal * point_step.square()).sum()
        predicted = float(0.5 * (-gradient_step + damping * damped))
        frames_step = extended[self.pose_columns]
        cameras_step = extended[self.camera_columns] if self.q else extended.new_zeros(len(self.camera_columns), 0)
        return frames_step, cameras_step, point_step, predicted
