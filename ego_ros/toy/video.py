"""Short toy-world video clips with per-frame ground truth, and an endless stream for a camera node.

A `ClipSpec` is a static background and lighting plus 1-4 `Track`s: objects moving smoothly
(constant velocity plus a sideways sine wobble, and a gentle rocking rotation) that may enter or leave
the frame. ``clip.scene_spec(i)`` is the SceneSpec of frame i, so every frame renders at any size with
exact masks (see `ego_ros.toy.render`). Pixel noise is re-drawn per frame from a seed derived from
``(clip.noise_seed, i)``; the background is cached, so successive frames of a clip only redraw objects.

* `sample_clip(rng, ...)`: a random clip; `include` instances are always among the tracks and start
  inside the frame.
* `render_frame(clip, i, size)` -> `VideoFrame` (image, masks, which instances are visible /
  recognisable); `iter_frames(clip, size)` yields them all.
* `VideoStream(seed, size, fps)`: an endless, deterministic sequence of clips (clip k is drawn from
  ``default_rng([seed, k])``); ``next_frame()`` returns the next `VideoFrame` with its clip number.
  By default each clip shows each `include` instance by chance (`include_p`); with a `cycle` of clip
  kinds (`CLIP_KINDS`) clip k shows what ``cycle[k % len(cycle)]`` says instead, e.g. the personal
  object, then neither it nor its look-alikes, then a look-alike in its place.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from .attributes import MAX_ROTATION_DEG, Instance, WorldError, sample_instance
from .render import Size, render
from .scene import Scene
from .scenes import sample_background, sample_lighting
from .specs import BackgroundSpec, Lighting, ObjectSpec, SceneSpec

#: Objects rock by at most this much around a base angle of at most the same, staying within the
#: world's rotation limit.
MAX_ROCK_DEG = MAX_ROTATION_DEG / 2
#: What a clip of a `VideoStream` cycle shows besides random other objects: every `include` instance,
#: neither those nor their `lookalikes`, or every look-alike in their place.
CLIP_KINDS: tuple[str, ...] = ("include", "absent", "lookalike")


@dataclass(frozen=True)
class Track:
    """One moving object. Positions are fractions of width / height at time t (seconds):
    ``(x0, y0) + (vx, vy) t + wobble * sin(2 pi wobble_hz t + phase) * (unit normal of the velocity)``.
    The angle is ``angle0 + rock * sin(2 pi rock_hz t + phase)``."""

    instance: Instance
    size: float
    x0: float
    y0: float
    vx: float = 0.0
    vy: float = 0.0
    wobble: float = 0.0
    wobble_hz: float = 0.0
    phase: float = 0.0
    angle0: float = 0.0
    rock: float = 0.0
    rock_hz: float = 0.0
    tint: tuple[int, int, int] = (0, 0, 0)

    def __post_init__(self) -> None:
        if not isinstance(self.instance, Instance):
            raise WorldError(f"Track.instance must be an Instance, got {type(self.instance).__name__}")
        if abs(self.angle0) > MAX_ROCK_DEG + 1e-9 or abs(self.rock) > MAX_ROCK_DEG + 1e-9:
            raise WorldError(f"Track angle0 and rock must be within +-{MAX_ROCK_DEG} degrees")
        for name in ("size", "x0", "y0", "vx", "vy", "wobble", "wobble_hz", "phase", "rock_hz"):
            if not math.isfinite(getattr(self, name)):
                raise WorldError(f"Track.{name} must be finite")

    def object_at(self, t: float) -> ObjectSpec:
        speed = math.hypot(self.vx, self.vy)
        nx, ny = (-self.vy / speed, self.vx / speed) if speed > 0 else (0.0, 1.0)
        side = self.wobble * math.sin(2 * math.pi * self.wobble_hz * t + self.phase)
        angle = self.angle0 + self.rock * math.sin(2 * math.pi * self.rock_hz * t + self.phase)
        return ObjectSpec(
            instance=self.instance,
            x=self.x0 + self.vx * t + side * nx,
            y=self.y0 + self.vy * t + side * ny,
            size=self.size,
            angle=angle,
            tint=self.tint,
        )


@dataclass(frozen=True)
class ClipSpec:
    """A clip: static background and lighting, tracks in drawing order (later on top)."""

    background: BackgroundSpec
    tracks: tuple[Track, ...]
    n_frames: int
    fps: float = 30.0
    lighting: Lighting = field(default_factory=Lighting)
    noise: float = 0.0
    noise_seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "tracks", tuple(self.tracks))
        if int(self.n_frames) < 1:
            raise WorldError(f"ClipSpec.n_frames must be >= 1, got {self.n_frames}")
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise WorldError(f"ClipSpec.fps must be positive, got {self.fps}")

    @property
    def duration(self) -> float:
        return self.n_frames / self.fps

    def time(self, index: int) -> float:
        return index / self.fps

    def scene_spec(self, index: int) -> SceneSpec:
        """SceneSpec of frame `index` (0 <= index < n_frames)."""
        if not 0 <= index < self.n_frames:
            raise WorldError(f"frame index {index} outside [0, {self.n_frames})")
        t = self.time(index)
        seed = int(np.random.SeedSequence([self.noise_seed, index]).generate_state(1)[0])
        return SceneSpec(
            background=self.background,
            objects=tuple(tr.object_at(t) for tr in self.tracks),
            lighting=self.lighting,
            noise=self.noise,
            noise_seed=seed,
        )


@dataclass(frozen=True, eq=False)
class VideoFrame:
    """A rendered frame and its ground truth. `clip_index` counts clips in a VideoStream (else 0)."""

    index: int
    time: float
    scene: Scene
    clip_index: int = 0

    @property
    def image(self) -> np.ndarray:
        return self.scene.image

    @property
    def masks(self) -> np.ndarray:
        """Visible mask of each track (bool NxHxW), in ``clip.tracks`` order."""
        return self.scene.masks

    @property
    def visible(self) -> tuple[Instance, ...]:
        """Instances with at least one visible pixel."""
        return self.scene.visible_instances(1)

    @property
    def recognisable(self) -> tuple[Instance, ...]:
        """Instances showing their whole mark and at least half their area (tellable from twins)."""
        return tuple(o.instance for k, o in enumerate(self.scene.spec.objects) if self.scene.is_recognisable(k))


def render_frame(clip: ClipSpec, index: int, size: Size = 64, clip_index: int = 0) -> VideoFrame:
    """Render frame `index` of `clip` at `size` (int or (width, height))."""
    return VideoFrame(
        index=index, time=clip.time(index), scene=render(clip.scene_spec(index), size), clip_index=clip_index
    )


def iter_frames(clip: ClipSpec, size: Size = 64, clip_index: int = 0) -> Iterator[VideoFrame]:
    for i in range(clip.n_frames):
        yield render_frame(clip, i, size, clip_index)


def _track(rng: np.random.Generator, instance: Instance, size: float, duration: float, mode: str) -> Track:
    r = size / 2
    if mode == "cross":
        # Start just outside one border (the centre one radius beyond it; the sideways wobble can still
        # show a sliver on the first frames) and cross the frame within about the clip's length.
        side = int(rng.integers(4))
        along = float(rng.uniform(0.15, 0.85))
        start = [(-r, along), (1 + r, along), (along, -r), (along, 1 + r)][side]
        target = (float(rng.uniform(0.2, 0.8)), float(rng.uniform(0.2, 0.8)))
        dx, dy = target[0] - start[0], target[1] - start[1]
        norm = math.hypot(dx, dy)
        # Short clips see only part of a crossing: a crossing never takes less than about 2 s.
        speed = (1 + 2 * r) / (max(duration, 3.0) * float(rng.uniform(0.7, 1.3)))
        vx, vy = dx / norm * speed, dy / norm * speed
        x0, y0 = start
    else:  # roam: start inside, drift slowly; may still drift out near the end of long clips
        x0, y0 = float(rng.uniform(r, 1 - r)), float(rng.uniform(r, 1 - r))
        heading = float(rng.uniform(0, 2 * math.pi))
        speed = float(rng.uniform(0.02, 0.15))
        vx, vy = speed * math.cos(heading), speed * math.sin(heading)
    return Track(
        instance=instance,
        size=size,
        x0=x0,
        y0=y0,
        vx=vx,
        vy=vy,
        wobble=float(rng.uniform(0.0, 0.05)),
        wobble_hz=float(rng.uniform(0.1, 0.6)),
        phase=float(rng.uniform(0, 2 * math.pi)),
        angle0=float(rng.uniform(-MAX_ROCK_DEG, MAX_ROCK_DEG)),
        rock=float(rng.uniform(0, MAX_ROCK_DEG)),
        rock_hz=float(rng.uniform(0.1, 0.5)),
        tint=tuple(int(t) for t in rng.integers(-10, 11, size=3)),  # type: ignore[arg-type]
    )


def sample_clip(
    rng: np.random.Generator,
    n_frames: int = 90,
    fps: float = 30.0,
    include: Sequence[Instance] = (),
    n_objects: tuple[int, int] = (1, 4),
    object_size: tuple[float, float] = (0.2, 0.4),
    held_out: bool | None = False,
    exclude: Sequence[Instance] = (),
    cross_p: float = 0.4,
) -> ClipSpec:
    """A random clip of `n_frames` at `fps`. Every instance of `include` gets a track that starts inside
    the frame and drifts slowly; the other tracks (instances from the `held_out` split minus `exclude`)
    cross the frame with probability `cross_p`, else drift too."""
    include = list(include)
    if len(set(include)) != len(include):
        raise WorldError("include must not repeat an instance")
    lo, hi = n_objects
    if not 1 <= lo <= hi:
        raise WorldError(f"n_objects must satisfy 1 <= low <= high, got {n_objects}")
    n = max(int(rng.integers(lo, hi + 1)), len(include))
    avoid = set(exclude) | set(include)
    others: list[Instance] = []
    while len(others) < n - len(include):
        inst = sample_instance(rng, held_out=held_out)
        if inst not in avoid and inst not in others:
            others.append(inst)
    duration = int(n_frames) / fps
    tracks = [_track(rng, inst, float(rng.uniform(*object_size)), duration, "roam") for inst in include]
    tracks += [
        _track(rng, inst, float(rng.uniform(*object_size)), duration, "cross" if rng.random() < cross_p else "roam")
        for inst in others
    ]
    order = rng.permutation(len(tracks))
    return ClipSpec(
        background=sample_background(rng),
        tracks=tuple(tracks[i] for i in order),
        n_frames=int(n_frames),
        fps=float(fps),
        lighting=sample_lighting(rng),
        noise=float(rng.uniform(0.0, 5.0)),
        noise_seed=int(rng.integers(0, 2**31 - 1)),
    )


class VideoStream:
    """Endless deterministic toy video: clip after clip, each `clip_seconds` long.

    Clip k is ``sample_clip(np.random.default_rng([seed, k]), ...)``. Without a `cycle` each clip
    includes every instance of `include` independently with probability `include_p`; with one, clip k
    shows what ``cycle[k % len(cycle)]`` names (`CLIP_KINDS`): every `include` instance, none of them,
    or every one of `lookalikes` in their place. Either way at most ``n_objects[1]`` objects, and
    neither the included instances nor the look-alikes ever appear as random other objects.
    """

    def __init__(
        self,
        seed: int,
        size: Size = (640, 480),
        fps: float = 30.0,
        clip_seconds: tuple[float, float] = (4.0, 8.0),
        include: Sequence[Instance] = (),
        include_p: float = 0.6,
        n_objects: tuple[int, int] = (1, 4),
        held_out: bool | None = None,
        lookalikes: Sequence[Instance] = (),
        cycle: Sequence[str] = (),
        object_size: tuple[float, float] = (0.2, 0.4),
    ) -> None:
        if not (len(clip_seconds) == 2 and clip_seconds[0] > 0 and clip_seconds[1] >= clip_seconds[0]):
            raise WorldError(f"clip_seconds must be (low, high) with 0 < low <= high, got {clip_seconds}")
        if not 0 <= include_p <= 1:
            raise WorldError(f"include_p must be in [0, 1], got {include_p}")
        if not (len(object_size) == 2 and 0 < object_size[0] <= object_size[1] <= 1):
            raise WorldError(f"object_size must be (low, high) with 0 < low <= high <= 1, got {object_size}")
        unknown = [kind for kind in cycle if kind not in CLIP_KINDS]
        if unknown:
            raise WorldError(f"unknown clip kind(s) {unknown} in cycle; choose from {', '.join(CLIP_KINDS)}")
        if "include" in cycle and not include:
            raise WorldError("a cycle with 'include' clips needs include instances")
        if "lookalike" in cycle and not lookalikes:
            raise WorldError("a cycle with 'lookalike' clips needs lookalikes")
        if set(include) & set(lookalikes):
            raise WorldError("an instance cannot be both included and a look-alike")
        self.seed = int(seed)
        self.size = size
        self.fps = float(fps)
        self.clip_seconds = clip_seconds
        self.include = tuple(include)
        self.include_p = include_p
        self.n_objects = n_objects
        self.held_out = held_out
        self.lookalikes = tuple(lookalikes)
        self.cycle = tuple(cycle)
        self.object_size = (float(object_size[0]), float(object_size[1]))
        self.clip_index = -1
        self.frame_index = 0
        self.clip: ClipSpec | None = None

    def clip_kind(self, k: int) -> str | None:
        """What clip k shows by the cycle (one of CLIP_KINDS), or None when clips draw by include_p."""
        return self.cycle[k % len(self.cycle)] if self.cycle else None

    def make_clip(self, k: int) -> ClipSpec:
        rng = np.random.default_rng([self.seed, k])
        n_frames = max(1, round(float(rng.uniform(*self.clip_seconds)) * self.fps))
        kind = self.clip_kind(k)
        if kind is None:
            chosen = [inst for inst in self.include if rng.random() < self.include_p]
        else:
            chosen = {"include": list(self.include), "absent": [], "lookalike": list(self.lookalikes)}[kind]
        chosen = chosen[: self.n_objects[1]]
        return sample_clip(
            rng,
            n_frames=n_frames,
            fps=self.fps,
            include=chosen,
            n_objects=(max(self.n_objects[0], len(chosen), 1), max(self.n_objects[1], len(chosen), 1)),
            object_size=self.object_size,
            held_out=self.held_out,
            exclude=self.include + self.lookalikes,
        )

    def next_frame(self) -> VideoFrame:
        if self.clip is None or self.frame_index >= self.clip.n_frames:
            self.clip_index += 1
            self.clip = self.make_clip(self.clip_index)
            self.frame_index = 0
        frame = render_frame(self.clip, self.frame_index, self.size, self.clip_index)
        self.frame_index += 1
        return frame

    def __iter__(self) -> Iterator[VideoFrame]:
        while True:
            yield self.next_frame()
