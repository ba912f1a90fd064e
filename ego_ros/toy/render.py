"""Scene specs and the renderer of the toy world: spec (normalised coordinates) -> pixels, masks, labels.

A `SceneSpec` says everything about a scene in resolution-free terms: object centres as fractions of
the image width / height, object sizes as fractions of the shorter image side, angles in degrees, and
seeds for the random parts (background texture, pixel noise). `render(spec, size)` draws it at any
size: 64x64 for training the toy model, (640, 480) for the robot demo camera.

Objects are drawn without anti-aliasing, in list order (later objects on top), so that
``Scene.masks[k]`` is exactly the set of pixels whose final colour came from object k: the visible
part after occlusion and cropping at the border. Masks of different objects are disjoint, and
``Scene.labels.object == k + 1`` on exactly ``masks[k]``. Lighting and pixel noise are applied to the
whole finished image (objects included), like a camera would; they change colours, not which object a
pixel shows. ``Scene.amodal_masks()`` gives each object's full in-frame silhouette, ignoring occluders.

World v2 instances (``Instance.signature`` set) also show their identity glyph: the lit cells of a
3x3 grid centred on the body (`GLYPH_BOXES` per shape), painted in the body colour's complementary
hue (`glyph_rgb`), rotated, lit and noised with the object; the mark is painted over it. v1
instances are drawn exactly as before.

Per-pixel labels (`LabelMaps`): ``object`` (0 = background, k+1 = ``spec.objects[k]``), ``part``
(0 background, 1 body, 2 pattern, 3 mark glyph, 4 identity glyph (v2 only)) and the attribute maps
``shape``, ``colour``, ``pattern``, ``mark`` holding ``attribute id + 1`` on object pixels and ``BACKGROUND_LABEL`` (0)
elsewhere. `pool_labels` / `pool_fractions` reduce them to a patch grid (e.g. 8x8-pixel patches).
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from functools import cached_property, lru_cache
from statistics import NormalDist
from typing import Any

import cv2
import numpy as np

from .attributes import (
    ATTRIBUTE_VALUES,
    ATTRIBUTES,
    COLOUR_RGB,
    MARK_COLOUR_RGB,
    MARK_POSITIONS,
    MAX_ROTATION_DEG,
    SHAPES,
    Instance,
    WorldError,
    signature_shade,
)

RGB = tuple[int, int, int]
Size = int | tuple[int, int]

BACKGROUND_LABEL = 0
#: Number of classes of each per-pixel label map, background included.
LABEL_CLASSES: dict[str, int] = {a: len(ATTRIBUTE_VALUES[a]) + 1 for a in ATTRIBUTES}
PART_BACKGROUND, PART_BODY, PART_PATTERN, PART_MARK, PART_GLYPH = 0, 1, 2, 3, 4
TEXTURES: tuple[str, ...] = ("none", "stripes", "waves", "tiles", "mottled")
BLOB_KINDS: tuple[str, ...] = ("ellipse", "rect")
#: Half side of the mark glyph in object units (object radius = 1), and its floor in pixels: at 64x64 a
#: main object of 20-26 px gets a 3 px mark, small objects still a 2 px one.
MARK_HALF = 0.12
MARK_MIN_HALF_PX = 1.0
MAX_SIDE = 4096


# ---------------------------------------------------------------------------------------------------
# Shape geometry, in object units: the shape fits in the unit circle, y points down (image convention).
# ---------------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------------
# Specs
# ---------------------------------------------------------------------------------------------------
def _check_rgb(value: Any, what: str) -> RGB:
    try:
        rgb = tuple(int(c) for c in value)
    except (TypeError, ValueError):
        raise WorldError(f"{what} must be three ints in [0, 255], got {value!r}") from None
    if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
        raise WorldError(f"{what} must be three ints in [0, 255], got {value!r}")
    return rgb  # type: ignore[return-value]


def _check_finite(what: str, *values: float) -> None:
    for v in values:
        if not isinstance(v, (int, float, np.floating, np.integer)) or not math.isfinite(v):
            raise WorldError(f"{what} must be finite numbers, got {values!r}")


@dataclass(frozen=True)
class ObjectSpec:
    """One object of a scene.

    x, y: centre as fractions of the image width and height (outside [0, 1] = partly or wholly outside
    the frame); size: diameter of the object's circumscribed circle as a fraction of the shorter image
    side; angle: rotation in degrees, within +-MAX_ROTATION_DEG; tint: small RGB shift of body and
    pattern colours (lighting-independent variation between scenes; the mark keeps its pure colour).
    """

    instance: Instance
    x: float
    y: float
    size: float
    angle: float = 0.0
    tint: RGB = (0, 0, 0)

    def __post_init__(self) -> None:
        if not isinstance(self.instance, Instance):
            raise WorldError(f"ObjectSpec.instance must be an Instance, got {type(self.instance).__name__}")
        _check_finite("ObjectSpec x, y, size, angle", self.x, self.y, self.size, self.angle)
        if not 0 < self.size <= 4:
            raise WorldError(f"ObjectSpec.size must be in (0, 4], got {self.size}")
        if abs(self.angle) > MAX_ROTATION_DEG + 1e-9:
            raise WorldError(f"ObjectSpec.angle must be within +-{MAX_ROTATION_DEG} degrees, got {self.angle}")
        tint = tuple(int(t) for t in self.tint)
        if len(tint) != 3 or any(abs(t) > 40 for t in tint):
            raise WorldError(f"ObjectSpec.tint must be three ints in [-40, 40], got {self.tint!r}")
        object.__setattr__(self, "tint", tint)


@dataclass(frozen=True)
class Blob:
    """A muted clutter shape of the background (never labelled as an object)."""

    kind: str
    x: float
    y: float
    rx: float
    ry: float
    angle: float
    colour: RGB

    def __post_init__(self) -> None:
        if self.kind not in BLOB_KINDS:
            raise WorldError(f"Blob.kind must be one of {BLOB_KINDS}, got {self.kind!r}")
        _check_finite("Blob geometry", self.x, self.y, self.rx, self.ry, self.angle)
        if self.rx <= 0 or self.ry <= 0:
            raise WorldError(f"Blob radii must be positive, got {self.rx}, {self.ry}")
        object.__setattr__(self, "colour", _check_rgb(self.colour, "Blob.colour"))


@dataclass(frozen=True)
class BackgroundSpec:
    """Static background: two-colour linear gradient, an optional texture and clutter blobs.

    Texture coordinates are in units of the shorter image side, so a background looks the same at any
    resolution (a wider image shows more of it).
    """

    colour_a: RGB = (128, 128, 128)
    colour_b: RGB = (128, 128, 128)
    gradient_angle: float = 0.0
    texture: str = "none"
    texture_scale: float = 4.0
    texture_angle: float = 0.0
    texture_strength: float = 0.0
    texture_seed: int = 0
    blobs: tuple[Blob, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "colour_a", _check_rgb(self.colour_a, "BackgroundSpec.colour_a"))
        object.__setattr__(self, "colour_b", _check_rgb(self.colour_b, "BackgroundSpec.colour_b"))
        if self.texture not in TEXTURES:
            raise WorldError(f"BackgroundSpec.texture must be one of {TEXTURES}, got {self.texture!r}")
        _check_finite(
            "BackgroundSpec numbers",
            self.gradient_angle,
            self.texture_scale,
            self.texture_angle,
            self.texture_strength,
        )
        if not 0 < self.texture_scale <= 64:
            raise WorldError(f"BackgroundSpec.texture_scale must be in (0, 64], got {self.texture_scale}")
        object.__setattr__(self, "blobs", tuple(self.blobs))


@dataclass(frozen=True)
class Lighting:
    """Whole-image lighting: brightness times a linear ramp of +-`gradient` along `angle` (degrees)."""

    brightness: float = 1.0
    gradient: float = 0.0
    angle: float = 0.0

    def __post_init__(self) -> None:
        _check_finite("Lighting numbers", self.brightness, self.gradient, self.angle)
        if not 0.2 <= self.brightness <= 2.0 or not 0 <= self.gradient <= 0.6:
            raise WorldError(
                f"Lighting needs brightness in [0.2, 2] and gradient in [0, 0.6], got {self.brightness}, "
                f"{self.gradient}"
            )

    @property
    def is_neutral(self) -> bool:
        return self.brightness == 1.0 and self.gradient == 0.0


@dataclass(frozen=True)
class SceneSpec:
    """A whole scene. `objects` are drawn in order (later on top). `main`: index of the main object
    (the reference object of a reference view), or None. `noise`: standard deviation of Gaussian pixel
    noise in 0-255 units, drawn from `noise_seed`."""

    background: BackgroundSpec
    objects: tuple[ObjectSpec, ...] = ()
    lighting: Lighting = field(default_factory=Lighting)
    noise: float = 0.0
    noise_seed: int = 0
    main: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "objects", tuple(self.objects))
        if len(self.objects) > 254:
            raise WorldError(f"a scene holds at most 254 objects, got {len(self.objects)}")
        _check_finite("SceneSpec.noise", self.noise)
        if not 0 <= self.noise <= 64:
            raise WorldError(f"SceneSpec.noise must be in [0, 64], got {self.noise}")
        if self.main is not None and not 0 <= self.main < len(self.objects):
            raise WorldError(f"SceneSpec.main={self.main} is not an index into {len(self.objects)} objects")

    @property
    def instances(self) -> tuple[Instance, ...]:
        return tuple(o.instance for o in self.objects)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (instances by key); `scene_spec_from_dict` inverts it exactly."""
        return _to_jsonable(self)


