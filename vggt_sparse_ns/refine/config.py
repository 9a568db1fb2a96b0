"""Settings of the refinement (no heavy imports: the CLI and plugins build it at start-up)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch

CameraModelName = Literal["PINHOLE", "SIMPLE_RADIAL", "OPENCV"]
RefineDevice = Literal["auto", "cuda", "mps", "cpu"]
FeatureChoice = Literal["auto", "pycolmap", "torch"]
SolverChoice = Literal["auto", "ceres", "torch"]


class RefineError(ValueError):
    """The refinement settings or inputs are unusable; the message says why."""


@dataclass(frozen=True)
class RefineConfig:
    """Refinement of the predicted cameras against the images' own evidence: SIFT features, matches between
    covisible frames, verified tracks, triangulation from the predicted cameras and bundle adjustment."""

    refine: bool = False
    """Refine the predicted cameras after inference (SIFT matching on the frame graph's pairs, triangulation,
    bundle adjustment). Frames without enough verified matches keep their predicted camera."""
    refine_max_image_size: int = 1600
    """Longest image side, in pixels, at which features are detected (larger images are downscaled first;
    keypoints are then expressed in full-resolution pixels)."""
    refine_max_features: int = 4096
    """Most SIFT features per image (the largest-scale ones are kept)."""
    refine_features: FeatureChoice = "auto"
    """Which SIFT finds the features: pycolmap's (COLMAP's CPU SIFT, in worker processes) or ours in PyTorch
    (refine/sift.py, batched over images on --refine-device; on a 320x240 photograph every keypoint lies within 1 px
    of one of pycolmap's). auto picks torch when --refine-device is cuda or mps (pycolmap's GPU SIFT needs a CUDA
    build of pycolmap that cannot be installed beside ours) and pycolmap on the CPU, where it is faster (one 1600x900
    image on the 2-core development machine: 0.48 s on one core against 3.2 s for torch on one thread, 1.9 s on
    two), and with --refine-affine-features, which only pycolmap computes (torch with it is refused)."""
    refine_affine_features: bool = False
    """Describe each SIFT keypoint by its affine-adapted (elliptical) region (COLMAP's estimate_affine_shape), so that
    surfaces seen from directions far apart still match: on 8 generated views 45 degrees apart around a box, correct
    matches per neighbouring pair rose from 2-21 to 23-96 and rotations improved 6-10x instead of 3.7-4.8x. Off by
    default: SIFT takes about 1.4x as long at 1920x1080 and 1.5x at 640x360, always on the CPU (COLMAP has no GPU
    version), and its keypoints are less precise, which made scenes that already match well (a corridor, an aerial
    grid, views turning outward) no better or worse."""
    refine_camera_model: CameraModelName = "PINHOLE"
    """Camera model refined: PINHOLE (fx, fy), SIMPLE_RADIAL (one focal and one radial distortion term) or
    OPENCV (fx, fy, k1, k2, p1, p2). The principal point stays at the prediction."""
    refine_shared_intrinsics: bool = True
    """Refine one camera shared by all frames of the same image size (one physical camera, e.g. a video)
    instead of one per frame."""
    refine_neighbors: int = 10
    """Dense runs (no frame graph): each frame is matched with this many most similar frames, by a bag of
    SIFT words computed from the images. Runs with a frame graph match its edges."""
    refine_sequential_neighbors: int = 2
    """Also match each frame with this many following frames in input order (neighbours in a video); 0 off."""
    refine_ratio: float = 0.8
    """Lowe's ratio test: a match is kept when its descriptor distance is below this fraction of the second
    nearest one (and it is a mutual nearest neighbour)."""
    refine_min_inliers: int = 15
    """Fewest geometrically verified matches for a pair to be used."""
    refine_min_observations: int = 20
    """Fewest triangulated observations a frame needs to be adjusted (directly, or once registered by absolute
    pose against the other frames' points); frames with fewer keep their predicted camera and are listed as
    kept."""
    refine_points_per_frame: int = 500
    """Bundle adjustment uses, in each frame, this many points spread over the image (the best of each 100-pixel
    cell first: longer tracks, then lower reprojection error), long tracks split into parts of at most 20
    observations, so the problem grows with frames, not with features or track lengths; every track is then
    triangulated with the adjusted cameras."""
    refine_max_reprojection_error: float = 4.0
    """Matches and observations farther than this many full-resolution pixels from their epipolar line or
    point's projection are outliers: in verification, triangulation, registration and after each adjustment."""
    refine_min_triangulation_angle: float = 1.0
    """Points seen under a smaller angle (degrees) between their rays are not triangulated."""
    refine_prior_rotation_degrees: float = 2.0
    """How far (one standard deviation, degrees) the adjustment expects a predicted camera's rotation to be off. Each
    adjusted camera is held to its prediction this loosely: where the matches determine a pose they outweigh it;
    where they do not (views linked only by two-view tracks, e.g. a ring around an object), the prediction holds
    instead of drifting. 0 turns the pose prior off."""
    refine_prior_position: float = 0.1
    """How far (one standard deviation) a predicted camera position is expected to be off, as a fraction of the
    scene's median depth; the position part of the same prior. 0 turns the pose prior off."""
    refine_prior_focal: float = 0.1
    """How far (one standard deviation, as a fraction) a predicted focal length is expected to be off; refined
    focal lengths are held to the prediction this loosely, so a scene that does not determine them (one plane seen
    face-on, e.g. an aerial grid) keeps the predicted ones instead of trading focal length for distance. 0 leaves
    them free."""
    refine_prior_depth: float = 0.05
    """How far (one standard deviation, as a fraction of the depth) the predicted depth is expected to be off. Once
    the adjustment has settled, its passes are repeated with each point's depth in each frame observing it held to
    that frame's predicted depth at the keypoint this loosely (under a Cauchy loss), which gives views linked only
    by two-view tracks (a panning camera) the distances between them that their images leave open: 12 views turning
    outward with depth rendered from the truth, positions 2.2x -> 54-110x better than predicted (every observation
    held: few frames; 25-38x with 50 per frame, as at 1,000 frames). The result is kept
    only where it fits the images as well (mean reprojection error at most 2 % higher, at most 1 % fewer observations) and
    the points agree with the depth; depth maps each off by their own factor or shift fail that and change
    nothing. Absent depth is not used. 0 turns it off."""
    refine_depth_points_per_frame: int = 50
    """Observations per frame whose point's depth --refine-prior-depth holds, at the least: up to 50,000 in all, a
    few hundred frames keep every usable one and 1,000 frames 50 each; chosen spread over the image
    (the best of each 100-pixel cell first: longer tracks, then lower reprojection error), each weighted so that the
    frame's prior pulls as hard as if all its observations were held. Each adds two residuals to the adjustment, as
    an observation does. Fewer costs also average less of the depth's noise: with depth rendered from the truth,
    positions of 12 views turning outward came out 25-38x better than predicted at 50 (all held: 54-110x; 25:
    23-27x), 16 views 62-66x (77-88x; 25: 37-51x)."""
    refine_solver: SolverChoice = "auto"
    """Which solves the bundle adjustment: Ceres (pycolmap's, on the CPU) or ours in PyTorch
    (refine/torch_adjustment.py: the same problem, by Levenberg-Marquardt with the camera system factorized densely,
    on --refine-device; on the CPU when that is mps, which has no float64). auto picks torch on cuda while the camera
    system fits in its free memory (at 1,000 frames Ceres spends about 3 s per iteration factorizing it on 16 CPU
    cores) and Ceres otherwise (faster on a CPU: fewer overheads per iteration). A pass that runs out of GPU memory is
    solved by Ceres instead, with a warning."""
    refine_device: RefineDevice = "auto"
    """Where descriptors are matched, tracks triangulated and selected (and, with --refine-features auto or torch, SIFT
    runs): auto picks cuda when present, else cpu; mps (Apple's GPUs) only when chosen (triangulation and track
    selection then run on the CPU: mps has no float64)."""

    def __post_init__(self) -> None:
        checks = {
            "--refine-max-image-size": self.refine_max_image_size >= 64,
            "--refine-max-features": self.refine_max_features >= 16,
            "--refine-neighbors": self.refine_neighbors >= 1,
            "--refine-sequential-neighbors": self.refine_sequential_neighbors >= 0,
            "--refine-ratio": 0.0 < self.refine_ratio <= 1.0,
            "--refine-min-inliers": self.refine_min_inliers >= 8,
            "--refine-min-observations": self.refine_min_observations >= 6,
            "--refine-points-per-frame": self.refine_points_per_frame >= 10,
            "--refine-max-reprojection-error": self.refine_max_reprojection_error > 0.0,
            "--refine-min-triangulation-angle": 0.0 <= self.refine_min_triangulation_angle < 90.0,
            "--refine-prior-rotation-degrees": 0.0 <= self.refine_prior_rotation_degrees <= 180.0,
            "--refine-prior-position": self.refine_prior_position >= 0.0,
            "--refine-prior-focal": self.refine_prior_focal >= 0.0,
            "--refine-prior-depth": self.refine_prior_depth >= 0.0,
            "--refine-depth-points-per-frame": self.refine_depth_points_per_frame >= 1,
        }
        for flag, valid in checks.items():
            if not valid:
                raise RefineError(f"{flag} is out of range: {getattr(self, flag[2:].replace('-', '_'))!r}")
        if self.refine_features == "torch" and self.refine_affine_features:
            raise RefineError(
                "--refine-affine-features needs pycolmap's SIFT: use --refine-features pycolmap (or auto), not torch"
            )
        if self.refine_features not in ("auto", "pycolmap", "torch"):
            raise RefineError(f"--refine-features must be auto, pycolmap or torch, not {self.refine_features!r}")
        if self.refine_solver not in ("auto", "ceres", "torch"):
            raise RefineError(f"--refine-solver must be auto, ceres or torch, not {self.refine_solver!r}")
        if self.refine_camera_model not in ("PINHOLE", "SIMPLE_RADIAL", "OPENCV"):
            raise RefineError(
                f"--refine-camera-model must be PINHOLE, SIMPLE_RADIAL or OPENCV, not {self.refine_camera_model!r}"
            )

    def device(self) -> torch.device:
        """The device matching runs on (``refine_device``; auto: cuda when present, else cpu). Raises RefineError
        for a device this machine does not have, which the command checks before inference."""
        import torch

        if self.refine_device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        available = {"cuda": torch.cuda.is_available, "mps": torch.backends.mps.is_available}
        if self.refine_device in available and not available[self.refine_device]():
            raise RefineError(
                f"--refine-device {self.refine_device}: there is no {self.refine_device} device here (try auto or cpu)"
            )
        return torch.device(self.refine_device)

    def array_device(self) -> torch.device:
        """Where the work on all observations runs (triangulation, track selection, projections; float64):
        ``float64_device(device())``."""
        return float64_device(self.device())


def float64_device(device: torch.device) -> torch.device:
    """``device``, or the CPU for mps, which has no float64: where refinement's float64 work runs."""
    import torch

    return torch.device("cpu") if device.type == "mps" else device
