"""Metrics of the paper's protocol as pure functions over plain rows.

Conventions (all values are fractions in [0, 1]; reports print them x100):

* Per group (a concept, or a pair for multi-concept data): precision = TP / (TP + FP), recall =
  TP / (TP + FN), F1 = 2PR / (P + R).
* Zero denominators: a group that is never predicted present has precision 0 (no credit for saying
  nothing; scikit-learn's ``zero_division=0``); F1 is 0 when P + R = 0. A group without any positive
  test image has no recall: it is left out of every macro average and listed under ``excluded``.
* Overall: ``precision`` and ``recall`` are the means over groups, ``f1_of_means`` is the F1 of those
  two means (the paper's stated convention, Table 1), ``mean_f1`` is the mean of per-group F1 (what the
  paper's multi-concept numbers look like). Both are always reported.
* ``accuracy`` is over all (image, group) decisions. ``auc`` is the ROC AUC of the probabilities over
  all decisions pooled, ``macro_auc`` the mean of per-group AUCs (groups with both classes only);
  AUC is None where a class is empty or any probability is missing.
* Multi-concept rule: a pair is predicted present only if all its members are; its probability is the
  smallest of its members' (the same "all members" rule in soft form). Each image is positive for its
  own pair and negative for every other pair.
* Captioning recall: per group, the fraction of its images whose caption names all its members;
  ``recall`` is the mean over groups, ``micro_recall`` the fraction over all images.
* VQA accuracy: ``accuracy`` is over all questions (the paper's "fraction of questions answered
  correctly"); ``macro_accuracy`` averages per-group accuracies. Unscored answers (no judge) are
  counted apart and leave accuracy None when nothing was scored.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass
class Counts:
    """Confusion counts of one group."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def add(self, truth: bool, predicted: bool) -> None:
        if truth and predicted:
            self.tp += 1
        elif truth:
            self.fn += 1
        elif predicted:
            self.fp += 1
        else:
            self.tn += 1

    @property
    def positives(self) -> int:
        return self.tp + self.fn

    @property
    def precision(self) -> float:
        return precision(self.tp, self.fp)

    @property
    def recall(self) -> float | None:
        return recall(self.tp, self.fn)

    @property
    def f1(self) -> float | None:
        r = self.recall
        return None if r is None else f1(self.precision, r)


def precision(tp: int, fp: int) -> float:
    """TP / (TP + FP); 0 when nothing was predicted present."""
    return tp / (tp + fp) if tp + fp else 0.0


def recall(tp: int, fn: int) -> float | None:
    """TP / (TP + FN); None when there is no positive (the group is then excluded from averages)."""
    return tp / (tp + fn) if tp + fn else None


def f1(p: float, r: float) -> float:
    """Harmonic mean of precision and recall; 0 when both are 0."""
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def roc_auc(labels: Sequence[bool], scores: Sequence[float | None]) -> float | None:
    """ROC AUC by the Mann-Whitney rank statistic, ties counted one half (average ranks).

    Hand-written because neither scikit-learn nor SciPy is a dependency of this package and the
    statistic is a few lines. Returns None when either class is empty or any score is missing/NaN.
    """
    if len(labels) != len(scores):
        raise ValueError(f"labels and scores differ in length: {len(labels)} != {len(scores)}")
    if any(s is None or (isinstance(s, float) and math.isnan(s)) for s in scores):
        return None
    n_pos = sum(1 for y in labels if y)
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    values = [float(s) for s in scores if s is not None]  # all present: checked above
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        mid = (i + j) / 2 + 1  # ranks are 1-based; a tie block shares its mean rank
        for k in range(i, j + 1):
            ranks[order[k]] = mid
        i = j + 1
    rank_sum = sum(r for r, y in zip(ranks, labels) if y)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


@dataclass(frozen=True)
class Decision:
    """One recognition decision: was ``group`` judged present in ``image``, and should it have been."""

    image: str
    group: str
    truth: bool
    predicted: bool
    probability: float | None = None


def group_decisions(
    samples: Iterable[tuple[str, Sequence[str]]],
    groups: Sequence[Sequence[str]],
    predictions: Mapping[tuple[str, str], tuple[bool, float | None]],
) -> list[Decision]:
    """Turn per-concept predictions into per-group decisions with the multi-concept rule.

    ``samples`` are (image, concepts present), ``groups`` the recognition groups (1-tuples for single
    concepts, pairs for multi-concept data) and ``predictions[(image, concept)] = (present, prob)``.
    An image is positive for a group when its concept set equals the group's.
    """
    out: list[Decision] = []
    for image, present in samples:
        own = frozenset(present)
        for g in groups:
            preds = []
            for concept in g:
                if (image, concept) not in predictions:
                    raise ValueError(f"no prediction for concept {concept!r} on image {image!r}")
                preds.append(predictions[(image, concept)])
            probs = [p for _, p in preds if p is not None]
            prob = min(probs) if len(probs) == len(preds) else None
            out.append(Decision(image, " + ".join(g), frozenset(g) == own, all(d for d, _ in preds), prob))
    return out


