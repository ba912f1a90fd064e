"""Pillow's resampling of uint8 images reproduced bit for bit with torch ops, on any device.

Why hand-written: torch's `interpolate` has no Lanczos filter (Idefics3 and SmolVLM resample with it),
and its bicubic/bilinear kernels match Pillow only to a grey level or two. Pillow's algorithm is short:
per axis, each output pixel is a weighted sum of the input pixels under the filter's support (widened
by the scale when shrinking), with weights normalised, converted to 22-bit fixed point, summed with a
rounding offset and clipped to 0..255; the two axes run one after the other, each rounding to uint8, in
the order the installed Pillow picks for the geometry (`vertical_first`, asked of Pillow once).
Done here with the same int32 arithmetic, so the result
equals Pillow's (Pillow 13; `test/test_resample.py` checks equality on many sizes).
"""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np
import torch
from PIL import Image

#: Pillow's fixed-point precision for 8-bit images (32 - 8 - 2 bits)
PRECISION_BITS = 22


def _sinc(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x == 0, torch.ones_like(x), torch.sin(math.pi * x) / (math.pi * x))


def _lanczos(x: torch.Tensor) -> torch.Tensor:
    return torch.where((x >= -3.0) & (x < 3.0), _sinc(x) * _sinc(x / 3.0), torch.zeros_like(x))


def _bilinear(x: torch.Tensor) -> torch.Tensor:
    x = x.abs()
    return torch.where(x < 1.0, 1.0 - x, torch.zeros_like(x))


def _bicubic(x: torch.Tensor) -> torch.Tensor:
    a = -0.5
    x = x.abs()
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return torch.where(x < 1.0, near, torch.where(x < 2.0, far, torch.zeros_like(x)))


#: PIL filter number -> (filter function, support)
FILTERS = {1: (_lanczos, 3.0), 2: (_bilinear, 1.0), 3: (_bicubic, 2.0)}


def supported(resample: object) -> bool:
    """True when `resample` (a PIL filter number or enum) is one this module reproduces."""
    return int(getattr(resample, "value", resample)) in FILTERS


@functools.lru_cache(maxsize=256)
def vertical_first(width: int, height: int, out_width: int, out_height: int, resample: int,
                   box: tuple[float, float, float, float] | None = None) -> bool:
    """True when Pillow resizing a `width` x `height` image to `out_width` x `out_height` with filter
    `resample` (a PIL filter number) runs its vertical pass before the horizontal one.

    Why asked of Pillow itself: each pass rounds to uint8, so the order changes the result (up to 21 grey
    levels, bicubic 480x640 -> 448x448), and the installed Pillow (13.0) does not follow its published C
    source (always horizontal first). Measured on 1,493 random geometries (8-400 px, three filters):
    horizontal first whenever the height grows, vertical first when the width grows while the height
    shrinks, but when both shrink either order occurs (258 vs 105), and no rule we tried separates those
    (scale ratio, intermediate size, pass cost with kernel sizes and row bounds, edge lengths: at best 88 %
    right); no library exposes the order. So a single-channel noise probe of the
    same size is resized directly and through both one-axis-at-a-time chains, and the chain that equals
    the direct result names the order. Cached per geometry: a camera stream pays it once (measured in
    bench/resize_order.py). The order is the same for single-channel and RGB images (checked in
    test/test_resample.py)."""
    rng = np.random.default_rng(width * 100_003 + height)
    probe = Image.fromarray(rng.integers(0, 256, (height, width), dtype=np.uint8))
    if box is None:
        box = (0.0, 0.0, float(width), float(height))
    x0, y0, x1, y1 = box
    direct = np.asarray(probe.resize((out_width, out_height), resample, box))
    # the first pass of each chain resamples one axis of the box, the second the other over the whole image
    rows_first = probe.resize((out_width, height), resample, (x0, 0, x1, height))
    if np.array_equal(direct, np.asarray(rows_first.resize((out_width, out_height), resample,
                                                           (0, y0, out_width, y1)))):
        return False
    cols_first = probe.resize((width, out_height), resample, (0, y0, width, y1))
    if np.array_equal(direct, np.asarray(cols_first.resize((out_width, out_height), resample,
                                                           (x0, 0, x1, out_height)))):
        return True
    warnings.warn(f"Pillow's {width}x{height} -> {out_width}x{out_height} resize (filter {resample}) matches "
                  "neither pass order; using horizontal first", RuntimeWarning, stacklevel=2)
    return False


def _coefficients(in_size: int, out_size: int, resample: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(out, K) input indices and (out, K) fixed-point weights of one axis, as Pillow computes them."""
    fn, support = FILTERS[resample]
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = support * filterscale
    ksize = int(math.ceil(support)) * 2 + 1
    centre = (torch.arange(out_size, dtype=torch.float64) + 0.5) * scale
    # the same float64 operations in the same order as Pillow's C (a cast to int truncates toward zero)
    xmin = torch.trunc(centre - support + 0.5).clamp(min=0).long()
    xmax = torch.trunc(centre + support + 0.5).clamp(max=in_size).long() - xmin
    taps = torch.arange(ksize)
    idx = xmin[:, None] + taps[None, :]
    valid = taps[None, :] < xmax[:, None]
    w = fn((idx.double() - centre[:, None] + 0.5) * (1.0 / filterscale)) * valid
    total = w.cumsum(1)[:, -1:]  # summed tap after tap, as Pillow sums
    w = torch.where(total != 0, w / total, w)
    # Pillow rounds each normalised weight half away from zero into fixed point
    fixed = torch.trunc(w * (1 << PRECISION_BITS) + torch.where(w < 0, -0.5, 0.5))
    return idx.clamp(max=in_size - 1), fixed * valid


def _rows_pass(x: torch.Tensor, size: int, resample: int) -> torch.Tensor:
    """(C, H, W) int32 pixel values resized along H to `size`, rounded as Pillow's uint8 pass rounds."""
    idx, w = _coefficients(x.shape[1], size, resample)
    idx, w = idx.to(x.device), w.to(device=x.device, dtype=torch.int32)
    # Pillow accumulates in int32 too: the weights sum to 2^22, so 255 * 2^22 plus the negative lobes fits
    acc = torch.full((x.shape[0], size, x.shape[2]), 1 << (PRECISION_BITS - 1), dtype=torch.int32, device=x.device)
    for k in range(idx.shape[1]):  # one multiply-add of whole rows per filter tap
        acc += x.index_select(1, idx[:, k]) * w[:, k, None]
    return (acc >> PRECISION_BITS).clamp_(0, 255)


def resize(image: torch.Tensor, height: int, width: int, resample: object) -> torch.Tensor:
    """(3, height, width) float32 values 0..255 of a (3, H, W) uint8 (or integer-valued) image resized as
    Pillow's `Image.resize((width, height), resample)` resizes it."""
    filt = int(getattr(resample, "value", resample))
    if filt not in FILTERS:
        raise ValueError(f"resampling filter {resample!r} is not reproduced (expected one of {sorted(FILTERS)})")
    x = image.to(torch.int32)
    _, h0, w0 = x.shape
    order = [(-1, width), (-2, height)]
    if width != w0 and height != h0 and vertical_first(w0, h0, width, height, filt):
        order = order[::-1]
    for dim, size in order:
        if x.shape[dim] == size:
            continue
        if dim == -1:  # columns as rows: whole-row copies are far faster than a gather along the last axis
            x = _rows_pass(x.transpose(1, 2).contiguous(), size, filt).transpose(1, 2).contiguous()
        else:
            x = _rows_pass(x, size, filt)
    return x.float()
