"""Loading images the way VGGT was trained on them, and remembering how to go back.

torch is imported where tensors are made, so that ImageTransform (used by the exporters and the
nerfstudio entry points) costs no torch import.

``load_images`` reproduces the original preprocessing (RGBA composited on white, PIL
bicubic resize, centre crop or white padding) and records, per image, the map from model
pixels to the original file's pixels, so that intrinsics can be expressed at full
resolution. Pixel coordinates are continuous (x, y): the pixel in row i, column j covers
[j, j+1) x [i, i+1) (docs/conventions.md).

Every input image is opened through ``open_image``: files up to MAX_IMAGE_PIXELS are decoded without
PIL's decompression-bomb warning or error, larger ones are refused naming the file. Files above
REDUCED_DECODE_PIXELS are decoded at reduced size where only the model's 518 pixels are needed; smaller
ones exactly as the original. Images with 16 bits per sample, in whatever mode PIL opens them, are scaled to 8
bits by one conversion (``_read_16_bit``: each value v becomes round(v / 257)).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

if TYPE_CHECKING:
    from torch import Tensor

PreprocessMode = Literal["crop", "pad"]

TARGET_SIZE = 518
"""The model's input width (crop) or long side (pad), in pixels."""
PATCH_SIZE = 14
"""The model's patch: input sides are multiples of it."""
MAX_IMAGE_PIXELS = 2**28
"""Files with more pixels (above 16384 x 16384) are refused: PIL decodes a PNG, TIFF or WebP whole, and more
than 268 megapixels (800 MB of RGB) for one input of 518 pixels is a decompression bomb more likely than
a photograph. PIL's own limit (89 megapixels warned, 179 refused) does not apply to our inputs."""
REDUCED_DECODE_PIXELS = 2**26
"""Files with more pixels (above 8192 x 8192) are decoded at reduced size where only the model's input is
needed: JPEGs by the decoder's DCT scaling (PIL's draft), others by an integer box reduction before the
bicubic resize (PIL's reducing_gap). Smaller files are decoded exactly as the original VGGT does."""
REDUCING_GAP = 2
"""A reduced decode keeps at least this many pixels per model pixel, so the bicubic resize still filters."""
MIN_IMAGE_SIDE = 16
"""Images with a shorter side are no input (icons, thumbnails): each of their pixels would span more than
32 model pixels, and the model finds confident depth in such blur (a 10x10 image among photographs gave
over a third of the points). ``size_problem`` also refuses images too narrow to keep one row of patches."""
LARGE_DECODES_AT_ONCE = 2
"""Files above REDUCED_DECODE_PIXELS decoded at the same time by this process: bounds memory (a whole
decode of MAX_IMAGE_PIXELS takes 0.8-1.6 GB) whatever the thread pools' sizes."""
EXIF_ORIENTATION_TAG = 0x0112
ROTATED_ORIENTATIONS = (5, 6, 7, 8)
"""EXIF orientations that swap width and height."""
UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
"""The transposition that shows a stored image upright, per EXIF orientation (1: none)."""
PIL_16_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
"""Modes in which PIL holds all 16 bits of a 16-bit file's samples: gray (older Pillow opened 16-bit gray PNGs
as "I")."""
OPENCV_BANDS = {"RGB": [2, 1, 0], "RGBA": [2, 1, 0, 3]}
"""The other modes PIL opens 16-bit files in, keeping each value's high byte only (gray+alpha PNGs as RGBA), and
their bands among the channels OpenCV decodes all 16 bits into: BGR(A), gray+alpha as BGRA, and an RGB file's
transparent colour (tRNS) as a fourth channel that PIL's RGB leaves out (as it does for 8-bit files)."""

_opening = threading.Lock()
_large_decodes = threading.BoundedSemaphore(LARGE_DECODES_AT_ONCE)


ProblemKind = Literal["unreadable", "too large", "too small", "too narrow"]
PROBLEM_KINDS: tuple[ProblemKind, ...] = ("unreadable", "too large", "too small", "too narrow")
"""Why an image file makes no input, in the order summaries count them."""


@dataclass(frozen=True)
class ImageProblem:
    """Why one image file makes no input: its kind, and what is true of the file (without its name)."""

    kind: ProblemKind
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