def recognition_metrics(decisions: Sequence[Decision]) -> dict[str, Any]:
    """Precision/recall/F1 (both conventions), accuracy and AUC of recognition decisions."""
    counts: dict[str, Counts] = {}
    by_group: dict[str, list[Decision]] = {}
    for d in decisions:
        counts.setdefault(d.group, Counts()).add(d.truth, d.predicted)
        by_group.setdefault(d.group, []).append(d)
    per_group: dict[str, dict[str, Any]] = {}
    included: list[str] = []
    for g, c in counts.items():
        rows = by_group[g]
        auc = roc_auc([d.truth for d in rows], [d.probability for d in rows])
        per_group[g] = {
            "tp": c.tp,
            "fp": c.fp,
            "fn": c.fn,
            "tn": c.tn,
            "positives": c.positives,
            "precision": c.precision,
            "recall": c.recall,
            "f1": c.f1,
            "auc": auc,
        }
        if c.recall is not None:
            included.append(g)
    excluded = [g for g in counts if g not in included]
    mp = _mean([per_group[g]["precision"] for g in included])
    mr = _mean([per_group[g]["recall"] for g in included])
    aucs = [per_group[g]["auc"] for g in included if per_group[g]["auc"] is not None]
    return {
        "precision": mp,
        "recall": mr,
        "f1_of_means": None if mp is None or mr is None else f1(mp, mr),
        "mean_f1": _mean([per_group[g]["f1"] for g in included]),
        "accuracy": _mean([1.0 if d.truth == d.predicted else 0.0 for d in decisions]),
        "auc": roc_auc([d.truth for d in decisions], [d.probability for d in decisions]) if decisions else None,
        "macro_auc": _mean(aucs),
        "num_groups": len(included),
        "num_decisions": len(decisions),
        "num_images": len({d.image for d in decisions}),
        "excluded": excluded,
        "per_group": per_group,
    }


def confusion_matrix(decisions: Sequence[Decision], groups: Sequence[str]) -> list[list[float | None]]:
    """``m[i][j]``: fraction of the images of group i on which group j was predicted present.

    Recognition is multi-label (each group is asked separately), so rows need not sum to 1; a row is
    None where group i has no images.
    """
    index = {g: i for i, g in enumerate(groups)}
    own: dict[str, str] = {d.image: d.group for d in decisions if d.truth}
    hits = [[0] * len(groups) for _ in groups]
    totals = [0] * len(groups)
    seen: set[tuple[str, str]] = set()
    for g in own.values():
        totals[index[g]] += 1
    for d in decisions:
        if d.image in own and d.group in index and (d.image, d.group) not in seen:
            seen.add((d.image, d.group))
            if d.predicted:
                hits[index[own[d.image]]][index[d.group]] += 1
    rows: list[list[float | None]] = []
    for i in range(len(groups)):
        rows.append([h / totals[i] for h in hits[i]] if totals[i] else [None] * len(groups))
    return rows


def caption_recall(rows: Iterable[tuple[str, bool]]) -> dict[str, Any]:
    """Captioning recall from (group, caption names all members) rows."""
    per: dict[str, list[bool]] = {}
    for group, hit in rows:
        per.setdefault(group, []).append(bool(hit))
    per_group = {g: {"hits": sum(v), "total": len(v), "recall": sum(v) / len(v)} for g, v in per.items()}
    total = sum(len(v) for v in per.values())
    return {
        "recall": _mean([d["recall"] for d in per_group.values()]),
        "micro_recall": sum(sum(v) for v in per.values()) / total if total else None,
        "num_images": total,
        "per_group": per_group,
    }


def accuracy_metrics(rows: Iterable[tuple[str, bool | None]]) -> dict[str, Any]:
    """Question-answering accuracy from (group, correct or None when unscored) rows."""
    per: dict[str, list[bool]] = {}
    unscored = 0
    total = 0
    for group, correct in rows:
        total += 1
        per.setdefault(group, [])
        if correct is None:
            unscored += 1
        else:
            per[group].append(bool(correct))
    scored = [x for v in per.values() for x in v]
    per_group = {
        g: {"correct": sum(v), "scored": len(v), "accuracy": sum(v) / len(v) if v else None} for g, v in per.items()
    }
    return {
        "accuracy": sum(scored) / len(scored) if scored else None,
        "macro_accuracy": _mean([d["accuracy"] for d in per_group.values() if d["accuracy"] is not None]),
        "correct": sum(scored),
        "scored": len(scored),
        "unscored": unscored,
        "total": total,
        "per_group": per_group,
    }


def timing_summary(seconds: Iterable[float]) -> dict[str, Any]:
    """Count, total, mean, median, min and max of a list of durations (None fields when empty)."""
    values = [float(s) for s in seconds if s is not None]
    if not values:
        return {"count": 0, "total": 0.0, "mean": None, "median": None, "min": None, "max": None}
    return {
        "count": len(values),
        "total": sum(values),
        "mean": sum(values) / len(values),
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
    }


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None
