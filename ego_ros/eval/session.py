"""The engine side of one evaluation run (`EvalSession`): loading the engine only when a sample needs
it, introducing the dataset's concepts, and the per-task calls whose answers go into the result cache.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from . import localisation
from .cache import ResultCache, make_key
from .datasets import Dataset, DatasetError
from .methods import MethodSpec
from .protocols import format_ab_question, sample_frames
from .work import WorkItem


def open_image(path: Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, ValueError) as exc:
        raise DatasetError(path, f"a readable image ({exc})") from exc


def load_engine(model: str, device: str, dtype: str, store_dir: str | None, options: dict[str, Any]) -> Any:
    # Imported here: a run whose samples are all cached never needs the engine (or torch).
    from ego_ros.core.engine import EgoEngine

    return EgoEngine.load(model, device=device, dtype=dtype, store_dir=store_dir, **options)


def model_fingerprint(engine: Any) -> str | None:
    """Return the loaded model's fingerprint (the engine exposes it on its backend), if any."""
    for owner in (engine, getattr(engine, "backend", None)):
        for attr in ("fingerprint", "model_fingerprint"):
            value = getattr(owner, attr, None)
            if callable(value):
                value = value()
            if value:
                return str(value)
    return None


def engine_settings(engine: Any) -> dict[str, Any] | None:
    """Return the engine's effective settings (threshold, context limit, ...) for the record, if any."""
    config = getattr(engine, "config", None)
    if config is None or not dataclasses.is_dataclass(config):
        return None
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