class ImageLoadError(ValueError):
    """An image file could not be read or decoded, or its size makes no input (``problem`` says which)."""

    def __init__(self, message: str, problem: ImageProblem | None = None) -> None:
        super().__init__(message)
        self.problem = problem
        """Why, when the error is about one file."""

    @classmethod
    def about(cls, path: str | os.PathLike, problem: ImageProblem) -> ImageLoadError:
        """The error for the file at ``path``: "Cannot use image PATH: KIND: DETAIL"."""
        return cls(f"Cannot use image {path}: {problem}", problem)

    @classmethod
    def unreadable(cls, path: str | os.PathLike, error: BaseException) -> ImageLoadError:
        """The error for a file that PIL (or OpenCV) could not read: ``error`` says why."""
        return cls.about(path, ImageProblem("unreadable", str(error)))


def size_problem(size: tuple[int, int]) -> ImageProblem | None:
    """Why an image of ``size`` = (width, height) pixels makes no input, or None when it does: smaller than
    MIN_IMAGE_SIDE, or so narrow that its short side would be less than one patch with the long side at the
    model's TARGET_SIZE (the model needs a row of patches)."""
    short, long = sorted(size)
    pixels = f"{size[0]}x{size[1]} pixels"
    if short < MIN_IMAGE_SIDE:
        return ImageProblem("too small", f"{pixels}, a side needs at least {MIN_IMAGE_SIDE}")
    if short * TARGET_SIZE < PATCH_SIZE * long:
        ratio = TARGET_SIZE // PATCH_SIZE
        return ImageProblem("too narrow", f"{pixels}, the longer side may be at most {ratio} times the shorter")
    return None


@contextmanager
def open_image(path: str | os.PathLike) -> Iterator[ImageFile.ImageFile]:
    """The file opened lazily (header read, nothing decoded), closed on exit.

    PIL's decompression-bomb check reads a module global when a file is opened; it is lifted, under a lock,
    for the moment of opening, and MAX_IMAGE_PIXELS applies instead: a larger file raises ImageLoadError
    naming it, as does a file PIL cannot identify.
    """
    try:
        with _opening:
            pil_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                image = Image.open(path)
            finally:
                Image.MAX_IMAGE_PIXELS = pil_limit
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ImageLoadError.unreadable(path, error) from error
    with image:
        width, height = image.size
        if width * height > MAX_IMAGE_PIXELS:
            limit = f"{MAX_IMAGE_PIXELS / 10**6:.0f} MP"
            detail = f"{width}x{height} pixels is more than the {limit} this tool decodes"
            raise ImageLoadError.about(path, ImageProblem("too large", detail))
        yield image


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation tag, 1 (upright) when absent or invalid."""
    orientation = image.getexif().get(EXIF_ORIENTATION_TAG, 1)
    return orientation if orientation in UPRIGHT else 1


def upright_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) as the image is shown: after its EXIF orientation."""
    width, height = image.size
    return (height, width) if exif_orientation(image) in ROTATED_ORIENTATIONS else (width, height)


def bits_per_channel(image: ImageFile.ImageFile) -> int:
    """Bits per sample of a PNG (its header's bit depth) or TIFF (BitsPerSample); 8 for other formats."""
    if image.format == "PNG":
        with open(image.filename, "rb") as file:
            header = file.read(26)  # signature, IHDR length and type, width, height, bit depth, colour type
        return header[24]
    if image.format == "TIFF":
        bits = image.tag_v2.get(258, 8)
        return max(bits) if isinstance(bits, tuple) else int(bits)
    return 8


def _is_16_bit(image: ImageFile.ImageFile) -> bool:
    """A file of 16 bits per sample, whatever mode PIL opened it in."""
    opened_as = image.mode in PIL_16_BIT_MODES or image.mode in OPENCV_BANDS
    return image.mode.startswith("I;16") or (opened_as and bits_per_channel(image) == 16)


def pixel_mode(image: ImageFile.ImageFile) -> str:
    """PIL's mode, with ";16" added for files of 16 bits per sample whose mode does not say so ("RGB;16",
    "RGBA;16")."""
    return f"{image.mode};16" if _is_16_bit(image) and not image.mode.startswith("I;16") else image.mode


def decoding_slot(image: Image.Image) -> threading.BoundedSemaphore | nullcontext:
    """Hold this while a file above REDUCED_DECODE_PIXELS is decoded and its pixels live (LARGE_DECODES_AT_ONCE)."""
    return _large_decodes if image.width * image.height > REDUCED_DECODE_PIXELS else nullcontext()


