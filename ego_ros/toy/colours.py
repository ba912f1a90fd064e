"""Colours the toy renderer paints: an object's body (in world v2 at its signature's shade), pattern,
mark and v2 identity-glyph colours, and the muted colours of backgrounds and clutter."""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from .attributes import COLOUR_RGB, MARK_COLOUR_RGB, Instance, WorldError, signature_shade

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


#: At shade 1 (`attributes.TRAIN_SHADES`) a body keeps this share of its colour's saturation and its
#: hue turns by this fraction of a full turn (9 degrees), away from the nearer neighbouring colour.
SHADE_SATURATION = 0.5
SHADE_HUE_TURN = 0.025


def _hue(rgb: RGB) -> float:
    return colorsys.rgb_to_hsv(*(c / 255 for c in rgb))[0]


def _shade_directions() -> dict[str, float]:
    """+1 or -1 per colour name: the way its hue turns with its shade, toward the wider of the two gaps
    to its neighbours on the hue circle, so that shades of two names never meet (the narrowest gap
    between any two named hues, 24 degrees, shrinks by at most one turn)."""
    hues = {name: _hue(rgb) for name, rgb in COLOUR_RGB.items()}
    out = {}
    for name, h in hues.items():
        ahead = min((o - h) % 1.0 for n, o in hues.items() if n != name)
        behind = min((h - o) % 1.0 for n, o in hues.items() if n != name)
        out[name] = 1.0 if ahead >= behind else -1.0
    return out


SHADE_DIRECTIONS: dict[str, float] = _shade_directions()


def shade_rgb(colour_name: str, shade: float) -> RGB:
    """The body colour of `colour_name` at `shade` (0: the named colour itself, 1: the palest shade the
    name covers): saturation scaled down to SHADE_SATURATION and hue turned by SHADE_HUE_TURN at 1,
    linearly between; value kept, so the shade is a matter of chroma, not of lighting."""
    if not 0.0 <= shade <= 1.0:
        raise WorldError(f"shade must be in [0, 1], got {shade}")
    h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in COLOUR_RGB[colour_name]))
    h = (h + SHADE_DIRECTIONS[colour_name] * SHADE_HUE_TURN * shade) % 1.0
    s *= 1.0 - (1.0 - SHADE_SATURATION) * shade
    r, g, b = colorsys.hsv_to_rgb(h, s, v)
    return int(round(r * 255)), int(round(g * 255)), int(round(b * 255))


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
    """The exact RGB an object of `instance` paints before lighting and noise: body, pattern, mark and,
    for a v2 instance, its identity glyph."""
    body, pattern, mark, glyph = _pixel_colours(instance, tuple(int(t) for t in tint))
    colours = {"body": body, "pattern": pattern, "mark": mark}
    if glyph is not None:
        colours["glyph"] = glyph
    return colours


@lru_cache(maxsize=8192)
def _pixel_colours(instance: Instance, tint: tuple[int, ...]) -> tuple[RGB, RGB, RGB, RGB | None]:
    """Body, pattern, mark and identity-glyph ink (None for a v1 instance, which has no glyph)."""
    if instance.signature is None:
        base = COLOUR_RGB[instance.colour_name]
    else:  # v2: the body's shade is part of the signature
        base = shade_rgb(instance.colour_name, signature_shade(instance.signature))
    body: RGB = tuple(min(255, max(0, c + t)) for c, t in zip(base, tint))  # type: ignore[assignment]
    glyph = None if instance.signature is None else glyph_rgb(body)
    return body, pattern_rgb(body), MARK_COLOUR_RGB[instance.mark_colour], glyph
