"""Conversion between sensor_msgs/Image and CompressedImage fields and numpy RGB arrays.

This module never imports rclpy: the node passes plain message fields in, so the conversions are
unit-tested with numpy alone.

Why hand-written: a pip-only ROS 2 install has no working cv_bridge (the ROS 2 package is not on
PyPI, and PyPI's `cv-bridge` is a ROS 1 port that breaks on numpy 2), and `rosbags-image` ignores
`step`, so rows with padding come back sheared, and it truncates 16-bit PNGs to 8 bit. OpenCV does
the actual colour conversions (YUV, Bayer) and the JPEG/PNG codecs; this module only interprets
the message layout (encoding, step, endianness) and validates it.
"""

from __future__ import annotations

import array
import sys
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from ..core.errors import ImageTooLargeError
from ..core.images import declared_size

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ImageConversionError",
    "SUPPORTED_ENCODINGS",
    "compressed_to_rgb",
    "image_fields_to_rgb",
    "rgb_to_compressed",
    "rgb_to_image_fields",
]

#: Largest accepted image in pixels (an 8K frame has 33 M). Larger headers are almost surely corrupt
#: and would make the node allocate gigabytes.
DEFAULT_MAX_PIXELS = 40_000_000


class ImageConversionError(ValueError):
    """An image message cannot be converted: unsupported encoding or inconsistent layout."""


@dataclass(frozen=True)
class _Layout:
    """How one encoding stores a pixel row: interleaved channels of one sample type."""

    channels: int
    dtype: str  # numpy sample type, little-endian form; big-endian is chosen from is_bigendian
    to_rgb: int | None  # cv2 colour conversion to RGB, None when the samples already are RGB


_U8, _U16 = "u1", "<u2"

# 8UC3/8UC4/16UC3 carry no colour order; they are read as OpenCV's BGR(A) because drivers that
# publish them almost always copy a cv::Mat straight into the message.
# OpenCV names Bayer patterns after the second row, so the ROS pattern rggb is OpenCV's "BG".
_LAYOUTS: dict[str, _Layout] = {
    "rgb8": _Layout(3, _U8, None),
    "bgr8": _Layout(3, _U8, cv2.COLOR_BGR2RGB),
    "rgba8": _Layout(4, _U8, cv2.COLOR_RGBA2RGB),
    "bgra8": _Layout(4, _U8, cv2.COLOR_BGRA2RGB),
    "mono8": _Layout(1, _U8, cv2.COLOR_GRAY2RGB),
    "8UC1": _Layout(1, _U8, cv2.COLOR_GRAY2RGB),
    "8UC3": _Layout(3, _U8, cv2.COLOR_BGR2RGB),
    "8UC4": _Layout(4, _U8, cv2.COLOR_BGRA2RGB),
    "rgb16": _Layout(3, _U16, None),
    "bgr16": _Layout(3, _U16, cv2.COLOR_BGR2RGB),
    "rgba16": _Layout(4, _U16, cv2.COLOR_RGBA2RGB),
    "bgra16": _Layout(4, _U16, cv2.COLOR_BGRA2RGB),
    "mono16": _Layout(1, _U16, cv2.COLOR_GRAY2RGB),
    "16UC1": _Layout(1, _U16, cv2.COLOR_GRAY2RGB),
    "16UC3": _Layout(3, _U16, cv2.COLOR_BGR2RGB),
    "bayer_rggb8": _Layout(1, _U8, cv2.COLOR_BayerBG2RGB),
    "bayer_bggr8": _Layout(1, _U8, cv2.COLOR_BayerRG2RGB),
    "bayer_gbrg8": _Layout(1, _U8, cv2.COLOR_BayerGR2RGB),
    "bayer_grbg8": _Layout(1, _U8, cv2.COLOR_BayerGB2RGB),
    "bayer_rggb16": _Layout(1, _U16, cv2.COLOR_BayerBG2RGB),
    "bayer_bggr16": _Layout(1, _U16, cv2.COLOR_BayerRG2RGB),
    "bayer_gbrg16": _Layout(1, _U16, cv2.COLOR_BayerGR2RGB),
    "bayer_grbg16": _Layout(1, _U16, cv2.COLOR_BayerGB2RGB),
    # 4:2:2 packed: two pixels share one U and one V sample in four bytes.
    "uyvy": _Layout(2, _U8, cv2.COLOR_YUV2RGB_UYVY),
    "yuv422": _Layout(2, _U8, cv2.COLOR_YUV2RGB_UYVY),  # deprecated ROS name of uyvy
    "yuyv": _Layout(2, _U8, cv2.COLOR_YUV2RGB_YUY2),
    "yuv422_yuy2": _Layout(2, _U8, cv2.COLOR_YUV2RGB_YUY2),  # deprecated ROS name of yuyv
    # 4:2:0 semi-planar: a full-size Y plane, then a half-height plane of interleaved chroma.
    "nv12": _Layout(1, _U8, cv2.COLOR_YUV2RGB_NV12),
    "nv21": _Layout(1, _U8, cv2.COLOR_YUV2RGB_NV21),
}