def _to_8_bit(values: np.ndarray, peak: float) -> np.ndarray:
    """uint8 values * 255 / peak, rounded, a block of rows at a time (no float copy of a whole large image)."""
    result = np.empty(values.shape, dtype=np.uint8)
    rows = max(1, 2**20 // max(1, values[0].size))
    for start in range(0, len(values), rows):
        block = values[start : start + rows].astype(np.float64)
        result[start : start + rows] = np.clip(block / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return result


def _16_bit_samples(image: ImageFile.ImageFile) -> tuple[np.ndarray, str]:
    """All 16 bits of every sample, [h, w] or [h, w, bands], and the 8-bit mode they make: from PIL where it
    holds them (PIL_16_BIT_MODES), else decoded by OpenCV (OPENCV_BANDS)."""
    if image.mode in PIL_16_BIT_MODES:
        image.load()
        return np.asarray(image), "L"
    import cv2

    values = cv2.imread(os.fspath(image.filename), cv2.IMREAD_UNCHANGED)
    bands = OPENCV_BANDS[image.mode]
    decoded = values is not None and values.dtype == np.uint16 and values.ndim == 3
    if not decoded or values.shape[:2] != image.size[::-1] or values.shape[2] <= max(bands):
        raise OSError(f"cannot decode its samples of 16 bits as {image.mode}")
    return values[..., bands], image.mode


def _read_16_bit(image: ImageFile.ImageFile) -> Image.Image:
    """A file of 16 bits per sample at 8 bits, each value v rounded to round(v / 257) = round(v * 255 / 65535):
    the one conversion for every mode PIL opens such files in (PIL alone drops the low byte of colour and
    gray+alpha, and clips gray when converting it)."""
    values, mode = _16_bit_samples(image)
    return Image.fromarray(_to_8_bit(values, 65535.0), mode=mode)


def _as_8_bit(image: Image.Image) -> Image.Image:
    """8-bit gray ("L") or RGB: alpha composited on white; bilevel, palette and 32-bit gray or float converted
    (16-bit files are 8-bit already: ``_read_16_bit``)."""
    if image.mode in ("I", "F"):  # 32-bit integer or float images carry no range: infer it from the values
        values = np.asarray(image)
        peak = 1.0 if image.mode == "F" and values.max() <= 1.0 else (65535.0 if values.max() > 255 else 255.0)
        return Image.fromarray(_to_8_bit(values, peak), mode="L")
    if image.mode in ("1", "L", "RGB"):
        return image if image.mode != "1" else image.convert("L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("LA", "La", "PA", "RGBa"):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, image)
    return image.convert("RGB")


def _as_rgb(image: Image.Image) -> Image.Image:
    image = _as_8_bit(image)
    return image if image.mode == "RGB" else image.convert("RGB")


def _upright(image: Image.Image, orientation: int) -> Image.Image:
    """A new image: ``image`` turned upright (a copy when it is), so it outlives the file."""
    return image.transpose(UPRIGHT[orientation]) if orientation in UPRIGHT else image.copy()


def _decoded(image: ImageFile.ImageFile) -> Image.Image:
    """The stored pixels, decoded (at the scale a preceding draft chose); 16-bit files at 8 bits."""
    try:
        if _is_16_bit(image):
            return _read_16_bit(image)
        image.load()
        return image
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageLoadError.unreadable(image.filename, error) from error


def decode_rgb(image: ImageFile.ImageFile) -> Image.Image:
    """The whole image, upright (EXIF orientation applied), as 8-bit RGB (see ``_as_8_bit``)."""
    return _as_rgb(_upright(_decoded(image), exif_orientation(image)))


def decode_resized(image: ImageFile.ImageFile, size: tuple[int, int]) -> Image.Image:
    """The image upright as 8-bit RGB, bicubic-resized to ``size`` = (width, height). Files up to
    REDUCED_DECODE_PIXELS: the whole image resized, as the original VGGT does. Larger: decoded at reduced
    size (REDUCING_GAP) and resized in their stored orientation, then turned upright."""
    if image.width * image.height <= REDUCED_DECODE_PIXELS:
        return decode_rgb(image).resize(size, Image.Resampling.BICUBIC)
    orientation = exif_orientation(image)
    stored = size[::-1] if orientation in ROTATED_ORIENTATIONS else size
    drafted = image.draft(image.mode, (stored[0] * REDUCING_GAP, stored[1] * REDUCING_GAP))
    box = drafted[1] if drafted is not None else (0, 0, *image.size)  # the file's extent in drafted pixels
    resized = _as_8_bit(_decoded(image)).resize(stored, Image.Resampling.BICUBIC, box=box, reducing_gap=REDUCING_GAP)
    return _as_rgb(_upright(resized, orientation))


def open_rgb(path: str | os.PathLike) -> Image.Image:
    """The whole image of a file, upright, as 8-bit RGB: alpha composited on white, grayscale, palette and
    16-bit images converted."""
    with open_image(path) as image, decoding_slot(image):
        return decode_rgb(image)


@dataclass(frozen=True)
class ImageTransform:
    """Model pixels from original pixels: x_model = x_original * scale_x - crop_x + pad_x (same for y)."""

    original_size: tuple[int, int]
    """(width, height) of the file after EXIF orientation."""
    resized_size: tuple[int, int]
    """(width, height) after the resize, before crop and padding."""
    crop: tuple[int, int]
    """(left, top) pixels cut from the resized image."""
    pad: tuple[int, int]
    """(left, top) white pixels added before the image in the model input."""
    model_size: tuple[int, int]
    """(width, height) of the model input."""

    @property
    def scale(self) -> tuple[float, float]:
        return (self.resized_size[0] / self.original_size[0], self.resized_size[1] / self.original_size[1])

    @property
    def offset(self) -> tuple[float, float]:
        """Model-pixel offset added after scaling: pad - crop."""
        return (self.pad[0] - self.crop[0], self.pad[1] - self.crop[1])

    @property
    def valid_box(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of the model-input pixels that show the image (not padding)."""
        x0, y0 = self.pad
        width = min(self.resized_size[0] - self.crop[0], self.model_size[0] - x0)
        height = min(self.resized_size[1] - self.crop[1], self.model_size[1] - y0)
        return (x0, y0, x0 + width, y0 + height)

    def model_to_original(self, xy: np.ndarray) -> np.ndarray:
        """Continuous model-pixel coordinates [..., 2] to original-pixel coordinates."""
        return (np.asarray(xy, dtype=np.float64) - self.offset) / self.scale

    def intrinsics_to_original(self, intrinsic: np.ndarray) -> np.ndarray:
        """A 3x3 intrinsic matrix in model pixels, re-expressed in original pixels."""
        to_model = np.array(
            [[self.scale[0], 0.0, self.offset[0]], [0.0, self.scale[1], self.offset[1]], [0.0, 0.0, 1.0]]
        )
        return np.linalg.solve(to_model, np.asarray(intrinsic, dtype=np.float64))


@dataclass
class ImageBatch:
    pixels: np.ndarray
    """[S, H, W, 3] uint8 model pixels (also the colours of the exported points)."""
    transforms: list[ImageTransform]
    paths: list[Path]

    @property
    def tensor(self) -> Tensor:
        """[S, 3, H, W] uint8, a view of ``pixels``: the model and MegaLoc take it as it is, move it to their
        device a chunk at a time and make it float there (``layers.precision.unit_range``), so no float
        copy of all images (four times the bytes) is made on the host."""
        import torch

        return torch.from_numpy(self.pixels).permute(0, 3, 1, 2)


def _resized_size(width: int, height: int, mode: PreprocessMode, target: int, patch: int) -> tuple[int, int]:
    if mode == "crop" or width >= height:
        return target, round(height * (target / width) / patch) * patch
    return round(width * (target / height) / patch) * patch, target


def _preprocess(path: Path, mode: PreprocessMode, target: int, patch: int) -> tuple[np.ndarray, ImageTransform]:
    """[h, w, 3] uint8 model pixels of one file (resized, cropped or padded white) and their transform;
    ImageLoadError naming the file when its size is no input (``size_problem``)."""
    with open_image(path) as image, decoding_slot(image):
        original = upright_size(image)
        problem = size_problem(original)
        if problem is not None:
            raise ImageLoadError.about(path, problem)
        resized = _resized_size(*original, mode, target, patch)
        pixels = np.asarray(decode_resized(image, resized))
    crop_top = (resized[1] - target) // 2 if mode == "crop" and resized[1] > target else 0
    pixels = pixels[crop_top : crop_top + target] if crop_top else pixels
    pad = (0, 0)
    if mode == "pad":
        pixels, pad = _pad_white(pixels, target, target)
    transform = ImageTransform(original, resized, (0, crop_top), pad, (pixels.shape[1], pixels.shape[0]))
    return pixels, transform


def _centre_offset(size: tuple[int, int], height: int, width: int) -> tuple[int, int]:
    """(left, top) white pixels before an image of (h, w) ``size`` centred on a ``height`` x ``width`` canvas."""
    return (width - size[1]) // 2, (height - size[0]) // 2


def _pad_white(pixels: np.ndarray, height: int, width: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Centre [h, w, 3] uint8 pixels on a white canvas of the given size; returns it and the (left, top) padding."""
    left, top = _centre_offset(pixels.shape[:2], height, width)
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    canvas[top : top + pixels.shape[0], left : left + pixels.shape[1]] = pixels
    return canvas, (left, top)


def load_images(
    paths: Sequence[str | os.PathLike],
    mode: PreprocessMode = "crop",
    target_size: int = TARGET_SIZE,
    patch_size: int = PATCH_SIZE,
    workers: int | None = None,
    stop: threading.Event | None = None,
    canvas: tuple[int, int] = (0, 0),
) -> ImageBatch:
    """Decode and preprocess image files in parallel into VGGT's input, exactly as the original does.

    Images that end up with different sizes are padded (white, centred) to the largest. EXIF
    orientation is applied, transparency is composited on white, 16-bit colour is rounded to 8 bits.

    Args:
        paths: the image files, in frame order (frame 0 becomes the world frame).
        mode: crop: width ``target_size``, height rounded to a multiple of ``patch_size`` and centre
            cropped to ``target_size`` if taller (the model's training setting). pad: long side
            ``target_size``, white padding to a square (keeps the whole image).
        target_size, patch_size: the model's input size and patch size (VGGT-1B: 518 and 14).
        workers: decoding threads (default: twice the CPUs, at most 32).
        stop: once set, the images not yet begun are skipped and ImageLoadError is raised, so a caller
            that no longer needs them does not wait for them.
        canvas: (height, width) the batch is padded to at least: where a scene's frames are loaded by several
            processes, the size of the scene's largest image, so that every process's frames match the scene's.

    Returns:
        An ImageBatch: ``tensor`` [S, 3, H, W] uint8 (the model's input), ``pixels`` [S, H, W, 3], and per
        frame the ``transforms`` from model pixels back to the file's pixels.

    Raises:
        ImageLoadError: naming the first file that cannot be read, has more than MAX_IMAGE_PIXELS, or is
            too small or narrow (``size_problem``).

    Example:
        >>> batch = load_images(["a.jpg", "b.jpg"], mode="crop")
        >>> batch.tensor.shape  # two 1920x1080 photographs
        torch.Size([2, 3, 294, 518])
    """
    if mode not in ("crop", "pad"):
        raise ValueError(f"preprocess mode must be 'crop' or 'pad', not {mode!r}")
    paths = [Path(p) for p in paths]
    if not paths:
        raise ImageLoadError("No images to load.")
    workers = workers or min(32, (os.cpu_count() or 1) * 2, len(paths))

    def decode(path: Path) -> tuple[np.ndarray, ImageTransform] | None:
        if stop is not None and stop.is_set():
            return None
        return _preprocess(path, mode, target_size, patch_size)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        loaded = list(pool.map(decode, paths))
    if stop is not None and stop.is_set():
        raise ImageLoadError("Image loading was stopped before all images were decoded.")
    height = max(canvas[0], *(pixels.shape[0] for pixels, _ in loaded))
    width = max(canvas[1], *(pixels.shape[1] for pixels, _ in loaded))
    batch = np.full((len(loaded), height, width, 3), 255, dtype=np.uint8)
    transforms = []
    for index, (pixels, transform) in enumerate(loaded):
        left, top = _centre_offset(pixels.shape[:2], height, width)
        batch[index, top : top + pixels.shape[0], left : left + pixels.shape[1]] = pixels
        transforms.append(
            ImageTransform(
                transform.original_size,
                transform.resized_size,
                transform.crop,
                (transform.pad[0] + left, transform.pad[1] + top),
                (width, height),
            )
        )
    return ImageBatch(batch, transforms, paths)
