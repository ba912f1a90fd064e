"""Samplers of toy-world scenes for training and for exports (all driven by a numpy Generator).

Sizes are diameters (of the object's circumscribed circle) as fractions of the shorter image side;
at 64x64, 0.31-0.41 is a 20-26 px object and 0.22-0.34 a 14-22 px one.

* `sample_background(rng)`, `sample_lighting(rng)`: varied backgrounds (gradients, textures, clutter
  blobs) and lighting.
* `reference_scene(instance, rng, size)`: a reference view, the instance medium-large and wholly
  recognisable (whole mark visible, >= 85 % of it visible), with a few smaller distractors.
* `query_scene(rng, size, include=[...])`: 2-4 objects holding every instance of `include` in a
  recognisable state (mark visible, >= 50 % visible), the rest distractors, optionally one of them a
  near-duplicate of an included instance.
* `random_scene(rng, size)`: 1-4 objects of any size from small to large, cropping and occlusion allowed;
  the largest one is `spec.main`. Generic pretraining material.

Each `*_scene` has a `*_spec` twin that returns only the SceneSpec. The `*_scene` functions render and
check visibility (re-drawing the layout when a key object came out occluded or cropped), so their
guarantees hold at the size they rendered; the `*_spec` twins check at 64x64.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import replace

import numpy as np

from .attributes import (
    DEFAULT_WORLD,
    MAX_ROTATION_DEG,
    Instance,
    WorldError,
    check_world,
    near_duplicates,
    sample_instance,
    sample_near_duplicate,
)
from .colours import muted_rgb
from .render import Size, render
from .scene import Scene
from .specs import BLOB_KINDS, TEXTURES, BackgroundSpec, Blob, Lighting, ObjectSpec, SceneSpec

Range = tuple[float, float]
REFERENCE_SIZE: Range = (0.31, 0.41)
DISTRACTOR_SIZE: Range = (0.16, 0.28)
QUERY_SIZE: Range = (0.22, 0.34)
RANDOM_SIZE: Range = (0.12, 0.6)
MAX_ATTEMPTS = 50


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**31 - 1))


def sample_background(rng: np.random.Generator, max_blobs: int = 4) -> BackgroundSpec:
    """A muted background: gradient, one of TEXTURES, 0-`max_blobs` clutter ellipses / rectangles."""
    a = muted_rgb(rng)
    b = muted_rgb(rng) if rng.random() < 0.7 else a
    texture = TEXTURES[int(rng.integers(len(TEXTURES)))]
    blobs = []
    for _ in range(int(rng.integers(0, max_blobs + 1))):
        blobs.append(
            Blob(
                kind=BLOB_KINDS[int(rng.integers(len(BLOB_KINDS)))],
                x=float(rng.uniform(-0.1, 1.1)),
                y=float(rng.uniform(-0.1, 1.1)),
                rx=float(rng.uniform(0.05, 0.3)),
                ry=float(rng.uniform(0.05, 0.3)),
                angle=float(rng.uniform(0, 180)),
                colour=muted_rgb(rng, saturation=(0.05, 0.3), value=(0.25, 0.8)),
            )
        )
    return BackgroundSpec(
        colour_a=a,
        colour_b=b,
        gradient_angle=float(rng.uniform(0, 360)),
        texture=texture,
        texture_scale=float(rng.uniform(2.0, 8.0)),
        texture_angle=float(rng.uniform(0, 180)),
        texture_strength=float(rng.uniform(4.0, 18.0)),
        texture_seed=_seed(rng),
        blobs=tuple(blobs),
    )


def sample_lighting(rng: np.random.Generator) -> Lighting:
    """Brightness 0.8-1.15 with a ramp of up to +-15 % across the image."""
    return Lighting(
        brightness=float(rng.uniform(0.8, 1.15)),
        gradient=float(rng.uniform(0.0, 0.15)),
        angle=float(rng.uniform(0, 360)),
    )


def _uniform(rng: np.random.Generator, r: Range) -> float:
    lo, hi = r
    if not 0 < lo <= hi:
        raise WorldError(f"size range must satisfy 0 < low <= high, got {r}")
    return float(rng.uniform(lo, hi))


def _count(rng: np.random.Generator, r: tuple[int, int] | int, what: str) -> int:
    lo, hi = (r, r) if isinstance(r, (int, np.integer)) else r
    if not 0 <= lo <= hi:
        raise WorldError(f"{what} must be a count or a (low, high) pair with 0 <= low <= high, got {r!r}")
    return int(rng.integers(lo, hi + 1))


def _place(
    rng: np.random.Generator,
    sizes: Sequence[float],
    key: Sequence[bool],
    key_margin: float,
    tries: int = 30,
) -> list[tuple[float, float]] | None:
    """Positions for objects of diameter `sizes` (key objects first). Key objects keep their centre
    `key_margin` radii inside the frame and stay clear of each other; distractors may hang over the
    border and overlap a little. Returns None when a key object cannot be placed."""
    placed: list[tuple[float, float, float, bool]] = []
    out: list[tuple[float, float]] = []
    for d, is_key in zip(sizes, key):
        r = d / 2
        lo = r * key_margin if is_key else -0.3 * r
        lo = min(lo, 0.5)
        for _ in range(tries):
            x, y = float(rng.uniform(lo, 1 - lo)), float(rng.uniform(lo, 1 - lo))
            ok = True
            for px, py, pr, pkey in placed:
                factor = 0.85 if (is_key or pkey) else 0.55
                if math.hypot(x - px, y - py) < factor * (r + pr):
                    ok = False
                    break
            if ok:
                placed.append((x, y, r, is_key))
                out.append((x, y))
                break
        else:
            if is_key:
                return None
            out.append((math.nan, math.nan))
    return out


def _distractors(
    rng: np.random.Generator, n: int, avoid: set[Instance], held_out: bool | None, world: str = DEFAULT_WORLD
) -> list[Instance]:
    """`n` distinct instances of `world` not in `avoid`. In v2 a distractor also never shares the
    attributes of an avoided instance (that would make it an unplanned look-alike of it); in v1 that
    is the same test, so v1 scenes draw exactly as before."""
    out: list[Instance] = []
    avoid_categories = {a.category for a in avoid}
    while len(out) < n:
        inst = sample_instance(rng, held_out=held_out, world=world)
        if inst not in avoid and inst.category not in avoid_categories and inst not in out:
            out.append(inst)
    return out


def _compose(
    rng: np.random.Generator,
    instances: Sequence[Instance],
    sizes: Sequence[float],
    key: Sequence[bool],
    key_margin: float,
    shuffle_depth: bool,
    main: int | None,
) -> SceneSpec | None:
    positions = _place(rng, sizes, key, key_margin)
    if positions is None:
        return None
    tints = rng.integers(-10, 11, size=(len(instances), 3)).tolist()
    angles = rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG, size=len(instances)).tolist()
    # Distractors that found no place (NaN position) are left out.
    keep = [i for i, (x, _) in enumerate(positions) if not math.isnan(x)]
    objects = {
        i: ObjectSpec(
            instance=instances[i],
            x=positions[i][0],
            y=positions[i][1],
            size=sizes[i],
            angle=angles[i],
            tint=tuple(tints[i]),
        )
        for i in keep
    }
    order = list(keep)
    if shuffle_depth:
        order = [keep[i] for i in rng.permutation(len(keep))]
    new_main = None if main is None else order.index(main)
    noise = float(rng.uniform(0.0, 6.0))
    return SceneSpec(
        background=sample_background(rng),
        objects=tuple(objects[i] for i in order),
        lighting=sample_lighting(rng),
        noise=noise,
        noise_seed=_seed(rng),
        main=new_main,
    )


def _checked(build, size: Size, key_instances: Sequence[Instance], min_visible: float) -> Scene:
    """Render specs from `build()` until every key instance is recognisable."""
    for _ in range(MAX_ATTEMPTS):
        spec = build()
        if spec is None:
            continue
        scene = render(spec, size)
        ok = True
        for k, obj in enumerate(spec.objects):
            if obj.instance in key_instances and not scene.is_recognisable(k, min_visible):
                ok = False
                break
        if ok:
            return scene
    raise WorldError(
        f"could not lay out {len(key_instances)} recognisable key objects in {MAX_ATTEMPTS} attempts; "
        "use fewer or smaller objects"
    )


def reference_scene(
    instance: Instance,
    rng: np.random.Generator,
    size: Size = 64,
    distractors: tuple[int, int] | int = (2, 3),
    main_size: Range = REFERENCE_SIZE,
    distractor_size: Range = DISTRACTOR_SIZE,
    distractor_held_out: bool | None = False,
    exclude: Iterable[Instance] = (),
) -> Scene:
    """A reference view of `instance` (``spec.main``): medium-large, >= 85 % visible, whole mark
    visible, among `distractors` smaller objects drawn from the `distractor_held_out` split (False:
    training instances, None: any) minus `exclude`, and never near-duplicates of `instance`."""
    if not isinstance(instance, Instance):
        raise WorldError(f"reference_scene needs an Instance, got {type(instance).__name__}")
    avoid = {instance, *exclude, *near_duplicates(instance)}

    def build() -> SceneSpec | None:
        n = _count(rng, distractors, "distractors")
        others = _distractors(rng, n, avoid, distractor_held_out, instance.world)
        sizes = [_uniform(rng, main_size)] + [_uniform(rng, distractor_size) for _ in others]
        return _compose(rng, [instance, *others], sizes, [True] + [False] * n, 1.0, True, 0)

    return _checked(build, size, [instance], 0.85)


def query_scene(
    rng: np.random.Generator,
    size: Size = 64,
    include: Sequence[Instance] = (),
    n_objects: tuple[int, int] | int = (2, 4),
    object_size: Range = QUERY_SIZE,
    distractor_held_out: bool | None = False,
    exclude: Iterable[Instance] = (),
    near_duplicate_p: float = 0.0,
    min_visible: float = 0.5,
    world: str | None = None,
) -> Scene:
    """A query scene of `n_objects` objects (at least ``len(include)``), holding every instance of
    `include` recognisably (whole mark visible, >= `min_visible` of its area). The other objects come
    from the `distractor_held_out` split minus `exclude` and `include`; with probability
    `near_duplicate_p` one of them is a near-duplicate of an included instance (hard distractor).
    Depth order is random, so included objects may be partly occluded. Distractors come from `world`
    (default: the world of the included instances, else v1)."""
    include = list(include)
    if len(set(include)) != len(include) or not all(isinstance(i, Instance) for i in include):
        raise WorldError("include must be distinct Instances")
    world = check_world(world if world is not None else (include[0].world if include else DEFAULT_WORLD))
    if any(i.world != world for i in include):
        raise WorldError(f"include must hold instances of world {world} only")
    excluded = set(exclude)
    if excluded & set(include):
        raise WorldError("an instance cannot be both included and excluded")
    avoid = excluded | set(include)

    def build() -> SceneSpec | None:
        n = max(_count(rng, n_objects, "n_objects"), len(include))
        n_other = n - len(include)
        others: list[Instance] = []
        if include and n_other > 0 and rng.random() < near_duplicate_p:
            anchor = include[int(rng.integers(len(include)))]
            dup = sample_near_duplicate(anchor, rng, exclude=avoid)
            if dup is not None:
                others.append(dup)
        others += _distractors(rng, n_other - len(others), avoid | set(others), distractor_held_out, world)
        sizes = [_uniform(rng, object_size) for _ in range(n)]
        return _compose(rng, include + others, sizes, [True] * len(include) + [False] * n_other, 0.8, True, None)

    return _checked(build, size, include, min_visible)


def random_scene(
    rng: np.random.Generator,
    size: Size = 64,
    n_objects: tuple[int, int] | int = (1, 4),
    object_size: Range = RANDOM_SIZE,
    held_out: bool | None = False,
    world: str = DEFAULT_WORLD,
) -> Scene:
    """1-4 objects of any size from small to large, anywhere (cropping and occlusion allowed); the
    largest is ``spec.main``. Instances come from the `held_out` split (False = training) of `world`."""
    check_world(world)

    def build() -> SceneSpec | None:
        n = _count(rng, n_objects, "n_objects")
        insts = _distractors(rng, n, set(), held_out, world)
        lo, hi = object_size
        if not 0 < lo <= hi:
            raise WorldError(f"object_size must satisfy 0 < low <= high, got {object_size}")
        sizes = sorted((float(np.exp(rng.uniform(math.log(lo), math.log(hi)))) for _ in insts), reverse=True)
        # The largest object is the main one and stays mostly in frame; the others go anywhere.
        return (
            _compose(rng, insts, sizes, [True] + [False] * (n - 1), 0.6, True, 0)
            if n
            else SceneSpec(background=sample_background(rng), lighting=sample_lighting(rng), noise_seed=_seed(rng))
        )

    for _ in range(MAX_ATTEMPTS):
        spec = build()
        if spec is not None:
            return render(spec, size)
    raise WorldError("could not lay out a random scene; use fewer or smaller objects")


def reference_spec(instance: Instance, rng: np.random.Generator, **kwargs) -> SceneSpec:
    """`reference_scene` checked at 64x64, returning only the spec."""
    return reference_scene(instance, rng, 64, **kwargs).spec


def query_spec(rng: np.random.Generator, **kwargs) -> SceneSpec:
    """`query_scene` checked at 64x64, returning only the spec."""
    return query_scene(rng, 64, **kwargs).spec


def without_noise(spec: SceneSpec) -> SceneSpec:
    """The same scene with neutral lighting and no pixel noise (exact object colours)."""
    return replace(spec, lighting=Lighting(), noise=0.0)
