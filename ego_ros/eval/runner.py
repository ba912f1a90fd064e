"""Run one method on one dataset with the Ego engine and write results, report and plots.

Output folder (``out_dir``):

* ``cache.jsonl``: per-sample results, appended and flushed as they come (see cache.py); a rerun with
  the same settings resumes where the previous one stopped. Once every sample is cached the engine is
  not even loaded: metrics, report and plots are rebuilt from the cache.
* ``results.json``, ``report.md`` (Markdown, with paper-shaped tables), the PNG plots, and
  ``answers.json`` with every open-ended question, reference answer, reply and verdict; the layout of
  ``results.json`` is described in results.py.

The run's parts live apart: ``work`` (the units a run caches), ``session`` (the engine side: loading,
introducing, per-task calls), ``judging`` (verdicts on open answers) and ``results`` (assembling and
writing the outputs); this module plans the work and drives them.

``limit`` keeps N items per task, drawn round-robin over groups in a seeded order, so a small run
still has positives for as many concepts as possible. The limit is not part of the settings hash:
a larger limit reuses the samples a smaller one cached.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import localisation
from .cache import CACHE_FILE, ResultCache, item_id, make_key, settings_hash
from .datasets import Dataset, DatasetSpec, group_name, load_dataset, parse_dataset_spec
from .judges import HttpJudgeConfig, Judge, judge_id, make_judge
from .judging import judge_open_answers
from .localisation import TASK as LOCALISATION
from .methods import MethodSpec, get_method
from .protocols import PROTOCOL_VERSION
from .results import assemble_results, write_outputs
from .session import EvalSession
from .work import WorkItem, select_limited

__all__ = ["build_work", "run_eval", "run_settings", "select_limited"]


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

    session = EvalSession(
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

    judged = judge_open_answers(work, cache, session, judge, jid, judge_obj, judge_config, spec.name, shash, progress)
    results = assemble_results(
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
    write_outputs(results, work, cache, judged, out)
    return results