class EvalSession:
    """Engine-side work of one run: lazy engine loading, concept introduction, per-sample calls."""

    def __init__(
        self,
        ds: Dataset,
        spec: MethodSpec,
        cache: ResultCache,
        shash: str,
        *,
        model: str,
        device: str,
        dtype: str,
        store_dir: str | None,
        seed: int,
        max_new_tokens: int,
        video_frames: int,
        engine: Any | None,
        engine_options: dict[str, Any],
        recognition_context: str = "each",
    ) -> None:
        self.ds, self.spec, self.cache, self.shash = ds, spec, cache, shash
        self.recognition_context = recognition_context
        self.engine_options = engine_options
        self.model, self.device, self.dtype, self.store_dir = model, device, dtype, store_dir
        self.seed, self.max_new_tokens, self.video_frames = seed, max_new_tokens, video_frames
        self.engine = engine
        self.introduced = False

    def get_engine(self) -> Any:
        if self.engine is None:
            self.engine = load_engine(self.model, self.device, self.dtype, self.store_dir, self.engine_options)
        return self.engine

    def introduce_all(self, bar: Any) -> None:
        """Introduce every concept (needed before any sample); the first timing of each concept is kept."""
        if self.introduced:
            return
        from ego_ros.core.engine import IntroduceOptions

        engine = self.get_engine()
        engine.clear()
        engine.set_context(self.spec.context)
        options = IntroduceOptions(**self.spec.introduce_kwargs(self.seed))
        for concept in self.ds.concepts:
            images = [open_image(p) for p in concept.reference_images]
            start = time.perf_counter()
            mem = engine.introduce(concept.name, images, options)
            wall = time.perf_counter() - start
            key = make_key("introduce", "", concept.name, self.spec.name, self.shash)
            if key not in self.cache:
                seconds = getattr(mem, "seconds", None)
                self.cache.put(
                    key,
                    task="introduce",
                    image="",
                    concept=concept.name,
                    method=self.spec.name,
                    settings=self.shash,
                    seconds=wall,
                    result={
                        "seconds": float(seconds) if seconds is not None else wall,
                        "num_tokens": getattr(mem, "num_tokens", None),
                        "k_c": list(getattr(mem, "k_c", []) or []),
                        "alpha": list(getattr(mem, "alpha", []) or []),
                        "keywords": [list(k) for k in (getattr(mem, "keywords", []) or [])],
                        "views": len(images),
                    },
                )
            bar.set_postfix_str(f"introduced {concept.name}")
        bar.set_postfix_str("")
        self.introduced = True

    def recognition(self, items: Sequence[WorkItem], bar: Any) -> None:
        if self.recognition_context == "each":
            self._recognition_each(items, bar)
            return
        by_image: dict[str, list[WorkItem]] = {}
        for w in items:
            by_image.setdefault(w.image, []).append(w)
        # The engine puts exactly the listed concepts in context, so an image is always asked about all
        # of them (as in an uninterrupted run), even when only some of its answers are missing.
        names = [c.name for c in self.ds.concepts]
        for rel, group in by_image.items():
            image = open_image(group[0].record.image)
            start = time.perf_counter()
            found = {r.name: r for r in self.get_engine().recognize(image, concepts=names)}
            elapsed = time.perf_counter() - start
            for w in group:
                if w.concept not in found:
                    raise RuntimeError(f"engine.recognize returned no result for concept {w.concept!r} on {rel}")
                self._put_recognition(w, found[w.concept], elapsed / len(names))
                bar.update(1)

    def _recognition_each(self, items: Sequence[WorkItem], bar: Any, batch: int = 8) -> None:
        """Single-concept protocol: each question sees only its own concept's memory in context.

        Concept-major order keeps one concept's encoded prefix cached while its images run in batches.
        """
        by_concept: dict[str, list[WorkItem]] = {}
        for w in items:
            by_concept.setdefault(w.concept, []).append(w)
        engine = self.get_engine()
        for concept, group in by_concept.items():
            for i in range(0, len(group), batch):
                chunk = group[i:i + batch]
                images = [open_image(w.record.image) for w in chunk]
                start = time.perf_counter()
                recs = engine.recognize_frames(images, concept)
                elapsed = time.perf_counter() - start
                for w, r in zip(chunk, recs):
                    self._put_recognition(w, r, elapsed / len(chunk))
                    bar.update(1)

    def _put(self, w: WorkItem, seconds: float, result: dict[str, Any]) -> None:
        self.cache.put(
            w.key,
            task=w.task,
            image=w.image,
            concept=w.concept,
            item=w.item,
            method=self.spec.name,
            settings=self.shash,
            seconds=seconds,
            result=result,
        )

    def _put_recognition(self, w: WorkItem, r: Any, seconds: float) -> None:
        prob = getattr(r, "probability", None)
        self._put(
            w,
            seconds,
            {
                "present": bool(r.present),
                "probability": None if prob is None else float(prob),
                # False when the engine's similarity filter left the concept out of the context
                "considered": bool(getattr(r, "considered", True)),
            },
        )

    def localisation(self, items: Sequence[WorkItem], bar: Any) -> None:
        localisation.run_items(self.get_engine(), items, self.cache, self.spec.name, self.shash, open_image, bar)

    def vqa(self, items: Sequence[WorkItem], bar: Any) -> None:
        for w in items:
            q = w.record
            prompt = format_ab_question(q.question, q.options_dict) if q.is_multiple_choice else q.question
            start = time.perf_counter()
            answer = self.get_engine().ask(
                open_image(q.image), prompt, concepts=list(q.concepts), max_new_tokens=self.max_new_tokens
            )
            self._put_answer(w, answer, time.perf_counter() - start, "prediction")
            bar.update(1)

    def captioning(self, items: Sequence[WorkItem], bar: Any) -> None:
        for w in items:
            start = time.perf_counter()
            # No concept restriction: captioning also tests picking the right concept among all of them.
            answer = self.get_engine().caption(open_image(w.record.image), concepts=None)
            self._put_answer(w, answer, time.perf_counter() - start, "caption")
            bar.update(1)

    def video_qa(self, items: Sequence[WorkItem], bar: Any) -> None:
        for w in items:
            v = w.record
            frames = [open_image(p) for p in sample_frames(list(v.frames), self.video_frames)]
            prompt = format_ab_question(v.question, v.options_dict) if v.is_multiple_choice else v.question
            start = time.perf_counter()
            answer = self.get_engine().ask_video(frames, prompt, concepts=list(v.concepts))
            self._put_answer(w, answer, time.perf_counter() - start, "prediction")
            bar.update(1)

    def _put_answer(self, w: WorkItem, answer: Any, seconds: float, field: str) -> None:
        self._put(w, seconds, {field: str(answer.text), "answer_concepts": list(getattr(answer, "concepts", []) or [])})
