"""Pillow's uint8 resampling reproduced with torch ops (ego_ros.core.resample): equal, not merely close."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import random_image
from PIL import Image

from ego_ros.core import preprocess, resample

#: (width, height) pairs: up, down, mixed (width grows while height shrinks and the reverse), tiny, odd
RESIZES = [((64, 64), (256, 192)), ((80, 60), (64, 64)), ((640, 480), (97, 33)), ((30, 200), (60, 100)),
           ((200, 30), (100, 60)), ((7, 5), (64, 64)), ((300, 200), (364, 364)), ((1920, 1080), (512, 288))]


@pytest.mark.parametrize("filt", [Image.LANCZOS, Image.BICUBIC, Image.BILINEAR], ids=["lanczos", "bicubic", "bilinear"])
@pytest.mark.parametrize("src,dst", RESIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_resize_equals_pillows_resize(src, dst, filt):
    img = random_image(1, src)
    want = torch.from_numpy(np.array(img.resize(dst, filt))).permute(2, 0, 1).float()
    got = resample.resize(preprocess.upload(img, torch.device("cpu")), dst[1], dst[0], filt)
    assert torch.equal(got, want)


def test_a_filter_it_does_not_reproduce_is_refused_with_a_message():
    assert not resample.supported(Image.BOX) and resample.supported(Image.LANCZOS)
    with pytest.raises(ValueError, match="not reproduced"):
        resample.resize(torch.zeros(3, 4, 4, dtype=torch.uint8), 2, 2, Image.BOX)


def test_the_same_size_is_returned_unchanged():
    x = preprocess.upload(random_image(2, (33, 21)), torch.device("cpu"))
    assert torch.equal(resample.resize(x, 21, 33, Image.LANCZOS), x.float())
