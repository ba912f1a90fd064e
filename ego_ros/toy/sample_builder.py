"""A training sample of the toy model (`Sample`, its context `EntryData`) and `SampleBuilder`, which
collects a sample's images and turns reference scenes into concept memories (crops, whole scenes,
object-mask token subsets with or without jitter, random token subsets)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .attributes import Instance, sample_instance, sample_near_duplicate
from .image_data import N_TOKENS, ImageData, crop_scene, image_data, render_size
from .sample_texts import keywords_of
from .scene import Scene
from .scenes import reference_scene
from .task_config import TaskConfig


@dataclass
class EntryData:
    name: str
    views: list[tuple[int, np.ndarray | None]]  # (image index, token indices; None = all tokens)
    keywords: list[str]


@dataclass
class Sample:
    task: str
    images: list[ImageData]
    entries: list[EntryData]
    mode: str  # context mode of compose.query_sequence
    query: list[int]  # image indices of the query image(s)
    question: str
    answer: str
    kind: str = ""  # match: "pos" / "hard" / "lookalike" / "near_duplicate" / "easy"
    #: held-out sets only: the index in its set of the sample's matched twin (a hard negative and the
    #: positive that differs from it only in the object swapped, `recognition_samples.positive_twin`)
    twin: int | None = None


class SampleBuilder:
    """Collects the images of one sample and turns reference scenes into memory views."""

    def __init__(self, rng: np.random.Generator, cfg: TaskConfig) -> None:
        self.rng = rng
        self.cfg = cfg
        self.images: list[ImageData] = []

    def add(self, data: ImageData) -> int:
        self.images.append(data)
        return len(self.images) - 1

    def scene(self, scene: Scene) -> int:
        return self.add(image_data(scene))

    def memory_view(self, inst: Instance, form: str) -> tuple[int, np.ndarray | None]:
        rng = self.rng
        ref = reference_scene(inst, rng, render_size(rng, self.cfg))
        k = ref.spec.main
        if form in ("crop", "crop_mask"):
            idx = self.add(crop_scene(ref, k, rng))
            if form == "crop":
                return idx, None
            frac = self.images[idx].obj_frac[k].reshape(-1)
            keep = np.nonzero(frac >= 0.25)[0]
            return idx, keep if len(keep) >= 4 else np.argsort(-frac)[:16]
        idx = self.scene(ref)
        if form == "full":
            return idx, None
        frac = self.images[idx].obj_frac[k].reshape(-1)
        if form == "random":
            n = int(rng.integers(8, 25))
            return idx, np.sort(rng.choice(N_TOKENS, n, replace=False))
        on = int((frac >= 0.5).sum())
        kk = int(np.clip(round(max(on, 3) * rng.uniform(0.6, 1.4)), 3, 24))
        score = frac + (rng.normal(0, 0.35, N_TOKENS) if form == "jitter" else 0.0)
        return idx, np.sort(np.argsort(-score, kind="stable")[:kk])

    def entry(self, inst: Instance, name: str, views: int | None = None) -> EntryData:
        rng = self.rng
        forms = list(self.cfg.memory_forms)
        p = np.array([self.cfg.memory_forms[f] for f in forms])
        form = forms[int(rng.choice(len(forms), p=p / p.sum()))]
        if views is None:
            views = int(rng.choice([1, 2, 3], p=[0.8, 0.17, 0.03]))
        return EntryData(
            name=name, views=[self.memory_view(inst, form) for _ in range(views)], keywords=keywords_of(inst)
        )

    def context_mode(self) -> str:
        u = self.rng.random()
        if u < self.cfg.keywords_context_p:
            return "keywords"
        if u < self.cfg.keywords_context_p + self.cfg.memory_keywords_p:
            return "memory+keywords"
        return "memory"


def other_instances(rng: np.random.Generator, n: int, avoid: set[Instance], world: str) -> list[Instance]:
    """`n` distinct training instances of `world`, none of them in `avoid`."""
    out: list[Instance] = []
    while len(out) < n:
        inst = sample_instance(rng, held_out=False, world=world)
        if inst not in avoid and inst not in out:
            out.append(inst)
    return out


def train_near_duplicate(inst: Instance, rng: np.random.Generator, exclude: Iterable[Instance] = ()) -> Instance | None:
    """A near-duplicate of `inst` from the training split (None when it has none left after `exclude`)."""
    return sample_near_duplicate(inst, rng, held_out=False, exclude=exclude)
