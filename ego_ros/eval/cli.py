"""``ego-ros eval``: run the paper's evaluation protocol, or compare finished runs.

    ego-ros eval --dataset KIND:PATH --model MODEL --method METHOD --views 1|5 --out DIR
                 [--limit N] [--seed S] [--judge none|exact|local|http] [--device DEV] ...
    ego-ros eval compare DIR [DIR ...] [--out FILE]

``register(subparsers)`` adds the command to the main ``ego-ros`` parser; each parser sets
``func(args) -> int`` (the exit status). ``python -m ego_ros.eval.cli`` runs it on its own.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ego_ros.core.errors import EgoError

from .datasets import KINDS, DatasetError
from .judges import JUDGES, HttpJudgeConfig, JudgeError
from .methods import METHODS

TASKS = ("recognition", "localisation", "vqa", "captioning", "video_qa")


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``eval`` (and its ``compare`` sub-command) to ``subparsers``; returns the ``eval`` parser."""
    p = subparsers.add_parser(
        "eval",
        help="evaluate a personalization method on a benchmark (or compare runs)",
        description="Run the Ego paper's protocol (recognition, VQA, captioning, video QA) on a dataset "
        f"given as KIND:PATH, KIND one of {', '.join(KINDS)}. `eval compare DIR...` tabulates finished runs.",
    )
    p.add_argument("--dataset", metavar="KIND:PATH", help="e.g. yollava:/data/yollava-data")
    p.add_argument("--model", help="model path or Hub id the engine loads")
    p.add_argument("--method", default="ego", choices=list(METHODS), help="compared method (default: ego)")
    p.add_argument("--views", type=int, choices=(1, 5), default=1, help="reference views per concept")
    p.add_argument("--out", metavar="DIR", help="output folder (results.json, report.md, plots, cache)")
    p.add_argument("--limit", type=int, default=None, help="at most N items per task (seeded, spread over groups)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--judge", choices=JUDGES, default="none", help="judge of open-ended answers (default: none)")
    p.add_argument("--judge-url", help="base URL of an OpenAI-compatible API, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--judge-model", help="model name sent to the judge API")
    p.add_argument("--judge-key-env", help="environment variable holding the judge API key")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--tasks", help=f"comma-separated subset of {','.join(TASKS)} (default: all the dataset has)")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--video-frames", type=int, default=8, help="frames sampled per clip for video QA")
    p.add_argument(
        "--engine-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="engine setting (EngineConfig field), e.g. max_context_concepts=64 or threshold=0.5; repeatable",
    )
    p.add_argument("--recognition-context", choices=("auto", "each", "all"), default="auto",
                   help="recognition: each concept alone in context (single-concept protocol), all at once "
                   "(multi-concept), or auto (all for multi-concept datasets, each otherwise)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_command, _eval_parser=p)

    sub = p.add_subparsers(dest="eval_command", metavar="{compare}")
    c = sub.add_parser("compare", help="put finished runs side by side (paper-shaped tables)")
    c.add_argument("runs", nargs="+", metavar="DIR", help="output folders of earlier `ego-ros eval` runs")
    c.add_argument("--out", dest="compare_out", metavar="FILE", help="also write the Markdown to FILE")
    c.add_argument("--no-published", action="store_true", help="leave out the paper's published numbers")
    c.set_defaults(func=_compare_command)
    return p


def _run_command(args: argparse.Namespace) -> int:
    parser: argparse.ArgumentParser = args._eval_parser
    missing = [f"--{n}" for n in ("dataset", "model", "out") if not getattr(args, n)]
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)}")
    tasks = None
    if args.tasks:
        tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
        bad = [t for t in tasks if t not in TASKS]
        if bad:
            parser.error(f"unknown task(s) {bad}; choose from {', '.join(TASKS)}")
    try:
        engine_options = parse_engine_options(args.engine_option)
    except ValueError as exc:
        parser.error(str(exc))
    judge_config = None
    if args.judge == "http":
        if not args.judge_url or not args.judge_model:
            parser.error("--judge http needs --judge-url and --judge-model")
        judge_config = HttpJudgeConfig(args.judge_url, args.judge_model, args.judge_key_env)
    from .runner import run_eval

    try:
        results = run_eval(
            args.dataset,
            args.model,
            args.method,
            args.views,
            args.out,
            limit=args.limit,
            seed=args.seed,
            judge=args.judge,
            device=args.device,
            progress=not args.no_progress,
            tasks=tasks,
            judge_config=judge_config,
            dtype=args.dtype,
            max_new_tokens=args.max_new_tokens,
            video_frames=args.video_frames,
            engine_options=engine_options,
            recognition_context=args.recognition_context,
        )
    except (DatasetError, JudgeError, EgoError, ValueError) as exc:
        print(f"ego-ros eval: error: {exc}", file=sys.stderr)
        return 2
    print(_summary(results, Path(args.out)))
    return 0


def parse_engine_options(items: Sequence[str]) -> dict[str, Any]:
    """``["threshold=0.4", "prefix_cache=false"]`` -> ``{"threshold": 0.4, "prefix_cache": False}``.

    Values are read as JSON when they parse (numbers, true/false, null), else kept as strings.
    """
    options: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ValueError(f"--engine-option expects KEY=VALUE with KEY an identifier, got {item!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        options[key.strip()] = value
    return options


def _summary(results: dict, out: Path) -> str:
    from .report import pct

    m = results["metrics"]
    lines = [f"results: {out / 'results.json'}  report: {out / 'report.md'}"]
    if "recognition" in m:
        r = m["recognition"]
        lines.append(
            f"recognition: P {pct(r['precision'])}  R {pct(r['recall'])}  F1 {pct(r['f1_of_means'])}  "
            f"mean F1 {pct(r['mean_f1'])}  acc {pct(r['accuracy'])}  AUC {pct(r['auc'])}"
        )
    for task in ("vqa", "video_qa"):
        if task in m:
            lines.append(f"{task}: accuracy {pct(m[task]['accuracy'])} ({m[task]['scored']}/{m[task]['total']} scored)")
    if "captioning" in m:
        lines.append(f"captioning: recall {pct(m['captioning']['recall'])}")
    return "\n".join(lines)


def _compare_command(args: argparse.Namespace) -> int:
    from .report import compare

    try:
        text = compare(args.runs, include_published=not args.no_published)
    except (FileNotFoundError, ValueError) as exc:
        print(f"ego-ros eval compare: error: {exc}", file=sys.stderr)
        return 2
    if args.compare_out:
        Path(args.compare_out).write_text(text, encoding="utf-8")
    print(text)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point (``python -m ego_ros.eval.cli eval ...``)."""
    parser = argparse.ArgumentParser(prog="ego-ros")
    subparsers = parser.add_subparsers(dest="command", required=True)
    register(subparsers)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
