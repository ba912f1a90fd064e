"""Engine-level tiling of query frames for fixed-size single-grid families (LLaVA, the toy model): opt-in.

A fixed-size tower sees a whole camera frame at its input size (the toy model: 64 px), so a small object
keeps a few pixels. With `EngineConfig.crop_tiles` N > 1 a query frame is encoded as its thumbnail (the
whole frame, as without tiling) followed by up to N crops of the frame at their own resolution, cut in
the arrangement GotOcr2's crop_to_patches would choose for the tower's input size
(`preprocess.tile_arrangement`). Each crop is its own grid in the frame's `Layout` (kind "tile", its
box in frame pixels), the thumbnail a grid of kind "thumbnail"; the family's framing places the block
(LLaVA has no image framing tokens, so all grids follow one another as separate images would).

This is not how any of these models was trained: it is never native-exact, and it is off by default.
Reference views are not tiled (memories stay as small as without tiling).
"""

from __future__ import annotations

import torch
from PIL import Image

from . import preprocess
from .backends.base import Backend, VisualTokens
from .layout import Grid, Layout


def check_crop_tiles(backend: Backend, crop_tiles: int) -> None:
    """Refuse engine-level tiling where it does not apply: families that tile natively (use max_tiles)
    and M-RoPE families (their positions advance once per image block)."""
    if isinstance(crop_tiles, bool) or not isinstance(crop_tiles, int) or crop_tiles < 1:
        raise ValueError(f"crop_tiles must be a whole number >= 1, got {crop_tiles!r}")
    if crop_tiles == 1:
        return
    if backend.tiles_images:
        raise ValueError(f"the {backend.family} family tiles images itself: set max_tiles, not crop_tiles")
    if backend.mrope:
        raise ValueError(f"crop_tiles does not apply to the {backend.family} family (M-RoPE positions)")


def _input_size(backend: Backend) -> tuple[int, int]:
    """(height, width) the tower takes (the crop size of a centre-cropping processor, else its size)."""
    proc = backend.image_processor
    for attr in ("crop_size", "size"):
        size = getattr(proc, attr, None)
        h = preprocess._field(size, "height")
        w = preprocess._field(size, "width")
        if h and w:
            return int(h), int(w)
    edge = preprocess._field(getattr(proc, "size", None), "shortest_edge")
    if edge:
        return int(edge), int(edge)
    raise ValueError(f"cannot tell the input size of {type(proc).__name__} for crop_tiles")


class _TileSize:
    """The stand-in processor `preprocess.tile_arrangement` reads (a tile is the tower's input size)."""

    def __init__(self, height: int, width: int) -> None:
        self.size = {"height": height, "width": width}
        self.min_patches = 1


def crop_boxes(size: tuple[int, int], tile_hw: tuple[int, int], max_tiles: int) -> list[tuple[int, int, int, int]]:
    """Pixel boxes (x0, y0, x1, y1) of the crops of an image of `size` (width, height), row-major: an
    even rows x cols split in the arrangement GotOcr2 would choose; [] for one tile."""
    w, h = size
    rows, cols = preprocess.tile_arrangement(_TileSize(*tile_hw), h, w, max_tiles)
    if rows * cols == 1:
        return []
    xs = [round(c * w / cols) for c in range(cols + 1)]
    ys = [round(r * h / rows) for r in range(rows + 1)]
    return [(xs[c], ys[r], xs[c + 1], ys[r + 1]) for r in range(rows) for c in range(cols)]


def encode_cropped(backend: Backend, images: list[Image.Image], max_tiles: int) -> list[VisualTokens]:
    """Each image's visual tokens as its thumbnail grid followed by one grid per crop (see the module)."""
    if max_tiles <= 1:
        return backend.encode_images(images)
    tile_hw = _input_size(backend)
    boxes = [crop_boxes(img.size, tile_hw, max_tiles) for img in images]
    batch: list[Image.Image] = []
    for img, bs in zip(images, boxes):
        batch.append(img)
        batch += [img.crop(b) for b in bs]
    vts = backend.encode_images(batch)
    out, at = [], 0
    for img, bs in zip(images, boxes):
        thumb, crops = vts[at], vts[at + 1:at + 1 + len(bs)]
        at += 1 + len(bs)
        if not bs:
            out.append(thumb)
            continue
        grids = [Grid(0, thumb.rows, thumb.cols, thumb.box, "thumbnail")]
        rows = len({b[1] for b in bs})
        cols = len(bs) // rows
        for i, (b, vt) in enumerate(zip(bs, crops)):
            if not vt.layout.is_single:
                raise ValueError("crop_tiles needs a single-grid family")
            x0, y0, x1, y1 = vt.box
            grids.append(Grid(grids[-1].offset + grids[-1].count, vt.rows, vt.cols,
                              (b[0] + x0, b[1] + y0, b[0] + x1, b[1] + y1), "tile", (i // cols, i % cols)))
        embeds = torch.cat([thumb.embeds] + [vt.embeds for vt in crops])
        out.append(VisualTokens.tiled(embeds, Layout(tuple(grids)), img.size))
    return out
