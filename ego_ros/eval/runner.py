"""Run one method on one dataset with the Ego engine and write results, report and plots.

Output folder (``out_dir``):

* ``cache.jsonl``: per-sample results, appended and flushed as they come (see cache.py); a rerun with
  the same settings resumes where the previous one stopped. Once every sample is cached the engine is
  not even loaded: metrics, report and plots are rebuilt from the cache.
* ``results.json``::

    {"schema": "ego_ros.eval/1", "package_version": "0.1.0", "created": "<UTC ISO time>",
     "settings": {"dataset": "yollava:/data/yollava", "dataset_kind": "yollava", "dataset_root": "...",
                  "model": "...", "dtype": "auto", "device": "cpu", "method": {MethodSpec fields},
                  "views": 1, "seed": 0, "limit": null, "judge": "none", "judge_id": "none",
                  "tasks": ["recognition", "vqa"], "max_new_tokens": 64, "video_frames": 8,
                  "protocol_version": 1, "engine_options": {...}, "settings_hash": "..."},
     "model_fingerprint": "..." | null, "engine_config": {EngineConfig fields} | null,
     "dataset": {"kind", "root", "num_concepts", "multi_concept", "groups", "views_available": {name: n},
                 "counts": {task: cached units; recognition counts image x concept questions},
                 "notes": [...]},
     "metrics": {"recognition": {see metrics.recognition_metrics, plus "confusion": {"groups", "matrix"},
                                 "not_considered" (decisions on concepts the engine's similarity filter
                                 left out), for multi-concept data "concept_level", and for toy
                                 exports "by_negative_kind" (see eval.negatives)},
                 "localisation" (toy exports: exact masks): {"cases", "hidden", "pointing", "iou_mean",
                                  "iou_ge_0.5", "present_share", "map", "by_size", "baselines", "examples"}
                                  (see eval.localisation),
                 "vqa" / "video_qa": {see metrics.accuracy_metrics, plus "kind": "multiple_choice" |
                                      "open" | "mixed", "judge", "unparseable"},
                 "captioning": {see metrics.caption_recall}},
     "introductions": {concept: {"seconds", "num_tokens", "k_c", "alpha", "keywords"}},
     "timings": {"introduce": timing summary, "samples": {task: timing summary}},
     "plots": {plot id: file name}}

  Timing summaries are ``{"count", "total", "mean", "median", "min", "max"}`` in seconds; the
  recognition per-sample time is per image (one engine call answers every concept for an image).
* ``report.md`` (Markdown, with paper-shaped tables), the PNG plots, and ``answers.json`` with
  every open-ended question, reference answer, reply and verdict.

``limit`` keeps N items per task, drawn round-robin over groups in a seeded order, so a small run
still has positives for as many concepts as possible. The limit is not part of the settings hash:
a larger limit reuses the samples a smaller one cached.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from .. import __version__
from . import localisation
from .cache import CACHE_FILE, ResultCache, item_id, make_key, settings_hash
from .datasets import Dataset, DatasetError, DatasetSpec, group_name, load_dataset, parse_dataset_spec
from .judges import HttpJudgeConfig, Judge, JudgeError, judge_id, make_judge
from .localisation import TASK as LOCALISATION
from .methods import MethodSpec, get_method
from .metrics import (
    Decision,
    accuracy_metrics,
    caption_recall,
    confusion_matrix,
    group_decisions,
    recognition_metrics,
    timing_summary,
)
from .negatives import negative_kind, negative_kind_breakdown
from .protocols import PROTOCOL_VERSION, ab_correct, caption_mentions, format_ab_question, parse_choice, sample_frames
from .report import REPORT_FILE, RESULTS_FILE, render_report, write_plots
from .work import WorkItem, select_limited

SCHEMA = "ego_ros.eval/1"
ANSWERS_FILE = "answers.json"


def build_work(
    ds: Dataset, tasks: Sequence[str], limit: int | None, seed: int, method: str, shash: str
) -> dict[str, list[WorkItem]]:
    """Every cached unit of the run, per task, in a deterministic order."""
    work: dict[str, list[WorkItem]] = {}
    names = [c.name for c in ds.concepts]
    for task in tasks:
        items: list[WorkItem] = []
        if task == "recognition":
            for s in select_limited(ds.recognition, limit, seed, lambda s: s.group):
                rel = ds.relpath(s.image)
                items += [WorkItem(task, make_key(task, rel, c, method, shash), rel, c, "", s) for c in names]
        elif task == LOCALISATION:
            items = localisation.work_items(ds, limit, seed, method, shash)
        elif task == "vqa":
            for q in select_limited(ds.vqa, limit, seed, lambda q: group_name(q.concepts)):
                rel, iid = ds.relpath(q.image), item_id(q.question + "\n" + q.answer)
                grp = group_name(q.concepts)
                items.append(WorkItem(task, make_key(task, rel, grp, method, shash, iid), rel, grp, iid, q))
        elif task == "captioning":
            for c in select_limited(ds.captions, limit, seed, lambda c: group_name(c.concepts)):
                rel, grp = ds.relpath(c.image), group_name(c.concepts)
                items.append(WorkItem(task, make_key(task, rel, grp, method, shash), rel, grp, "", c))
        elif task == "video_qa":
            for v in select_limited(ds.videos, limit, seed, lambda v: group_name(v.concepts)):
                grp = group_name(v.concepts)
                iid = item_id(v.id + "\n" + v.question)
                items.append(
                    WorkItem(
                        task, make_key(task, f"video:{v.id}", grp, method, shash, iid), f"video:{v.id}", grp, iid, v
                    )
                )
        else:
            raise ValueError(f"unknown task {task!r}")
        work[task] = items
    return work


def run_settings(
    ds: Dataset,
    model: str,
    spec: MethodSpec,
    *,
    seed: int,
    dtype: str,
    max_new_tokens: int,
    video_frames: int,
    engine_options: dict[str, Any] | None = None,
    recognition_context: str = "auto",
) -> dict[str, Any]:
    """Return the settings that change results; their hash keys the cache (limit, device, judge are not in it)."""
    if recognition_context == "auto":
        recognition_context = "all" if ds.multi_concept else "each"
    return {
        "recognition_context": recognition_context,
        "engine_options": dict(sorted((engine_options or {}).items())),
        "dataset_kind": ds.kind,
        "dataset_root": ds.root.resolve().as_posix(),
        "views": ds.views,
        "model": model,
        "dtype": dtype,
        "method": spec.to_dict(),
        "seed": seed,
        "max_new_tokens": max_new_tokens,
        "video_frames": video_frames,
        "protocol_version": PROTOCOL_VERSION,
    }


def _open_image(path: Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, ValueError) as exc:
        raise DatasetError(path, f"a readable image ({exc})") from exc


def _load_engine(model: str, device: str, dtype: str, store_dir: str | None, options: dict[str, Any]) -> Any:
    # Imported here: a run whose samples are all cached never needs the engine (or torch).
    from ego_ros.core.engine import EgoEngine

    return EgoEngine.load(model, device=device, dtype=dtype, store_dir=store_dir, **options)


def _fingerprint(engine: Any) -> str | None:
    """Return the loaded model's fingerprint (the engine exposes it on its backend), if any."""
    for owner in (engine, getattr(engine, "backend", None)):
        for attr in ("fingerprint", "model_fingerprint"):
            value = getattr(owner, attr, None)
            if callable(value):
                value = value()
            if value:
                return str(value)
    return None