#: Encodings accepted by :func:`image_fields_to_rgb`.
SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(sorted(_LAYOUTS))

_PACKED_422 = {"uyvy", "yuv422", "yuyv", "yuv422_yuy2"}
_SEMI_PLANAR_420 = {"nv12", "nv21"}

#: Encodings that :func:`rgb_to_image_fields` can produce from an RGB array.
_OUTPUT_CONVERSIONS: dict[str, int | None] = {
    "rgb8": None,
    "bgr8": cv2.COLOR_RGB2BGR,
    "rgba8": cv2.COLOR_RGB2RGBA,
    "bgra8": cv2.COLOR_RGB2BGRA,
    "mono8": cv2.COLOR_RGB2GRAY,
}


def _as_uint8_buffer(data: Any) -> np.ndarray:
    """View message bytes (bytes, array.array('B'), memoryview, ndarray or int list) as uint8."""
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise ImageConversionError(f"data must hold uint8 values, got an array of {data.dtype}")
        return data.reshape(-1)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:
        pass  # not a buffer: a plain sequence of ints, as a hand-built message may hold
    try:
        values = np.asarray(data)
    except (TypeError, ValueError) as exc:
        raise ImageConversionError(f"data is not a byte sequence: {type(data).__name__}") from exc
    if values.size and (values.dtype.kind not in "iu" or values.min() < 0 or values.max() > 255):
        raise ImageConversionError("data must be a sequence of integers in [0, 255]")
    return values.astype(np.uint8).reshape(-1)


def _check_size(height: int, width: int, max_pixels: int) -> None:
    if height <= 0 or width <= 0:
        raise ImageConversionError(f"image has zero size ({width}x{height})")
    if height * width > max_pixels:
        raise ImageConversionError(
            f"image of {width}x{height} = {height * width} pixels exceeds the limit of {max_pixels} pixels"
        )


