"""Recognition broken down by negative kind, from the labels a toy export writes.

A toy export (`ego_ros.toy.export`) lists, for every concept, how each other concept relates to it as a
negative (``toy_manifest.json``: ``concepts[name]["negative_kinds"][other]``):

* ``lookalike``: every nameable attribute the same, another identity signature (world v2: glyph and shade): only pixels
  tell them apart, so keywords cannot;
* ``near_duplicate``: same shape and colour, another mark or pattern;
* ``other``: anything else.

`load_negative_kinds(root)` reads them (an empty mapping for data sets without a toy manifest), and
`negative_kind_breakdown` scores all positives against the negatives of each kind: ROC AUC, false-
positive rate and count. A negative decision's kind is the hardest relation between the asked group
and the concepts the image shows; for a pair group (multi-concept data) each member takes its hardest
relation to the image's concepts and the pair the easiest of its two members (a pair's image is a
look-alike negative only when both members face a look-alike), and ``partial`` when the image shows
one of the group's own concepts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .metrics import Decision, roc_auc

MANIFEST_NAME = "toy_manifest.json"
#: From hardest to easiest.
NEGATIVE_KINDS: tuple[str, ...] = ("lookalike", "near_duplicate", "other")
KindMap = Mapping[str, Mapping[str, str]]


def load_negative_kinds(root: str | Path) -> dict[str, dict[str, str]]:
    """``{concept: {other concept: kind}}`` from the toy manifest at `root` or its parent (the
    multi-concept layout's root is the export's ``Multi-concept/``); {} when there is none or it holds no
    labels (exports from before the labels, other data sets)."""
    root = Path(root)
    for base in (root, root.parent):
        path = base / MANIFEST_NAME
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return {}
            concepts = data.get("concepts") if isinstance(data, dict) else None
            if not isinstance(concepts, dict):
                return {}
            return {
                str(name): {str(o): str(k) for o, k in entry["negative_kinds"].items()}
                for name, entry in concepts.items()
                if isinstance(entry, dict) and isinstance(entry.get("negative_kinds"), dict)
            }
    return {}


def _rank(kind: str) -> int:
    return NEGATIVE_KINDS.index(kind) if kind in NEGATIVE_KINDS else len(NEGATIVE_KINDS) - 1


def negative_kind(group: Sequence[str], present: Sequence[str], kinds: KindMap) -> str | None:
    """Kind of the negative "is `group` in an image showing `present`?" (None: unlabelled or no concept
    shown, e.g. a background image)."""
    if set(group) & set(present):
        return "partial"
    member_kinds = []
    for concept in group:
        rel = kinds.get(concept)
        labelled = [rel[p] for p in present if rel is not None and p in rel]
        if not labelled:
            return None
        member_kinds.append(min(labelled, key=_rank))
    return max(member_kinds, key=_rank) if member_kinds else None


def negative_kind_breakdown(
    decisions: Sequence[Decision], kind_of: Callable[[Decision], str | None]
) -> dict[str, dict[str, Any]]:
    """Per negative kind: ROC AUC of every positive decision against the negatives of that kind,
    false-positive rate (share of them judged present), their number and mean probability."""
    positives = [d for d in decisions if d.truth]
    by_kind: dict[str, list[Decision]] = {}
    for d in decisions:
        if not d.truth:
            kind = kind_of(d)
            if kind is not None:
                by_kind.setdefault(kind, []).append(d)
    out: dict[str, dict[str, Any]] = {}
    order = [*NEGATIVE_KINDS, "partial"]
    for kind in sorted(by_kind, key=lambda k: order.index(k) if k in order else len(order)):
        negs = by_kind[kind]
        rows = positives + negs
        probs = [d.probability for d in negs if d.probability is not None]
        out[kind] = {
            "negatives": len(negs),
            "auc": roc_auc([d.truth for d in rows], [d.probability for d in rows]),
            "false_positive_rate": sum(d.predicted for d in negs) / len(negs),
            # 4 decimals: the engine's probabilities agree only to ~1e-6 across batch compositions (frames
            # packed in one row), so more digits would differ between a resumed run and an uninterrupted one.
            "mean_probability": round(sum(probs) / len(probs), 4) if len(probs) == len(negs) else None,
        }
    return out
