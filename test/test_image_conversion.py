"""Specification of ego_ros.ros.image_conversion (pure numpy/OpenCV, no rclpy needed)."""

from __future__ import annotations

import array

import cv2
import numpy as np
import pytest

from ego_ros.ros.image_conversion import (
    SUPPORTED_ENCODINGS,
    ImageConversionError,
    compressed_to_rgb,
    image_fields_to_rgb,
    rgb_to_compressed,
    rgb_to_image_fields,
)

H, W = 6, 8
PAD_BYTE = 0xAB  # padding filled with a visible value, so reading it by mistake changes the result


@pytest.fixture
def rgb() -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, size=(H, W, 3), dtype=np.uint8)


def make_fields(encoding: str, pixels: np.ndarray, *, pad: int = 0, bigendian: bool = False) -> dict:
    """Lay out `pixels` (rows x row-samples) as sensor_msgs/Image fields with `pad` bytes per row."""
    if pixels.dtype == np.uint16:
        pixels = pixels.astype(">u2" if bigendian else "<u2")
    rows = pixels.reshape(pixels.shape[0], -1).view(np.uint8)
    if pad:
        rows = np.concatenate([rows, np.full((rows.shape[0], pad), PAD_BYTE, np.uint8)], axis=1)
    width = pixels.shape[1]
    height = pixels.shape[0] * 2 // 3 if encoding in ("nv12", "nv21") else pixels.shape[0]
    return {
        "encoding": encoding,
        "height": height,
        "width": width,
        "step": rows.shape[1],
        "data": rows.tobytes(),
        "is_bigendian": bigendian,
    }


def bt601(y: float, u: float, v: float) -> np.ndarray:
    """Convert YUV to RGB with the video-range BT.601 formulas that camera YUV formats use."""
    c, d, e = 1.164 * (y - 16), u - 128, v - 128
    return np.clip(np.rint([c + 1.596 * e, c - 0.392 * d - 0.813 * e, c + 2.017 * d]), 0, 255)


# ----------------------------------------------------------------------------------- 8-bit colour


def test_rgb8_comes_back_unchanged(rgb):
    out = image_fields_to_rgb(**make_fields("rgb8", rgb))
    assert out.dtype == np.uint8 and out.shape == (H, W, 3)
    np.testing.assert_array_equal(out, rgb)


def test_bgr8_channels_are_reordered_to_rgb(rgb):
    np.testing.assert_array_equal(image_fields_to_rgb(**make_fields("bgr8", rgb[..., ::-1])), rgb)


@pytest.mark.parametrize(("encoding", "order"), [("rgba8", [0, 1, 2]), ("bgra8", [2, 1, 0])])
def test_four_channel_encodings_drop_alpha(rgb, encoding, order):
    alpha = np.full((H, W, 1), 17, np.uint8)
    pixels = np.concatenate([rgb[..., order], alpha], axis=2)
    np.testing.assert_array_equal(image_fields_to_rgb(**make_fields(encoding, pixels)), rgb)


@pytest.mark.parametrize("encoding", ["mono8", "8UC1"])
def test_single_channel_8bit_is_replicated_to_grey_rgb(encoding):
    grey = np.arange(H * W, dtype=np.uint8).reshape(H, W)
    out = image_fields_to_rgb(**make_fields(encoding, grey))
    np.testing.assert_array_equal(out, np.repeat(grey[..., None], 3, axis=2))


def test_8uc3_is_read_in_opencv_bgr_order(rgb):
    np.testing.assert_array_equal(image_fields_to_rgb(**make_fields("8UC3", rgb[..., ::-1])), rgb)


def test_8uc4_is_read_in_opencv_bgra_order(rgb):
    pixels = np.concatenate([rgb[..., ::-1], np.zeros((H, W, 1), np.uint8)], axis=2)
    np.testing.assert_array_equal(image_fields_to_rgb(**make_fields("8UC4", pixels)), rgb)


# ------------------------------------------------------------------------------------------ 16-bit


@pytest.mark.parametrize("encoding", ["mono16", "16UC1"])
@pytest.mark.parametrize("bigendian", [False, True])
def test_single_channel_16bit_is_scaled_over_the_full_range(encoding, bigendian):
    values = np.array([[0, 1, 128, 129, 257, 32767, 32896, 65535]], np.uint16)
    out = image_fields_to_rgb(**make_fields(encoding, values, bigendian=bigendian))
    expected = np.array([0, 0, 0, 1, 1, 127, 128, 255], np.uint8)
    np.testing.assert_array_equal(out[0, :, 0], expected)
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


