"""Fault injection, images: small files that declare gigapixels are refused from the header, fast.

The files are real 16x16 PNG/JPEG files whose header is rewritten to declare a huge size (the PNG's
IHDR checksum fixed up), so they are a few hundred bytes and any decoder that trusts them would
allocate gigabytes.
"""

from __future__ import annotations

import io
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from ego_ros.core.errors import ImageTooLargeError, InvalidImageError, RequestTooLargeError
from ego_ros.core.images import MAX_PIXELS, declared_size, to_rgb
from ego_ros.ros.image_conversion import ImageConversionError, compressed_to_rgb

#: generous bound for "refused without decoding" (decoding 20000x20000 took 8 s and 2.3 GB)
FAST_S = 2.0


def small_image() -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8))


def png_declaring(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    small_image().save(buf, "PNG")
    data = bytearray(buf.getvalue())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def jpeg_declaring(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    small_image().save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")  # baseline SOF0: marker, length(2), precision(1), height(2), width(2)
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


CRAFTED = {
    "png-20000": lambda: png_declaring(20000, 20000),
    "png-40000": lambda: png_declaring(40000, 40000),
    "jpeg-20000": lambda: jpeg_declaring(20000, 20000),
    "jpeg-60000": lambda: jpeg_declaring(60000, 60000),
}


def test_crafted_files_are_small_and_declare_the_size():
    assert len(png_declaring(20000, 20000)) < 2000
    with Image.open(io.BytesIO(jpeg_declaring(9000, 8000))) as im:
        assert im.size == (9000, 8000)


@pytest.mark.parametrize("kind", CRAFTED)
def test_image_file_declaring_too_many_pixels_is_refused_before_decoding(tmp_path, kind):
    path = tmp_path / f"huge.{kind.split('-')[0]}"
    path.write_bytes(CRAFTED[kind]())
    t0 = time.monotonic()
    with pytest.raises(ImageTooLargeError, match="declares") as err:
        to_rgb(path)
    assert time.monotonic() - t0 < FAST_S
    assert isinstance(err.value, InvalidImageError) and isinstance(err.value, RequestTooLargeError)


@pytest.mark.parametrize("kind", CRAFTED)
def test_compressed_message_declaring_too_many_pixels_is_refused_before_decoding(kind):
    t0 = time.monotonic()
    with pytest.raises(ImageConversionError, match="limit"):
        compressed_to_rgb(kind.split("-")[0], CRAFTED[kind]())
    assert time.monotonic() - t0 < FAST_S


def test_to_rgb_takes_a_pixel_limit(tmp_path):
    path = tmp_path / "a.png"
    small_image().save(path)
    assert to_rgb(path, max_pixels=256).size == (16, 16)
    with pytest.raises(ImageTooLargeError, match="16x16 = 256 pixels, more than the limit of 255"):
        to_rgb(path, max_pixels=255)
    with pytest.raises(ImageTooLargeError):
        to_rgb(np.zeros((16, 16, 3), np.uint8), max_pixels=100)


def test_declared_size_reads_the_header_only():
    assert declared_size(png_declaring(300, 200), max_pixels=MAX_PIXELS) == (300, 200)
    assert declared_size(b"not an image") is None
