"""Debug images drawn with OpenCV: recognitions on a camera frame, and a concept's selected patches.

A frame overlay lists the scored concepts with their probabilities (present ones highlighted) and draws
each located concept's box, peak point and label (with its depth when it has a 3-D point). After an
introduction, the reference view is shown dimmed except for the visual tokens the memory kept, which is
what the model will look for.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from ..core.engine import Recognition
from .depth import Position

_PRESENT = (40, 220, 40)  # RGB
_ABSENT = (200, 200, 200)
_SELECTED = (255, 200, 0)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _text_scale(image: np.ndarray) -> tuple[float, int]:
    """Font scale and thickness readable on anything from a thumbnail to a 4K frame."""
    scale = max(0.35, min(image.shape[0], image.shape[1]) / 600.0)
    return scale, max(1, int(round(scale * 1.5)))


def _panel(image: np.ndarray, lines: Sequence[tuple[str, tuple[int, int, int]]]) -> None:
    """Draw text lines on a dark translucent panel in the top-left corner (in place)."""
    if not lines:
        return
    scale, thick = _text_scale(image)
    sizes = [cv2.getTextSize(text, _FONT, scale, thick)[0] for text, _ in lines]
    line_h = max(h for _, h in sizes) + max(4, int(8 * scale))
    width = min(image.shape[1], max(w for w, _ in sizes) + 12)
    height = min(image.shape[0], line_h * len(lines) + 8)
    region = image[:height, :width]
    region[:] = (region.astype(np.float32) * 0.35).astype(np.uint8)
    for i, (text, colour) in enumerate(lines):
        y = 4 + line_h * (i + 1) - max(2, int(4 * scale))
        cv2.putText(image, text, (6, y), _FONT, scale, colour, thick, cv2.LINE_AA)


def draw_recognitions(rgb: np.ndarray, recognitions: Sequence[Recognition],
                      positions: dict[str, Position] | None = None) -> np.ndarray:
    """A copy of the frame listing each scored concept and its probability; present ones in green. A located
    concept with a 3-D point in `positions` is labelled with its depth (z, metres)."""
    out = np.ascontiguousarray(rgb, dtype=np.uint8).copy()
    scored = sorted((r for r in recognitions if r.considered), key=lambda r: -r.probability)
    lines = [(f"{'[x]' if r.present else '[ ]'} {r.name} {r.probability:.2f}", _PRESENT if r.present else _ABSENT)
             for r in scored]
    for r in scored:
        if r.location is not None:
            position = (positions or {}).get(r.name)
            _draw_location(out, r, None if position is None or position.point is None else position.point[2])
    _panel(out, lines or [("no concepts", _ABSENT)])
    return out


def _draw_location(image: np.ndarray, rec: Recognition, depth_m: float | None = None) -> None:
    """The concept's box, a cross on its peak and its name (and depth) above the box (in place)."""
    loc = rec.location
    colour = _PRESENT if rec.present else _ABSENT
    scale, thick = _text_scale(image)
    x0, y0, x1, y1 = (int(round(v)) for v in loc.box)
    cv2.rectangle(image, (x0, y0), (max(x0, x1 - 1), max(y0, y1 - 1)), colour, thick)
    px, py = int(loc.point[0]), int(loc.point[1])
    cv2.drawMarker(image, (px, py), colour, cv2.MARKER_CROSS, max(5, int(10 * scale)), thick)
    label = rec.name if depth_m is None else f"{rec.name} {depth_m:.2f} m"
    cv2.putText(image, label, (x0, max(int(12 * scale), y0 - 3)), _FONT, scale, colour, thick, cv2.LINE_AA)


def draw_memory_view(rgb: np.ndarray, boxes: np.ndarray, image_size: tuple[int, int], title: str) -> np.ndarray:
    """A copy of a reference view, dimmed outside the selected token boxes, which are outlined.

    `boxes` are (x0, y0, x1, y1) in the pixels of an image of `image_size` (width, height), as
    MemoryView.token_boxes() gives them; they are rescaled if `rgb` has another size.
    """
    out = np.ascontiguousarray(rgb, dtype=np.uint8).copy()
    h, w = out.shape[:2]
    sx, sy = w / max(1, image_size[0]), h / max(1, image_size[1])
    keep = np.zeros((h, w), dtype=bool)
    rects = []
    for x0, y0, x1, y1 in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        a, b = int(np.floor(x0 * sx)), int(np.floor(y0 * sy))
        c, d = int(np.ceil(x1 * sx)), int(np.ceil(y1 * sy))
        a, b, c, d = max(0, a), max(0, b), min(w, c), min(h, d)
        if c > a and d > b:
            keep[b:d, a:c] = True
            rects.append((a, b, c, d))
    out[~keep] = (out[~keep].astype(np.float32) * 0.3).astype(np.uint8)
    thick = max(1, min(h, w) // 300)
    for a, b, c, d in rects:
        cv2.rectangle(out, (a, b), (c - 1, d - 1), _SELECTED, thick)
    _panel(out, [(title, _SELECTED)])
    return out


__all__ = ["draw_recognitions", "draw_memory_view"]