def test_16bit_big_endian_differs_from_little_endian_reading_of_the_same_bytes():
    values = np.array([[0x00FF, 0xFF00]], np.uint16)
    fields = make_fields("mono16", values, bigendian=True)
    as_big = image_fields_to_rgb(**fields)[0, :, 0]
    as_little = image_fields_to_rgb(**{**fields, "is_bigendian": False})[0, :, 0]
    np.testing.assert_array_equal(as_big, [1, 254])
    np.testing.assert_array_equal(as_little, [254, 1])


@pytest.mark.parametrize(
    ("encoding", "order", "alpha"),
    [
        ("rgb16", [0, 1, 2], False),
        ("bgr16", [2, 1, 0], False),
        ("16UC3", [2, 1, 0], False),
        ("rgba16", [0, 1, 2], True),
        ("bgra16", [2, 1, 0], True),
    ],
)
@pytest.mark.parametrize("bigendian", [False, True])
def test_colour_16bit_encodings_scale_back_to_the_8bit_image(rgb, encoding, order, alpha, bigendian):
    wide = rgb[..., order].astype(np.uint16) * 257  # exact 8 -> 16 bit expansion
    if alpha:
        wide = np.concatenate([wide, np.full((H, W, 1), 65535, np.uint16)], axis=2)
    out = image_fields_to_rgb(**make_fields(encoding, wide, bigendian=bigendian))
    np.testing.assert_array_equal(out, rgb)


# ------------------------------------------------------------------------------------------- Bayer


