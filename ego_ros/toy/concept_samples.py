"""``concept_qa`` samples: questions about named concepts in the exports' forms (open questions, which
is bigger, left of) and the Yo'LLaVA A/B form with options."""

from __future__ import annotations

import numpy as np

from .attributes import ab_options
from .image_data import render_size
from .sample_builder import Sample, SampleBuilder, other_instances
from .sample_texts import AB_QUESTIONS, QUESTIONS, distinct_names
from .scenes import query_scene
from .task_config import TaskConfig


def concept_qa_sample(rng: np.random.Generator, cfg: TaskConfig, step: int) -> Sample:
    b = SampleBuilder(rng, cfg)
    kind = ("open", "ab", "bigger", "left")[int(rng.choice(4, p=[0.35, 0.35, 0.15, 0.15]))]
    n = 2 if kind in ("bigger", "left") else int(rng.choice([1, 2], p=[0.6, 0.4]))
    insts = other_instances(rng, n, set(), cfg.world)
    names = distinct_names(rng, n)
    entries = [b.entry(inst, name) for inst, name in zip(insts, names)]
    present = insts if kind in ("bigger", "left") or rng.random() < 0.8 else []
    if kind in ("bigger", "left"):
        scene, answer = None, ""
        for _ in range(6):
            s = query_scene(rng, render_size(rng, cfg), world=cfg.world, include=insts, n_objects=(2, 4))
            ka, kb = (s.spec.instances.index(x) for x in insts)
            if kind == "bigger":
                pa, pb = s.visible_pixels[ka], s.visible_pixels[kb]
                if max(pa, pb) >= 1.2 * min(pa, pb):
                    scene, answer = s, names[0] if pa > pb else names[1]
                    break
            else:
                xa = float(np.nonzero(s.masks[ka])[1].mean())
                xb = float(np.nonzero(s.masks[kb])[1].mean())
                if abs(xa - xb) >= 0.1 * s.width:
                    scene, answer = s, "yes" if xa < xb else "no"
                    break
        if scene is None:  # no clear layout: ask about colour instead
            kind, scene = "open", s
        i = b.scene(scene)
        if kind == "bigger":
            return Sample(
                "concept_qa",
                b.images,
                entries,
                b.context_mode(),
                [i],
                QUESTIONS["bigger"].format(a=names[0], b=names[1]),
                answer,
            )
        if kind == "left":
            return Sample(
                "concept_qa",
                b.images,
                entries,
                b.context_mode(),
                [i],
                QUESTIONS["left"].format(a=names[0], b=names[1]),
                answer,
            )
    else:
        s = query_scene(rng, render_size(rng, cfg), world=cfg.world, include=present, n_objects=(1, 4))
        i = b.scene(s)
    j = int(rng.integers(n))
    inst, name = insts[j], names[j]
    if kind == "open":
        attr = ("colour", "pattern", "shape")[int(rng.integers(3))]
        answer = {"colour": inst.colour_name, "pattern": inst.pattern_name, "shape": inst.shape_name}[attr]
        return Sample(
            "concept_qa", b.images, entries, b.context_mode(), [i], QUESTIONS[f"concept_{attr}"].format(a=name), answer
        )
    attr, q = AB_QUESTIONS[int(rng.integers(len(AB_QUESTIONS)))]
    truth, other = ab_options(inst, attr, rng)
    first = bool(rng.random() < 0.5)
    a, bb = (truth, other) if first else (other, truth)
    question = QUESTIONS["ab"].format(question=q.format(a=name), a=a.capitalize(), b=bb.capitalize())
    return Sample("concept_qa", b.images, entries, b.context_mode(), [i], question, "A" if first else "B")