def _scale_16_to_8(values: np.ndarray) -> np.ndarray:
    """Map the full 16-bit range linearly onto 0-255 with rounding (65535 -> 255, 257 -> 1)."""
    return ((values.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def image_fields_to_rgb(
    encoding: str,
    height: int,
    width: int,
    step: int,
    data: Any,
    is_bigendian: bool | int = False,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Convert the fields of a sensor_msgs/Image to a new HxWx3 uint8 RGB array.

    16-bit encodings are scaled linearly from the full 16-bit range to 8 bit (so a depth image in
    millimetres comes out dark; the models only need a picture). Alpha is dropped. Rows may be
    padded (`step` larger than the packed row); the padding is skipped. The result never shares
    memory with `data`.

    Raises:
        ImageConversionError: unknown encoding, zero size, more than `max_pixels` pixels, `step`
            shorter than one row, `len(data)` other than `step` times the rows (`height`, or
            1.5 * `height` for nv12/nv21), or an odd width or height where the chroma subsampling
            needs it even.
    """
    layout = _LAYOUTS.get(encoding)
    if layout is None:
        raise ImageConversionError(
            f"unsupported image encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}"
        )
    height, width, step = int(height), int(width), int(step)
    _check_size(height, width, max_pixels)

    sample_bytes = np.dtype(layout.dtype).itemsize
    row_bytes = width * sample_bytes * layout.channels  # of the luma plane for nv12/nv21
    if step < row_bytes:
        raise ImageConversionError(
            f"step {step} is smaller than one row of {width} {encoding} pixels ({row_bytes} bytes)"
        )
    if encoding in _PACKED_422 and width % 2:
        raise ImageConversionError(f"{encoding} needs an even width, got {width}")
    rows = height
    if encoding in _SEMI_PLANAR_420:
        if width % 2 or height % 2:
            raise ImageConversionError(f"{encoding} needs an even width and height, got {width}x{height}")
        rows = height * 3 // 2  # luma rows followed by half as many interleaved chroma rows

    buffer = _as_uint8_buffer(data)
    if buffer.size != step * rows:
        raise ImageConversionError(
            f"data holds {buffer.size} bytes but step * rows = {step} * {rows} = {step * rows}"
        )

    packed = buffer.reshape(rows, step)[:, :row_bytes]
    if sample_bytes == 2:
        dtype = np.dtype(layout.dtype).newbyteorder(">" if is_bigendian else "<")
        samples = np.ascontiguousarray(packed).view(dtype)
        pixels = _scale_16_to_8(samples)
    else:
        pixels = packed
    if encoding in _SEMI_PLANAR_420:
        pixels = np.ascontiguousarray(pixels)  # OpenCV takes the (rows x width) plane stack
    else:
        pixels = pixels.reshape(rows, width, layout.channels)

    if layout.to_rgb is None:
        return np.array(pixels, dtype=np.uint8, copy=True, order="C")
    return cv2.cvtColor(np.ascontiguousarray(pixels), layout.to_rgb)


def _check_rgb(rgb: Any) -> np.ndarray:
    if not isinstance(rgb, np.ndarray):
        raise ImageConversionError(f"expected a numpy array, got {type(rgb).__name__}")
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageConversionError(f"expected an HxWx3 RGB array, got shape {rgb.shape}")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ImageConversionError(f"image has zero size ({rgb.shape[1]}x{rgb.shape[0]})")
    return rgb


def rgb_to_image_fields(rgb: np.ndarray, encoding: str = "rgb8") -> dict[str, Any]:
    """Return sensor_msgs/Image fields (all but header) for an HxWx3 uint8 RGB array.

    `encoding` is one of rgb8, bgr8, rgba8 (opaque alpha), bgra8, mono8. Rows are packed
    (`step == width * channels`). `data` is an `array.array('B')` because rclpy's field setter
    accepts that type without checking every byte in Python, which takes ~0.1 s for a VGA frame.
    Usage: `msg = Image(header=header, **rgb_to_image_fields(rgb))`.
    """
    rgb = _check_rgb(rgb)
    if rgb.dtype != np.uint8:
        raise ImageConversionError(f"expected a uint8 array, got {rgb.dtype}")
    if encoding not in _OUTPUT_CONVERSIONS:
        raise ImageConversionError(
            f"cannot publish encoding {encoding!r}; choose one of {', '.join(_OUTPUT_CONVERSIONS)}"
        )
    code = _OUTPUT_CONVERSIONS[encoding]
    out = np.ascontiguousarray(rgb) if code is None else cv2.cvtColor(np.ascontiguousarray(rgb), code)
    height, width = out.shape[:2]
    channels = 1 if out.ndim == 2 else out.shape[2]
    return {
        "height": height,
        "width": width,
        "encoding": encoding,
        "is_bigendian": 0,
        "step": width * channels,
        "data": array.array("B", out.tobytes()),
    }


_DECODABLE = {"jpeg", "jpg", "png", "tiff", "tif", "webp", "bmp"}


def _check_compressed_format(format_: str) -> None:
    """Reject CompressedImage formats that name no codec OpenCV decodes here.

    Formats follow compressed_image_transport: "jpeg", "png", or "<raw encoding>; <codec>
    compressed <encoding>", e.g. "rgb8; jpeg compressed bgr8". An empty format is accepted: the
    codec is then recognised from the data itself.
    """
    text = format_.strip().lower()
    if "compresseddepth" in text:
        raise ImageConversionError(
            f"format {format_!r}: compressedDepth images (with their depth-quantisation header) are "
            "not supported; publish depth as raw 16UC1/mono16 or as a plain 16-bit png"
        )
    codec_part = text.split(";", 1)[-1]
    if codec_part.strip() and not _DECODABLE.intersection(codec_part.replace(",", " ").split()):
        raise ImageConversionError(
            f"unsupported CompressedImage format {format_!r}; expected one of {', '.join(sorted(_DECODABLE))}"
        )


def compressed_to_rgb(format: str, data: Any, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:  # noqa: A002
    """Decode a sensor_msgs/CompressedImage (jpeg, png, ...) to a new HxWx3 uint8 RGB array.

    `format` is the message's format field (may be empty: the codec is detected from the data).
    16-bit PNG/TIFF images are decoded at full depth and scaled to 8 bit like raw 16-bit images.
    The decoded colour order is OpenCV's BGR, which is also what compressed_image_transport
    compresses ("... compressed bgr8"), so colours round-trip with other ROS tools.

    Raises:
        ImageConversionError: unsupported format (including compressedDepth), empty or undecodable
            data, or an image larger than `max_pixels`.
    """
    _check_compressed_format(format)
    buffer = _as_uint8_buffer(data)
    if buffer.size == 0:
        raise ImageConversionError("compressed image has no data")
    # Refuse from the header before decoding: a small file can declare gigapixels.
    try:
        size = declared_size(buffer.tobytes(), what="compressed image", max_pixels=sys.maxsize)
    except ImageTooLargeError as exc:  # so large that PIL refuses to even describe it
        raise ImageConversionError(str(exc)) from None
    if size is not None:
        _check_size(size[1], size[0], max_pixels)
    try:
        decoded = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:  # e.g. OpenCV's own CV_IO_MAX_IMAGE_PIXELS for a format PIL does not read
        raise ImageConversionError(f"could not decode {buffer.size} bytes of compressed image data: "
                                   f"{str(exc).strip().splitlines()[-1]}") from None
    if decoded is None:
        raise ImageConversionError(f"could not decode {buffer.size} bytes of compressed image data")
    _check_size(decoded.shape[0], decoded.shape[1], max_pixels)
    if decoded.dtype == np.uint16:
        decoded = _scale_16_to_8(decoded)
    elif decoded.dtype != np.uint8:
        raise ImageConversionError(f"decoded image has unsupported sample type {decoded.dtype}")
    if decoded.ndim == 2 or decoded.shape[2] == 1:
        return cv2.cvtColor(decoded.reshape(decoded.shape[:2]), cv2.COLOR_GRAY2RGB)
    if decoded.shape[2] == 4:
        return cv2.cvtColor(decoded, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


def rgb_to_compressed(
    rgb: np.ndarray,
    format: str = "jpeg",  # noqa: A002
    *,
    jpeg_quality: int = 90,
    png_level: int = 3,
) -> dict[str, Any]:
    """Compress an image into sensor_msgs/CompressedImage fields `format` and `data`.

    Accepts HxWx3 RGB or HxW mono arrays, uint8 or (png only) uint16, the latter kept at full
    16-bit depth. `format` is "jpeg" or "png"; the message format string follows
    compressed_image_transport ("rgb8; jpeg compressed bgr8") so other ROS tools decode it.
    """
    if format not in ("jpeg", "png"):
        raise ImageConversionError(f"unsupported compression {format!r}; choose 'jpeg' or 'png'")
    if not isinstance(rgb, np.ndarray):
        raise ImageConversionError(f"expected a numpy array, got {type(rgb).__name__}")
    mono = rgb.ndim == 2
    if not mono:
        _check_rgb(rgb)
    elif 0 in rgb.shape:
        raise ImageConversionError(f"image has zero size ({rgb.shape[1]}x{rgb.shape[0]})")
    if rgb.dtype == np.uint8:
        bits = 8
    elif rgb.dtype == np.uint16 and format == "png":
        bits = 16
    else:
        raise ImageConversionError(
            f"cannot store {rgb.dtype} samples as {format}; use uint8 (or uint16 with png)"
        )
    if not 0 <= jpeg_quality <= 100:
        raise ImageConversionError(f"jpeg_quality must be in [0, 100], got {jpeg_quality}")
    if not 0 <= png_level <= 9:
        raise ImageConversionError(f"png_level must be in [0, 9], got {png_level}")

    pixels = np.ascontiguousarray(rgb) if mono else cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
    if format == "jpeg":
        ok, encoded = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    else:
        ok, encoded = cv2.imencode(".png", pixels, [cv2.IMWRITE_PNG_COMPRESSION, png_level])
    if not ok:
        raise ImageConversionError(f"OpenCV could not encode the image as {format}")
    source = f"mono{bits}" if mono else f"rgb{bits}"
    stored = f"mono{bits}" if mono else f"bgr{bits}"
    return {"format": f"{source}; {format} compressed {stored}", "data": array.array("B", encoded.tobytes())}