def bayer_mosaic(pattern: str, colour: tuple[int, int, int], size: int = 8) -> np.ndarray:
    """Sample a uniform `colour` image through the 2x2 colour filter `pattern` (e.g. 'rggb')."""
    channel = {"r": 0, "g": 1, "b": 2}
    mosaic = np.zeros((size, size), np.uint16)
    for i, c in enumerate(pattern):
        mosaic[i // 2 :: 2, i % 2 :: 2] = colour[channel[c]]
    return mosaic


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
@pytest.mark.parametrize("bits", [8, 16])
def test_bayer_patterns_demosaic_to_the_filtered_colour(pattern, bits):
    colour = (200, 100, 30)
    mosaic = bayer_mosaic(pattern, colour)
    if bits == 16:
        mosaic = mosaic * 257
    else:
        mosaic = mosaic.astype(np.uint8)
    out = image_fields_to_rgb(**make_fields(f"bayer_{pattern}{bits}", mosaic))
    interior = out[2:-2, 2:-2].reshape(-1, 3).astype(int)  # borders are extrapolated
    assert np.abs(interior - colour).max() <= 1


# --------------------------------------------------------------------------------------------- YUV


def packed_422(encoding: str, y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Pack per-pixel Y and per-pair U, V samples into rows of 2 bytes per pixel."""
    out = np.zeros((y.shape[0], y.shape[1], 2), np.uint8)
    if encoding in ("uyvy", "yuv422"):
        out[..., 1] = y
        out[:, 0::2, 0], out[:, 1::2, 0] = u, v
    else:
        out[..., 0] = y
        out[:, 0::2, 1], out[:, 1::2, 1] = u, v
    return out


@pytest.mark.parametrize("encoding", ["uyvy", "yuv422", "yuyv", "yuv422_yuy2"])
def test_packed_yuv422_gives_luma_per_pixel_and_shared_chroma(encoding):
    y = np.tile(np.array([50, 200, 81, 81], np.uint8), (2, 1))
    u = np.tile(np.array([128, 90], np.uint8), (2, 1))
    v = np.tile(np.array([128, 240], np.uint8), (2, 1))
    out = image_fields_to_rgb(**make_fields(encoding, packed_422(encoding, y, u, v)))
    expected = [bt601(50, 128, 128), bt601(200, 128, 128), bt601(81, 90, 240), bt601(81, 90, 240)]
    assert np.abs(out[0].astype(int) - np.array(expected)).max() <= 2


def test_uyvy_and_yuyv_read_the_same_bytes_differently():
    y = np.array([[50, 200]], np.uint8)
    data = packed_422("uyvy", y, np.array([[128]], np.uint8), np.array([[128]], np.uint8))
    as_uyvy = image_fields_to_rgb(**make_fields("uyvy", data))
    as_yuyv = image_fields_to_rgb(**make_fields("yuyv", data))
    assert as_uyvy[0, 0, 0] < as_uyvy[0, 1, 0]  # dark then bright
    assert not np.array_equal(as_uyvy, as_yuyv)


@pytest.mark.parametrize(("encoding", "u", "v"), [("nv12", 90, 240), ("nv21", 240, 90)])
def test_semi_planar_420_takes_chroma_in_its_order(encoding, u, v):
    # Same bytes for both: luma 81, chroma pair (90, 240). NV12 stores U first (-> red), NV21 V first.
    expected_rgb = bt601(81, u, v)
    luma = np.full((4, 6), 81, np.uint8)
    chroma = np.tile(np.array([90, 240], np.uint8), (2, 3))
    out = image_fields_to_rgb(**make_fields(encoding, np.concatenate([luma, chroma])))
    assert out.shape == (4, 6, 3)
    assert np.abs(out.reshape(-1, 3).astype(int) - expected_rgb).max() <= 2


# ----------------------------------------------------------------------------------------- padding


@pytest.mark.parametrize("pad", [1, 3, 64])
@pytest.mark.parametrize(
    ("encoding", "pixels"),
    [
        ("rgb8", np.arange(H * W * 3, dtype=np.uint8).reshape(H, W, 3)),
        ("mono8", np.arange(H * W, dtype=np.uint8).reshape(H, W)),
        ("mono16", (np.arange(H * W, dtype=np.uint16) * 1000).reshape(H, W)),
        ("rgba16", (np.arange(H * W * 4, dtype=np.uint16) * 300).reshape(H, W, 4)),
        ("uyvy", np.arange(H * W * 2, dtype=np.uint8).reshape(H, W, 2)),
        ("nv12", np.arange(H * 3 // 2 * W, dtype=np.uint8).reshape(H * 3 // 2, W)),
        ("bayer_rggb8", np.arange(H * W, dtype=np.uint8).reshape(H, W)),
    ],
)
def test_row_padding_is_skipped(encoding, pixels, pad):
    packed = image_fields_to_rgb(**make_fields(encoding, pixels))
    padded = image_fields_to_rgb(**make_fields(encoding, pixels, pad=pad))
    np.testing.assert_array_equal(padded, packed)


# ----------------------------------------------------------------------------- inputs and outputs


@pytest.mark.parametrize(
    "as_type",
    [
        bytes,
        bytearray,
        lambda b: array.array("B", b),
        memoryview,
        list,
        lambda b: np.frombuffer(b, np.uint8),
    ],
    ids=["bytes", "bytearray", "array.array", "memoryview", "list", "ndarray"],
)
def test_every_byte_container_rclpy_or_users_pass_is_accepted(rgb, as_type):
    fields = make_fields("rgb8", rgb)
    fields["data"] = as_type(fields["data"])
    np.testing.assert_array_equal(image_fields_to_rgb(**fields), rgb)


def test_result_is_a_writable_copy_that_does_not_alias_the_message_data(rgb):
    data = bytearray(rgb.tobytes())
    out = image_fields_to_rgb("rgb8", H, W, W * 3, data)
    out[:] = 0
    assert bytes(data) == rgb.tobytes()


def test_supported_encodings_lists_every_ros_name_handled():
    for encoding in ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "8UC1", "8UC3", "16UC1",
                     "yuv422", "yuv422_yuy2", "uyvy", "yuyv", "nv12", "nv21", "bayer_rggb8"]:
        assert encoding in SUPPORTED_ENCODINGS


# ------------------------------------------------------------------------------------------ errors


def test_unknown_encoding_is_rejected_with_the_supported_list(rgb):
    with pytest.raises(ImageConversionError, match=r"unsupported image encoding '32FC1'.*rgb8"):
        image_fields_to_rgb(**{**make_fields("rgb8", rgb), "encoding": "32FC1"})


def test_conversion_error_is_a_value_error():
    assert issubclass(ImageConversionError, ValueError)


@pytest.mark.parametrize(("height", "width"), [(0, W), (H, 0), (0, 0)])
def test_zero_size_is_rejected(height, width):
    with pytest.raises(ImageConversionError, match="zero size"):
        image_fields_to_rgb("rgb8", height, width, width * 3, b"")


def test_step_shorter_than_a_row_is_rejected(rgb):
    fields = make_fields("rgb8", rgb)
    fields["step"] = W * 3 - 1
    with pytest.raises(ImageConversionError, match="step 23 is smaller than one row"):
        image_fields_to_rgb(**fields)


@pytest.mark.parametrize("delta", [-1, 1, -W * 3])
def test_data_length_other_than_step_times_height_is_rejected(rgb, delta):
    fields = make_fields("rgb8", rgb)
    data = fields["data"]
    fields["data"] = data[:delta] if delta < 0 else data + b"\0" * delta
    with pytest.raises(ImageConversionError, match="data holds"):
        image_fields_to_rgb(**fields)


def test_image_above_the_pixel_limit_is_rejected_before_reading_data():
    with pytest.raises(ImageConversionError, match="exceeds the limit of 1000 pixels"):
        image_fields_to_rgb("rgb8", 100, 100, 300, b"", max_pixels=1000)


def test_pixel_limit_allows_an_image_of_exactly_that_size(rgb):
    out = image_fields_to_rgb(**make_fields("rgb8", rgb), max_pixels=H * W)
    assert out.shape == (H, W, 3)


def test_odd_width_is_rejected_for_packed_yuv():
    with pytest.raises(ImageConversionError, match="even width"):
        image_fields_to_rgb("yuyv", 2, 3, 6, bytes(12))


def test_odd_height_is_rejected_for_semi_planar_yuv():
    with pytest.raises(ImageConversionError, match="even width and height"):
        image_fields_to_rgb("nv12", 3, 4, 4, bytes(16))


def test_data_values_outside_byte_range_are_rejected():
    with pytest.raises(ImageConversionError, match=r"integers in \[0, 255\]"):
        image_fields_to_rgb("mono8", 1, 2, 2, [0, 256])


def test_non_uint8_array_data_is_rejected():
    with pytest.raises(ImageConversionError, match="uint8"):
        image_fields_to_rgb("mono8", 1, 2, 2, np.zeros(2, np.float32))


# ----------------------------------------------------------------------------------- to a message


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_rgb_to_image_fields_round_trips_through_image_fields_to_rgb(rgb, encoding):
    fields = rgb_to_image_fields(rgb, encoding)
    assert fields["encoding"] == encoding
    assert (fields["height"], fields["width"]) == (H, W)
    assert fields["step"] * H == len(fields["data"])
    np.testing.assert_array_equal(image_fields_to_rgb(**fields), rgb)


def test_rgb_to_mono8_stores_luminance(rgb):
    fields = rgb_to_image_fields(rgb, "mono8")
    assert fields["step"] == W
    grey = np.frombuffer(fields["data"], np.uint8).reshape(H, W)
    np.testing.assert_array_equal(grey, cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))


def test_rgb_to_image_fields_gives_array_of_bytes_for_fast_rclpy_assignment(rgb):
    data = rgb_to_image_fields(rgb)["data"]
    assert isinstance(data, array.array) and data.typecode == "B"


def test_rgb_to_image_fields_packs_a_non_contiguous_view(rgb):
    view = rgb[:, ::2]
    np.testing.assert_array_equal(image_fields_to_rgb(**rgb_to_image_fields(view)), view)


@pytest.mark.parametrize(
    ("array_", "message"),
    [
        (np.zeros((H, W), np.uint8), "HxWx3"),
        (np.zeros((H, W, 4), np.uint8), "HxWx3"),
        (np.zeros((H, W, 3), np.float32), "uint8"),
        (np.zeros((0, W, 3), np.uint8), "zero size"),
    ],
)
def test_rgb_to_image_fields_rejects_non_rgb_uint8_arrays(array_, message):
    with pytest.raises(ImageConversionError, match=message):
        rgb_to_image_fields(array_)


def test_rgb_to_image_fields_rejects_unpublishable_encoding(rgb):
    with pytest.raises(ImageConversionError, match="cannot publish encoding 'yuyv'"):
        rgb_to_image_fields(rgb, "yuyv")


# ------------------------------------------------------------------------------------- compressed


def smooth_image() -> np.ndarray:
    y, x = np.mgrid[0:48, 0:64]
    return np.stack([x * 4, y * 5, np.full_like(x, 90)], axis=2).astype(np.uint8)


def test_png_round_trip_is_lossless(rgb):
    message = rgb_to_compressed(rgb, "png")
    assert message["format"] == "rgb8; png compressed bgr8"
    np.testing.assert_array_equal(compressed_to_rgb(message["format"], message["data"]), rgb)


def test_jpeg_round_trip_keeps_the_picture():
    image = smooth_image()
    message = rgb_to_compressed(image, "jpeg", jpeg_quality=95)
    assert message["format"] == "rgb8; jpeg compressed bgr8"
    decoded = compressed_to_rgb(message["format"], message["data"])
    assert decoded.shape == image.shape
    assert np.abs(decoded.astype(int) - image).mean() < 3


def test_compressed_data_is_array_of_bytes(rgb):
    data = rgb_to_compressed(rgb, "png")["data"]
    assert isinstance(data, array.array) and data.typecode == "B"


def test_jpeg_from_other_ros_tools_in_bgr_decodes_to_correct_colours():
    red_bgr = np.zeros((16, 16, 3), np.uint8)
    red_bgr[..., 2] = 255  # how compressed_image_transport stores an rgb8 red frame
    ok, encoded = cv2.imencode(".jpg", red_bgr)
    assert ok
    decoded = compressed_to_rgb("rgb8; jpeg compressed bgr8", encoded.tobytes())
    assert decoded[..., 0].min() > 240 and decoded[..., 1:].max() < 15


def test_16bit_mono_png_is_stored_at_full_depth_and_scaled_on_decode():
    values = np.array([[0, 257, 32896, 65535]], np.uint16)
    message = rgb_to_compressed(values, "png")
    assert message["format"] == "mono16; png compressed mono16"
    stored = cv2.imdecode(np.frombuffer(message["data"], np.uint8), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(stored, values)
    decoded = compressed_to_rgb(message["format"], message["data"])
    np.testing.assert_array_equal(decoded[0, :, 1], [0, 1, 128, 255])


def test_16bit_colour_png_keeps_channel_order(rgb):
    message = rgb_to_compressed(rgb.astype(np.uint16) * 257, "png")
    assert message["format"] == "rgb16; png compressed bgr16"
    np.testing.assert_array_equal(compressed_to_rgb(message["format"], message["data"]), rgb)


def test_mono8_png_decodes_to_grey_rgb():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    message = rgb_to_compressed(grey, "png")
    decoded = compressed_to_rgb(message["format"], message["data"])
    np.testing.assert_array_equal(decoded, np.dstack([grey] * 3))


def test_rgba_png_drops_alpha(rgb):
    ok, encoded = cv2.imencode(".png", np.dstack([rgb[..., ::-1], np.full((H, W), 9, np.uint8)]))
    assert ok
    np.testing.assert_array_equal(compressed_to_rgb("png", encoded.tobytes()), rgb)


@pytest.mark.parametrize("format_", ["", "jpeg", "png", "bgr8; png compressed bgr8"])
def test_codec_is_detected_from_data_whatever_the_format_names(rgb, format_):
    data = rgb_to_compressed(rgb, "png")["data"]
    np.testing.assert_array_equal(compressed_to_rgb(format_, data), rgb)


def test_compressed_depth_format_is_rejected():
    with pytest.raises(ImageConversionError, match="compressedDepth"):
        compressed_to_rgb("16UC1; compressedDepth png", bytes(20))


def test_unknown_compression_format_is_rejected():
    with pytest.raises(ImageConversionError, match="unsupported CompressedImage format 'h264'"):
        compressed_to_rgb("h264", bytes(20))


def test_empty_compressed_data_is_rejected():
    with pytest.raises(ImageConversionError, match="no data"):
        compressed_to_rgb("jpeg", b"")


def test_undecodable_compressed_data_is_rejected():
    with pytest.raises(ImageConversionError, match="could not decode 64 bytes"):
        compressed_to_rgb("jpeg", bytes(range(64)))


def test_compressed_image_above_the_pixel_limit_is_rejected(rgb):
    data = rgb_to_compressed(rgb, "png")["data"]
    with pytest.raises(ImageConversionError, match="exceeds the limit"):
        compressed_to_rgb("png", data, max_pixels=H * W - 1)


def test_jpeg_of_16bit_samples_is_rejected(rgb):
    with pytest.raises(ImageConversionError, match="uint16 samples as jpeg"):
        rgb_to_compressed(rgb.astype(np.uint16), "jpeg")


def test_unknown_output_compression_is_rejected(rgb):
    with pytest.raises(ImageConversionError, match="choose 'jpeg' or 'png'"):
        rgb_to_compressed(rgb, "webp")


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"jpeg_quality": 101}, "jpeg_quality"), ({"png_level": 10}, "png_level")]
)
def test_out_of_range_codec_settings_are_rejected(rgb, kwargs, message):
    with pytest.raises(ImageConversionError, match=message):
        rgb_to_compressed(rgb, **kwargs)
