"""Recognition samples: is a named concept here (``match``, the engine's question), and which of two
is (``choose``); and the positive twin of a hard negative (`positive_twin`), which the held-out
evaluation compares it with."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .attributes import NEAR_DUPLICATE_KINDS, Instance, near_duplicates, sample_instance, sample_near_duplicate
from .image_data import image_data, render_size
from .model_config import PROMPT_OVERRIDES
from .render import render
from .sample_builder import EntryData, Sample, SampleBuilder, other_instances, train_near_duplicate
from .sample_texts import QUESTIONS, RECOGNITION_PARAPHRASES, distinct_names, keywords_of
from .scene import Scene
from .scenes import query_scene
from .task_config import TaskConfig

#: The visibility `query_scene` guarantees its included objects by default (which `draw_match` uses).
QUERY_MIN_VISIBLE = 0.5


@dataclass(frozen=True)
class MatchDraw:
    """A match sample with what it was drawn from: its query scene, the asked concept and the sampled
    near-duplicate (in the query of a hard negative; None when the concept has none)."""

    sample: Sample
    query: Scene
    concept: Instance
    near_duplicate: Instance | None


def match_sample(
    rng: np.random.Generator,
    cfg: TaskConfig,
    step: int,
    held_out: bool = False,
    kind: str | None = None,
    form: str | None = None,
) -> Sample:
    """Recognition in the engine's format. held_out=True draws the concept from held-out instances (for
    evaluation only; distractors then come from any split). Kinds "lookalike" and "near_duplicate" (v2
    only) are hard negatives whose near-duplicate is a look-alike (same attributes, another signature) or an
    other-mark / other-pattern sibling; plain "hard" draws either (look-alikes three times in four)."""
    return draw_match(rng, cfg, step, held_out, kind, form).sample


def draw_match(
    rng: np.random.Generator,
    cfg: TaskConfig,
    step: int,
    held_out: bool = False,
    kind: str | None = None,
    form: str | None = None,
) -> MatchDraw:
    """`match_sample` with its query scene, concept and near-duplicate (the same draws from `rng`)."""
    b = SampleBuilder(rng, cfg)
    if kind is None:
        if rng.random() < 0.5:
            kind = "pos"
        else:
            kind = "hard" if rng.random() < cfg.hard_share(step) else "easy"
    split = True if held_out else False
    if kind in ("lookalike", "near_duplicate") and cfg.world == "v1":
        raise ValueError(f"{kind} negatives are a world v2 kind; v1 hard negatives are near-duplicates")
    target = sample_instance(rng, held_out=split, world=cfg.world)
    dup_kinds = {"lookalike": ("signature",), "near_duplicate": NEAR_DUPLICATE_KINDS}.get(kind)
    dup = sample_near_duplicate(target, rng, dup_kinds, held_out=None if held_out else False)
    if kind in ("hard", "lookalike", "near_duplicate") and dup is None:
        kind = "easy"
    n_entries = 1 if held_out else int(rng.choice([1, 2, 3], p=[0.65, 0.28, 0.07]))
    others: list[Instance] = []
    if n_entries > 1:
        if dup is not None and rng.random() < 0.5 * cfg.ramp_progress(step):
            others.append(dup)
        others += other_instances(rng, n_entries - 1 - len(others), {target, *others}, cfg.world)
    names = distinct_names(rng, n_entries)
    order = [target, *others]
    perm = rng.permutation(n_entries)
    instances = [order[i] for i in perm]
    asked = names[int(np.nonzero(perm == 0)[0][0])]
    mode = b.context_mode() if form is None else ("keywords" if form == "keywords" else "memory")
    entries = []
    for inst, name in zip(instances, names):
        if form is not None and form != "keywords":
            entries.append(EntryData(name, [b.memory_view(inst, form)], keywords_of(inst)))
        else:
            entries.append(b.entry(inst, name))
    include: list[Instance] = []
    exclude = {target}
    if kind == "pos":
        include = [target]
    elif kind in ("hard", "lookalike", "near_duplicate"):
        include = [dup]
    else:
        exclude |= set(near_duplicates(target))
    # Other concepts of the context are sometimes in the scene too (they are not the one asked about).
    for inst in others:
        if inst not in include and inst not in exclude and rng.random() < 0.3 and len(include) < 3:
            include.append(inst)
    # How often a near-duplicate stands beside the concept in a positive (and, in v2 training, beside
    # the near-duplicate of a hard negative): ramped in with the hard negatives.
    companion_p = 0.25 + 0.35 * cfg.ramp_progress(step)
    dup_p = 0.0 if kind != "pos" or dup is None else companion_p
    if dup is not None and dup not in include and len(include) < 3 and rng.random() < dup_p:
        include.append(dup)  # a look-alike next to the concept (a positive all the same)
    if cfg.world != "v1" and not held_out and kind in ("hard", "lookalike", "near_duplicate"):
        # v2 training: a hard negative shows a second near-duplicate beside the first as often as a
        # positive shows one beside the concept. Without it "two objects with the concept's words" meant
        # yes, a shortcut a model blind to the signature learns (world 2.0 and 2.1 pilots). v1 and the
        # held-out set draw as before.
        if len(include) < 3 and rng.random() < companion_p:
            second = sample_near_duplicate(target, rng, held_out=False, exclude={dup, *include})
            if second is not None:
                include.append(second)
    q = query_scene(
        rng,
        render_size(rng, cfg),
        world=cfg.world,
        include=include,
        exclude=exclude - set(include),
        distractor_held_out=None if held_out else False,
    )
    qi = b.scene(q)
    question = PROMPT_OVERRIDES["recognition"].format(name=asked)
    if not held_out and rng.random() < cfg.paraphrase_p:
        question = RECOGNITION_PARAPHRASES[int(rng.integers(len(RECOGNITION_PARAPHRASES)))].format(name=asked)
    sample = Sample("match", b.images, entries, mode, [qi], question, "yes" if kind == "pos" else "no", kind)
    return MatchDraw(sample, q, target, dup)


def positive_twin(draw: MatchDraw) -> Sample | None:
    """The positive twin of a hard negative: the same context images, memories and question, and the same
    query scene (background, lighting, noise, every other object) with the near-duplicate's object
    swapped for the concept itself at the same place, size, pose and tint. For a look-alike negative the
    pair then differs in the signature alone. None when the concept's mark would not be visible there
    (another mark position than the near-duplicate's, occluded)."""
    s, dup = draw.sample, draw.near_duplicate
    if s.answer != "no" or dup is None or dup not in draw.query.spec.instances:
        raise ValueError("a positive twin needs a hard negative: its near-duplicate in the query")
    spec = draw.query.spec
    k = spec.instances.index(dup)
    objects = list(spec.objects)
    objects[k] = replace(objects[k], instance=draw.concept)
    scene = render(replace(spec, objects=tuple(objects)), (draw.query.width, draw.query.height))
    if not scene.is_recognisable(k, QUERY_MIN_VISIBLE):
        return None
    images = list(s.images)
    images[s.query[0]] = image_data(scene)
    return replace(s, images=images, answer="yes", kind="pos")


def twin_pair(rng: np.random.Generator, cfg: TaskConfig, step: int) -> list[Sample]:
    """Training's minimal pair (`TaskConfig.twin_weight`): a hard negative, in v2 a look-alike, then its
    positive twin. Free positives and negatives differ in everything the scene draws; a pair differs in
    the signature alone, so the language model's gradient points at the comparison of memory and query.
    Pairs ramp in with the hard negatives: until the ramp ends a draw is sometimes an ordinary match
    sample instead. The negative comes alone when its twin would hide the concept's mark."""
    if rng.random() >= cfg.ramp_progress(step):
        return [draw_match(rng, cfg, step).sample]
    kind = "hard" if cfg.world == "v1" else "lookalike"
    draw = draw_match(rng, cfg, step, kind=kind)
    if draw.sample.kind != kind or draw.near_duplicate not in draw.query.spec.instances:
        return [draw.sample]
    twin = positive_twin(draw)
    return [draw.sample] if twin is None else [draw.sample, twin]


def choose_sample(rng: np.random.Generator, cfg: TaskConfig, step: int) -> Sample:
    """Two concepts (sometimes near-duplicates of each other), one in the query: which one is it?"""
    b = SampleBuilder(rng, cfg)
    a = sample_instance(rng, held_out=False, world=cfg.world)
    other = None
    if rng.random() < cfg.ramp_progress(step) * 0.6:
        other = train_near_duplicate(a, rng)
    if other is None:
        other = other_instances(rng, 1, {a, *near_duplicates(a)}, cfg.world)[0]
    insts = [a, other]
    names = distinct_names(rng, 2)
    entries = [b.entry(inst, name) for inst, name in zip(insts, names)]
    j = int(rng.integers(2))
    s = query_scene(rng, render_size(rng, cfg), world=cfg.world, include=[insts[j]], exclude={insts[1 - j]})
    i = b.scene(s)
    return Sample(
        "choose", b.images, entries, b.context_mode(), [i], QUESTIONS["choose"].format(a=names[0], b=names[1]), names[j]
    )
