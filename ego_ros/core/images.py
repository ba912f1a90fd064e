"""Validation and conversion of input images into RGB PIL images, with clear errors.

Image files and encoded bytes are checked against the pixel limit from their header, before they are
decoded: a 1 MB PNG can declare 20000x20000 pixels and would cost gigabytes to decode.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import ImageTooLargeError, InvalidImageError

ImageInput = Image.Image | np.ndarray | str | Path

#: Largest accepted image (pixels); a 8K frame is 33 M pixels. Bigger inputs are almost surely corrupt.
MAX_PIXELS = 40_000_000
#: Smallest accepted side: a model needs at least one patch worth of pixels.
MIN_SIDE = 4


def declared_size(source: bytes | BinaryIO | Path, *, what: str = "image",
                  max_pixels: int | None = None) -> tuple[int, int] | None:
    """(width, height) an encoded image (PNG, JPEG, ...) declares in its header, read without decoding
    the pixels (PIL's open is lazy); None when PIL does not recognise the format.

    Raises ImageTooLargeError when the declared size exceeds `max_pixels` (None: MAX_PIXELS), or when
    it is so large that PIL itself refuses it as a decompression bomb."""
    limit = MAX_PIXELS if max_pixels is None else max_pixels
    src = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    try:
        with Image.open(src) as im:
            size = im.size
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"{what}: the file declares more pixels than the limit of {limit} ({exc})") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None
    _check_pixels(size, what, limit, declared=True)
    return size


def _check_pixels(size: tuple[int, int], what: str, limit: int, declared: bool = False) -> None:
    w, h = size
    if w * h > limit:
        verb = "declares" if declared else "is"
        raise ImageTooLargeError(f"{what}: image {verb} {w}x{h} = {w * h} pixels, more than the limit of {limit}")


def to_rgb(image: ImageInput, *, what: str = "image", max_pixels: int | None = None) -> Image.Image:
    """Return `image` as an RGB PIL image or raise InvalidImageError saying what is wrong.

    Accepts PIL images (any mode convertible to RGB), uint8 numpy arrays HxW, HxWx1, HxWx3 (RGB) or HxWx4
    (RGBA), float arrays in [0, 1], and paths to image files. Images over `max_pixels` (None: MAX_PIXELS)
    raise ImageTooLargeError (an InvalidImageError and a RequestTooLargeError); a file is refused from
    its header, before it is decoded.
    """
    limit = MAX_PIXELS if max_pixels is None else max_pixels
    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.is_file():
            raise InvalidImageError(f"{what}: file not found: {path}")
        try:
            with Image.open(path) as im:
                _check_pixels(im.size, what, limit, declared=True)
                im.load()
                image = im.copy()
        except Image.DecompressionBombError as exc:
            raise ImageTooLargeError(f"{what}: {path} declares more pixels than the limit of {limit} "
                                     f"({exc})") from None
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise InvalidImageError(f"{what}: cannot decode {path}: {exc}") from exc
    if isinstance(image, np.ndarray):
        if image.ndim >= 2:
            _check_pixels((image.shape[1], image.shape[0]), what, limit)
        image = _array_to_pil(image, what)
    if not isinstance(image, Image.Image):
        raise InvalidImageError(f"{what}: expected a PIL image, numpy array or path, got {type(image).__name__}")
    w, h = image.size
    if w < MIN_SIDE or h < MIN_SIDE:
        raise InvalidImageError(f"{what}: image is {w}x{h} pixels; at least {MIN_SIDE}x{MIN_SIDE} is needed")
    _check_pixels((w, h), what, limit)
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "P", "PA"):
        return image.convert("RGBA").convert("RGB") if image.mode != "P" else image.convert("RGB")
    if image.mode in ("L", "1", "CMYK", "YCbCr", "HSV", "LAB"):
        return image.convert("RGB")
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        arr = np.asarray(image, dtype=np.float64)
        span = float(arr.max() - arr.min()) or 1.0
        return Image.fromarray(((arr - arr.min()) / span * 255).astype(np.uint8)).convert("RGB")
    raise InvalidImageError(f"{what}: unsupported image mode {image.mode!r}")


def _array_to_pil(arr: np.ndarray, what: str) -> Image.Image:
    if arr.size == 0:
        raise InvalidImageError(f"{what}: empty array of shape {arr.shape}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise InvalidImageError(f"{what}: expected an HxW, HxWx3 or HxWx4 array, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        pass
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise InvalidImageError(f"{what}: float image holds NaN or infinite values")
        if arr.min() < 0.0 or arr.max() > 1.0:
            raise InvalidImageError(f"{what}: float images must lie in [0, 1], got [{arr.min()}, {arr.max()}]")
        arr = np.round(arr * 255).astype(np.uint8)
    elif arr.dtype == np.uint16:
        arr = (arr >> 8).astype(np.uint8)
    elif arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    else:
        raise InvalidImageError(f"{what}: unsupported array dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr)
    if arr.ndim == 2:
        return Image.fromarray(arr, mode="L")
    return Image.fromarray(arr, mode="RGB" if arr.shape[2] == 3 else "RGBA")