def _to_jsonable(value: Any) -> Any:
    if isinstance(value, Instance):
        return value.key
    if hasattr(value, "__dataclass_fields__"):
        return {f.name: _to_jsonable(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, (tuple, list)):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return value


def scene_spec_from_dict(data: dict[str, Any]) -> SceneSpec:
    """Rebuild a SceneSpec from `SceneSpec.to_dict()` output (e.g. read back from an export manifest)."""
    try:
        bg = dict(data["background"])
        bg["blobs"] = tuple(Blob(**{**b, "colour": tuple(b["colour"])}) for b in bg.get("blobs", ()))
        for k in ("colour_a", "colour_b"):
            bg[k] = tuple(bg[k])
        objects = tuple(
            ObjectSpec(**{**o, "instance": Instance.from_key(o["instance"]), "tint": tuple(o.get("tint", (0, 0, 0)))})
            for o in data.get("objects", ())
        )
        return SceneSpec(
            background=BackgroundSpec(**bg),
            objects=objects,
            lighting=Lighting(**data.get("lighting", {})),
            noise=data.get("noise", 0.0),
            noise_seed=data.get("noise_seed", 0),
            main=data.get("main"),
        )
    except (KeyError, TypeError) as exc:
        raise WorldError(f"malformed scene spec dict: {exc}") from exc


# ---------------------------------------------------------------------------------------------------
# Rendered scene
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class LabelMaps:
    """Per-pixel labels of a rendered scene (uint8 HxW each; see the module docstring)."""

    object: np.ndarray
    part: np.ndarray
    instances: tuple[Instance, ...]

    def _lookup(self, attr: str) -> np.ndarray:
        lut = np.zeros(256, dtype=np.uint8)
        for k, inst in enumerate(self.instances):
            lut[k + 1] = getattr(inst, attr) + 1
        return lut[self.object]

    @cached_property
    def shape(self) -> np.ndarray:
        return self._lookup("shape")

    @cached_property
    def colour(self) -> np.ndarray:
        return self._lookup("colour")

    @cached_property
    def pattern(self) -> np.ndarray:
        return self._lookup("pattern")

    @cached_property
    def mark(self) -> np.ndarray:
        return self._lookup("mark")

    def attribute(self, name: str) -> np.ndarray:
        """The label map of attribute `name` (one of ATTRIBUTES)."""
        if name not in ATTRIBUTES:
            raise WorldError(f"unknown attribute {name!r}; known: {ATTRIBUTES}")
        return getattr(self, name)


@dataclass(frozen=True, eq=False)
class Scene:
    """A rendered scene: RGB image (uint8 HxWx3), visible masks (bool NxHxW), labels and its spec."""

    image: np.ndarray
    masks: np.ndarray
    labels: LabelMaps
    spec: SceneSpec
    #: Full area of each object in pixels at this size, parts outside the frame included.
    full_areas: np.ndarray
    #: Whether each object's mark glyph is wholly inside the frame and not covered by another object.
    mark_visible: np.ndarray
    _amodal: tuple[tuple[int, int, np.ndarray] | None, ...] = field(repr=False, default=())

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def instances(self) -> tuple[Instance, ...]:
        return self.spec.instances

    @cached_property
    def visible_pixels(self) -> np.ndarray:
        """Visible pixel count of each object (int64, N)."""
        return self.masks.reshape(len(self.masks), -1).sum(1)

    def visible_fraction(self, k: int) -> float:
        """Share of object k's full area that is visible (occlusion and cropping both reduce it)."""
        return float(self.visible_pixels[k] / max(self.full_areas[k], 1e-9))

    def area_fraction(self, k: int) -> float:
        """Share of the image covered by object k's visible pixels (for "what percentage" questions)."""
        return float(self.visible_pixels[k] / (self.width * self.height))

    @property
    def main_area_fraction(self) -> float | None:
        return None if self.spec.main is None else self.area_fraction(self.spec.main)

    def is_recognisable(self, k: int, min_visible: float = 0.5) -> bool:
        """Object k shows at least `min_visible` of its area and its whole mark: it can be told apart
        from its near-duplicates."""
        return bool(self.mark_visible[k]) and self.visible_fraction(k) >= min_visible

    def visible_instances(self, min_pixels: int = 1) -> tuple[Instance, ...]:
        """Instances with at least `min_pixels` visible pixels, in drawing order."""
        return tuple(o.instance for o, n in zip(self.spec.objects, self.visible_pixels) if n >= min_pixels)

    def bbox(self, k: int) -> tuple[int, int, int, int] | None:
        """(x0, y0, x1, y1), exclusive ends, of object k's visible pixels; None when it is not visible."""
        ys, xs = np.nonzero(self.masks[k])
        if len(xs) == 0:
            return None
        return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1

    def amodal_masks(self) -> np.ndarray:
        """Each object's whole in-frame silhouette, ignoring occluders (bool NxHxW)."""
        out = np.zeros(self.masks.shape, dtype=bool)
        for k, part in enumerate(self._amodal):
            if part is not None:
                y0, x0, m = part
                out[k, y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]] = m
        return out


