"""Input images: accepted forms and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ego_ros.core.errors import InvalidImageError
from ego_ros.core.images import to_rgb


@pytest.mark.parametrize("arr", [
    np.zeros((10, 12, 3), np.uint8), np.zeros((10, 12), np.uint8), np.zeros((10, 12, 4), np.uint8),
    np.zeros((10, 12, 1), np.uint8), np.full((10, 12, 3), 0.5, np.float32), np.zeros((10, 12), np.uint16),
])
def test_arrays_become_rgb_images(arr):
    img = to_rgb(arr)
    assert img.mode == "RGB" and img.size == (12, 10)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16", "CMYK", "1"])
def test_pil_modes_become_rgb(mode):
    assert to_rgb(Image.new(mode, (8, 8))).mode == "RGB"


@pytest.mark.parametrize("bad,match", [
    (np.zeros((0, 5, 3), np.uint8), "empty"),
    (np.zeros((5, 5, 2), np.uint8), "shape"),
    (np.zeros((2, 2, 3), np.uint8), "at least"),
    (np.full((8, 8, 3), 2.0), "\\[0, 1\\]"),
    (np.full((8, 8, 3), np.nan), "NaN"),
    (np.zeros((8, 8, 3), np.int64), "dtype"),
    ("no/such/file.png", "not found"),
    (42, "expected a PIL image"),
])
def test_malformed_images_raise_invalid_image_error(bad, match):
    with pytest.raises(InvalidImageError, match=match):
        to_rgb(bad)


def test_undecodable_file_is_a_clear_error(tmp_path):
    p = tmp_path / "broken.png"
    p.write_bytes(b"\x89PNG not really")
    with pytest.raises(InvalidImageError, match="cannot decode"):
        to_rgb(p)
