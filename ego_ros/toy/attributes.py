"""Attributes, instances and the train / held-out split of the toy world.

An *instance* is one personal object of the world, fixed by four attributes:

* shape   (8): circle, square, triangle, diamond, star, cross, heart, semicircle
* colour  (8): red, orange, yellow, green, cyan, blue, purple, pink
* pattern (6): plain, striped, dotted, checkered, ringed, halved
* mark    (8): a small black or white square at the top, right, bottom or left of the object, in the
  object's own frame (objects rotate by at most ``MAX_ROTATION_DEG``, so "top" stays recognisable)

so there are 8 * 8 * 6 * 8 = 3072 instances. Two instances that share shape and colour but differ in
only the mark or only the pattern are *near-duplicates* ("my mug" versus "a mug"): the hard negatives.

Held-out split (stable, documented rule): an instance is held out when the first 8 bytes of
``blake2b(instance.key)`` read as a big-endian integer, modulo 1000, are below ``HELD_OUT_PER_MILLE``
(100, so about 10 %). ``instance.key`` is built from attribute *names*
(``"red-star-striped-black-top"``), so the split does not depend on the order of the lists below and
never changes unless an attribute is renamed. The toy model trains only on non-held-out instances;
exports draw their personal concepts only from held-out ones.

Text: ``instance.keywords`` is ``(colour, shape, pattern, mark colour + "-mark", mark position)``, e.g.
``("red", "star", "striped", "black-mark", "top")``. ``WORLD_VOCABULARY`` lists every word these
keywords use, so a word-level tokenizer can be built from it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np

from ego_ros.core.errors import EgoError

#: Version of the world's rules (attributes, drawing, split). Exports record it; bump on any change.
WORLD_VERSION = "1.0"


class WorldError(EgoError, ValueError):
    """Bad input to the toy world: unknown attribute, impossible request, malformed spec."""


SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "star", "cross", "heart", "semicircle")
#: RGB of each object colour. Saturated, so that they stand out from the muted backgrounds.
COLOUR_RGB: dict[str, tuple[int, int, int]] = {
    "red": (214, 38, 38),
    "orange": (246, 132, 22),
    "yellow": (238, 214, 36),
    "green": (44, 164, 62),
    "cyan": (32, 192, 204),
    "blue": (40, 82, 216),
    "purple": (138, 62, 192),
    "pink": (242, 112, 182),
}
COLOURS: tuple[str, ...] = tuple(COLOUR_RGB)
PATTERNS: tuple[str, ...] = ("plain", "striped", "dotted", "checkered", "ringed", "halved")
MARK_COLOUR_RGB: dict[str, tuple[int, int, int]] = {"black": (18, 18, 18), "white": (246, 246, 246)}
MARK_COLOURS: tuple[str, ...] = tuple(MARK_COLOUR_RGB)
MARK_POSITIONS: tuple[str, ...] = ("top", "right", "bottom", "left")
#: Mark names, ``"<colour>-<position>"``; mark id = colour index * 4 + position index.
MARKS: tuple[str, ...] = tuple(f"{c}-{p}" for c in MARK_COLOURS for p in MARK_POSITIONS)

ATTRIBUTES: tuple[str, ...] = ("shape", "colour", "pattern", "mark")
ATTRIBUTE_VALUES: dict[str, tuple[str, ...]] = {
    "shape": SHAPES,
    "colour": COLOURS,
    "pattern": PATTERNS,
    "mark": MARKS,
}
N_INSTANCES = len(SHAPES) * len(COLOURS) * len(PATTERNS) * len(MARKS)


#: Objects rotate by at most this much either way, so "top" marks and square-vs-diamond stay distinct.
MAX_ROTATION_DEG = 25.0
HELD_OUT_PER_MILLE = 100

#: Words of ``Instance.keywords`` (colours, shapes, patterns, mark colours, mark positions), in that order.
WORLD_VOCABULARY: tuple[str, ...] = (
    *COLOURS,
    *SHAPES,
    *PATTERNS,
    *(f"{c}-mark" for c in MARK_COLOURS),
    *MARK_POSITIONS,
)


@dataclass(frozen=True, order=True)
class Instance:
    """One personal object: attribute ids into SHAPES, COLOURS, PATTERNS and MARKS."""

    shape: int
    colour: int
    pattern: int
    mark: int

    def __post_init__(self) -> None:
        for attr in ATTRIBUTES:
            value = getattr(self, attr)
            n = len(ATTRIBUTE_VALUES[attr])
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < n:
                raise WorldError(f"Instance.{attr} must be an int in [0, {n}), got {value!r}")
            object.__setattr__(self, attr, int(value))

    # -- construction -------------------------------------------------------------------------------
    @classmethod
    def from_names(cls, shape: str, colour: str, pattern: str, mark: str) -> Instance:
        """Build from attribute names, e.g. ``Instance.from_names("star", "red", "striped", "black-top")``."""
        ids = []
        for attr, name in zip(ATTRIBUTES, (shape, colour, pattern, mark)):
            values = ATTRIBUTE_VALUES[attr]
            if name not in values:
                raise WorldError(f"unknown {attr} {name!r}; known: {', '.join(values)}")
            ids.append(values.index(name))
        return cls(*ids)

    @classmethod
    def from_key(cls, key: str) -> Instance:
        """Inverse of ``Instance.key``."""
        parts = key.split("-")
        if len(parts) != 5:
            raise WorldError(f"instance key must read colour-shape-pattern-markcolour-position, got {key!r}")
        colour, shape, pattern, mark_colour, position = parts
        return cls.from_names(shape, colour, pattern, f"{mark_colour}-{position}")

    @classmethod
    def from_index(cls, index: int) -> Instance:
        """Inverse of ``Instance.index`` (mixed radix: mark fastest, then pattern, colour, shape)."""
        if not 0 <= int(index) < N_INSTANCES:
            raise WorldError(f"instance index must be in [0, {N_INSTANCES}), got {index}")
        index, mark = divmod(int(index), len(MARKS))
        index, pattern = divmod(index, len(PATTERNS))
        shape, colour = divmod(index, len(COLOURS))
        return cls(shape, colour, pattern, mark)

    # -- names and text -----------------------------------------------------------------------------
    @property
    def index(self) -> int:
        return ((self.shape * len(COLOURS) + self.colour) * len(PATTERNS) + self.pattern) * len(MARKS) + self.mark

    @property
    def shape_name(self) -> str:
        return SHAPES[self.shape]

    @property
    def colour_name(self) -> str:
        return COLOURS[self.colour]

    @property
    def pattern_name(self) -> str:
        return PATTERNS[self.pattern]

    @property
    def mark_name(self) -> str:
        return MARKS[self.mark]

    @property
    def mark_colour(self) -> str:
        return MARK_COLOURS[self.mark // len(MARK_POSITIONS)]

    @property
    def mark_position(self) -> str:
        return MARK_POSITIONS[self.mark % len(MARK_POSITIONS)]

    @property
    def names(self) -> dict[str, str]:
        """Attribute names, e.g. ``{"shape": "star", "colour": "red", "pattern": "striped", "mark": ...}``."""
        return {a: ATTRIBUTE_VALUES[a][getattr(self, a)] for a in ATTRIBUTES}

    @cached_property
    def key(self) -> str:
        """Stable readable id, ``"red-star-striped-black-top"``; the held-out hash is taken of it."""
        parts = (self.colour_name, self.shape_name, self.pattern_name, self.mark_colour, self.mark_position)
        return "-".join(parts)

    @property
    def keywords(self) -> tuple[str, str, str, str, str]:
        """``(colour, shape, pattern, "<mark colour>-mark", mark position)``, all in WORLD_VOCABULARY."""
        return (
            self.colour_name,
            self.shape_name,
            self.pattern_name,
            f"{self.mark_colour}-mark",
            self.mark_position,
        )

    @property
    def keyword_text(self) -> str:
        """Keywords joined by spaces: ``"red star striped black-mark top"``."""
        return " ".join(self.keywords)

    # -- split ----------------------------------------------------------------------------------------
    @cached_property
    def is_held_out(self) -> bool:
        return _held_out_by_key(self.key)

    def differing_attributes(self, other: Instance) -> tuple[str, ...]:
        """Names of the attributes in which two instances differ."""
        return tuple(a for a in ATTRIBUTES if getattr(self, a) != getattr(other, a))


def _held_out_by_key(key: str) -> bool:
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 1000 < HELD_OUT_PER_MILLE


def all_instances() -> tuple[Instance, ...]:
    """Every instance of the world, ordered by index."""
    return _ALL


_ALL: tuple[Instance, ...] = tuple(Instance.from_index(i) for i in range(N_INSTANCES))
#: Indices of the held-out instances (sorted); the rest are training instances.
HELD_OUT_INDICES: np.ndarray = np.array([i.index for i in _ALL if i.is_held_out], dtype=np.int64)
TRAIN_INDICES: np.ndarray = np.array([i.index for i in _ALL if not i.is_held_out], dtype=np.int64)
HELD_OUT_INDICES.setflags(write=False)
TRAIN_INDICES.setflags(write=False)


def ab_options(inst: Instance, attr: str, rng: np.random.Generator) -> tuple[str, str]:
    """(true value, a random wrong value) of `inst`'s `attr` ("colour", "pattern", "shape" or
    "mark_colour"): the two options of an A/B question about it (one draw from `rng`)."""
    values, truth = {
        "colour": (COLOURS, inst.colour_name),
        "pattern": (PATTERNS, inst.pattern_name),
        "shape": (SHAPES, inst.shape_name),
        "mark_colour": (MARK_COLOURS, inst.mark_colour),
    }[attr]
    wrong = [v for v in values if v != truth]
    return truth, wrong[int(rng.integers(len(wrong)))]


def held_out_instances() -> tuple[Instance, ...]:
    """Held-out instances (never used in training; exports take personal concepts only from these)."""
    return tuple(_ALL[i] for i in HELD_OUT_INDICES)


def training_instances() -> tuple[Instance, ...]:
    """Instances the toy model may be trained on."""
    return tuple(_ALL[i] for i in TRAIN_INDICES)


def sample_instance(rng: np.random.Generator, held_out: bool | None = False) -> Instance:
    """Draw one instance uniformly: from the training set (False), the held-out set (True) or all (None)."""
    if held_out is None:
        return _ALL[int(rng.integers(N_INSTANCES))]
    pool = HELD_OUT_INDICES if held_out else TRAIN_INDICES
    return _ALL[int(pool[rng.integers(len(pool))])]


NEAR_DUPLICATE_KINDS: tuple[str, ...] = ("mark", "pattern")


def near_duplicates(instance: Instance, kinds: Sequence[str] = NEAR_DUPLICATE_KINDS) -> tuple[Instance, ...]:
    """Instances that differ from `instance` in exactly one attribute, that attribute being one of `kinds`.

    The default kinds give the hard negatives of the world: same shape and colour, another mark
    (7) or another pattern (5). Ordered by index.
    """
    return _near_duplicates(instance, tuple(kinds))


@lru_cache(maxsize=16384)
def _near_duplicates(instance: Instance, kinds: tuple[str, ...]) -> tuple[Instance, ...]:
    unknown = [k for k in kinds if k not in ATTRIBUTES]
    if unknown or not kinds:
        raise WorldError(f"near-duplicate kinds must be a non-empty subset of {ATTRIBUTES}, got {kinds}")
    out = set()
    for attr in kinds:
        for value in range(len(ATTRIBUTE_VALUES[attr])):
            if value != getattr(instance, attr):
                ids = [value if a == attr else getattr(instance, a) for a in ATTRIBUTES]
                index = ((ids[0] * len(COLOURS) + ids[1]) * len(PATTERNS) + ids[2]) * len(MARKS) + ids[3]
                out.add(_ALL[index])
    return tuple(sorted(out, key=lambda i: i.index))


def sample_near_duplicate(
    instance: Instance,
    rng: np.random.Generator,
    kinds: Sequence[str] = NEAR_DUPLICATE_KINDS,
    held_out: bool | None = None,
    exclude: Iterable[Instance] = (),
) -> Instance | None:
    """One near-duplicate of `instance` (see `near_duplicates`), optionally restricted to a split.

    Returns None when no candidate is left after the restrictions.
    """
    excluded = set(exclude)
    pool = [
        d
        for d in near_duplicates(instance, kinds)
        if d not in excluded and (held_out is None or d.is_held_out == held_out)
    ]
    if not pool:
        return None
    return pool[int(rng.integers(len(pool)))]