def _engine_config(engine: Any) -> dict[str, Any] | None:
    """Return the engine's effective settings (threshold, context limit, ...) for the record, if any."""
    config = getattr(engine, "config", None)
    if config is None or not dataclasses.is_dataclass(config):
        return None
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


class _Session:
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
            self.engine = _load_engine(self.model, self.device, self.dtype, self.store_dir, self.engine_options)
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
            images = [_open_image(p) for p in concept.reference_images]
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
            image = _open_image(group[0].record.image)
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
                images = [_open_image(w.record.image) for w in chunk]
                start = time.perf_counter()
                recs = engine.recognize_frames(images, concept)
                elapsed = time.perf_counter() - start
                for w, r in zip(chunk, recs):
                    self._put_recognition(w, r, elapsed / len(chunk))
                    bar.update(1)

    def _put_recognition(self, w: WorkItem, r: Any, seconds: float) -> None:
        prob = getattr(r, "probability", None)
        self.cache.put(
            w.key,
            task=w.task,
            image=w.image,
            concept=w.concept,
            method=self.spec.name,
            settings=self.shash,
            seconds=seconds,
            result={
                "present": bool(r.present),
                "probability": None if prob is None else float(prob),
                # False when the engine's similarity filter left the concept out of the context
                "considered": bool(getattr(r, "considered", True)),
            },
        )

    def localisation(self, items: Sequence[WorkItem], bar: Any) -> None:
        localisation.run_items(self.get_engine(), items, self.cache, self.spec.name, self.shash, _open_image, bar)

    def vqa(self, items: Sequence[WorkItem], bar: Any) -> None:
        for w in items:
            q = w.record
            prompt = format_ab_question(q.question, q.options_dict) if q.is_multiple_choice else q.question
            start = time.perf_counter()
            answer = self.get_engine().ask(
                _open_image(q.image), prompt, concepts=list(q.concepts), max_new_tokens=self.max_new_tokens
            )
            self._put_answer(w, answer, time.perf_counter() - start, "prediction")
            bar.update(1)

    def captioning(self, items: Sequence[WorkItem], bar: Any) -> None:
        for w in items:
            start = time.perf_counter()
            # No concept restriction: captioning also tests picking the right concept among all of them.
            answer = self.get_engine().caption(_open_image(w.record.image), concepts=None)
            self._put_answer(w, answer, time.perf_counter() - start, "caption")
            bar.update(1)

    def video_qa(self, items: Sequence[WorkItem], bar: Any) -> None:
        for w in items:
            v = w.record
            frames = [_open_image(p) for p in sample_frames(list(v.frames), self.video_frames)]
            prompt = format_ab_question(v.question, v.options_dict) if v.is_multiple_choice else v.question
            start = time.perf_counter()
            answer = self.get_engine().ask_video(frames, prompt, concepts=list(v.concepts))
            self._put_answer(w, answer, time.perf_counter() - start, "prediction")
            bar.update(1)

    def _put_answer(self, w: WorkItem, answer: Any, seconds: float, field: str) -> None:
        self.cache.put(
            w.key,
            task=w.task,
            image=w.image,
            concept=w.concept,
            item=w.item,
            method=self.spec.name,
            settings=self.shash,
            seconds=seconds,
            result={field: str(answer.text), "answer_concepts": list(getattr(answer, "concepts", []) or [])},
        )


