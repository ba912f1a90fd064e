"""Layer calibration without masks: rank layers by how spatially coherent their keyword attention is.

The mask-based calibration (paper 3.4, `calibration.calibrate`) asks which layers' keyword attention
lands on the described object. Without masks the object's tokens are unknown, but one property of them
is not: an object covers a contiguous patch of the token grid. A layer whose keyword attention follows
the object gives neighbouring tokens similar importance; a layer that spreads it over isolated tokens
(attention sinks, scattered background tokens) does not. Per layer the importance map of each unlabeled
image is scored by Moran's I (the spatial autocorrelation of a map over the grid's 4-neighbourhood:
1 for one smooth blob, about 0 for noise) and layers are ranked by the mean.

The rejected alternative is concentration (low entropy, high top-k mass): on the toy world it prefers
the layers whose attention is most peaked, not the ones on the object (numbers in docs/calibration.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .backends.base import Backend
from .calibration import Calibration
from .errors import CalibrationError
from .images import to_rgb
from .introduce import describe_with_attention
from .sequence import Runner


def morans_i(maps: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Moran's I of each map in `maps` (..., rows * cols), row-major over a rows x cols grid, with
    4-neighbour weights. A constant map has no spatial structure: 0.

    Hand-written: no dependency of the project computes it (PySAL does, for a geography stack), and on
    a regular grid it is four shifted products."""
    grid = maps.reshape(*maps.shape[:-1], rows, cols).double()
    z = grid - grid.mean(dim=(-2, -1), keepdim=True)
    # each neighbour pair counted in both directions, as the weight matrix is symmetric
    across = (z[..., :, 1:] * z[..., :, :-1]).sum(dim=(-2, -1))
    down = (z[..., 1:, :] * z[..., :-1, :]).sum(dim=(-2, -1))
    cross = 2 * (across + down)
    weights = 2 * (rows * (cols - 1) + cols * (rows - 1))
    var = (z * z).sum(dim=(-2, -1))
    if weights == 0:
        return torch.zeros(var.shape, dtype=torch.float64)
    out = (rows * cols / weights) * cross / var.clamp_min(1e-300)
    return torch.where(var > 0, out, torch.zeros_like(out))


def layer_coherence(backend: Backend, runner: Runner, image: Image.Image, max_new_tokens: int = 16) -> np.ndarray:
    """Per layer, the spatial coherence (Moran's I) of the keyword attention over one image's tokens."""
    vt = backend.encode_images([image])[0]
    if vt.count < 2:
        raise CalibrationError("self-calibration needs at least two visual tokens per image")
    if vt.count != vt.rows * vt.cols:
        # a tiled image's tokens are several grids; neighbours are only defined on one grid
        raise CalibrationError(f"self-calibration needs one token grid per image; this image has {vt.count} "
                               f"tokens for a {vt.rows}x{vt.cols} grid (tiled): calibrate with masks")
    ka, _ = describe_with_attention(backend, runner, vt, None, max_new_tokens)
    maps = torch.stack([ka.importance([layer]).float().cpu() for layer in range(backend.num_layers)])
    return morans_i(maps, vt.rows, vt.cols).numpy()


def self_calibrate(backend: Backend, images: Iterable[Image.Image | np.ndarray | str | Path], num_layers: int = 5,
                   max_new_tokens: int = 16, progress: Callable[[int], None] | None = None) -> Calibration:
    """Rank layers over unlabeled images (each showing one main object) and keep the `num_layers` whose
    keyword attention is most spatially coherent. Deterministic: greedy description, no sampling."""
    runner = Runner(backend)
    total = np.zeros(backend.num_layers)
    count = 0
    with torch.inference_mode():
        for i, image in enumerate(images):
            total += layer_coherence(backend, runner, to_rgb(image, what=f"calibration image {i}"), max_new_tokens)
            count += 1
            if progress:
                progress(count)
    if count == 0:
        raise CalibrationError("no calibration images given")
    scores = total / count
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    keep = sorted(order[:max(1, min(num_layers, len(scores)))])
    return Calibration(layers=keep, layer_scores=[float(s) for s in scores], top_k=None, samples=count,
                       fingerprint=backend.fingerprint(), model=backend.name, method="self")


def folder_images(folder: str | Path) -> list[Path]:
    """The image files of `folder/images/` (or of `folder` itself when it has no images/ sub-folder)."""
    folder = Path(folder)
    source = folder / "images" if (folder / "images").is_dir() else folder
    if not source.is_dir():
        raise CalibrationError(f"{folder}: not a folder")
    suffixes = {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}
    images = sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
    if not images:
        raise CalibrationError(f"{source}: no images")
    return images
