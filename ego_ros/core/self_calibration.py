"""Layer calibration without masks: rank layers by how spatially coherent their keyword attention is.

The mask-based calibration (paper 3.4, `calibration.calibrate`) asks which layers' keyword attention
lands on the described object. Without masks the object's tokens are unknown, but one property of them
is not: an object covers a contiguous patch of the token grid. A layer whose keyword attention follows
the object gives neighbouring tokens similar importance; a layer that spreads it over isolated tokens
(attention sinks, scattered background tokens) does not. Per layer the importance map of each unlabeled
image is scored by Moran's I (the spatial autocorrelation of a map over the tokens' 4-neighbourhood:
near 1 for one smooth blob, about 0 for noise) and layers are ranked by the mean.

Rejected alternatives, measured on the toy world (docs/calibration.md): concentration (low entropy,
high top-k mass) prefers the layers whose attention is most peaked, not the ones on the object; and
pseudo-masks from the consensus of all layers' attention favour the layers that agree with each other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .backends.base import Backend
from .calibration import Calibration, best_layers
from .errors import CalibrationError
from .images import to_rgb
from .introduce import describe_with_attention
from .sequence import Runner


def neighbour_pairs(boxes: np.ndarray) -> np.ndarray:
    """(E, 2) index pairs of tokens that are grid neighbours, both directions: boxes of the same size
    side by side or one above the other, sharing a whole edge.

    Read from the tokens' boxes rather than a rows x cols grid so that tiled images work unchanged:
    tokens of adjacent tiles that meet at a tile border are neighbours, and a thumbnail's larger tokens
    are neighbours of each other only (a box of another size is never a neighbour)."""
    # millipixels: neighbours within a grid share an edge value exactly (linspace), tiles that meet
    # share it up to rounding
    keys = np.round(np.asarray(boxes, dtype=np.float64) * 1000).astype(np.int64).tolist()
    by_left: dict[tuple[int, int, int], list[int]] = {}
    by_top: dict[tuple[int, int, int], list[int]] = {}
    for i, (x0, y0, x1, y1) in enumerate(keys):
        by_left.setdefault((x0, y0, y1), []).append(i)
        by_top.setdefault((y0, x0, x1), []).append(i)
    pairs = []
    for i, (x0, y0, x1, y1) in enumerate(keys):
        right = [j for j in by_left.get((x1, y0, y1), []) if abs((keys[j][2] - keys[j][0]) - (x1 - x0)) <= 2]
        below = [j for j in by_top.get((y1, x0, x1), []) if abs((keys[j][3] - keys[j][1]) - (y1 - y0)) <= 2]
        for j in right + below:
            pairs += [(i, j), (j, i)]
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)


def morans_i(maps: torch.Tensor, pairs: np.ndarray) -> torch.Tensor:
    """Moran's I of each map in `maps` (..., N) with unit weights on the neighbour `pairs` (E, 2), both
    directions listed. A constant map, or one without neighbours, has no spatial structure: 0.

    Hand-written: no dependency of the project computes it (PySAL does, for a geography stack), and it
    is one gather and a product."""
    z = maps.double() - maps.double().mean(dim=-1, keepdim=True)
    var = (z * z).sum(dim=-1)
    if len(pairs) == 0:
        return torch.zeros(var.shape, dtype=torch.float64)
    p = torch.as_tensor(pairs)
    cross = (z[..., p[:, 0]] * z[..., p[:, 1]]).sum(dim=-1)
    out = (maps.shape[-1] / len(pairs)) * cross / var.clamp_min(1e-300)
    return torch.where(var > 0, out, torch.zeros_like(out))


def layer_coherence(backend: Backend, runner: Runner, image: Image.Image, max_new_tokens: int = 16) -> np.ndarray:
    """Per layer, the spatial coherence (Moran's I) of the keyword attention over one image's tokens."""
    vt = backend.encode_images([image])[0]
    pairs = neighbour_pairs(vt.token_boxes())
    if len(pairs) == 0:
        raise CalibrationError("self-calibration needs neighbouring visual tokens; this image has "
                               f"{vt.count} token(s) and no two side by side")
    ka, _ = describe_with_attention(backend, runner, vt, None, max_new_tokens)
    maps = torch.stack([ka.importance([layer]).float().cpu() for layer in range(backend.num_layers)])
    return morans_i(maps, pairs).numpy()


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
    keep = best_layers(scores, num_layers)
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
