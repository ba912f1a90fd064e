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

World versions (``WORLDS``): in ``"v1"`` (the default, what the committed weights were trained on) an
instance *is* its four attributes. In ``"v2"`` every instance also carries an identity *signature*
that the vocabulary cannot name, in two parts: a glyph of 4 lit cells of a 3x3 grid drawn on the
object's body, and the body's *shade* inside its colour name (`signature_shade`: a position on a tone
axis, paler and with the hue turned a few degrees; `ego_ros.toy.render` draws both, rotated and lit with
the object). There are ``len(SIGNATURES)`` = 126 glyphs, and a glyph fixes its shade; a *look-alike* of
a v2 instance has the same four attributes and another glyph of another shade, so only pixels tell them
apart. Signatures are split like the instances, by a hash of their name:
``SIGNATURE_HELD_OUT_PER_MILLE`` of them are held out, and a v2 instance must carry a signature of
its own split (held-out attributes with a held-out signature, training attributes with a training
signature; `Instance` refuses anything else), so a training instance and an evaluation instance
never share a signature, by construction. The two splits' shades are interleaved positions of the tone
axis (`TRAIN_SHADES`, `HELD_OUT_SHADES`), so no shade of an evaluation signature is seen in training
either.

Text: ``instance.keywords`` is ``(colour, shape, pattern, mark colour + "-mark", mark position)``, e.g.
``("red", "star", "striped", "black-mark", "top")``. ``WORLD_VOCABULARY`` lists every word these
keywords use, so a word-level tokenizer can be built from it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache, cached_property, lru_cache

import numpy as np

from ego_ros.core.errors import EgoError

#: Version of the world's rules (attributes, drawing, split). Exports record it; bump on any change.
WORLD_VERSION = "1.0"
#: Selectable worlds and the rules version each one follows. "v1" stays the default everywhere until
#: weights trained on "v2" replace the committed ones.
WORLDS: dict[str, str] = {"v1": WORLD_VERSION, "v2": "2.1"}
DEFAULT_WORLD = "v1"


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

#: v2 identity signatures: 9-bit masks over a 3x3 grid (bit 3 * row + column), exactly 4 cells lit, so
#: two different glyphs always differ in at least two cells. Ordered by mask value.
GLYPH_GRID = 3
GLYPH_CELLS = 4
SIGNATURES: tuple[int, ...] = tuple(m for m in range(1 << GLYPH_GRID**2) if bin(m).count("1") == GLYPH_CELLS)
SIGNATURE_HELD_OUT_PER_MILLE = 250
#: Unit of ``Instance.uid`` for v2 instances: uid = N_INSTANCES + index * SIGNATURE_SPAN + signature
#: position, so v1 uids (= index) and v2 uids never collide.
SIGNATURE_SPAN = len(SIGNATURES)


def check_world(world: str) -> str:
    """`world` if it names a world of WORLDS, else a WorldError."""
    if world not in WORLDS:
        raise WorldError(f"unknown world {world!r}; choose one of {', '.join(WORLDS)}")
    return world


def signature_name(signature: int) -> str:
    """``"g"`` + three hex digits of the glyph mask, as in instance keys (``g01e``)."""
    return f"g{signature:03x}"