def run_eval(
    dataset_spec: str | DatasetSpec,
    model: str,
    method: str,
    views: int,
    out_dir: str | Path,
    limit: int | None = None,
    seed: int = 0,
    judge: str = "none",
    device: str = "cpu",
    progress: bool = True,
    *,
    tasks: Sequence[str] | None = None,
    judge_config: HttpJudgeConfig | None = None,
    dtype: str = "auto",
    store_dir: str | None = None,
    max_new_tokens: int = 64,
    video_frames: int = 8,
    engine_options: dict[str, Any] | None = None,
    engine: Any | None = None,
    recognition_context: str = "auto",
) -> dict[str, Any]:
    """Evaluate ``method`` with ``model`` on a dataset and write results into ``out_dir``.

    ``recognition_context``: "each" asks about every concept with only that concept's memory in
    context (the paper's single-concept protocol), "all" puts every concept of the dataset in context
    at once (multi-concept), "auto" picks "all" for multi-concept datasets and "each" otherwise.

    ``engine_options`` are extra ``EgoEngine.load`` keywords (``EngineConfig`` fields such as
    ``threshold`` or ``max_context_concepts``); they are part of the settings hash. ``engine`` may be an
    already loaded ``EgoEngine`` (to run several methods on one model load; ``engine_options`` are then
    not applied, the engine's own configuration is recorded); its concepts are cleared before the
    dataset's are introduced. Returns the ``results.json`` dict.
    """
    spec = get_method(method)
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive integer, got {limit}")
    if max_new_tokens < 1 or video_frames < 1:
        raise ValueError("max_new_tokens and video_frames must be positive")
    parsed = parse_dataset_spec(dataset_spec)
    ds = load_dataset(parsed, views=views)
    task_list = list(ds.tasks) if tasks is None else list(tasks)
    unknown = [t for t in task_list if t not in ds.tasks]
    if unknown:
        raise ValueError(f"task(s) {unknown} not provided by {parsed.kind}; it provides {list(ds.tasks)}")
    jid = judge_id(judge, judge_config)
    judge_obj: Judge | None = None if judge == "local" else make_judge(judge, judge_config)
    if recognition_context not in ("auto", "each", "all"):
        raise ValueError(f"recognition_context must be auto, each or all, got {recognition_context!r}")
    if recognition_context == "auto":
        recognition_context = "all" if ds.multi_concept else "each"

    engine_options = dict(engine_options or {})
    settings = run_settings(
        ds,
        model,
        spec,
        seed=seed,
        dtype=dtype,
        max_new_tokens=max_new_tokens,
        video_frames=video_frames,
        engine_options=engine_options,
        recognition_context=recognition_context,
    )
    shash = settings_hash(settings)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache = ResultCache(out / CACHE_FILE)
    work = build_work(ds, task_list, limit, seed, spec.name, shash)
    pending = {t: [w for w in items if w.key not in cache] for t, items in work.items()}
    n_pending = sum(len(v) for v in pending.values())

    from tqdm import tqdm

    session = _Session(
        ds,
        spec,
        cache,
        shash,
        model=model,
        device=device,
        dtype=dtype,
        store_dir=store_dir,
        seed=seed,
        max_new_tokens=max_new_tokens,
        video_frames=video_frames,
        engine=engine,
        engine_options=engine_options,
        recognition_context=recognition_context,
    )
    if n_pending:
        with tqdm(total=n_pending, desc=f"eval {spec.name} on {ds.kind}", unit="sample", disable=not progress) as bar:
            session.introduce_all(bar)
            for task in task_list:
                if pending[task]:
                    bar.set_description(f"{task} ({spec.name}, {ds.kind})")
                    getattr(session, task)(pending[task], bar)

    judged = _judge_open_answers(work, cache, session, judge, jid, judge_obj, judge_config, spec.name, shash, progress)
    results = _assemble(
        ds,
        parsed,
        spec,
        work,
        cache,
        judged,
        jid,
        settings,
        shash,
        model=model,
        device=device,
        limit=limit,
        judge=judge,
        tasks=task_list,
        session=session,
        out=out,
    )
    _write_outputs(results, work, cache, judged, out)
    return results


