"""Scene specs of the toy world: a whole scene in resolution-free terms, validated on construction.

A `SceneSpec` says everything about a scene: object centres as fractions of the image width / height,
object sizes as fractions of the shorter image side, angles in degrees, and seeds for the random parts
(background texture, pixel noise). `render.render(spec, size)` draws it at any size. `SceneSpec.to_dict`
and `scene_spec_from_dict` round-trip it through JSON exactly (export manifests store it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from .attributes import MAX_ROTATION_DEG, Instance, WorldError
from .colours import RGB

TEXTURES: tuple[str, ...] = ("none", "stripes", "waves", "tiles", "mottled")
BLOB_KINDS: tuple[str, ...] = ("ellipse", "rect")


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
