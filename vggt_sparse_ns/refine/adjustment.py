"""Bundle adjustment with pycolmap: poses, focal lengths (and distortion) and points refined together under a
robust loss, with the gauge fixed explicitly (the anchor frame's pose constant; the scale replaced after), and the
predicted poses as a prior where the images leave a pose undetermined."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from vggt_sparse_ns.camera_models import colmap_params, from_colmap_params, to_camera
from vggt_sparse_ns.cpus import usable_cpus
from vggt_sparse_ns.refine.cameras import CameraSet
from vggt_sparse_ns.refine.config import CameraModelName, SolverChoice, float64_device
from vggt_sparse_ns.refine.depth_prior import DepthPrior, depth_cost, virtual_camera
from vggt_sparse_ns.refine.triangulation import SparseModel

MAX_ITERATIONS = 200
FUNCTION_TOLERANCE = 1e-4
"""Stop when an iteration lowers the cost by less than this fraction (pycolmap's default 0 runs to the iteration
limit on the last hundredths of a pixel). Against 1e-6, on generated views circling a plane with true depth (2
cores): 300 frames, solves 97.6 -> 56.9 s (first pass 51 -> 26 iterations, the others 20-23 -> 10-12; one more
settle pass), rotations 0.0451 -> 0.0446 deg, positions 0.00119 -> 0.00120; 100 frames 23.5 -> 17.2 s, 0.0346 ->
0.0315 deg, 0.00076 -> 0.00092. On tests/refine's scenes (17 scene-seed pairs) the gains over the prediction
moved by at most 13 %, either way."""
MIN_FRAMES_FOR_FOCAL = 3
"""Fewest adjusted frames for focal lengths to be refined. Two views do not determine a focal length when their
optical axes meet (Sturm's degeneracy), as they do in any capture that keeps one subject in view: the solver then
trades focal length for pose (measured on two views of a room looking at one point: the focal length went 18-74 %
off and the rotations 4-8 times worse than predicted). With a third view the points fix it."""
PRIOR_LOSS_SCALE = 2.0
"""The pose prior's Cauchy scale, in standard deviations: the prior holds like a Gaussian within about this many
of them and pulls ever more weakly beyond, so a camera VGGT got further off follows its matches. Measured on
scenes with exact ground truth, seeds 1-3: walking down a corridor with predictions 5-7 degrees and 8 % of its
width off, a Gaussian prior left one seed's positions as they were (22x better without a prior, 10x with this
loss); at 1 the ring of views around a box drifted again on one seed (1.6 -> 6.2 degrees); at 2 it came out 2-5x
better on every seed."""

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PosePrior:
    """The predicted poses as a prior: each prior frame's adjusted pose is pulled towards its prediction with
    these standard deviations (COLMAP's 6-DoF pose-prior cost, beside reprojection errors in pixels) under a
    Cauchy loss (``PRIOR_LOSS_SCALE``).

    Without it, views that share only two-view tracks (a ring of views around an object, each pair seeing one
    face) leave directions the images do not determine, and the adjustment fits noise along them: measured on 8
    views around a textured box, rotations went from 2.2 to 8-10 degrees off at a lower reprojection error. Where
    the images do determine a pose, hundreds of observations outweigh the prior by orders of magnitude."""

    cameras: CameraSet
    """The predicted cameras (only their poses are used)."""
    frames: np.ndarray
    """Frames whose prediction is trusted as a prior (others adjust freely)."""
    rotation_sigma: float
    """Radians; 0 (or a position_sigma of 0) leaves poses free."""
    position_sigma: float
    """World units."""
    focal_sigma: float = 0.0
    """Relative (0.1: 10 %); 0 leaves focal lengths free. Each refined focal length is held to the mean of its
    frames' predicted ones under a Huber loss (``_add_focal_priors``). Images of one plane seen face-on (an aerial
    grid) do not determine a focal length: scaling it and the plane's distance together changes no pixel, and the
    adjustment trades one for the other (measured: 12 nadir views of a textured ground, the plane put 5x too far),
    which the prediction then resolves."""


SOLVER_MEMORY_SHARE = 0.5
"""auto solves with torch on a GPU only while three copies of the dense camera system (the system, its reduced copy,
its factor) take at most this share of the free memory."""


def solver_device(
    choice: SolverChoice, device: torch.device, frames: int, camera_model: CameraModelName
) -> torch.device | None:
    """Where ``bundle_adjust`` solves: a device for ``torch_adjustment``, or None for Ceres on the CPU.

    torch when chosen (on ``device``, or the CPU for mps: no float64 there). auto: torch on cuda when the camera
    system of ``frames`` frames (6 pose and up to 8 camera parameters each, float64) fits (``SOLVER_MEMORY_SHARE``),
    because Ceres' CPU factorization of it costs about 3 s per iteration at 1,000 frames whatever the cores; Ceres
    otherwise, whose per-iteration overhead on a CPU is far lower (12 frames, 9,600 observations: 7 ms against
    0.14 s per iteration on 2 cores)."""
    import torch

    if choice == "ceres":
        return None
    if choice == "torch":
        return float64_device(device)
    if device.type != "cuda":
        return None
    size = frames * (6 + 8 if camera_model == "OPENCV" else 6 + 4)
    free, _ = torch.cuda.mem_get_info(device)
    if 3 * 8 * size**2 > SOLVER_MEMORY_SHARE * free:
        logger.info(
            "Bundle adjustment with Ceres: %d frames' camera system does not fit in the GPU's free memory", frames
        )
        return None
    return device


class RefinementRejected(RuntimeError):
    """The refinement cannot be trusted (too few frames, a failed solve, a higher error); the message says why."""


class AdjustmentFailed(RefinementRejected):
    """The solver reported no usable solution."""


def bundle_adjust(
    cameras: CameraSet,
    model: SparseModel,
    *,
    frames: np.ndarray,
    anchor: int,
    sizes: Sequence[tuple[int, int]],
    camera_model: CameraModelName,
    shared_intrinsics: bool,
    loss_scale: float,
    prior: PosePrior | None = None,
    depth_prior: DepthPrior | None = None,
    device: torch.device | None = None,
) -> tuple[CameraSet, SparseModel]:
    """Adjust the cameras of ``frames`` (observations of other frames are ignored) and the points.

    ``anchor`` (one of ``frames``) keeps its pose: it fixes the world's position and orientation; COLMAP's
    two-camera gauge fixes a scale of its own, which the caller replaces by VGGT's. Focal lengths (shared per
    image size or per frame; from ``MIN_FRAMES_FOR_FOCAL`` frames on) and the model's distortion are refined,
    principal points kept. Cauchy loss with ``loss_scale`` pixels. With a ``prior``, the prior frames' predicted
    poses also fix the scale; with a ``depth_prior``, the depths of some points in each frame (``DepthPrior.held``)
    are held to the predicted ones (which fixes the scale as well). ``device``: solve there with
    ``torch_adjustment`` (the same problem), else (or when that runs out of GPU memory) with Ceres on the CPU.
    Returns the cameras (other frames unchanged) and the model with its adjusted points.
    """
    camera_of_frame = _camera_ids(frames, sizes, shared_intrinsics)
    if device is not None:
        import torch

        try:
            return _adjust_with_torch(
                cameras, model, frames, anchor, camera_of_frame, camera_model, loss_scale, prior, depth_prior, device
            )
        except torch.OutOfMemoryError:
            # The problem's Jacobians and pair blocks grow with the observations, which solver_device cannot see.
            logger.warning("Bundle adjustment ran out of GPU memory; this pass is solved by Ceres on the CPU instead.")
            torch.cuda.empty_cache()
    import pycolmap

    reconstruction = pycolmap.Reconstruction()
    for camera_id, members in _members(camera_of_frame).items():
        width, height = sizes[members[0]]
        reconstruction.add_camera_with_trivial_rig(
            pycolmap.Camera(
                camera_id=camera_id,
                model=camera_model,
                width=width,
                height=height,
                params=_initial_params(cameras, members, camera_model),
            )
        )
    used = np.isin(model.frame, frames)
    # Observation m of frame f is that image's point2D number rank[m] (observations of a frame in model order).
    by_frame = np.flatnonzero(used)[np.argsort(model.frame[used], kind="stable")]
    starts = np.searchsorted(model.frame[by_frame], frames)
    ends = np.searchsorted(model.frame[by_frame], frames, side="right")
    rank = np.zeros(len(model.frame), dtype=np.int64)
    for frame, start, end in zip(frames, starts, ends, strict=True):
        observed = by_frame[start:end]
        rank[observed] = np.arange(len(observed))
        image = pycolmap.Image(
            name=str(frame), keypoints=model.pixel[observed], camera_id=camera_of_frame[frame], image_id=int(frame) + 1
        )
        pose = cameras.T_camera_world[frame]
        reconstruction.add_image_with_trivial_frame(
            image, pycolmap.Rigid3d(pycolmap.Rotation3d(pose[:, :3]), pose[:, 3])
        )
    point_ids = _add_points(reconstruction, model, used, rank)

    options = pycolmap.BundleAdjustmentOptions()
    options.print_summary = False
    options.refine_focal_length = len(frames) >= MIN_FRAMES_FOR_FOCAL
    options.refine_principal_point = False
    options.refine_extra_params = camera_model != "PINHOLE"
    options.ceres.loss_function_type = pycolmap.LossFunctionType.CAUCHY
    options.ceres.loss_function_scale = loss_scale
    options.ceres.solver_options.max_num_iterations = MAX_ITERATIONS
    options.ceres.solver_options.function_tolerance = FUNCTION_TOLERANCE
    options.ceres.solver_options.num_threads = usable_cpus()  # -1 would take the host's count, not ours
    # pycolmap's automatic choice otherwise: dense Schur up to 50 images, sparse Schur (CHOLMOD) up to 1,000, then
    # iterative Schur. Our reduced camera system stays sparse at any frame count (split tracks couple at most
    # track_selection.MAX_TRACK_LENGTH frames, pairs come from the frame graph), and on 200 generated views iterative Schur took 48
    # iterations and 13.0 s for the first adjustment where sparse Schur took 32 and 8.6 s (rotations 0.0465 against
    # 0.0456 degrees after all passes): sparse Schur at every frame count.
    options.ceres.max_num_images_direct_sparse_cpu_solver = max(
        options.ceres.max_num_images_direct_sparse_cpu_solver, len(frames) + 1
    )
    config = pycolmap.BundleAdjustmentConfig()
    for frame in frames:
        config.add_image(int(frame) + 1)
    config.set_constant_rig_from_world_pose(int(anchor) + 1)
    prior_frames = _prior_frames(frames, anchor, prior)
    if not prior_frames and depth_prior is None:
        # With the anchor constant, COLMAP's two-camera gauge also fixes one translation coordinate of a second
        # frame: the scale. It is not VGGT's yet; the caller restores that.
        config.fix_gauge(pycolmap.BundleAdjustmentGauge.TWO_CAMS_FROM_WORLD)
    adjuster = pycolmap.create_default_ceres_bundle_adjuster(options, config, reconstruction)
    # The costs must outlive the solve: the problem holds only pointers to them.
    prior_costs = _add_pose_priors(adjuster.problem, reconstruction, prior, prior_frames) if prior_frames else []
    if _focal_prior_held(prior, options.refine_focal_length):
        prior_costs += _add_focal_priors(adjuster.problem, reconstruction, prior, camera_of_frame)
    if depth_prior is not None:
        prior_costs += _add_depth_priors(adjuster.problem, reconstruction, depth_prior, model, cameras, used, point_ids)
    summary = _solve(options, config, adjuster.problem)
    del adjuster, prior_costs
    logger.debug("%s", summary.BriefReport())
    if not summary.IsSolutionUsable():
        raise AdjustmentFailed(f"the solver stopped with {summary.termination_type.name}")

    T_camera_world = cameras.T_camera_world.copy()
    intrinsics = cameras.intrinsics.copy()
    distortion = cameras.distortion.copy()
    for frame in frames:
        image = reconstruction.image(int(frame) + 1)
        T_camera_world[frame] = image.cam_from_world().matrix()
        intrinsics[frame], distortion[frame] = from_colmap_params(camera_model, image.camera.params)
    xyz = model.xyz.copy()
    for index in np.flatnonzero(point_ids):
        xyz[index] = reconstruction.point3D(int(point_ids[index])).xyz
    kept = point_ids[model.point] > 0
    adjusted = SparseModel(xyz, model.point, model.frame, model.keypoint, model.pixel).select(used & kept)
    return CameraSet(T_camera_world, intrinsics, distortion), adjusted


def _solve(options: object, config: object, problem: object) -> object:
    """Solve ``problem`` with pycolmap's choice of solver options (linear solver by image count, threads by
    residual count) through pyceres, which releases the GIL while Ceres runs, so the progress display's thread
    goes on. pycolmap's own ``solve`` keeps it: while the priors were Python costs, a Ceres thread evaluating one
    waited for it forever once a problem had 50,000 residuals (measured: 100 generated views hung in the first
    adjustment, every thread asleep)."""
    import pyceres

    summary = pyceres.SolverSummary()
    pyceres.solve(options.ceres.create_solver_options(config, problem), problem, summary)
    return summary


def _add_pose_priors(problem: object, reconstruction: object, prior: PosePrior, frames: list[int]) -> list[object]:
    """One 6-DoF prior cost per frame on its pose's parameter block (pycolmap's own, reached through pyceres),
    under a Cauchy loss; returns the costs and losses, which the caller keeps alive until the problem is solved."""
    import pycolmap
    from pycolmap import cost_functions

    covariance = np.diag([prior.rotation_sigma**2] * 3 + [prior.position_sigma**2] * 3)
    costs = []
    for frame in frames:
        pose = prior.cameras.T_camera_world[frame]
        predicted = pycolmap.Rigid3d(pycolmap.Rotation3d(pose[:, :3]), pose[:, 3])
        # A trivial rig: the frame's pose is its one image's, a view on the block the problem already holds.
        parameters = reconstruction.frame(frame + 1).rig_from_world.params
        costs += _add_robust(problem, cost_functions.AbsolutePosePriorCost(covariance, predicted), parameters)
    return costs


def _add_robust(
    problem: object, cost: object, *parameters: np.ndarray, loss_scale: float = PRIOR_LOSS_SCALE, loss: object = None
) -> list[object]:
    """Add ``cost`` on its parameter blocks under ``loss``, or else a Cauchy loss (the priors' scale unless given);
    returns the cost and the loss, which must outlive the solve (the problem holds only pointers to them)."""
    import pyceres

    loss = pyceres.CauchyLoss(loss_scale) if loss is None else loss
    problem.add_residual_block(cost, loss, list(parameters))
    return [cost, loss]


def _add_depth_priors(
    problem: object,
    reconstruction: object,
    prior: DepthPrior,
    model: SparseModel,
    cameras: CameraSet,
    used: np.ndarray,
    point_ids: np.ndarray,
) -> list[object]:
    """One depth cost per observation the prior holds (``DepthPrior.held``) among the adjusted ones in front of
    their frame, on its point's and its frame's parameter blocks and the virtual camera's (``depth_cost``), under
    the priors' Cauchy loss times the observation's weight; returns the costs, losses and blocks to keep alive."""
    observed, targets, weights, in_frame = _held_depths(prior, model, used & (point_ids[model.point] > 0), cameras)
    camera = virtual_camera()
    problem.add_parameter_block(camera, len(camera))
    problem.set_parameter_block_constant(camera)
    costs = [camera]
    for index, point_in_frame, target, weight in zip(
        observed.tolist(), in_frame, targets.tolist(), np.sqrt(weights).tolist(), strict=True
    ):
        point = reconstruction.point3D(int(point_ids[model.point[index]])).xyz
        pose = reconstruction.frame(int(model.frame[index]) + 1).rig_from_world.params
        if not problem.has_parameter_block(pose):
            # pycolmap leaves a constant pose (the anchor's) out of the problem; added free, its quaternion would
            # leave the unit sphere.
            problem.add_parameter_block(pose, 7)
            problem.set_parameter_block_constant(pose)
        # Weighted w: the residual times sqrt(w) under a Cauchy scale times sqrt(w) is w times the loss, exactly.
        cost = depth_cost(point_in_frame, target, prior.width / weight)
        costs += _add_robust(problem, cost, point, pose, camera, loss_scale=PRIOR_LOSS_SCALE * weight)
    return costs


def _add_points(reconstruction, model: SparseModel, used: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Add each point with two or more ``used`` observations (track element: image frame + 1, point2D
    ``rank``); returns [N] their point3D ids (0: not added). Plain Python lists in the loop: numpy scalars cost
    about 4x as much per observation (2.5 against 0.6 us measured)."""
    import pycolmap

    point_ids = np.zeros(len(model.xyz), dtype=np.int64)
    views = np.bincount(model.point[used], minlength=len(model.xyz))
    ends = np.cumsum(views).tolist()
    image_ids = (model.frame[used] + 1).tolist()
    point2D_ids = rank[used].tolist()
    start = 0
    for index, end in enumerate(ends):
        if end - start >= 2:
            track = pycolmap.Track()
            for element in range(start, end):
                track.add_element(image_ids[element], point2D_ids[element])
            point_ids[index] = reconstruction.add_point3D(model.xyz[index], track)
        start = end
    return point_ids


FOCAL_PRIOR_LOSS_SCALE = 4.0
"""The focal-length prior's Huber scale, in standard deviations: a Gaussian within 40 % of the prediction (at the
default 10 %), a constant pull beyond. At 2 (the pose prior's scale) the ring of 8 views around a box, seed 5,
ended with rotations 1.3x better than predicted instead of 4.8x (its first adjustment passes through a focal length
more than 20 % off); at 4 and 6 it is 4.8x again, and 12 views circling over a plane keep their focal length
(0.032 degrees); at 6 the aerial grid (tests/refine, seed 3) no longer halves its position errors."""
FOCAL_PROBE = 1e-4
"""Where the focal prior's probe point sits, (x, y) at depth 1 in the camera: close enough to the optical axis that
distortion hardly moves its projection (OPENCV's tangential terms, the largest, by 1e-4 of the prior's sigma)."""


def _add_focal_priors(
    problem: object, reconstruction: object, prior: PosePrior, camera_of_frame: dict[int, int]
) -> list[object]:
    """One cost per refined camera holding its focal lengths to the mean of its frames' predicted ones, in units of
    ``prior.focal_sigma`` of that focal length, under a Huber loss of ``FOCAL_PRIOR_LOSS_SCALE`` standard deviations;
    returns the costs, losses and blocks to keep alive.

    Huber, not the pose prior's Cauchy: past its scale it pulls with a constant force, where Cauchy's fades, so a
    focal length the images barely determine stays near the prediction. Measured on 12 views circling over a plane
    (benchmarks/refine.py's scene, 640x360, tilting at most 8 degrees): under Cauchy the first adjustment took the
    focal length to 17x the truth, with the cameras as far away (rotations 1.81 -> 0.74 degrees; with the depth
    prior the run fell back); under Huber it stayed within 3 % (0.032 degrees; with depth 0.029). Where the images
    do determine it (the same scene at 1,000 views; tests/refine's scenes) the results stayed as they were.

    The cost is pycolmap's compiled reprojection error (constant pose: the camera's own frame) of a constant point
    at (``FOCAL_PROBE``, ``FOCAL_PROBE``, 1), observed where the predicted focal lengths put it: its residuals are
    ``FOCAL_PROBE`` (fx - fx0) and ``FOCAL_PROBE`` (fy - fy0) pixels (one focal length: both on it), the principal
    point being held constant. A cost written in Python would hold the GIL that Ceres' threads then take turns at:
    one per frame with per-frame intrinsics."""
    import pyceres
    import pycolmap
    from pycolmap import cost_functions

    probe = np.array([FOCAL_PROBE, FOCAL_PROBE, 1.0])
    problem.add_parameter_block(probe, 3)
    problem.set_parameter_block_constant(probe)
    costs = [probe]
    for camera_id, members in sorted(_members(camera_of_frame).items()):
        camera = reconstruction.camera(camera_id)
        params = camera.params
        if not problem.has_parameter_block(params) or problem.is_parameter_block_constant(params):
            continue
        focal = _predicted_focal(prior, members, len(camera.focal_length_idxs()))
        # One focal length: both residuals hold it, each at sqrt(2) sigma, together at sigma.
        spread = np.sqrt(2.0) if len(camera.focal_length_idxs()) == 1 else 1.0
        observed = params[list(camera.principal_point_idxs())] + FOCAL_PROBE * focal
        sigma = FOCAL_PROBE * prior.focal_sigma * spread * focal
        cost = cost_functions.ReprojErrorCost(camera.model, np.diag(sigma**2), observed, pycolmap.Rigid3d())
        costs += _add_robust(problem, cost, probe, params, loss=pyceres.HuberLoss(FOCAL_PRIOR_LOSS_SCALE))
    return costs


def _camera_ids(frames: np.ndarray, sizes: Sequence[tuple[int, int]], shared: bool) -> dict[int, int]:
    """Camera id per frame: one per frame, or one per distinct image size when shared."""
    if not shared:
        return {int(f): int(f) + 1 for f in frames}
    distinct: dict[tuple[int, int], int] = {}
    return {int(f): distinct.setdefault(tuple(sizes[f]), len(distinct) + 1) for f in frames}


def _members(camera_of_frame: dict[int, int]) -> dict[int, list[int]]:
    """Each camera id's frames, in frame order."""
    members: dict[int, list[int]] = {}
    for frame, camera_id in camera_of_frame.items():
        members.setdefault(camera_id, []).append(frame)
    return members


def _initial_params(cameras: CameraSet, members: list[int], camera_model: CameraModelName) -> list[float]:
    """A camera's COLMAP parameters to start from: the mean of its frames' intrinsics and distortion."""
    return colmap_params(camera_model, cameras.intrinsics[members].mean(0), cameras.distortion[members].mean(0))


def _prior_frames(frames: np.ndarray, anchor: int, prior: PosePrior | None) -> list[int]:
    """The frames whose poses the pose prior holds: the prior's among ``frames`` but the anchor (none when its
    sigmas are 0)."""
    if prior is None or prior.rotation_sigma <= 0 or prior.position_sigma <= 0:
        return []
    return frames[np.isin(frames, prior.frames) & (frames != anchor)].tolist()


def _focal_prior_held(prior: PosePrior | None, focal_refined: bool) -> bool:
    return prior is not None and focal_refined and prior.focal_sigma > 0


def _predicted_focal(prior: PosePrior, members: list[int], focal_lengths: int) -> np.ndarray:
    """(fx, fy) a camera's focal prior holds: the mean of its frames' predicted ones (both their mean for a model
    with one focal length)."""
    focal = prior.cameras.intrinsics[members][:, [0, 1], [0, 1]].mean(0)
    return np.full(2, focal.mean()) if focal_lengths == 1 else focal


def _held_depths(
    prior: DepthPrior, model: SparseModel, adjusted: np.ndarray, cameras: CameraSet
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The observations among ``adjusted`` (a mask) whose depth the prior holds (``DepthPrior.held``), in front of
    their frame: indices, target depths, weights and the points in their frames [B, 3]."""
    observed, targets, weights = prior.held(model, np.flatnonzero(adjusted), cameras)
    in_frame = to_camera(model.xyz[model.point[observed]], cameras.T_camera_world[model.frame[observed]])
    in_front = in_frame[:, 2] > 0  # a point's bearing, which the Ceres cost starts from, needs it in front
    return observed[in_front], targets[in_front], weights[in_front], in_frame[in_front]


def _scale_gauge(cameras: CameraSet, frames: np.ndarray, anchor: int) -> tuple[int, int]:
    """(index into ``frames``, coordinate) of the translation that fixes the scale when nothing else does: the
    coordinate that moves most when the world is scaled about the anchor's centre (R (c - c_anchor))."""
    centres = cameras.centres[frames] - cameras.centres[anchor]
    moved = np.abs(np.einsum("fij,fj->fi", cameras.T_camera_world[frames, :, :3], centres))
    moved[frames == anchor] = -1
    index, coordinate = np.unravel_index(int(np.argmax(moved)), moved.shape)
    return int(index), int(coordinate)


def _adjust_with_torch(
    cameras: CameraSet,
    model: SparseModel,
    frames: np.ndarray,
    anchor: int,
    camera_of_frame: dict[int, int],
    camera_model: CameraModelName,
    loss_scale: float,
    prior: PosePrior | None,
    depth_prior: DepthPrior | None,
    device: torch.device,
) -> tuple[CameraSet, SparseModel]:
    """``bundle_adjust``'s problem built as tensors on ``device`` and solved by ``torch_adjustment``: the same
    residuals, losses, priors and gauge as the Ceres path."""
    import torch

    from vggt_sparse_ns.refine import torch_adjustment as solver

    def tensor(array, dtype=torch.float64) -> torch.Tensor:
        return torch.as_tensor(np.asarray(array), dtype=dtype, device=device)

    def loss(kind: str, scale: float, multiplier=1.0) -> solver.Loss:
        return solver.Loss(kind, tensor(scale), tensor(multiplier))

    local = np.full(len(cameras.T_camera_world), -1, dtype=np.int64)
    local[frames] = np.arange(len(frames))
    members = _members(camera_of_frame)
    camera_index = {camera_id: index for index, camera_id in enumerate(members)}
    used = np.isin(model.frame, frames)
    kept = np.bincount(model.point[used], minlength=len(model.xyz)) >= 2
    adjusted = used & kept[model.point]
    point_index = np.cumsum(kept) - 1
    focal_refined = len(frames) >= MIN_FRAMES_FOR_FOCAL
    free_slots = (solver.FOCAL_SLOTS[camera_model] if focal_refined else []) + solver.EXTRA_SLOTS[camera_model]
    blocks = [
        solver.PointBlocks(
            tensor(local[model.frame[adjusted]], torch.int64),
            tensor(point_index[model.point[adjusted]], torch.int64),
            tensor(model.pixel[adjusted]),
            loss("cauchy", loss_scale),
            is_depth=False,
        )
    ]
    if depth_prior is not None:
        observed, targets, weights, _ = _held_depths(depth_prior, model, adjusted, cameras)
        if len(observed):
            blocks.append(
                solver.PointBlocks(
                    tensor(local[model.frame[observed]], torch.int64),
                    tensor(point_index[model.point[observed]], torch.int64),
                    tensor(np.stack([targets, np.full(len(targets), depth_prior.width)], 1)),
                    loss("cauchy", PRIOR_LOSS_SCALE, weights),
                    is_depth=True,
                )
            )
    prior_frames = np.array(_prior_frames(frames, anchor, prior), dtype=np.int64)
    pose_priors = None
    if len(prior_frames):
        predicted = prior.cameras
        pose_priors = solver.PosePriorBlocks(
            tensor(local[prior_frames], torch.int64),
            tensor(predicted.T_camera_world[prior_frames, :, :3]),
            tensor(predicted.centres[prior_frames]),
            prior.rotation_sigma,
            prior.position_sigma,
            loss("cauchy", PRIOR_LOSS_SCALE),
        )
    focal_priors = None
    if _focal_prior_held(prior, focal_refined):
        focal_lengths = len(solver.FOCAL_SLOTS[camera_model])
        focal_priors = solver.FocalPriorBlocks(
            tensor([local[group[0]] for group in members.values()], torch.int64),
            tensor(list(camera_index.values()), torch.int64),
            tensor([_predicted_focal(prior, group, focal_lengths) for group in members.values()]),
            prior.focal_sigma,
            loss("huber", FOCAL_PRIOR_LOSS_SCALE),
        )
    problem = solver.Problem(
        camera_model=camera_model,
        camera_of_frame=tensor([camera_index[camera_of_frame[int(f)]] for f in frames], torch.int64),
        pose_free=tensor(frames != anchor, torch.bool),
        free_slots=free_slots,
        fixed_translation=_scale_gauge(cameras, frames, anchor)
        if not len(prior_frames) and depth_prior is None
        else None,
        blocks=blocks,
        pose_priors=pose_priors,
        focal_priors=focal_priors,
    )
    start = solver.Parameters(
        tensor(cameras.T_camera_world[frames, :, :3]),
        tensor(cameras.T_camera_world[frames, :, 3]),
        tensor([_initial_params(cameras, group, camera_model) for group in members.values()]),
        tensor(model.xyz[kept]),
    )
    try:
        solved, report = solver.solve(problem, start, MAX_ITERATIONS, FUNCTION_TOLERANCE)
    except solver.SolveFailed as error:
        raise AdjustmentFailed(str(error)) from error
    logger.debug(
        "torch adjustment: %d iterations, cost %.6g -> %.6g%s",
        report.iterations,
        report.initial_cost,
        report.final_cost,
        "" if report.converged else " (iteration limit)",
    )
    pose = torch.cat([solved.rotation, solved.translation[:, :, None]], 2).cpu().numpy()
    params = solved.intrinsics.cpu().numpy()
    xyz = model.xyz.copy()
    xyz[kept] = solved.points.cpu().numpy()
    if not (np.isfinite(pose).all() and np.isfinite(params).all() and np.isfinite(xyz).all()):
        raise AdjustmentFailed("the solver's result is not finite")
    T_camera_world = cameras.T_camera_world.copy()
    intrinsics = cameras.intrinsics.copy()
    distortion = cameras.distortion.copy()
    T_camera_world[frames] = pose
    for frame in frames:
        camera = camera_index[camera_of_frame[int(frame)]]
        intrinsics[frame], distortion[frame] = from_colmap_params(camera_model, params[camera])
    adjusted_model = SparseModel(xyz, model.point, model.frame, model.keypoint, model.pixel).select(adjusted)
    return CameraSet(T_camera_world, intrinsics, distortion), adjusted_model