def _signature_held_out(signature: int) -> bool:
    digest = hashlib.blake2b(f"glyph-{signature_name(signature)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 1000 < SIGNATURE_HELD_OUT_PER_MILLE


#: The two disjoint signature spaces (a partition of SIGNATURES; test_toy_world_v2 checks it).
HELD_OUT_SIGNATURES: tuple[int, ...] = tuple(s for s in SIGNATURES if _signature_held_out(s))
TRAIN_SIGNATURES: tuple[int, ...] = tuple(s for s in SIGNATURES if not _signature_held_out(s))
_SIGNATURE_POS: dict[int, int] = {s: i for i, s in enumerate(SIGNATURES)}


def signature_space(held_out: bool) -> tuple[int, ...]:
    """The signatures instances of a split may carry."""
    return HELD_OUT_SIGNATURES if held_out else TRAIN_SIGNATURES


#: Shades of v2 bodies: positions on a tone axis from 0 (the colour as named) to 1 (the palest shade the
#: name still covers; `render.shade_rgb` draws them). The splits take interleaved positions, each
#: held-out shade halfway between two training ones, so an evaluation shade is never seen in training
#: and the model has to compare shades rather than recognise known ones. Three held-out shades, so an
#: export's group of three concepts can be pairwise look-alikes.
TRAIN_SHADES: tuple[float, ...] = (0.0, 1 / 3, 2 / 3, 1.0)
HELD_OUT_SHADES: tuple[float, ...] = (1 / 6, 1 / 2, 5 / 6)


@cache
def signature_shade(signature: int) -> float:
    """The body shade a glyph comes with: one of its split's shades, picked by a hash of the glyph's name
    (independent of the hash that splits the glyphs)."""
    shades = HELD_OUT_SHADES if _signature_held_out(signature) else TRAIN_SHADES
    digest = hashlib.blake2b(f"shade-{signature_name(signature)}".encode(), digest_size=8).digest()
    return shades[int.from_bytes(digest, "big") % len(shades)]


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
    """One personal object: attribute ids into SHAPES, COLOURS, PATTERNS and MARKS, and in world v2 a
    `signature` (a mask of SIGNATURES from the signature space of the instance's own split)."""

    shape: int
    colour: int
    pattern: int
    mark: int
    signature: int | None = None

    def __post_init__(self) -> None:
        for attr in ATTRIBUTES:
            value = getattr(self, attr)
            n = len(ATTRIBUTE_VALUES[attr])
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < n:
                raise WorldError(f"Instance.{attr} must be an int in [0, {n}), got {value!r}")
            object.__setattr__(self, attr, int(value))
        sig = self.signature
        if sig is not None:
            if isinstance(sig, bool) or not isinstance(sig, (int, np.integer)) or int(sig) not in _SIGNATURE_POS:
                raise WorldError(f"Instance.signature must be one of the {len(SIGNATURES)} glyph masks, got {sig!r}")
            object.__setattr__(self, "signature", int(sig))
            # The seed-space guarantee: a held-out instance never carries a training signature and
            # a training instance never a held-out one.
            if _signature_held_out(int(sig)) != self.category.is_held_out:
                split = "held-out" if self.category.is_held_out else "training"
                raise WorldError(
                    f"signature {signature_name(int(sig))} is not in the {split} signature space of "
                    f"{self.category.key}"
                )

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
        if len(parts) not in (5, 6):
            raise WorldError(
                f"instance key must read colour-shape-pattern-markcolour-position[-gXXX], got {key!r}"
            )
        colour, shape, pattern, mark_colour, position = parts[:5]
        inst = cls.from_names(shape, colour, pattern, f"{mark_colour}-{position}")
        if len(parts) == 5:
            return inst
        sig = parts[5]
        try:
            value = int(sig[1:], 16) if sig.startswith("g") and len(sig) == 4 else None
        except ValueError:
            value = None
        if value is None:
            raise WorldError(f"signature part of an instance key must read gXXX (hex), got {sig!r} in {key!r}")
        return inst.with_signature(value)

    def with_signature(self, signature: int | None) -> Instance:
        """The same attributes with another signature (None: the v1 instance)."""
        return Instance(self.shape, self.colour, self.pattern, self.mark, signature)

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
        """Index of the attribute tuple (the same for every signature)."""
        return ((self.shape * len(COLOURS) + self.colour) * len(PATTERNS) + self.pattern) * len(MARKS) + self.mark

    @property
    def world(self) -> str:
        """Name the world the instance belongs to: v2 when it carries a signature, else v1."""
        return "v1" if self.signature is None else "v2"

    @property
    def category(self) -> Instance:
        """The nameable part: the v1 instance with the same attributes (itself in v1)."""
        return self if self.signature is None else _ALL[self.index]

    @property
    def uid(self) -> int:
        """Identity number: `index` in v1; a distinct number per (attributes, signature) in v2 (see
        SIGNATURE_SPAN). `instance_from_uid` inverts it."""
        if self.signature is None:
            return self.index
        return N_INSTANCES + self.index * SIGNATURE_SPAN + _SIGNATURE_POS[self.signature]

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
        """Stable readable id, ``"red-star-striped-black-top"`` (v2: ``"red-star-striped-black-top-g01e"``);
        the held-out hash is taken of the attribute part."""
        parts = (self.colour_name, self.shape_name, self.pattern_name, self.mark_colour, self.mark_position)
        if self.signature is not None:
            parts = (*parts, signature_name(self.signature))
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
        return _held_out_by_key(self.category.key)

    def differing_attributes(self, other: Instance) -> tuple[str, ...]:
        """Names of the attributes in which two instances differ ("signature" included in v2)."""
        diff = tuple(a for a in ATTRIBUTES if getattr(self, a) != getattr(other, a))
        return diff + (("signature",) if self.signature != other.signature else ())

    def negative_kind(self, other: Instance) -> str:
        """How `other` relates to this instance as a negative: "lookalike" (every nameable attribute the
        same, another signature: only pixels tell them apart), "near_duplicate" (same shape and colour,
        another mark or pattern) or "other"."""
        diff = [a for a in ATTRIBUTES if getattr(self, a) != getattr(other, a)]
        if not diff:
            return "lookalike" if self.signature != other.signature else "same"
        if len(diff) == 1 and diff[0] in NEAR_DUPLICATE_KINDS:
            return "near_duplicate"
        return "other"


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


def instance_from_uid(uid: int) -> Instance:
    """Inverse of ``Instance.uid``."""
    uid = int(uid)
    if 0 <= uid < N_INSTANCES:
        return _ALL[uid]
    index, pos = divmod(uid - N_INSTANCES, SIGNATURE_SPAN)
    if not 0 <= index < N_INSTANCES:
        raise WorldError(f"no instance has uid {uid}")
    return _ALL[index].with_signature(SIGNATURES[pos])


def sample_signature(rng: np.random.Generator, held_out: bool, exclude: Iterable[int] = ()) -> int:
    """One signature of a split's space (one draw from `rng`), avoiding `exclude`."""
    excluded = set(exclude)
    pool = [s for s in signature_space(held_out) if s not in excluded]
    if not pool:
        raise WorldError("no signature left after the exclusions")
    return pool[int(rng.integers(len(pool)))]


def sample_instance(rng: np.random.Generator, held_out: bool | None = False, world: str = DEFAULT_WORLD) -> Instance:
    """Draw one instance uniformly: from the training set (False), the held-out set (True) or all (None).
    In world "v2" a second draw gives it a signature of its split's space."""
    if held_out is None:
        inst = _ALL[int(rng.integers(N_INSTANCES))]
    else:
        pool = HELD_OUT_INDICES if held_out else TRAIN_INDICES
        inst = _ALL[int(pool[rng.integers(len(pool))])]
    if check_world(world) == "v1":
        return inst
    return inst.with_signature(sample_signature(rng, inst.is_held_out))


NEAR_DUPLICATE_KINDS: tuple[str, ...] = ("mark", "pattern")
#: Near-duplicate kinds of a v2 instance: look-alikes (another signature) first, then other mark or pattern.
NEAR_DUPLICATE_KINDS_V2: tuple[str, ...] = ("signature", *NEAR_DUPLICATE_KINDS)


#: Look-alikes differ in at least this many glyph cells that show on the instance's shape.
MIN_VISIBLE_GLYPH_DIFFERENCE = 2


def lookalikes(instance: Instance) -> tuple[Instance, ...]:
    """The v2 look-alikes of `instance`: the same four attributes, every other signature of its split's
    space of another shade whose glyph differs in at least MIN_VISIBLE_GLYPH_DIFFERENCE cells that show
    on this shape with this mark (cells under the mark or off the silhouette do not count). Empty for a
    v1 instance."""
    if instance.signature is None:
        return ()
    return _lookalikes(instance)


@lru_cache(maxsize=16384)
def _lookalikes(instance: Instance) -> tuple[Instance, ...]:
    # Imported here because the renderer, which owns the glyph geometry, imports this module.
    from .render import visible_glyph_cells

    visible = visible_glyph_cells(instance.shape_name, instance.mark % len(MARK_POSITIONS))
    sig = instance.signature
    shade = signature_shade(sig)
    return tuple(
        instance.with_signature(s)
        for s in signature_space(instance.is_held_out)
        if bin((s ^ sig) & visible).count("1") >= MIN_VISIBLE_GLYPH_DIFFERENCE and signature_shade(s) != shade
    )


def near_duplicates(instance: Instance, kinds: Sequence[str] | None = None) -> tuple[Instance, ...]:
    """Instances that differ from `instance` in exactly one attribute, that attribute being one of `kinds`.

    The default kinds give the hard negatives of the world: same shape and colour, another mark
    (7) or another pattern (5), ordered by index; for a v2 instance also its look-alikes (kind
    "signature", first), and its mark / pattern siblings carry a signature of their own split: the
    instance's own when that split is the same, else the one at the same position of the other space.
    """
    if kinds is None:
        kinds = NEAR_DUPLICATE_KINDS if instance.signature is None else NEAR_DUPLICATE_KINDS_V2
    return _near_duplicates(instance, tuple(kinds))


@lru_cache(maxsize=16384)
def _near_duplicates(instance: Instance, kinds: tuple[str, ...]) -> tuple[Instance, ...]:
    allowed = ATTRIBUTES if instance.signature is None else (*ATTRIBUTES, "signature")
    unknown = [k for k in kinds if k not in allowed]
    if unknown or not kinds:
        raise WorldError(f"near-duplicate kinds must be a non-empty subset of {allowed}, got {kinds}")
    out = set()
    for attr in kinds:
        if attr == "signature":
            continue
        for value in range(len(ATTRIBUTE_VALUES[attr])):
            if value != getattr(instance, attr):
                ids = [value if a == attr else getattr(instance, a) for a in ATTRIBUTES]
                index = ((ids[0] * len(COLOURS) + ids[1]) * len(PATTERNS) + ids[2]) * len(MARKS) + ids[3]
                out.add(_ALL[index])
    siblings = sorted(out, key=lambda i: i.index)
    if instance.signature is None:
        return tuple(siblings)
    pos = signature_space(instance.is_held_out).index(instance.signature)
    signed = []
    for sib in siblings:
        space = signature_space(sib.is_held_out)
        same_split = sib.is_held_out == instance.is_held_out
        signed.append(sib.with_signature(instance.signature if same_split else space[pos % len(space)]))
    return (lookalikes(instance) if "signature" in kinds else ()) + tuple(signed)


#: Share of a v2 instance's sampled near-duplicates that are look-alikes (signature only).
LOOKALIKE_P = 0.75


def sample_near_duplicate(
    instance: Instance,
    rng: np.random.Generator,
    kinds: Sequence[str] | None = None,
    held_out: bool | None = None,
    exclude: Iterable[Instance] = (),
) -> Instance | None:
    """One near-duplicate of `instance` (see `near_duplicates`), optionally restricted to a split.

    For a v2 instance with the default kinds it is a look-alike (another signature) with probability
    ``LOOKALIKE_P`` (one extra draw), else a mark / pattern sibling. Returns None when no candidate is
    left after the restrictions.
    """
    excluded = set(exclude)
    if instance.signature is not None and kinds is None:
        kinds = ("signature",) if rng.random() < LOOKALIKE_P else NEAR_DUPLICATE_KINDS
        found = sample_near_duplicate(instance, rng, kinds, held_out, excluded)
        if found is not None or kinds == NEAR_DUPLICATE_KINDS:
            return found
        kinds = NEAR_DUPLICATE_KINDS
    pool = [
        d
        for d in near_duplicates(instance, kinds)
        if d not in excluded and (held_out is None or d.is_held_out == held_out)
    ]
    if not pool:
        return None
    return pool[int(rng.integers(len(pool)))]
