"""The renderer of the toy world: scene spec (normalised coordinates) -> pixels, masks, labels.

`render(spec, size)` draws a `SceneSpec` (`specs`) at any size: 64x64 for training the toy model,
(640, 480) for the robot demo camera, and returns a `Scene` (`scene`) with its `LabelMaps` (`labels`).

Objects are drawn without anti-aliasing, in list order (later objects on top), so that
``Scene.masks[k]`` is exactly the set of pixels whose final colour came from object k: the visible
part after occlusion and cropping at the border. Masks of different objects are disjoint, and
``Scene.labels.object == k + 1`` on exactly ``masks[k]``. Lighting and pixel noise are applied to the
whole finished image (objects included), like a camera would; they change colours, not which object a
pixel shows. ``Scene.amodal_masks()`` gives each object's full in-frame silhouette, ignoring occluders.

World v2 instances (``Instance.signature`` set) also show their identity glyph: the lit cells of a
3x3 grid centred on the body (`shapes.GLYPH_BOXES` per shape), painted in the body colour's
complementary hue (`colours.glyph_rgb`), rotated, lit and noised with the object; the mark is painted
over it. v1 instances are drawn exactly as before.

The public names of the modules the renderer draws on are re-exported here (`__all__`), so that
``from ego_ros.toy.render import ...`` reaches the whole drawing API: `shapes` (geometry), `colours`,
`specs` (scene specs and their dict round trip), `labels` (label maps and patch pooling), `scene`
(`Scene`).
"""

from __future__ import annotations

import math
from functools import lru_cache
from statistics import NormalDist

import cv2
import numpy as np

from .attributes import MARK_POSITIONS, SHAPES, WorldError

# _pixel_colours: the cached tuple form pixel_colours wraps (ObjectSpec.tint is already a tuple of ints).
from .colours import (
    RGB,
    SHADE_DIRECTIONS,
    SHADE_HUE_TURN,
    SHADE_SATURATION,
    _pixel_colours,
    glyph_rgb,
    muted_rgb,
    pattern_rgb,
    pixel_colours,
    shade_rgb,
)
from .labels import (
    BACKGROUND_LABEL,
    LABEL_CLASSES,
    PART_BACKGROUND,
    PART_BODY,
    PART_GLYPH,
    PART_MARK,
    PART_PATTERN,
    LabelMaps,
    pool_fractions,
    pool_labels,
)
from .scene import Scene
from .shapes import (
    GLYPH_BOXES,
    GLYPH_FILL,
    MARK_ANCHORS,
    MARK_HALF,
    MARK_MIN_HALF_PX,
    SHAPE_AREAS,
    SHAPE_POLYGONS,
    visible_glyph_cells,
)
from .specs import BLOB_KINDS, TEXTURES, BackgroundSpec, Blob, Lighting, ObjectSpec, SceneSpec, scene_spec_from_dict

__all__ = [
    "BACKGROUND_LABEL",
    "BLOB_KINDS",
    "GLYPH_BOXES",
    "GLYPH_FILL",
    "LABEL_CLASSES",
    "MARK_ANCHORS",
    "MARK_HALF",
    "MARK_MIN_HALF_PX",
    "MAX_SIDE",
    "PART_BACKGROUND",
    "PART_BODY",
    "PART_GLYPH",
    "PART_MARK",
    "PART_PATTERN",
    "RGB",
    "SHADE_DIRECTIONS",
    "SHADE_HUE_TURN",
    "SHADE_SATURATION",
    "SHAPE_AREAS",
    "SHAPE_POLYGONS",
    "TEXTURES",
    "BackgroundSpec",
    "Blob",
    "LabelMaps",
    "Lighting",
    "ObjectSpec",
    "Scene",
    "SceneSpec",
    "Size",
    "glyph_rgb",
    "muted_rgb",
    "pattern_rgb",
    "pixel_colours",
    "pool_fractions",
    "pool_labels",
    "render",
    "scene_spec_from_dict",
    "shade_rgb",
    "visible_glyph_cells",
]

Size = int | tuple[int, int]
MAX_SIDE = 4096


def _parse_size(size: Size) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        w = h = int(size)
    else:
        try:
            w, h = (int(v) for v in size)  # type: ignore[union-attr]
        except (TypeError, ValueError):
            raise WorldError(f"size must be an int or a (width, height) pair, got {size!r}") from None
    if not (4 <= w <= MAX_SIDE and 4 <= h <= MAX_SIDE):
        raise WorldError(f"image sides must be in [4, {MAX_SIDE}], got {w}x{h}")
    return w, h


