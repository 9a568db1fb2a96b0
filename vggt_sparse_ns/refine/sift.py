"""Lowe's SIFT in PyTorch, batched over equally sized grey images on any torch device (CUDA, Apple's MPS, the CPU).

No weights: a Gaussian scale space per octave (separable convolutions), extrema of its differences of Gaussians
over 3x3x3 neighbourhoods, quadratic fits to sub-pixel and sub-scale positions, a contrast threshold and
Lowe's edge test, dominant orientations from a 36-bin gradient histogram and 4x4x8 descriptors with trilinear
interpolation, clipped at 0.2 and returned as RootSIFT unit rows. The settings are COLMAP's defaults (3 levels per
octave, 4 octaves, peak threshold 0.02 / 3, edge ratio 10, 3 keypoint scales per descriptor bin), so the features
can stand in for pycolmap's in ``refine/features.py``.

Keypoints are in continuous pixels of the input image (docs/conventions.md: the centre of pixel (row i, column j)
is (j + 0.5, i + 0.5)); octave pixel j covers input pixels from ``j * 2**octave``, as in VLFeat, which COLMAP's
CPU SIFT uses and whose positions it shifts by 0.5 in the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

import torch
import torch.nn.functional as F

LEVELS = 3
"""Scales per octave at which extrema are sought (COLMAP's octave_resolution)."""
OCTAVES = 4
"""Octaves of the scale space (COLMAP's num_octaves), fewer where an octave would be smaller than MIN_OCTAVE_SIDE."""
MIN_OCTAVE_SIDE = 8
"""An octave's shorter side in pixels at least (VLFeat's rule)."""
SIGMA = 1.6
"""Blur of each octave's first level, in that octave's pixels (Lowe)."""
CAMERA_BLUR = 0.5
"""Blur the input image is assumed to have already (Lowe)."""
PEAK_THRESHOLD = 0.02 / LEVELS
"""Smallest |difference of Gaussians| at a keypoint, grey levels in [0, 1] (COLMAP's default)."""
CANDIDATE_THRESHOLD = 0.8 * PEAK_THRESHOLD
"""Extrema below this are not refined at all (VLFeat's pre-filter)."""
EDGE_RATIO = 10.0
"""Largest ratio of the principal curvatures of the difference of Gaussians (Lowe's edge test)."""
QUADRATIC_STEPS = 5
"""Most quadratic fits per candidate: where the fitted extremum lies more than MOVE_OFFSET from the sample, the fit
is repeated from the neighbouring sample that way (in x and y, as VLFeat does). Measured on tests/refine's 320x240
photograph: one fit (offsets up to one sample kept) found 588 keypoints, 98 % within 1 px of pycolmap's 622; with
these moves 621, all within 1 px, and tests/refine's box ring verified 14 instead of 12 of its 28 pairs."""
MOVE_OFFSET = 0.6
MAX_OFFSET = 1.5
"""A last quadratic step longer than this (samples, in x, y or scale) means the fit is unreliable: the candidate
goes (VLFeat's bound)."""
ORIENTATION_BINS = 36
ORIENTATION_SIGMA = 1.5
"""Gaussian window of the orientation histogram, in keypoint scales (its radius is three times this)."""
ORIENTATION_SMOOTHING = 6
"""Passes of a circular [1, 1, 1] / 3 filter over the orientation histogram (VLFeat)."""
ORIENTATION_PEAK = 0.8
"""Histogram peaks of at least this fraction of the highest give a keypoint each (Lowe)."""
MAX_ORIENTATIONS = 4
"""Most orientations (keypoints) per detected extremum (COLMAP's max_num_orientations)."""
SPATIAL_BINS = 4
ANGLE_BINS = 8
BIN_SCALES = 3.0
"""Width of one spatial descriptor bin, in keypoint scales (Lowe's and VLFeat's magnification)."""
DESCRIPTOR_CLIP = 0.2
"""Descriptor entries are clipped here after normalisation (Lowe), to damp strong gradients from lighting."""
SAMPLES_PER_BIN = 5
"""Gradient samples per descriptor bin and axis (interpolated from the level image): 0.6 keypoint scales apart,
i.e. 1-2 pixels of the octave, finer than the level's own blur of 1.6-3.2 pixels."""
ORIENTATION_SAMPLES = 19
"""Gradient samples per axis across the orientation window (0.5 keypoint scales apart)."""
PIXELS_PER_BATCH = 6 << 20
"""Detection-image pixels processed at once (about four 1600x900 images): measured on the CPU with noise images
(many candidates), the scale space and its keypoints took 150-200 bytes per pixel at peak (0.8 GB for four), so a
batch stays near 1 GB whatever the number of images."""
KEYPOINTS_PER_CHUNK = 4096
"""Keypoints whose orientations or descriptors are computed at once (about 100 MB of gradient samples)."""
CUDA_MEMORY_SHARE = 0.25
"""On a CUDA device, batches and chunks grow in whole multiples of (``PIXELS_PER_BATCH``, ``KEYPOINTS_PER_CHUNK``)
while they take at most this share of the free memory, counting ``BYTES_PER_MULTIPLE`` for each. SIFT on a GPU is
bound by its kernel launches (thousands per batch), not by arithmetic: measured on an H100, 32 1600x900 images in
batches of four took 0.96 s, of which the GPU computed for 0.30 s."""
BYTES_PER_MULTIPLE = 2 << 30
"""Memory counted per multiple: a batch's scale space and keypoints (about 1 GB) and a chunk's samples with their
intermediate results, with room to spare."""


class SiftFeatures(NamedTuple):
    """One image's SIFT features, on the device of the input."""

    keypoints: torch.Tensor
    """[N, 2] float32 (x, y), continuous pixels of the input image."""
    scales: torch.Tensor
    """[N] float32, each keypoint's Gaussian scale (sigma) in input pixels."""
    descriptors: torch.Tensor
    """[N, 128] float32 RootSIFT rows (L1-normalised, square-rooted: unit length)."""


def detect_and_describe(grey: torch.Tensor, max_features: int, *, upsample: bool = False) -> list[SiftFeatures]:
    """SIFT keypoints and descriptors of a batch of equally sized grey images.

    Args:
        grey: [B, H, W] images, uint8 or float in [0, 1], on any torch device (computed there in float32;
            ``PIXELS_PER_BATCH`` pixels at a time, or a multiple of it on CUDA: ``batch_multiple``).
        max_features: most keypoints per image; the largest-scale ones are kept, as pycolmap's
            ``max_num_features`` does (it keeps whole scale levels from the coarsest down, so it may return
            somewhat more; this keeps exactly the largest ``max_features`` scales).
        upsample: detect from an image doubled in size (first octave -1, COLMAP's default) to find finer
            features, at about 4x the time.

    Returns:
        One ``SiftFeatures`` per image, in input order.

    Example:
        >>> grey = torch.rand(2, 240, 320, device="cuda")
        >>> (first, second) = detect_and_describe(grey, max_features=4096)
        >>> first.keypoints.shape, first.descriptors.shape  # [N, 2], [N, 128]
    """
    if grey.ndim != 3:
        raise ValueError(f"expected grey images [B, H, W], got shape {tuple(grey.shape)}")
    images = grey.float() / 255.0 if grey.dtype == torch.uint8 else grey.float()
    pixels = images.shape[1] * images.shape[2] * (4 if upsample else 1)
    multiple = batch_multiple(images.device)
    per_batch = max(1, multiple * PIXELS_PER_BATCH // max(pixels, 1))
    found: list[SiftFeatures] = []
    # cuDNN would otherwise run the blurs in TF32 (10-bit mantissas) on NVIDIA GPUs since Ampere: errors of about
    # 1e-3 in grey levels whose differences of Gaussians are thresholded at 0.0067.
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        for start in range(0, len(images), per_batch):
            batch = images[start : start + per_batch]
            found.extend(_detect_and_describe(batch, max_features, upsample, multiple * KEYPOINTS_PER_CHUNK))
    return found


def batch_multiple(device: torch.device) -> int:
    """How many times ``PIXELS_PER_BATCH`` and ``KEYPOINTS_PER_CHUNK`` one batch may take on ``device``: 1 but on
    CUDA, where fewer, larger batches launch fewer kernels per image (``CUDA_MEMORY_SHARE``)."""
    if device.type != "cuda":
        return 1
    free, _ = torch.cuda.mem_get_info(device)
    return max(1, int(CUDA_MEMORY_SHARE * free) // BYTES_PER_MULTIPLE)


@dataclass
class _Octave:
    gaussians: torch.Tensor
    """[B, LEVELS + 3, h, w] the image blurred to SIGMA * 2**(level / LEVELS) octave pixels."""
    step: float
    """Input pixels per octave pixel (2**octave)."""


@dataclass
class _Keypoints:
    """Keypoints of a batch, one row each (tensors of equal length)."""

    image: torch.Tensor
    octave: torch.Tensor
    level: torch.Tensor
    """Gaussian level nearest to the keypoint's scale, whose gradients describe it."""
    x: torch.Tensor
    y: torch.Tensor
    """Position in octave pixel indices (the centre of octave pixel j is at j)."""
    sigma: torch.Tensor
    """Scale in octave pixels."""
    scale: torch.Tensor
    """Scale in input pixels (what the largest-scale selection orders by)."""
    angle: torch.Tensor
    """Orientation in radians (from x towards y), once assigned."""

    def take(self, rows: torch.Tensor) -> _Keypoints:
        return _Keypoints(**{name: value[rows] for name, value in vars(self).items()})


def _detect_and_describe(
    images: torch.Tensor, max_features: int, upsample: bool, keypoints_per_chunk: int
) -> list[SiftFeatures]:
    octaves = _scale_space(images, upsample)
    found = [_no_keypoints(images.device)]
    found += [_extrema(octave.gaussians, index, octave.step) for index, octave in enumerate(octaves)]
    keypoints = _Keypoints(**{name: torch.cat([vars(part)[name] for part in found]) for name in vars(found[0])})
    # Each extremum gives keypoints of its own scale only, so choosing before orientations loses none of the final ones.
    keypoints = keypoints.take(_largest_per_image(keypoints.image, keypoints.scale, max_features))
    keypoints = _orientations(octaves, keypoints, keypoints_per_chunk)
    keypoints = keypoints.take(_largest_per_image(keypoints.image, keypoints.scale, max_features))
    descriptors = _descriptors(octaves, keypoints, keypoints_per_chunk)
    steps = torch.tensor([o.step for o in octaves] or [1.0], device=images.device)[keypoints.octave]
    positions = torch.stack([keypoints.x, keypoints.y], dim=1) * steps[:, None] + 0.5
    return [
        SiftFeatures(positions[rows], keypoints.scale[rows], descriptors[rows])
        for rows in (keypoints.image == b for b in range(len(images)))
    ]


def _no_keypoints(device: torch.device) -> _Keypoints:
    empty = torch.zeros(0, device=device)
    whole = torch.zeros(0, dtype=torch.long, device=device)
    return _Keypoints(whole, whole, whole, empty, empty, empty, empty, empty)


def _gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """[N, h, w] blurred by a separable Gaussian (radius 4 sigma, edges replicated)."""
    radius = max(1, math.ceil(4.0 * sigma))
    taps = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = kernel / kernel.sum()
    blurred = F.pad(images[:, None], (radius, radius, radius, radius), mode="replicate")
    blurred = F.conv2d(blurred, kernel.view(1, 1, 1, -1))
    return F.conv2d(blurred, kernel.view(1, 1, -1, 1))[:, 0]


def _doubled(images: torch.Tensor) -> torch.Tensor:
    """[N, 2h, 2w]: pixel 2j is pixel j, pixel 2j + 1 the mean of j and j + 1 (the last one repeated)."""
    for dim in (1, 2):
        following = torch.cat([images.narrow(dim, 1, images.shape[dim] - 1), images.narrow(dim, -1, 1)], dim=dim)
        images = torch.stack([images, 0.5 * (images + following)], dim=dim + 1).flatten(dim, dim + 1)
    return images


def _scale_space(images: torch.Tensor, upsample: bool) -> list[_Octave]:
    """The Gaussian levels of each octave; octave o + 1 starts from level LEVELS of octave o, every other pixel."""
    base, step = (_doubled(images), 0.5) if upsample else (images, 1.0)
    base = _gaussian_blur(base, math.sqrt(SIGMA**2 - (CAMERA_BLUR / step) ** 2))
    sigmas = [SIGMA * 2.0 ** (level / LEVELS) for level in range(LEVELS + 3)]
    octaves: list[_Octave] = []
    while len(octaves) < OCTAVES and min(base.shape[1:]) >= MIN_OCTAVE_SIDE:
        levels = [base]
        for previous, sigma in zip(sigmas, sigmas[1:], strict=False):
            levels.append(_gaussian_blur(levels[-1], math.sqrt(sigma**2 - previous**2)))
        octaves.append(_Octave(torch.stack(levels, dim=1), step))
        base, step = levels[LEVELS][:, ::2, ::2], step * 2.0
    return octaves


def _extrema(gaussians: torch.Tensor, octave: int, step: float) -> _Keypoints:
    """Refined extrema of one octave's differences of Gaussians that pass the contrast and edge tests."""
    dog = gaussians[:, 1:] - gaussians[:, :-1]
    inner = dog[:, 1:-1]  # levels 1..LEVELS: those with a level above and below
    candidate = (inner == _neighbourhood_max(dog)) | (inner == -_neighbourhood_max(-dog))
    candidate &= inner.abs() >= CANDIDATE_THRESHOLD
    candidate[..., :, [0, -1]] = False  # a full 3x3 neighbourhood: not on the border
    candidate[..., [0, -1], :] = False
    image, level, y, x = candidate.nonzero(as_tuple=True)
    level = level + 1
    for attempt in range(QUADRATIC_STEPS):
        centre, gradient, hessian = _derivatives(dog, image, level, y, x)
        offset = _solve_3x3(hessian, -gradient)
        move = torch.where(offset[:, :2].abs() > MOVE_OFFSET, offset[:, :2].sign(), 0.0).nan_to_num(0.0).long()
        if attempt == QUADRATIC_STEPS - 1 or not move.any():
            break
        x = (x + move[:, 0]).clamp(1, dog.shape[3] - 2)
        y = (y + move[:, 1]).clamp(1, dog.shape[2] - 2)
        image, level, y, x = _distinct(dog.shape, image, level, y, x)
    dxx, dyy, dxy = hessian[0][:, 0], hessian[1][:, 1], hessian[1][:, 0]
    contrast = centre + 0.5 * (gradient * offset).sum(1)
    trace, determinant = dxx + dyy, dxx * dyy - dxy**2
    keep = (
        torch.isfinite(offset).all(1)
        & (offset.abs() <= MAX_OFFSET).all(1)
        & (contrast.abs() >= PEAK_THRESHOLD)
        & (determinant > 0)
        & (trace**2 * EDGE_RATIO < (EDGE_RATIO + 1) ** 2 * determinant)
    )
    offset, image, level, x, y = offset[keep], image[keep], level[keep], x[keep], y[keep]
    scale_level = level + offset[:, 2]  # difference d is level d + 1 minus level d: level d's scale
    sigma = SIGMA * 2.0 ** (scale_level / LEVELS)
    return _Keypoints(
        image=image,
        octave=torch.full_like(image, octave),
        level=scale_level.round().long().clamp(0, gaussians.shape[1] - 1),
        x=x + offset[:, 0],
        y=y + offset[:, 1],
        sigma=sigma,
        scale=sigma * step,
        angle=torch.zeros_like(sigma),
    )


def _distinct(shape: torch.Size, *sample: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The samples (image, level, y, x) without repeats (candidates that moved onto the same sample)."""
    image, level, y, x = sample
    key = ((image * shape[1] + level) * shape[2] + y) * shape[3] + x
    unique, inverse = torch.unique(key, return_inverse=True)
    rows = torch.arange(len(key), device=key.device)
    first = torch.full_like(unique, len(key)).scatter_reduce(0, inverse, rows, "amin")
    return tuple(part[first] for part in sample)


def _derivatives(
    dog: torch.Tensor, image: torch.Tensor, level: torch.Tensor, y: torch.Tensor, x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The value [N], gradient [N, 3] and Hessian (three columns [N, 3]) of the differences of Gaussians ``dog`` in
    (x, y, level) at the given samples, by central differences."""

    def at(ds: int, dy: int, dx: int) -> torch.Tensor:
        return dog[image, level + ds, y + dy, x + dx]

    centre = at(0, 0, 0)
    gradient = 0.5 * torch.stack(
        [at(0, 0, 1) - at(0, 0, -1), at(0, 1, 0) - at(0, -1, 0), at(1, 0, 0) - at(-1, 0, 0)], 1
    )
    dxx = at(0, 0, 1) + at(0, 0, -1) - 2 * centre
    dyy = at(0, 1, 0) + at(0, -1, 0) - 2 * centre
    dss = at(1, 0, 0) + at(-1, 0, 0) - 2 * centre
    dxy = 0.25 * (at(0, 1, 1) - at(0, 1, -1) - at(0, -1, 1) + at(0, -1, -1))
    dxs = 0.25 * (at(1, 0, 1) - at(1, 0, -1) - at(-1, 0, 1) + at(-1, 0, -1))
    dys = 0.25 * (at(1, 1, 0) - at(1, -1, 0) - at(-1, 1, 0) + at(-1, -1, 0))
    columns = (torch.stack([dxx, dxy, dxs], 1), torch.stack([dxy, dyy, dys], 1), torch.stack([dxs, dys, dss], 1))
    return centre, gradient, columns


def _solve_3x3(columns: tuple[torch.Tensor, torch.Tensor, torch.Tensor], right: torch.Tensor) -> torch.Tensor:
    """x [N, 3] with [c0 c1 c2] x = right, for columns c [N, 3], by Cramer's rule (elementwise arithmetic that every
    device runs; not finite where the matrix is singular)."""

    def determinant(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return (a * torch.linalg.cross(b, c, dim=1)).sum(1)

    c0, c1, c2 = columns
    whole = determinant(c0, c1, c2)
    parts = (determinant(right, c1, c2), determinant(c0, right, c2), determinant(c0, c1, right))
    return torch.stack(parts, 1) / whole[:, None]


def _neighbourhood_max(dog: torch.Tensor) -> torch.Tensor:
    """[B, L - 2, h, w] the largest value of each 3x3x3 neighbourhood around levels 1..L-2 of ``dog`` [B, L, h, w]
    (a 3x3 max per level, then over three levels: on the CPU several times faster than one 3x3x3 max pool)."""
    spatial = F.max_pool2d(dog.flatten(0, 1)[:, None], 3, stride=1, padding=1).view_as(dog)
    return torch.maximum(torch.maximum(spatial[:, :-2], spatial[:, 1:-1]), spatial[:, 2:])


def _largest_per_image(image: torch.Tensor, scale: torch.Tensor, count: int) -> torch.Tensor:
    """Rows of the ``count`` largest scales of each image."""
    order = torch.argsort(scale, descending=True, stable=True)
    order = order[torch.argsort(image[order], stable=True)]
    sorted_image = image[order]
    first = torch.searchsorted(sorted_image, sorted_image, right=False)
    rank = torch.arange(len(order), device=image.device) - first
    return order[rank < count]


def _gradients(gaussians: torch.Tensor) -> torch.Tensor:
    """[B, L, h, w, 2] central-difference gradients (x, y) of every level (zero on the border)."""
    gradients = torch.zeros(*gaussians.shape, 2, dtype=gaussians.dtype, device=gaussians.device)
    gradients[..., :, 1:-1, 0] = 0.5 * (gaussians[..., :, 2:] - gaussians[..., :, :-2])
    gradients[..., 1:-1, :, 1] = 0.5 * (gaussians[..., 2:, :] - gaussians[..., :-2, :])
    return gradients


def _sample(
    gradients: torch.Tensor, keypoints: _Keypoints, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinearly interpolated gradients [N, P, 2] at octave positions x, y [N, P] of each keypoint's level, and
    [N, P] whether the position lies inside the image."""
    _, levels, height, width, _ = gradients.shape
    inside = (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)
    x, y = x.clamp(0, width - 1), y.clamp(0, height - 1)
    x0, y0 = x.floor().clamp(max=width - 2).long(), y.floor().clamp(max=height - 2).long()
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    plane = ((keypoints.image * levels + keypoints.level) * height)[:, None]
    flat = gradients.reshape(-1, 2)

    def corner(dy: int, dx: int) -> torch.Tensor:
        return flat[((plane + y0 + dy) * width + x0 + dx).clamp(min=0)]

    top = corner(0, 0) * (1 - fx) + corner(0, 1) * fx
    bottom = corner(1, 0) * (1 - fx) + corner(1, 1) * fx
    return top * (1 - fy) + bottom * fy, inside


Result = TypeVar("Result")


def _per_octave(
    octaves: list[_Octave],
    keypoints: _Keypoints,
    compute: Callable[[torch.Tensor, _Keypoints], Result],
    keypoints_per_chunk: int,
) -> list[tuple[torch.Tensor, Result]]:
    """``compute(gradients, keypoints chunk)`` over chunks of each octave's keypoints, with their rows."""
    results = []
    for index, octave in enumerate(octaves):
        rows = (keypoints.octave == index).nonzero()[:, 0]
        if len(rows) == 0:
            continue
        gradients = _gradients(octave.gaussians)
        for chunk in rows.split(keypoints_per_chunk):
            results.append((chunk, compute(gradients, keypoints.take(chunk))))
    return results


def _orientations(octaves: list[_Octave], keypoints: _Keypoints, keypoints_per_chunk: int) -> _Keypoints:
    """A copy of each keypoint per dominant gradient orientation, with its angle."""
    taps = torch.linspace(-3 * ORIENTATION_SIGMA, 3 * ORIENTATION_SIGMA, ORIENTATION_SAMPLES, device=keypoints.x.device)
    u, v = taps[None, :].expand(len(taps), -1).reshape(-1), taps[:, None].expand(-1, len(taps)).reshape(-1)
    window = torch.exp(-(u**2 + v**2) / (2 * ORIENTATION_SIGMA**2)) * (u**2 + v**2 <= (3 * ORIENTATION_SIGMA) ** 2)

    def histogram_peaks(gradients: torch.Tensor, chunk: _Keypoints) -> tuple[torch.Tensor, torch.Tensor]:
        x = chunk.x[:, None] + chunk.sigma[:, None] * u
        y = chunk.y[:, None] + chunk.sigma[:, None] * v
        sampled, inside = _sample(gradients, chunk, x, y)
        weight = window * inside * sampled.norm(dim=2)
        position = torch.atan2(sampled[..., 1], sampled[..., 0]) % (2 * math.pi) * (ORIENTATION_BINS / (2 * math.pi))
        lower = position.floor().long() % ORIENTATION_BINS
        above = position - position.floor()
        histogram = torch.zeros(len(x), ORIENTATION_BINS, device=x.device)
        histogram.scatter_add_(1, lower, weight * (1 - above))
        histogram.scatter_add_(1, (lower + 1) % ORIENTATION_BINS, weight * above)
        for _ in range(ORIENTATION_SMOOTHING):
            histogram = (histogram.roll(1, 1) + histogram + histogram.roll(-1, 1)) / 3
        return _peak_angles(histogram)

    rows, angles = [keypoints.image[:0]], [keypoints.x[:0]]
    for chunk, (peak, angle) in _per_octave(octaves, keypoints, histogram_peaks, keypoints_per_chunk):
        owner, which = peak.nonzero(as_tuple=True)
        rows.append(chunk[owner])
        angles.append(angle[owner, which])
    oriented = keypoints.take(torch.cat(rows))
    oriented.angle = torch.cat(angles)
    return oriented


def _peak_angles(histogram: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to MAX_ORIENTATIONS peaks [N, k] of each circular histogram and their parabola-fitted angles [N, k]."""
    before, after = histogram.roll(1, 1), histogram.roll(-1, 1)
    peak = (histogram > before) & (histogram > after)
    peak &= histogram >= ORIENTATION_PEAK * histogram.max(dim=1, keepdim=True).values
    height, bin_index = histogram.masked_fill(~peak, -1.0).topk(min(MAX_ORIENTATIONS, ORIENTATION_BINS), dim=1)
    left, centre, right = (h.gather(1, bin_index) for h in (before, histogram, after))
    shift = 0.5 * (left - right) / (left - 2 * centre + right).clamp(max=-1e-12)  # the parabola's vertex, in bins
    angle = (bin_index + shift) * (2 * math.pi / ORIENTATION_BINS)
    return height >= 0, angle


def _descriptors(octaves: list[_Octave], keypoints: _Keypoints, keypoints_per_chunk: int) -> torch.Tensor:
    """[N, 128] RootSIFT descriptors of the keypoints, each in its own orientation."""
    device = keypoints.x.device
    half = SPATIAL_BINS / 2 + 0.5  # samples up to half a bin beyond the grid still reach its outer bins
    count = round(2 * half * SAMPLES_PER_BIN)
    taps = -half + (torch.arange(count, device=device) + 0.5) * (2 * half / count)
    u, v = taps[None, :].expand(count, -1).reshape(-1), taps[:, None].expand(-1, count).reshape(-1)
    window = torch.exp(-(u**2 + v**2) / (2 * (SPATIAL_BINS / 2) ** 2))

    def histograms(gradients: torch.Tensor, chunk: _Keypoints) -> torch.Tensor:
        cos, sin = chunk.angle.cos()[:, None], chunk.angle.sin()[:, None]
        width = BIN_SCALES * chunk.sigma[:, None]
        x = chunk.x[:, None] + width * (cos * u - sin * v)
        y = chunk.y[:, None] + width * (sin * u + cos * v)
        sampled, inside = _sample(gradients, chunk, x, y)
        weight = window * inside * sampled.norm(dim=2)
        relative = (torch.atan2(sampled[..., 1], sampled[..., 0]) - chunk.angle[:, None]) % (2 * math.pi)
        return _trilinear_histograms(u + SPATIAL_BINS / 2 - 0.5, v + SPATIAL_BINS / 2 - 0.5, relative, weight)

    descriptors = torch.zeros(len(keypoints.x), SPATIAL_BINS * SPATIAL_BINS * ANGLE_BINS, device=device)
    for chunk, values in _per_octave(octaves, keypoints, histograms, keypoints_per_chunk):
        descriptors[chunk] = values
    return _root_sift(descriptors)


def _trilinear_histograms(
    column: torch.Tensor, row: torch.Tensor, angle: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """[N, 128] sums of ``weight`` [N, P] spread over the 4x4 spatial bins (bin centres at 0..3 of ``column`` and
    ``row`` [P]) and 8 angle bins (``angle`` [N, P] in radians, circular) by trilinear interpolation."""
    angle = angle * (ANGLE_BINS / (2 * math.pi))
    column, row = column.expand_as(angle), row.expand_as(angle)
    histograms = torch.zeros(len(angle), SPATIAL_BINS * SPATIAL_BINS * ANGLE_BINS, device=angle.device)
    starts = [value.floor() for value in (column, row, angle)]
    fractions = [value - start for value, start in zip((column, row, angle), starts, strict=True)]
    for dc in (0, 1):
        for dr in (0, 1):
            for da in (0, 1):
                c, r = starts[0].long() + dc, starts[1].long() + dr
                a = (starts[2].long() + da) % ANGLE_BINS
                share = weight
                for fraction, offset in zip(fractions, (dc, dr, da), strict=True):
                    share = share * (fraction if offset else 1 - fraction)
                valid = (c >= 0) & (c < SPATIAL_BINS) & (r >= 0) & (r < SPATIAL_BINS)
                index = ((r.clamp(0, SPATIAL_BINS - 1) * SPATIAL_BINS + c.clamp(0, SPATIAL_BINS - 1)) * ANGLE_BINS) + a
                histograms.scatter_add_(1, index, share * valid)
    return histograms


def _root_sift(descriptors: torch.Tensor) -> torch.Tensor:
    """Unit length, clipped at DESCRIPTOR_CLIP, unit length again (Lowe), then L1-normalised and square-rooted
    (RootSIFT: comparing those by dot product compares the histograms by the Hellinger kernel)."""
    descriptors = descriptors / descriptors.norm(dim=1, keepdim=True).clamp(min=1e-12)
    descriptors = descriptors.clamp(max=DESCRIPTOR_CLIP)
    descriptors = descriptors / descriptors.norm(dim=1, keepdim=True).clamp(min=1e-12)
    return (descriptors / descriptors.sum(dim=1, keepdim=True).clamp(min=1e-12)).sqrt()