def local_judge_ask(engine: Any) -> Callable[[str], str]:
    """Build the ``local`` judge's hook: the engine answering a text-only prompt, no concept in context.

    Uses ``engine.ask_text(prompt)`` when the engine has it, else ``engine.ask(None, prompt, concepts=[])``.
    """
    text_only = getattr(engine, "ask_text", None)

    def ask(prompt: str) -> str:
        try:
            answer = text_only(prompt) if callable(text_only) else engine.ask(None, prompt, concepts=[])
        except (TypeError, ValueError) as exc:  # the engine's InvalidImageError is a ValueError
            raise JudgeError(
                "the local judge needs the engine to answer a prompt without an image "
                f"(EgoEngine.ask_text(prompt) or EgoEngine.ask(None, ...)); it refused: {exc}"
            ) from exc
        return str(getattr(answer, "text", answer))

    return ask


def _open_items(work: dict[str, list[WorkItem]]) -> list[WorkItem]:
    return [w for t in ("vqa", "video_qa") for w in work.get(t, []) if not w.record.is_multiple_choice]


def _judge_open_answers(
    work: dict[str, list[WorkItem]],
    cache: ResultCache,
    session: _Session,
    judge: str,
    jid: str,
    judge_obj: Judge | None,
    judge_config: HttpJudgeConfig | None,
    method: str,
    shash: str,
    progress: bool,
) -> dict[str, dict[str, Any]]:
    """Verdicts on open answers, keyed by the answer's cache key; model judges' verdicts are cached."""
    from tqdm import tqdm

    verdicts: dict[str, dict[str, Any]] = {}
    items = _open_items(work)
    if judge == "none" or not items:
        return verdicts
    todo = []
    for w in items:
        answer = cache.get(w.key)
        if answer is None:
            continue
        if judge == "exact":
            assert judge_obj is not None
            verdicts[w.key] = judge_obj.judge(
                w.record.question, w.record.answer, answer["result"]["prediction"]
            ).to_dict()
            continue
        jkey = make_key(f"judge:{jid}", w.image, w.concept, method, shash, w.item)
        if jkey in cache:
            verdicts[w.key] = cache[jkey]["result"]
        else:
            todo.append((w, jkey, answer))
    if todo and judge_obj is None:  # the local judge: built only when something is left to judge
        engine = session.get_engine()
        engine.set_context("none")  # judge with the bare model: no personal memory in context
        session.introduced = False
        judge_obj = make_judge("local", judge_config, ask=local_judge_ask(engine))
    for w, jkey, answer in tqdm(todo, desc=f"judge ({jid})", disable=not progress):
        start = time.perf_counter()
        verdict = judge_obj.judge(w.record.question, w.record.answer, answer["result"]["prediction"]).to_dict()
        cache.put(
            jkey,
            task=f"judge:{jid}",
            image=w.image,
            concept=w.concept,
            item=w.item,
            method=method,
            settings=shash,
            seconds=time.perf_counter() - start,
            result=verdict,
        )
        verdicts[w.key] = verdict
    return verdicts


