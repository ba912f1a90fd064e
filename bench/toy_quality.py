"""Recognition quality of Ego and its baselines on a toy-world benchmark (the paper's Table 3 analogue).

Exports a Yo'LLaVA-layout toy benchmark of held-out personal concepts (each with a near-duplicate
sibling concept, so hard negatives are in the test set), then runs the paper's recognition protocol
(every test image against every concept, each concept alone in context) through the engine for each
method, and writes a JSON file and a Markdown table with the seeds used.

With ``--world v2`` (the default for a model trained on world v2, read from its training_state.json)
the export's sibling concepts are look-alikes that differ only in their identity glyph; every run also
reports ROC AUC against each negative kind (look-alikes, near-duplicates, other concepts) apart.

Usage: python bench/toy_quality.py [--model toy] [--concepts 12] [--seed 0] [--world auto|v1|v2]
       [--out bench/results/toy_quality.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from statistics import mean

import torch

from ego_ros.core.engine import EgoEngine
from ego_ros.eval.methods import get_method
from ego_ros.eval.negatives import NEGATIVE_KINDS
from ego_ros.eval.runner import run_eval
from ego_ros.toy.attributes import WORLDS
from ego_ros.toy.export import export
from ego_ros.toy.model_world import model_world

#: (row label, eval method, views)
ROWS = [
    ("Keywords only", "keywords", 1),
    ("Full Visual", "full-visual", 1),
    ("Full Visual + Keywords", "full-visual+keywords", 1),
    ("Uniform 20%", "uniform", 1),
    ("Random 20%", "random", 1),
    ("Ego 1-view (fixed K 20%)", "ego-fixed", 1),
    ("Ego 1-view", "ego", 1),
    ("Ego 5-view", "ego", 5),
]


def _fmt(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="toy")
    p.add_argument("--concepts", type=int, default=12)
    p.add_argument("--test-per-concept", type=int, default=8)
    p.add_argument("--seed", type=int, default=0, help="export seed (held-out concepts and scenes)")
    p.add_argument("--data", default=None, help="reuse this export folder (default: a fresh temporary one)")
    p.add_argument("--rows", nargs="+", default=None, help="subset of methods (eval method names)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="bench/results/toy_quality.json")
    p.add_argument("--markdown", default=None, help="also write the table here (default: next to --out)")
    p.add_argument("--world", default="auto", choices=("auto", *WORLDS),
                   help="toy world of the export (auto: the one the model was trained on; v1 if unknown)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    world = model_world(args.model) if args.world == "auto" else args.world

    data = Path(args.data) if args.data else Path(tempfile.mkdtemp(prefix="toy_quality_"))
    if not (data / "toy_manifest.json").is_file():
        export(data, "yollava", args.concepts, seed=args.seed, views=5, test_per_concept=args.test_per_concept,
               world=world)
    engine = EgoEngine.load(args.model)
    runs_dir = Path(tempfile.mkdtemp(prefix="toy_quality_runs_"))
    rows = []
    for label, method, views in ROWS:
        if args.rows and method not in args.rows:
            continue
        t0 = time.perf_counter()
        res = run_eval(f"yollava:{data}", args.model, method, views, runs_dir / f"{method}_{views}",
                       tasks=["recognition"], progress=False, engine=engine, recognition_context="each",
                       seed=args.seed)
        rec = res["metrics"]["recognition"]
        intro = res.get("introductions", {})
        # visual memory tokens placed in context (a keywords-only context holds none)
        tokens = ([i["num_tokens"] for i in intro.values() if i.get("num_tokens") is not None]
                  if "memory" in get_method(method).context else [])
        rows.append({"method": label, "eval_method": method, "views": views,
                     "precision": rec["precision"], "recall": rec["recall"], "f1": rec["f1_of_means"],
                     "mean_f1": rec["mean_f1"], "accuracy": rec["accuracy"], "auc": rec["auc"],
                     "tokens_per_concept": mean(tokens) if tokens else None,
                     "auc_by_negative_kind": {k: v["auc"] for k, v in rec.get("by_negative_kind", {}).items()},
                     "decisions": rec["num_decisions"], "seconds": round(time.perf_counter() - t0, 1)})
        print(json.dumps(rows[-1]), flush=True)
    full_tokens = next((r["tokens_per_concept"] for r in rows if r["eval_method"] == "full-visual"), None)
    result = {"model": args.model, "fingerprint": engine.backend.fingerprint(), "export_seed": args.seed,
              "world": world,
              "concepts": args.concepts, "test_per_concept": args.test_per_concept, "protocol":
              "every test image against every concept, one concept in context (single-concept)",
              "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    lines = [f"Toy benchmark: {args.concepts} held-out concepts (world {world}, export seed {args.seed}, "
             f"{args.test_per_concept} test images each, 5 reference views), model `{args.model}` "
             f"(fingerprint {result['fingerprint'][:12]}). AUC vs a kind: every positive against the "
             "negatives of that kind only.", "",
             "| method | views | visual tokens/concept | precision | recall | F1 | mean F1 | accuracy | ROC AUC "
             "| AUC vs look-alikes | AUC vs near-duplicates | AUC vs others |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        share = ""
        if full_tokens and r["tokens_per_concept"] is not None:
            share = f" ({100 * r['tokens_per_concept'] / full_tokens:.0f}%)"
        lines.append(f"| {r['method']} | {r['views']} | {_fmt(r['tokens_per_concept'], 1)}{share} | "
                     f"{_fmt(r['precision'])} | {_fmt(r['recall'])} | {_fmt(r['f1'])} | {_fmt(r['mean_f1'])} | "
                     f"{_fmt(r['accuracy'])} | {_fmt(r['auc'])} | "
                     + " | ".join(_fmt(r["auc_by_negative_kind"].get(k)) for k in NEGATIVE_KINDS) + " |")
    md = Path(args.markdown) if args.markdown else out.with_suffix(".md")
    md.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
