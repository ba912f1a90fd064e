"""The layout of an image's visual tokens: one or more token grids, each over a region of the image.

Most towers give one row-major grid over one box of the image (LLaVA's crop, Qwen's resized image,
InternVL's single tile). Tiling processors give several: InternVL and Idefics3 cut the image into tiles
(each its own grid) and add a thumbnail of the whole image; LLaVA-OneVision packs a base grid and a
high-resolution grid. The image's token list is the concatenation of its grids' tokens, grid after grid
in the order the model receives them, each grid row-major; `Grid.offset` is where a grid starts in it.

A single-grid image is the one-grid case (`Layout.single`), and everything here reduces to today's
row-major arithmetic for it. Structural rows (e.g. LLaVA-NeXT's learned newline embedding after each row
of a grid) are not tokens of the list: the backend's framing hook (`Backend.frame_visual`) adds them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: What a grid is to its image. "single": the only grid; "tile": a crop of a tiled image;
#: "thumbnail": the whole image at low resolution beside tiles; "base"/"highres": LLaVA-OneVision's grids.
GRID_KINDS = ("single", "tile", "thumbnail", "base", "highres")


@dataclass(frozen=True)
class Grid:
    """One row-major token grid: tokens `offset .. offset + rows * cols` of the image's token list, evenly
    covering `box` (x0, y0, x1, y1) in input-image pixels. `tile` is (row, col) in the tile arrangement
    for kind "tile" ((0, 0) otherwise)."""

    offset: int
    rows: int
    cols: int
    box: tuple[float, float, float, float]
    kind: str = "single"
    tile: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        if self.kind not in GRID_KINDS:
            raise ValueError(f"unknown grid kind {self.kind!r}; expected one of {GRID_KINDS}")
        if self.rows < 1 or self.cols < 1 or self.offset < 0:
            raise ValueError(f"bad grid {self.rows}x{self.cols} at offset {self.offset}")

    @property
    def count(self) -> int:
        return self.rows * self.cols

    def to_json(self) -> dict[str, Any]:
        return {"offset": self.offset, "rows": self.rows, "cols": self.cols, "box": list(self.box),
                "kind": self.kind, "tile": list(self.tile)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Grid:
        return cls(int(d["offset"]), int(d["rows"]), int(d["cols"]), tuple(float(v) for v in d["box"]),
                   str(d.get("kind", "single")), tuple(int(v) for v in d.get("tile", (0, 0))))


@dataclass(frozen=True)
class Layout:
    """The grids of one image, in token-list order (contiguous, starting at 0)."""

    grids: tuple[Grid, ...]

    def __post_init__(self) -> None:
        if not self.grids:
            raise ValueError("a layout needs at least one grid")
        at = 0
        for g in self.grids:
            if g.offset != at:
                raise ValueError(f"grid at offset {g.offset} does not follow the previous grids (expected {at})")
            at += g.count

    @classmethod
    def single(cls, rows: int, cols: int, box: tuple[float, float, float, float]) -> Layout:
        return cls((Grid(0, rows, cols, tuple(float(v) for v in box)),))

    @property
    def count(self) -> int:
        return sum(g.count for g in self.grids)

    @property
    def is_single(self) -> bool:
        return len(self.grids) == 1

    def tiles(self) -> list[Grid]:
        return [g for g in self.grids if g.kind == "tile"]

    def positions(self, indices: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(grid number, row, col) of each token (all, or those at `indices` of the token list)."""
        idx = np.arange(self.count) if indices is None else np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.count):
            raise ValueError(f"token index out of range for a layout of {self.count} tokens")
        starts = np.array([g.offset for g in self.grids])
        which = np.searchsorted(starts, idx, side="right") - 1
        cols = np.array([g.cols for g in self.grids])[which]
        local = idx - starts[which]
        return which, local // cols, local % cols

    def token_boxes(self, indices: np.ndarray | None = None) -> np.ndarray:
        """(N, 4) region (x0, y0, x1, y1) of each token (all, or those at `indices`) in image pixels."""
        which, r, c = self.positions(indices)
        out = np.empty((which.shape[0], 4))
        for k, g in enumerate(self.grids):
            sel = which == k
            x0, y0, x1, y1 = g.box
            xs = np.linspace(x0, x1, g.cols + 1)
            ys = np.linspace(y0, y1, g.rows + 1)
            out[sel] = np.stack([xs[c[sel]], ys[r[sel]], xs[c[sel] + 1], ys[r[sel] + 1]], axis=1)
        return out

    def map_grid(self) -> tuple[np.ndarray, tuple[float, float, float, float]]:
        """The grid a heatmap of this image lives on: (R, C) token indices and the box they cover.

        One grid: that grid. Tiles: the tiles assembled by their tile (row, col) into one full-resolution
        grid (the thumbnail, a coarser copy of the same pixels, is left out). Otherwise (LLaVA-OneVision's
        base + high-res): the grid with the most tokens, the finest view of the whole image."""
        tiles = self.tiles()
        if not tiles:
            g = max(self.grids, key=lambda g: g.count)
            return np.arange(g.offset, g.offset + g.count).reshape(g.rows, g.cols), g.box
        n_r = max(t.tile[0] for t in tiles) + 1
        n_c = max(t.tile[1] for t in tiles) + 1
        rows, cols = tiles[0].rows, tiles[0].cols
        if any((t.rows, t.cols) != (rows, cols) for t in tiles) or len(tiles) != n_r * n_c:
            raise ValueError("tiles of unequal grids or a ragged tile arrangement cannot be assembled")
        out = np.empty((n_r * rows, n_c * cols), dtype=np.int64)
        for t in tiles:
            r0, c0 = t.tile[0] * rows, t.tile[1] * cols
            out[r0:r0 + rows, c0:c0 + cols] = np.arange(t.offset, t.offset + t.count).reshape(rows, cols)
        boxes = np.array([t.box for t in tiles])
        box = (float(boxes[:, 0].min()), float(boxes[:, 1].min()), float(boxes[:, 2].max()), float(boxes[:, 3].max()))
        return out, box

    def runs(self, indices: np.ndarray) -> list[tuple[int, int, int]]:
        """Split ascending token `indices` by grid: (grid number, start, stop) positions in `indices` of
        each grid that keeps at least one token, in order (what a per-tile framing frames)."""
        which, _, _ = self.positions(indices)
        out = []
        start = 0
        for i in range(1, len(which) + 1):
            if i == len(which) or which[i] != which[start]:
                out.append((int(which[start]), start, i))
                start = i
        return out

    def to_json(self) -> list[dict[str, Any]]:
        return [g.to_json() for g in self.grids]

    @classmethod
    def from_json(cls, grids: list[dict[str, Any]]) -> Layout:
        return cls(tuple(Grid.from_json(g) for g in grids))