def _qa_metrics(
    items: Sequence[WorkItem], cache: ResultCache, verdicts: dict[str, dict[str, Any]], jid: str
) -> dict[str, Any]:
    rows: list[tuple[str, bool | None]] = []
    unparseable = 0
    kinds = set()
    for w in items:
        pred = cache[w.key]["result"]["prediction"]
        q = w.record
        if q.is_multiple_choice:
            kinds.add("multiple_choice")
            if parse_choice(pred, q.options_dict) is None:
                unparseable += 1
            rows.append((w.concept, ab_correct(pred, q.answer, q.options_dict)))
        else:
            kinds.add("open")
            v = verdicts.get(w.key)
            if v is not None and not v.get("parsed", True):
                unparseable += 1
            rows.append((w.concept, None if v is None else v.get("correct")))
    out = accuracy_metrics(rows)
    out["kind"] = next(iter(kinds)) if len(kinds) == 1 else ("mixed" if kinds else "none")
    out["judge"] = {"multiple_choice": "letter match", "open": jid}.get(out["kind"], f"letter match + {jid}")
    out["unparseable"] = unparseable
    return out


def _concept_decisions(ds: Dataset, items: Sequence[WorkItem], cache: ResultCache) -> list[Decision]:
    return [
        Decision(w.image, w.concept, w.concept in w.record.concepts, bool(r["present"]), r["probability"])
        for w in items
        for r in [cache[w.key]["result"]]
    ]