# ---------------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------------
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
        palette[4 * k : 4 * k + 3] = _pixel_colours(inst, obj.tint)
        if inst.signature is not None:
            palette[4 * k + 3] = glyph_rgb(palette[4 * k].astype(int).tolist())
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


# ---------------------------------------------------------------------------------------------------
# Patch pooling for dense supervision
# ---------------------------------------------------------------------------------------------------
def _patch_view(label_map: np.ndarray, patch: int) -> np.ndarray:
    if label_map.ndim != 2:
        raise WorldError(f"label map must be HxW, got shape {label_map.shape}")
    h, w = label_map.shape
    if patch <= 0 or h % patch or w % patch:
        raise WorldError(f"patch size {patch} must divide the map size {w}x{h}")
    return (
        label_map.reshape(h // patch, patch, w // patch, patch)
        .transpose(0, 2, 1, 3)
        .reshape(h // patch, w // patch, -1)
    )


def pool_fractions(label_map: np.ndarray, patch: int, n_classes: int) -> np.ndarray:
    """Share of each label in each patch: float32 (n_classes, H/patch, W/patch)."""
    cells = _patch_view(label_map, patch)
    if cells.size and int(cells.max()) >= n_classes:
        raise WorldError(f"label {int(cells.max())} does not fit n_classes={n_classes}")
    onehot = cells[None] == np.arange(n_classes, dtype=label_map.dtype)[:, None, None, None]
    return onehot.mean(-1, dtype=np.float32)


def pool_labels(label_map: np.ndarray, patch: int, n_classes: int) -> np.ndarray:
    """Majority label of each patch (ties go to the lower label): int64 (H/patch, W/patch)."""
    return pool_fractions(label_map, patch, n_classes).argmax(0)


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
    if instance.signature is None:
        base = COLOUR_RGB[instance.colour_name]
    else:  # v2: the body's shade is part of the signature
        base = shade_rgb(instance.colour_name, signature_shade(instance.signature))
    body: RGB = tuple(min(255, max(0, c + t)) for c, t in zip(base, tint))  # type: ignore[assignment]
    return body, pattern_rgb(body), MARK_COLOUR_RGB[instance.mark_colour]
