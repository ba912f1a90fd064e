"""Shape geometry of the toy world, in object units: each shape fits in the unit circle, y points down.

Besides the silhouettes (`SHAPE_POLYGONS`, `SHAPE_AREAS`) it holds where the parts sit on them: the mark
glyph's anchors (`MARK_ANCHORS`, `MARK_HALF`) and the v2 identity glyph's 3x3 grid (`GLYPH_BOXES`,
`GLYPH_FILL`), with the cells of that grid that show (`visible_glyph_cells`). `render` draws them.
"""

from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np

from .attributes import MARK_POSITIONS, SHAPES

#: Half side of the mark glyph in object units (object radius = 1), and its floor in pixels: at 64x64 a
#: main object of 20-26 px gets a 3 px mark, small objects still a 2 px one.
MARK_HALF = 0.12
MARK_MIN_HALF_PX = 1.0


def _regular(n: int, radius: float = 1.0, phase: float = -math.pi / 2) -> np.ndarray:
    t = phase + np.arange(n) * 2 * math.pi / n
    return np.stack([radius * np.cos(t), radius * np.sin(t)], 1)


def _star(points: int = 5, inner: float = 0.5) -> np.ndarray:
    t = -math.pi / 2 + np.arange(2 * points) * math.pi / points
    r = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([r * np.cos(t), r * np.sin(t)], 1)


def _heart(n: int = 64) -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    p = np.stack([x, y], 1)
    p -= (p.max(0) + p.min(0)) / 2
    return p / np.sqrt((p**2).sum(1)).max()


def _semicircle(n: int = 33) -> np.ndarray:
    t = np.linspace(math.pi, 2 * math.pi, n)
    p = np.stack([np.cos(t), np.sin(t) + 0.42], 1)
    return p / np.sqrt((p**2).sum(1)).max()


def _cross(w: float = 0.34, a: float = 0.95) -> np.ndarray:
    return np.array(
        [
            [-w, -a],
            [w, -a],
            [w, -w],
            [a, -w],
            [a, w],
            [w, w],
            [w, a],
            [-w, a],
            [-w, w],
            [-a, w],
            [-a, -w],
            [-w, -w],
        ]
    )


SHAPE_POLYGONS: dict[str, np.ndarray] = {
    "circle": _regular(48),
    "square": np.array([[-0.72, -0.72], [0.72, -0.72], [0.72, 0.72], [-0.72, 0.72]]),
    "triangle": np.array([[0.0, -1.0], [0.866, 0.5], [-0.866, 0.5]]),
    "diamond": np.array([[0.0, -1.0], [0.64, 0.0], [0.0, 1.0], [-0.64, 0.0]]),
    "star": _star(),
    "cross": _cross(),
    "heart": _heart(),
    "semicircle": _semicircle(),
}
#: Centre of the mark glyph for each shape and MARK_POSITIONS entry (top, right, bottom, left), in object
#: units. Chosen so that the glyph lies inside the shape with a margin (test_toy_world checks this).
MARK_ANCHORS: dict[str, tuple[tuple[float, float], ...]] = {
    "circle": ((0, -0.6), (0.6, 0), (0, 0.6), (-0.6, 0)),
    "square": ((0, -0.46), (0.46, 0), (0, 0.46), (-0.46, 0)),
    "triangle": ((0, -0.45), (0.34, 0.2), (0, 0.27), (-0.34, 0.2)),
    "diamond": ((0, -0.48), (0.31, 0), (0, 0.48), (-0.31, 0)),
    "star": ((0, -0.41), (0.26, 0), (0, 0.35), (-0.26, 0)),
    "cross": ((0, -0.6), (0.6, 0), (0, 0.6), (-0.6, 0)),
    "heart": ((0, -0.45), (0.33, 0), (0, 0.3), (-0.33, 0)),
    "semicircle": ((0, -0.29), (0.48, 0), (0, 0.18), (-0.48, 0)),
}
#: v2 identity glyph: (centre u, centre v, half side) of the 3x3 grid in object units, per shape, chosen
#: so that the grid lies inside the shape (test_toy_world checks the lit share); each lit cell is a
#: square of GLYPH_FILL of the cell side.
GLYPH_BOXES: dict[str, tuple[float, float, float]] = {
    "circle": (0.0, 0.0, 0.5),
    "square": (0.0, 0.0, 0.52),
    "triangle": (0.0, 0.08, 0.34),
    "diamond": (0.0, 0.0, 0.36),
    "star": (0.0, 0.02, 0.34),
    "cross": (0.0, 0.0, 0.34),
    "heart": (0.0, -0.02, 0.4),
    "semicircle": (0.0, -0.04, 0.36),
}
GLYPH_FILL = 0.8
assert set(SHAPE_POLYGONS) == set(SHAPES) == set(MARK_ANCHORS) == set(GLYPH_BOXES)
assert all(len(v) == len(MARK_POSITIONS) for v in MARK_ANCHORS.values())


def _polygon_area(p: np.ndarray) -> float:
    return 0.5 * abs(float(np.dot(p[:, 0], np.roll(p[:, 1], 1)) - np.dot(p[:, 1], np.roll(p[:, 0], 1))))


#: Area of each shape in object units squared (the unit circle has ~pi).
SHAPE_AREAS: dict[str, float] = {k: _polygon_area(v) for k, v in SHAPE_POLYGONS.items()}


@lru_cache(maxsize=64)
def visible_glyph_cells(shape: str, mark_position: int) -> int:
    """Bit mask of the glyph cells of `shape` that show when the mark sits at `mark_position` (index into
    MARK_POSITIONS): at least 70 % of the cell's lit square inside the silhouette and off the mark (the
    mark is painted over the glyph). Look-alikes must differ in these cells (`attributes.lookalikes`)."""
    cu, cv, half = GLYPH_BOXES[shape]
    cell = 2 * half / 3
    margin = (1 - GLYPH_FILL) / 2
    ax, ay = MARK_ANCHORS[shape][mark_position]
    contour = SHAPE_POLYGONS[shape].astype(np.float32).reshape(-1, 1, 2)
    t = (np.arange(5) + 0.5) / 5
    out = 0
    for row in range(3):
        for col in range(3):
            us = cu - half + cell * (col + margin + t * GLYPH_FILL)
            vs = cv - half + cell * (row + margin + t * GLYPH_FILL)
            ok = [
                cv2.pointPolygonTest(contour, (float(u), float(v)), False) > 0
                and (abs(u - ax) > MARK_HALF or abs(v - ay) > MARK_HALF)
                for u in us
                for v in vs
            ]
            if np.mean(ok) >= 0.7:
                out |= 1 << (3 * row + col)
    return out
