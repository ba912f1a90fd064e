"""Samples about what an image shows: ``describe``, ``area``, ``attribute``, ``count`` and ``caption``
(the objects left to right; concepts in the context are called by their names)."""

from __future__ import annotations

import numpy as np

from .attributes import COLOURS, SHAPES, Instance, sample_instance
from .image_data import render_size
from .model_config import PROMPT_OVERRIDES
from .sample_builder import EntryData, Sample, SampleBuilder, other_instances, train_near_duplicate
from .sample_texts import QUESTIONS, describe_answer, distinct_names
from .scene import Scene
from .scenes import query_scene, random_scene, reference_scene
from .task_config import TaskConfig


def _left_to_right(scene: Scene, min_visible: float = 0.5) -> list[int]:
    xs = []
    for k in range(len(scene.spec.objects)):
        if scene.visible_pixels[k] == 0 or scene.visible_fraction(k) < min_visible:
            continue
        xs.append((float(np.nonzero(scene.masks[k])[1].mean()), k))
    return [k for _, k in sorted(xs)]


def _main_scene(rng: np.random.Generator, cfg: TaskConfig, need_mark: bool = True) -> Scene:
    """A scene with a main object: a reference scene, or a random one whose main object is recognisable."""
    size = render_size(rng, cfg)
    if rng.random() < 0.35:
        for _ in range(4):
            s = random_scene(rng, size, world=cfg.world)
            if s.spec.main is not None and (not need_mark or s.is_recognisable(s.spec.main, 0.7)):
                return s
    return reference_scene(sample_instance(rng, held_out=False, world=cfg.world), rng, size)


def describe_sample(rng: np.random.Generator, cfg: TaskConfig, step: int) -> Sample:
    b = SampleBuilder(rng, cfg)
    s = _main_scene(rng, cfg)
    i = b.scene(s)
    inst = s.spec.objects[s.spec.main].instance
    return Sample("describe", b.images, [], "none", [i], PROMPT_OVERRIDES["keywords"], describe_answer(inst))


def area_sample(rng: np.random.Generator, cfg: TaskConfig, step: int) -> Sample:
    b = SampleBuilder(rng, cfg)
    s = _main_scene(rng, cfg, need_mark=False)
    i = b.scene(s)
    pct = int(round(100 * float(s.main_area_fraction or 0.0)))
    return Sample("area", b.images, [], "none", [i], PROMPT_OVERRIDES["area"], str(min(100, max(0, pct))))


def attribute_sample(rng: np.random.Generator, cfg: TaskConfig, step: int) -> Sample:
    b = SampleBuilder(rng, cfg)
    which = ("colour", "shape", "pattern", "mark", "present")[int(rng.choice(5, p=[0.2, 0.25, 0.2, 0.15, 0.2]))]
    if which == "present":
        s = query_scene(rng, render_size(rng, cfg), world=cfg.world, n_objects=(1, 4))
        i = b.scene(s)
        seen = {
            (o.instance.colour_name, o.instance.shape_name)
            for k, o in enumerate(s.spec.objects)
            if s.visible_fraction(k) >= 0.5
        }
        if seen and rng.random() < 0.5:
            colour, shape = sorted(seen)[int(rng.integers(len(seen)))]
            answer = "yes"
        else:
            while True:
                colour = COLOURS[int(rng.integers(len(COLOURS)))]
                shape = SHAPES[int(rng.integers(len(SHAPES)))]
                if (colour, shape) not in seen:
                    break
            answer = (
                "no"
                if all(
                    (c, sh) != (colour, shape)
                    for c, sh in ((o.instance.colour_name, o.instance.shape_name) for o in s.spec.objects)
                )
                else "yes"
            )
        return Sample(
            "attribute", b.images, [], "none", [i], QUESTIONS["present"].format(colour=colour, shape=shape), answer
        )
    s = _main_scene(rng, cfg, need_mark=which == "mark")
    i = b.scene(s)
    inst = s.spec.objects[s.spec.main].instance
    answer = {
        "colour": inst.colour_name,
        "shape": inst.shape_name,
        "pattern": inst.pattern_name,
        "mark": inst.mark_position,
    }[which]
    return Sample("attribute", b.images, [], "none", [i], QUESTIONS[which], answer)


def count_sample(rng: np.random.Generator, cfg: TaskConfig, step: int) -> Sample:
    b = SampleBuilder(rng, cfg)
    s = query_scene(rng, render_size(rng, cfg), world=cfg.world, n_objects=(1, 5), min_visible=0.5)
    i = b.scene(s)
    n = sum(1 for k in range(len(s.spec.objects)) if s.visible_fraction(k) >= 0.4)
    return Sample("count", b.images, [], "none", [i], QUESTIONS["count"], str(n))


def caption_sample(rng: np.random.Generator, cfg: TaskConfig, step: int) -> Sample:
    """Objects left to right; with a context, the concepts present are called by name."""
    b = SampleBuilder(rng, cfg)
    entries: list[EntryData] = []
    named: dict[Instance, str] = {}
    include: list[Instance] = []
    exclude: set[Instance] = set()
    dup_p = 0.0
    if rng.random() < 0.6:
        n = int(rng.choice([1, 2], p=[0.7, 0.3]))
        insts = other_instances(rng, n, set(), cfg.world)
        names = distinct_names(rng, n)
        entries = [b.entry(inst, name) for inst, name in zip(insts, names)]
        named = dict(zip(insts, names))
        for inst in insts:
            if rng.random() < 0.7:
                include.append(inst)
            else:
                exclude.add(inst)
        dup_p = 0.5 * cfg.ramp_progress(step)
    if include and rng.random() < dup_p:
        # a look-alike of a concept (described by colour and shape, not called by the concept's name)
        lookalike = train_near_duplicate(include[0], rng, exclude=set(include) | exclude)
        if lookalike is not None:
            include.append(lookalike)
    s = query_scene(rng, render_size(rng, cfg), world=cfg.world, include=include, exclude=exclude, n_objects=(1, 4))
    i = b.scene(s)
    words = []
    for k in _left_to_right(s):
        inst = s.spec.objects[k].instance
        words.append(named.get(inst) or f"{inst.colour_name} {inst.shape_name}")
    answer = ", ".join(words) + "." if words else "nothing."
    mode = b.context_mode() if entries else "none"
    return Sample("caption", b.images, entries, mode, [i], PROMPT_OVERRIDES["caption"], answer)
