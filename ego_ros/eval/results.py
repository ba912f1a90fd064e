"""What one evaluation run writes: the ``results.json`` record assembled from the cache, ``report.md``,
the plots and ``answers.json``.

``results.json``::

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

``report.md`` (Markdown, with paper-shaped tables), the PNG plots, and ``answers.json`` with every
open-ended question, reference answer, reply and verdict. ``results.json``, ``report.md`` and
``answers.json`` are replaced atomically (written beside, then renamed).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import __version__
from . import localisation
from .cache import ResultCache, make_key
from .datasets import Dataset, DatasetSpec, group_name
from .judging import open_items
from .localisation import TASK as LOCALISATION
from .methods import MethodSpec
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
from .protocols import ab_correct, caption_mentions, parse_choice
from .report import REPORT_FILE, RESULTS_FILE, render_report, write_plots
from .session import EvalSession, engine_settings, model_fingerprint
from .work import WorkItem

SCHEMA = "ego_ros.eval/1"
ANSWERS_FILE = "answers.json"


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


def assemble_results(
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
    session: EvalSession,
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
        fingerprint, engine_config = model_fingerprint(session.engine), engine_settings(session.engine)
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


def write_outputs(
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
    for w in open_items(work):
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
