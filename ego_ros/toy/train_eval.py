"""The trainer's held-out evaluation: recognition (yes/no) accuracy and ROC AUC per kind of negative
and per memory form, and description accuracy per attribute, on instances training never sees.

In v2, `match_auc_lookalike` / `match_auc_near_duplicate` score the hard negatives of a kind against
their positive twins only (ROC AUC), and `match_pairs_lookalike` / `match_pairs_near_duplicate` the
share of pairs in which the twin gets the higher P(yes) (ties count one half): 0.5 for a model that
cannot see what the pair differs in."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from ego_ros.core.prompts import split_keywords

from .attributes import Instance
from .model_config import PROMPT_OVERRIDES
from .tasks import ImageData, Sample, heldout_describe_set, heldout_match_set
from .train_config import TrainConfig

if TYPE_CHECKING:
    from .train import Trainer


def auc(pos: list[float], neg: list[float]) -> float:
    """ROC AUC as the Mann-Whitney statistic (ties count one half); a few lines, no extra dependency."""
    if not pos or not neg:
        return float("nan")
    p = np.asarray(pos)[:, None]
    n = np.asarray(neg)[None, :]
    return float(((p > n).sum() + 0.5 * (p == n).sum()) / (p.size * n.size))


def heldout_sets(cfg: TrainConfig) -> tuple[list[Sample], list[tuple[ImageData, Instance]]]:
    """The recognition samples and the (image, instance) description cases of `cfg`'s evaluation."""
    world = cfg.tasks.world
    return heldout_match_set(cfg.eval_match, world=world), heldout_describe_set(cfg.eval_describe, world=world)


def evaluate_heldout(
    trainer: Trainer, match: list[Sample], describe: list[tuple[ImageData, Instance]]
) -> dict[str, Any]:
    """One evaluation record of `trainer` at its current step on the sets of `heldout_sets`."""
    t0 = time.perf_counter()
    probs = trainer.yes_probabilities(match)
    res: dict[str, Any] = {"step": trainer.step, "samples": trainer.samples_seen}
    correct = [(p >= 0.5) == (s.kind == "pos") for p, s in zip(probs, match)]
    res["match_acc"] = float(np.mean(correct))
    res["match_auc"] = auc(
        [p for p, s in zip(probs, match) if s.kind == "pos"], [p for p, s in zip(probs, match) if s.kind != "pos"]
    )
    kinds = [k for k in ("pos", "hard", "lookalike", "near_duplicate", "easy") if any(s.kind == k for s in match)]
    for kind in kinds:
        res[f"match_acc_{kind}"] = float(np.mean([c for c, s in zip(correct, match) if s.kind == kind]))
    for kind in ("lookalike", "near_duplicate"):
        # v2: each hard negative against its positive twin, the same sample with the concept in its place
        # (for a look-alike the signature is the only difference; `tasks.heldout_match_set`)
        pairs = [(probs[s.twin], p) for p, s in zip(probs, match) if s.kind == kind and s.twin is not None]
        if pairs:
            res[f"match_auc_{kind}"] = auc([a for a, _ in pairs], [b for _, b in pairs])
            res[f"match_pairs_{kind}"] = float(np.mean([(a > b) + 0.5 * (a == b) for a, b in pairs]))
    forms = [
        "keywords" if s.mode == "keywords" else ("full" if s.entries[0].views[0][1] is None else "mask")
        for s in match
    ]
    for form in sorted(set(forms)):
        res[f"match_acc_{form}"] = float(np.mean([c for c, f in zip(correct, forms) if f == form]))
    texts = trainer.describe([d for d, _ in describe])
    fields_ok = {"colour": [], "shape": [], "pattern": [], "mark": [], "exact": []}
    for text, (_, inst) in zip(texts, describe):
        kw = [k.lower() for k in split_keywords(text, PROMPT_OVERRIDES["keyword_separator"])]
        truth = list(inst.keywords)
        checks = {
            "colour": truth[0] in kw,
            "shape": truth[1] in kw,
            "pattern": truth[2] in kw,
            "mark": truth[3] in kw and truth[4] in kw,
        }
        for k, v in checks.items():
            fields_ok[k].append(v)
        fields_ok["exact"].append(kw == truth)
    res.update({f"describe_{k}": float(np.mean(v)) for k, v in fields_ok.items()})
    res["describe_example"] = texts[0] if texts else ""
    res["eval_seconds"] = round(time.perf_counter() - t0, 2)
    return res