@lru_cache(maxsize=16)
def _grid(w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in units of the shorter side, as a row (1xW) and a column (Hx1)."""
    s = min(w, h)
    gx = ((np.arange(w, dtype=np.float32) + 0.5) / s)[None, :]
    gy = ((np.arange(h, dtype=np.float32) + 0.5) / s)[:, None]
    return gx, gy


def _texture(bg: BackgroundSpec, w: int, h: int) -> np.ndarray | None:
    if bg.texture == "none" or bg.texture_strength == 0:
        return None
    gx, gy = _grid(w, h)
    a = math.radians(bg.texture_angle)
    u = gx * math.cos(a) + gy * math.sin(a)
    v = -gx * math.sin(a) + gy * math.cos(a)
    f = 2 * math.pi * bg.texture_scale
    if bg.texture == "stripes":
        t = np.sin(f * u)
    elif bg.texture == "waves":
        t = np.sin(f * u + 1.5 * np.sin(0.5 * f * v))
    elif bg.texture == "tiles":
        t = (np.abs(np.sin(f * u)) > 0.93) | (np.abs(np.sin(f * v)) > 0.93)
        t = t.astype(np.float32) * 2 - 1
    else:  # mottled: a smooth random field on a grid of cells sized by the shorter side (size independent)
        cells = max(2, int(round(bg.texture_scale * 2)))
        cell_px = min(w, h) / cells
        span = 4 * cells + 1  # covers aspect ratios up to 4:1 without repeating
        nx, ny = min(span, math.ceil(w / cell_px) + 1), min(span, math.ceil(h / cell_px) + 1)
        grid = np.random.default_rng(bg.texture_seed).random((span, span), dtype=np.float32) * 2 - 1
        big = cv2.resize(grid[:ny, :nx], (round(nx * cell_px), round(ny * cell_px)), interpolation=cv2.INTER_CUBIC)
        reps = (math.ceil(h / big.shape[0]), math.ceil(w / big.shape[1]))
        t = np.tile(big, reps)[:h, :w] if reps != (1, 1) else big[:h, :w]
    return (t * bg.texture_strength).astype(np.float32)


@lru_cache(maxsize=16)
def _background(bg: BackgroundSpec, w: int, h: int) -> np.ndarray:
    """Float32 background, channel-first (3xHxW), before lighting and noise; cached because video
    frames reuse it. The renderer works channel-first because numpy broadcasts over a leading axis
    several times faster than into a trailing axis of 3."""
    gx, gy = _grid(w, h)
    s = min(w, h)
    a = math.radians(bg.gradient_angle)
    centre_x, centre_y = w / (2 * s), h / (2 * s)
    t = np.clip((gx - centre_x) * math.cos(a) + (gy - centre_y) * math.sin(a) + 0.5, 0, 1)
    tex = _texture(bg, w, h)
    img = np.empty((3, h, w), dtype=np.float32)
    for c, (ca, cb) in enumerate(zip(bg.colour_a, bg.colour_b)):
        np.multiply(t, np.float32(cb - ca), out=img[c])
        img[c] += np.float32(ca)
        if tex is not None:
            img[c] += tex
    for blob in bg.blobs:
        centre = (int(round((blob.x * w - 0.5) * 16)), int(round((blob.y * h - 0.5) * 16)))
        axes = (max(1, int(round(blob.rx * s * 16))), max(1, int(round(blob.ry * s * 16))))
        for c in range(3):
            value = float(blob.colour[c])
            if blob.kind == "ellipse":
                cv2.ellipse(img[c], centre, axes, blob.angle, 0, 360, value, -1, cv2.LINE_8, 4)
            else:
                box = cv2.boxPoints(((centre[0] / 16, centre[1] / 16), (axes[0] / 8, axes[1] / 8), blob.angle))
                cv2.fillConvexPoly(img[c], np.round(box * 16).astype(np.int32), value, cv2.LINE_8, 4)
    img.setflags(write=False)
    return img


@lru_cache(maxsize=16)
def _lighting_gain(lighting: Lighting, w: int, h: int) -> np.ndarray:
    """HxW gain: brightness times a linear ramp, built as a row plus a column (a plane is separable)."""
    gx, gy = _grid(w, h)
    s = min(w, h)
    a = math.radians(lighting.angle)
    k = np.float32(2 * lighting.brightness * lighting.gradient)
    row = (gx - np.float32(w / (2 * s))) * (k * np.float32(math.cos(a))) + np.float32(lighting.brightness)
    col = (gy - np.float32(h / (2 * s))) * (k * np.float32(math.sin(a)))
    gain = row + col
    gain.setflags(write=False)
    return gain


def _pattern_mask(pattern: str, u: np.ndarray, v: np.ndarray) -> np.ndarray | None:
    """Pixels (in object units u, v) that take the pattern's second colour."""
    if pattern == "plain":
        return None
    if pattern == "striped":
        return np.floor((u + 4.125) / 0.25).astype(np.int32) % 2 == 0
    if pattern == "dotted":
        du = (u + 4.275) % 0.55 - 0.275
        dv = (v + 4.275) % 0.55 - 0.275
        return du * du + dv * dv < 0.165**2
    if pattern == "checkered":
        return (np.floor((u + 4.2) / 0.4) + np.floor((v + 4.2) / 0.4)).astype(np.int32) % 2 == 0
    if pattern == "ringed":
        r2 = u * u + v * v
        return (r2 > 0.36**2) & (r2 < 0.64**2)
    if pattern == "halved":
        return v > 0
    raise WorldError(f"unknown pattern {pattern!r}")


def _glyph_mask(shape: str, signature: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Pixels (in object units u, v) that show the lit cells of `signature`'s 3x3 glyph."""
    cu, cv, half = GLYPH_BOXES[shape]
    cell = 2 * half / 3
    gu = (u - (cu - half)) / cell
    gv = (v - (cv - half)) / cell
    col = np.floor(gu)
    row = np.floor(gv)
    inside = (col >= 0) & (col < 3) & (row >= 0) & (row < 3)
    # Lit cells are GLYPH_FILL of their cell, centred, so neighbouring lit cells stay separate.
    margin = (1 - GLYPH_FILL) / 2
    fu, fv = gu - col, gv - row
    core = (fu >= margin) & (fu < 1 - margin) & (fv >= margin) & (fv < 1 - margin)
    bit = np.where(inside, row * 3 + col, 0).astype(np.int32)
    lit = (np.int32(signature) >> bit) & 1
    return inside & core & (lit == 1)


_GAUSS_LUT = np.array([NormalDist().inv_cdf((i + 0.5) / 256) for i in range(256)], dtype=np.float32)


_NOISE_BANK_BYTES = 1 << 22


@lru_cache(maxsize=1)
def _noise_bank() -> np.ndarray:
    return np.frombuffer(np.random.default_rng(0x70E).bytes(_NOISE_BANK_BYTES), dtype=np.uint8)


def _noise_bytes(seed: int, n: int) -> np.ndarray:
    """`n` random bytes for `seed`: a seed-chosen window of a fixed 4 MiB bank (building a Generator per
    scene costs more than rendering a 64x64 scene); fresh bytes when the image is larger than the bank."""
    if n > _NOISE_BANK_BYTES // 2:
        return np.frombuffer(np.random.default_rng(seed).bytes(n), dtype=np.uint8)
    start = (seed * 0x9E3779B1) % (_NOISE_BANK_BYTES - n + 1)
    return _noise_bank()[start : start + n]


def render(spec: SceneSpec, size: Size = 64) -> Scene:
    """Draw `spec` at `size` (an int for a square image, or (width, height)) and return the Scene."""
    if not isinstance(spec, SceneSpec):
        raise WorldError(f"render() needs a SceneSpec, got {type(spec).__name__}")
    w, h = _parse_size(size)
    s = min(w, h)
    img = _background(spec.background, w, h).copy()
    obj_map = np.zeros((h, w), dtype=np.uint8)
    part_map = np.zeros((h, w), dtype=np.uint8)
    n = len(spec.objects)
    full_areas = np.zeros(n, dtype=np.float64)
    mark_in_frame = np.zeros(n, dtype=bool)
    amodal: list[tuple[int, int, np.ndarray] | None] = []
    mark_parts: list[tuple[int, int, np.ndarray] | None] = []
    # Palette rows 4k .. 4k + 3: object k's body, pattern, mark and identity-glyph colours.
    palette = np.zeros((4 * n, 3), dtype=np.float32)

    for k, obj in enumerate(spec.objects):
        inst = obj.instance
        shape = SHAPES[inst.shape]
        r = obj.size * s / 2
        cx, cy = obj.x * w, obj.y * h
        a = math.radians(obj.angle)
        ca, sa = math.cos(a), math.sin(a)
        ax, ay = MARK_ANCHORS[shape][inst.mark % len(MARK_POSITIONS)]
        mark_half = max(MARK_HALF, MARK_MIN_HALF_PX / r)
        # The mark counts as in frame when its four rotated corners are.
        mark_in_frame[k] = all(
            0 <= cx + r * (ca * cu - sa * cv) <= w and 0 <= cy + r * (sa * cu + ca * cv) <= h
            for cu in (ax - mark_half, ax + mark_half)
            for cv in (ay - mark_half, ay + mark_half)
        )

        # Rasterise the whole silhouette (also any part outside the frame) so that visible fractions
        # compare pixel counts with pixel counts at every resolution.
        fx0, fx1 = int(math.floor(cx - r)) - 1, int(math.ceil(cx + r)) + 1
        fy0, fy1 = int(math.floor(cy - r)) - 1, int(math.ceil(cy + r)) + 1
        # Object units -> canvas pixels in 1/16 px fixed point (cv2 puts pixel centres on integers).
        rot = np.array([[ca, sa], [-sa, ca]]) * (16 * r)
        shift = np.array([cx - fx0 - 0.5, cy - fy0 - 0.5]) * 16
        pts = np.rint(SHAPE_POLYGONS[shape] @ rot + shift).astype(np.int32)
        canvas = np.zeros((fy1 - fy0, fx1 - fx0), dtype=np.uint8)
        cv2.fillPoly(canvas, [pts], 1, cv2.LINE_8, 4)
        full_areas[k] = cv2.countNonZero(canvas)
        x0, x1, y0, y1 = max(0, fx0), min(w, fx1), max(0, fy0), min(h, fy1)
        inside = canvas[y0 - fy0 : y1 - fy0, x0 - fx0 : x1 - fx0].view(bool) if x0 < x1 and y0 < y1 else None
        if inside is None or not inside.any():
            amodal.append(None)
            mark_parts.append(None)
            continue
        mark_canvas = np.zeros_like(canvas)
        corners = np.array([[ax - mark_half, ay - mark_half], [ax + mark_half, ay - mark_half],
                            [ax + mark_half, ay + mark_half], [ax - mark_half, ay + mark_half]])  # fmt: skip
        cv2.fillConvexPoly(mark_canvas, np.rint(corners @ rot + shift).astype(np.int32), 1, cv2.LINE_8, 4)
        mark = mark_canvas[y0 - fy0 : y1 - fy0, x0 - fx0 : x1 - fx0].view(bool) & inside
        pat = glyph = None
        if inst.pattern_name != "plain" or inst.signature is not None:
            # Object coordinates (u, v) of each pixel centre: the inverse rotation of its offset.
            dx = ((np.arange(x0, x1, dtype=np.float32) + np.float32(0.5 - cx)) / np.float32(r))[None, :]
            dy = ((np.arange(y0, y1, dtype=np.float32) + np.float32(0.5 - cy)) / np.float32(r))[:, None]
            u = ca * dx + sa * dy
            v = -sa * dx + ca * dy
            if inst.pattern_name != "plain":
                pat = _pattern_mask(inst.pattern_name, u, v)
            if inst.signature is not None:
                glyph = _glyph_mask(shape, inst.signature, u, v)

        parts = part_map[y0:y1, x0:x1]
        parts[inside] = PART_BODY
        if pat is not None:
            pat &= inside
            parts[pat] = PART_PATTERN
        if glyph is not None:
            parts[glyph & inside] = PART_GLYPH
        parts[mark] = PART_MARK
        obj_map[y0:y1, x0:x1][inside] = k + 1
        body, pattern, mark_ink, glyph_ink = _pixel_colours(inst, obj.tint)
        palette[4 * k : 4 * k + 3] = (body, pattern, mark_ink)
        if glyph_ink is not None:
            palette[4 * k + 3] = glyph_ink
        amodal.append((y0, x0, inside))
        mark_parts.append((y0, x0, mark))

    if n:
        # Colour all object pixels in one go from the final object and part maps: palette row
        # 4k + part - 1 holds object k's body, pattern, mark and glyph colours.
        fg = obj_map > 0
        rows = obj_map[fg].astype(np.intp) * 4 + part_map[fg] - 5
        img[:, fg] = palette[rows].T
    if not spec.lighting.is_neutral:
        img *= _lighting_gain(spec.lighting, w, h)
    if spec.noise > 0:
        # Gaussian noise: random bytes through a 256-entry inverse-CDF table, 10x faster than
        # standard_normal at 640x480 and deterministic by seed.
        raw = _noise_bytes(spec.noise_seed, 3 * h * w)
        img += cv2.LUT(raw.reshape(3 * h, w), _GAUSS_LUT * np.float32(spec.noise)).reshape(3, h, w)
    planes = np.clip(img, 0, 255, out=img).astype(np.uint8)
    image = cv2.merge([planes[0], planes[1], planes[2]])

    masks = obj_map[None, :, :] == np.arange(1, n + 1, dtype=np.uint8)[:, None, None]
    mark_visible = np.zeros(n, dtype=bool)
    for k, part in enumerate(mark_parts):
        if part is not None and mark_in_frame[k]:
            y0, x0, m = part
            mark_visible[k] = bool(m.any()) and bool(
                np.all(obj_map[y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]][m] == k + 1)
            )
    labels = LabelMaps(object=obj_map, part=part_map, instances=spec.instances)
    return Scene(
        image=image,
        masks=masks,
        labels=labels,
        spec=spec,
        full_areas=full_areas,
        mark_visible=mark_visible,
        _amodal=tuple(amodal),
    )
