"""Colours the toy renderer paints: an object's body, pattern, mark and v2 identity-glyph colours, and
the muted colours of backgrounds and clutter."""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from .attributes import COLOUR_RGB, MARK_COLOUR_RGB, Instance

RGB = tuple[int, int, int]


def pattern_rgb(colour: RGB) -> RGB:
    """Second colour of an object's pattern: a darker shade of light colours, a lighter tint of dark ones.

    Never close to the black or white mark colours, so that marks stay distinct from patterns.
    """
    r, g, b = colour
    luminance = 0.299 * r + 0.587 * g + 0.114 * b
    if luminance < 110:
        return tuple(int(round(c + 0.45 * (255 - c))) for c in colour)  # type: ignore[return-value]
    return tuple(int(round(c * 0.58)) for c in colour)  # type: ignore[return-value]


def glyph_rgb(colour: RGB) -> RGB:
    """Ink of a v2 identity glyph: the complementary hue of the body colour at mid saturation and value,
    so it stands out from body and pattern (same hue) and from the black / white marks."""
    h, _, _ = colorsys.rgb_to_hsv(*(c / 255 for c in colour))
    r, g, b = colorsys.hsv_to_rgb((h + 0.5) % 1.0, 0.65, 0.55)
    return int(round(r * 255)), int(round(g * 255)), int(round(b * 255))


def muted_rgb(
    rng: np.random.Generator,
    saturation: tuple[float, float] = (0.05, 0.35),
    value: tuple[float, float] = (0.3, 0.85),
) -> RGB:
    """A random low-saturation colour for backgrounds and clutter."""
    r, g, b = colorsys.hsv_to_rgb(float(rng.random()), float(rng.uniform(*saturation)), float(rng.uniform(*value)))
    return int(r * 255), int(g * 255), int(b * 255)


def pixel_colours(instance: Instance, tint: Sequence[int] = (0, 0, 0)) -> dict[str, RGB]:
    """The exact RGB an object of `instance` paints before lighting and noise: body, pattern, mark."""
    body, pattern, mark = _pixel_colours(instance, tuple(int(t) for t in tint))
    return {"body": body, "pattern": pattern, "mark": mark}


@lru_cache(maxsize=8192)
def _pixel_colours(instance: Instance, tint: tuple[int, ...]) -> tuple[RGB, RGB, RGB]:
    base = COLOUR_RGB[instance.colour_name]
    body: RGB = tuple(min(255, max(0, c + t)) for c, t in zip(base, tint))  # type: ignore[assignment]
    return body, pattern_rgb(body), MARK_COLOUR_RGB[instance.mark_colour]