def _assemble(
    ds: Dataset,
    parsed: DatasetSpec,
    spec: MethodSpec,
    work: dict[str, list[WorkItem]],
    cache: ResultCache,
    verdicts: dict[str, dict[str, Any]],
    jid: str,
    settings: dict[str, Any],
    shash: str,
    *,
    model: str,
    device: str,
    limit: int | None,
    judge: str,
    tasks: list[str],
    session: _Session,
    out: Path,
) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    samples_timing: dict[str, Any] = {}
    if "recognition" in work:
        items = work["recognition"]
        predictions = {
            (w.image, w.concept): (bool(r["present"]), r["probability"])
            for w in items
            for r in [cache[w.key]["result"]]
        }
        samples = list({w.image: tuple(w.record.concepts) for w in items}.items())
        groups = ds.groups()
        decisions = group_decisions(samples, groups, predictions)
        rec = recognition_metrics(decisions)
        if ds.negative_kinds:  # a toy export labels its negatives: look-alike, near-duplicate, other
            present = dict(samples)
            members = {group_name(g): tuple(g) for g in groups}
            rec["by_negative_kind"] = negative_kind_breakdown(
                decisions, lambda d: negative_kind(members[d.group], present[d.image], ds.negative_kinds)
            )
        names = [group_name(g) for g in groups]
        rec["confusion"] = {"groups": names, "matrix": confusion_matrix(decisions, names)}
        if ds.multi_concept:
            rec["concept_level"] = recognition_metrics(_concept_decisions(ds, items, cache))
            rec["concept_level"].pop("per_group")
        # Decisions on concepts the engine's similarity filter kept out of the context (said absent).
        rec["not_considered"] = sum(1 for w in items if not cache[w.key]["result"].get("considered", True))
        metrics["recognition"] = rec
        per_image: dict[str, float] = {}
        for w in items:
            per_image[w.image] = per_image.get(w.image, 0.0) + float(cache[w.key]["seconds"] or 0.0)
        samples_timing["recognition"] = timing_summary(per_image.values())
    if LOCALISATION in work:
        metrics[LOCALISATION] = localisation.localisation_metrics(work[LOCALISATION], cache, ds.masks, session.seed)
        samples_timing[LOCALISATION] = timing_summary(cache[w.key]["seconds"] for w in work[LOCALISATION])
    for task in ("vqa", "video_qa"):
        if task in work:
            metrics[task] = _qa_metrics(work[task], cache, verdicts, jid)
            samples_timing[task] = timing_summary(cache[w.key]["seconds"] for w in work[task])
    if "captioning" in work:
        rows = []
        for w in work["captioning"]:
            caption = cache[w.key]["result"]["caption"]
            names = [[n, ds.concept(n).display_name] for n in w.record.concepts]
            rows.append((w.concept, caption_mentions(caption, names)))
        metrics["captioning"] = caption_recall(rows)
        samples_timing["captioning"] = timing_summary(cache[w.key]["seconds"] for w in work["captioning"])

    intros: dict[str, Any] = {}
    for c in ds.concepts:
        rec_ = cache.get(make_key("introduce", "", c.name, spec.name, shash))
        if rec_ is not None:
            intros[c.name] = rec_["result"]
    if session.engine is not None:
        fingerprint, engine_config = _fingerprint(session.engine), _engine_config(session.engine)
    else:  # everything came from the cache: keep what the run that computed it recorded
        fingerprint, engine_config = _previous(out, shash, "model_fingerprint"), _previous(out, shash, "engine_config")
    return {
        "schema": SCHEMA,
        "package_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "settings": {
            **settings,
            "dataset": str(parsed),
            "device": device,
            "limit": limit,
            "judge": judge,
            "judge_id": jid,
            "tasks": tasks,
            "settings_hash": shash,
        },
        "model_fingerprint": fingerprint,
        "engine_config": engine_config,
        "dataset": {
            "kind": ds.kind,
            "root": ds.root.resolve().as_posix(),
            "num_concepts": len(ds.concepts),
            "multi_concept": ds.multi_concept,
            "groups": [group_name(g) for g in ds.groups()],
            "views_available": {c.name: c.available_views for c in ds.concepts},
            "counts": {t: len(v) for t, v in work.items()},
            "notes": list(ds.notes),
        },
        "metrics": metrics,
        "introductions": intros,
        "timings": {"introduce": timing_summary(i.get("seconds") for i in intros.values()), "samples": samples_timing},
    }


def _previous(out: Path, shash: str, field: str) -> Any:
    path = out / RESULTS_FILE
    if not path.is_file():
        return None
    try:
        with path.open(encoding="utf-8") as f:
            prev = json.load(f)
    except (OSError, json.JSONDecodeError):
        return None
    if prev.get("settings", {}).get("settings_hash") == shash:
        return prev.get(field)
    return None


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _write_outputs(
    results: dict[str, Any],
    work: dict[str, list[WorkItem]],
    cache: ResultCache,
    verdicts: dict[str, dict[str, Any]],
    out: Path,
) -> None:
    try:
        results["plots"] = write_plots(results, out)
    except ImportError as exc:  # matplotlib is the optional `eval` extra
        results["plots"] = {}
        results["dataset"]["notes"].append(f"plots skipped ({exc}); install the eval extra: pip install matplotlib")
    answers = []
    for w in _open_items(work):
        rec = cache.get(w.key)
        answers.append(
            {
                "task": w.task,
                "image": w.image,
                "concepts": list(w.record.concepts),
                "question": w.record.question,
                "reference": w.record.answer,
                "prediction": rec["result"]["prediction"] if rec else None,
                "verdict": verdicts.get(w.key),
            }
        )
    if answers:
        _atomic_write(out / ANSWERS_FILE, json.dumps(answers, indent=2, ensure_ascii=False))
    _atomic_write(out / RESULTS_FILE, json.dumps(results, indent=2, ensure_ascii=False))
    _atomic_write(out / REPORT_FILE, render_report(results))
