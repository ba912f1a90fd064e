"""What `ego-ros demo` shows: its personal object, that object's look-alike and the camera's clips.

The launch file's camera, the stream benchmarks and the tests use the same object and scenario without
starting a ROS graph, so they live apart from the run; this module needs only the toy world's attributes.
"""

from __future__ import annotations

from typing import Any

from ..toy import attributes
from ..toy.attributes import Instance

#: The demo's personal concept: a held-out toy-world instance (the toy model never saw it in training).
#: These are its attributes; in world v2 it also carries the glyph DEMO_SIGNATURE (see `demo_instance`).
DEMO_INSTANCE = "red-heart-checkered-white-right"
#: Share of the clips that show the demo's object when the camera draws its clips at random (the
#: launch file's camera and the stream benches); `ego-ros demo` itself plays DEMO_CLIP_CYCLE.
DEMO_INCLUDE_P = 0.8
#: The clips the demo's camera plays in turn: the concept, neither it nor a look-alike, its look-alike.
#: Short clips of DEMO_CLIP_SECONDS make a cycle of 6 s at 30 Hz, so any 10-s window holds at least 2 s
#: of each kind (10 - (6 - 2)), and still 2 s if the camera fell behind to 15 Hz (10 - (12 - 4)).
DEMO_CLIP_CYCLE = ("include", "absent", "lookalike")
DEMO_CLIP_SECONDS = 2.0
#: A demo clip shows its subject with at most one other object, both 0.3-0.4 of the frame: in the
#: busier default (up to 4 objects of 0.2-0.4) the toy model recognises kona in about 2 frames of 3.
DEMO_MAX_OBJECTS = 2
DEMO_OBJECT_SIZE = (0.3, 0.4)
DEMO_NAME = "kona"
#: kona's glyph in world v2 (a held-out one, as kona is a held-out instance).
DEMO_SIGNATURE = attributes.HELD_OUT_SIGNATURES[0]
DEMO_NOTES = "the demo's personal object: a red heart, checkered, with a white mark on the right"
DEMO_QUESTION = f"What colour is {DEMO_NAME}?"
DEMO_VIEWS = 2
DEMO_VIEW_SIZE = 128
DEMO_VIEW_SEED = 7


def demo_instance(world: str | None = None) -> Instance:
    """The demo's personal object in `world` (default: the toy world's default): DEMO_INSTANCE, and in
    world v2 with the glyph DEMO_SIGNATURE."""
    inst = attributes.Instance.from_key(DEMO_INSTANCE)
    world = attributes.check_world(world or attributes.DEFAULT_WORLD)
    return inst if world == "v1" else inst.with_signature(DEMO_SIGNATURE)


def demo_lookalikes(world: str | None = None) -> tuple[Instance, ...]:
    """What the demo calls a look-alike of its object: in world v1 a near-duplicate (same shape and
    colour, another mark or pattern), in v2 a look-alike proper (the same words, another glyph)."""
    inst = demo_instance(world)
    return attributes.near_duplicates(inst) if inst.signature is None else attributes.lookalikes(inst)


def demo_lookalike(world: str | None = None) -> Instance:
    """The look-alike the demo's camera shows. In v1 the mark-colour twin (a black mark where kona's is
    white, same place: the nearest of its near-duplicates by the words that name it); in v2 the first
    look-alike by glyph mask."""
    inst = demo_instance(world)
    if inst.signature is not None:
        return attributes.lookalikes(inst)[0]
    (twin,) = (d for d in attributes.near_duplicates(inst, ("mark",)) if d.mark_position == inst.mark_position)
    return twin


def demo_camera_params(seed: int = 0, world: str | None = None) -> dict[str, Any]:
    """The demo camera's scenario: parameters of the `synthetic_camera` node, and keyword arguments of
    `ToyCamera` alike."""
    return {"seed": seed, "include": [demo_instance(world).key], "include_names": [DEMO_NAME],
            "lookalikes": [demo_lookalike(world).key], "clip_cycle": list(DEMO_CLIP_CYCLE),
            "clip_seconds": [DEMO_CLIP_SECONDS, DEMO_CLIP_SECONDS], "max_objects": DEMO_MAX_OBJECTS,
            "object_size": list(DEMO_OBJECT_SIZE)}
