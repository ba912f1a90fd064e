"""`ego-ros`: the command line of ego_ros.

Engine commands (introduce, recognize, locate, ask, caption, concepts, calibrate, bench) print JSON on stdout
so robots and scripts can consume them; errors go to stderr with exit status 2 (bad input) or 1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .core.errors import EgoError
from .core.limits import MAX_NEW_TOKENS, MAX_QUESTION_CHARS, check_new_tokens, check_text

EXIT_BAD_INPUT = 2


def default_store(model: str) -> Path:
    """Per-model default store: $EGO_ROS_HOME/stores/<model slug> (memories belong to one model)."""
    home = Path(os.environ.get("EGO_ROS_HOME", Path.home() / ".ego_ros"))
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model.strip("/")).strip("_") or "model"
    return home / "stores" / slug


def _model_args(p: argparse.ArgumentParser, store: bool = True) -> None:
    p.add_argument("--model", default="toy",
                   help="model directory, Hub id, 'toy' (embedded default) or 'random:<family>' (default: toy)")
    p.add_argument("--device", default="cpu", help="cpu or cuda:N (default: cpu)")
    p.add_argument("--dtype", default="auto", help="auto, float32, bfloat16 or float16 (auto: bf16 on CUDA)")
    p.add_argument("--calibration", default=None, help="layer calibration file (default: the model's own, if any)")
    p.add_argument("--layers", type=int, nargs="+", default=None, help="LLM layers for keyword attention")
    p.add_argument("--max-tiles", type=int, default=None,
                   help="most tiles per image for families that tile (InternVL, Idefics3, SmolVLM; default 6; "
                        "1: one tile)")
    if store:
        p.add_argument("--store", default=None, help="concept store directory (default: per model under ~/.ego_ros)")


def _engine(args: argparse.Namespace, read_only: bool = False, **config: Any):
    """The engine of a command. Commands that only read the store open it read-only: they take no lock,
    so they work beside a running node; writing commands are refused while another process holds it."""
    from .core.engine import EgoEngine

    store = getattr(args, "store", None)
    if store is None and hasattr(args, "store"):
        store = default_store(args.model)
    if getattr(args, "layers", None):
        config["layers"] = args.layers
    if getattr(args, "max_tiles", None) is not None:
        config["max_tiles"] = args.max_tiles
    engine = EgoEngine.load(args.model, device=args.device, dtype=args.dtype, store_dir=store,
                            calibration=args.calibration, read_only_store=read_only, strict_store=False, **config)
    # stderr: stdout carries only the command's JSON
    print(f"ego-ros {args.command}: {engine.layer_choice.message()}", file=sys.stderr)
    return engine


def _print(obj: Any) -> None:
    print(json.dumps(obj, ensure_ascii=False, indent=1))


# ----- commands ------------------------------------------------------------------------------------------
def cmd_introduce(args: argparse.Namespace) -> int:
    from .core.introduce import IntroduceOptions

    opts = IntroduceOptions(selection=args.selection, dynamic_k=not args.fixed_k, max_tokens=args.max_tokens,
                            max_fraction=args.max_fraction, keep_reference=args.keep_reference)
    with _engine(args) as engine:
        mem = engine.introduce(args.name, list(args.images), options=opts, notes=args.notes,
                               replace_existing=args.replace)
    _print({"name": mem.name, "keywords": mem.unique_keywords(), "keywords_per_view": mem.keywords,
            "alpha": mem.alpha, "k_c": mem.k_c, "num_tokens": mem.num_tokens, "seconds": round(mem.seconds, 4),
            "store": str(engine.store.directory), "attention_layers": engine.layer_choice.to_dict()})
    return 0


def cmd_recognize(args: argparse.Namespace) -> int:
    engine = _engine(args, read_only=True, threshold=args.threshold, context=args.context)
    results = []
    for img in args.images:
        recs = engine.recognize(img, args.concepts)
        results.append({"image": str(img), "probabilities": {r.name: round(r.probability, 6) for r in recs},
                        "present": [r.name for r in recs if r.present],
                        "filtered_out": [r.name for r in recs if not r.considered]})
    _print(results[0] if len(results) == 1 else results)
    return 0


def cmd_locate(args: argparse.Namespace) -> int:
    engine = _engine(args, read_only=True, threshold=args.threshold, context=args.context)
    results = []
    for img in args.images:
        rec = engine.locate(img, args.name, map=args.map)
        results.append({"image": str(img), "name": rec.name, "found": rec.present,
                        "probability": round(rec.probability, 6), **rec.location.to_dict(heatmap=args.heatmap),
                        "attention_layers": engine.layer_choice.to_dict()})
    _print(results[0] if len(results) == 1 else results)
    return 0


def cmd_ask(args: argparse.Namespace) -> int:
    # The engine checks these too; checking here refuses an absurd request before loading a model.
    check_new_tokens(args.max_new_tokens)
    check_text(args.question, "question", MAX_QUESTION_CHARS)
    engine = _engine(args, read_only=True, context=args.context)
    if len(args.images) > 1:
        ans = engine.ask_video(args.images, args.question, args.concepts, args.max_new_tokens)
    else:
        ans = engine.ask(args.images[0], args.question, args.concepts, args.max_new_tokens)
    _print({"question": args.question, "answer": ans.text, "concepts": ans.concepts,
            "seconds": round(ans.seconds, 4)})
    return 0


def cmd_caption(args: argparse.Namespace) -> int:
    check_new_tokens(args.max_new_tokens)
    engine = _engine(args, read_only=True, context=args.context)
    out = []
    for img in args.images:
        ans = engine.caption(img, args.concepts, args.max_new_tokens)
        out.append({"image": str(img), "caption": ans.text, "concepts": ans.concepts,
                    "seconds": round(ans.seconds, 4)})
    _print(out[0] if len(out) == 1 else out)
    return 0


def cmd_concepts(args: argparse.Namespace) -> int:
    if args.action == "rename" and len(args.names) != 2:
        raise EgoError("rename takes OLD NEW")
    with _engine(args, read_only=args.action == "list") as engine:
        if args.action == "list":
            _print({"store": str(engine.store.directory), "concepts": [m.summary() for m in engine.concepts()],
                    "unavailable": engine.store.unavailable()})
        elif args.action == "remove":
            for name in args.names:
                engine.remove(name)
            _print({"removed": args.names})
        elif args.action == "rename":
            engine.rename(args.names[0], args.names[1])
            _print({"renamed": {args.names[0]: args.names[1]}})
    return 0


def _calibration_method(args: argparse.Namespace) -> str:
    """masks when masks are given (--coco, or --folder with a masks/ sub-folder), else self-calibration."""
    if args.method != "auto":
        return args.method
    if args.coco or (args.folder and (Path(args.folder) / "masks").is_dir()):
        return "masks"
    return "self"


def cmd_calibrate(args: argparse.Namespace) -> int:
    from .core.calibration import calibrate, coco_pairs, folder_pairs, read_mask
    from .core.loading import load_backend
    from .core.self_calibration import folder_images, self_calibrate

    if sum(bool(x) for x in (args.folder, args.coco or args.images)) != 1:
        raise EgoError("give --folder DIR (images/ + masks/, or images alone), --images DIR (no masks) "
                       "or --coco ANNOTATIONS --images DIR")
    method = _calibration_method(args)
    if method == "masks":
        if args.folder:
            pairs = [(img, read_mask(mask)) for img, mask in folder_pairs(args.folder)]
        else:
            if not args.coco or not args.images:
                raise EgoError("mask calibration from COCO needs --coco ANNOTATIONS --images DIR")
            pairs = coco_pairs(args.coco, args.images, limit=args.limit)
        samples: list = pairs[:args.limit] if args.limit else pairs
    else:
        if args.coco:
            raise EgoError("--method self takes images without masks: --folder DIR or --images DIR, not --coco")
        samples = folder_images(args.folder or args.images)
        samples = samples[:args.limit] if args.limit else samples
    backend = load_backend(args.model, device=args.device, dtype=args.dtype)
    from tqdm import tqdm

    with tqdm(total=len(samples), desc=f"calibrating ({method})", file=sys.stderr) as bar:
        if method == "masks":
            cal = calibrate(backend, samples, num_layers=args.num_layers, top_k=args.top_k,
                            progress=lambda n: bar.update(1))
        else:
            cal = self_calibrate(backend, samples, num_layers=args.num_layers, progress=lambda n: bar.update(1))
    path = cal.save(args.out)
    ranked = sorted(range(len(cal.layer_scores)), key=lambda i: -cal.layer_scores[i])
    score = "overlap" if method == "masks" else "coherence"
    _print({"layers": cal.layers, "method": method, "samples": cal.samples, "out": str(path),
            "top_layers": [{"layer": i, score: round(cal.layer_scores[i], 4)} for i in ranked[:10]]})
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .benchmarks import run_engine_benchmark

    result = run_engine_benchmark(model=args.model, device=args.device, dtype=args.dtype,
                                  concept_counts=args.concepts, repeats=args.repeats, image_px=args.image_px,
                                  keyword_tokens=args.keyword_tokens, out=args.out)
    _print(result)
    return 0


# ----- parser ------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ego-ros", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("introduce", help="introduce a concept from reference images; prints its memory summary")
    _model_args(p)
    p.add_argument("--name", required=True, help="the concept's name, e.g. 'kona' or \"Anna's mug\"")
    p.add_argument("images", nargs="+", help="reference image files (one or more views)")
    p.add_argument("--selection", default="attention", choices=["attention", "uniform", "random", "all"])
    p.add_argument("--fixed-k", action="store_true", help="use K tokens per view instead of the dynamic K_c")
    p.add_argument("--max-tokens", type=int, default=None, help="K, tokens per view at most")
    p.add_argument("--max-fraction", type=float, default=0.2, help="K as a fraction of the visual tokens")
    p.add_argument("--keep-reference", action="store_true", help="also store the images (reference_images mode)")
    p.add_argument("--replace", action="store_true", help="replace an existing concept of that name")
    p.add_argument("--notes", default="")
    p.set_defaults(func=cmd_introduce)

    def infer_args(p: argparse.ArgumentParser) -> None:
        _model_args(p)
        p.add_argument("--concepts", nargs="+", default=None, help="restrict to these concepts (default: all)")
        p.add_argument("--context", default="memory",
                       choices=["memory", "keywords", "memory+keywords", "reference_images", "none"])

    p = sub.add_parser("recognize", help="probability that each stored concept is in each image")
    infer_args(p)
    p.add_argument("images", nargs="+")
    p.add_argument("--threshold", type=float, default=0.5)
    p.set_defaults(func=cmd_recognize)

    p = sub.add_parser("locate", help="where a stored concept is in each image: box and point in pixels")
    _model_args(p)
    p.add_argument("--context", default="memory",
                   choices=["memory", "keywords", "memory+keywords", "reference_images", "none"])
    p.add_argument("images", nargs="+")
    p.add_argument("--name", required=True, help="the concept to locate")
    p.add_argument("--map", default=None, choices=["product", "attention", "similarity"],
                   help="localisation map (default: the engine's)")
    p.add_argument("--heatmap", action="store_true", help="also print the map over the visual-token grid")
    p.add_argument("--threshold", type=float, default=0.5)
    p.set_defaults(func=cmd_locate)

    p = sub.add_parser("ask", help="ask a question about an image (several images: frames of a video)")
    infer_args(p)
    p.add_argument("images", nargs="+")
    p.add_argument("--question", "-q", required=True)
    p.add_argument("--max-new-tokens", type=int, default=64, help=f"1..{MAX_NEW_TOKENS} (default: 64)")
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("caption", help="a caption naming the stored concepts seen")
    infer_args(p)
    p.add_argument("images", nargs="+")
    p.add_argument("--max-new-tokens", type=int, default=64, help=f"1..{MAX_NEW_TOKENS} (default: 64)")
    p.set_defaults(func=cmd_caption)

    p = sub.add_parser("concepts", help="list, remove or rename stored concepts")
    _model_args(p)
    p.add_argument("action", choices=["list", "remove", "rename"])
    p.add_argument("names", nargs="*")
    p.set_defaults(func=cmd_concepts)

    p = sub.add_parser("calibrate", help="rank LLM layers by keyword attention: on object masks (paper 3.4), "
                                         "or self-calibrated on images without masks (docs/calibration.md)")
    _model_args(p, store=False)
    p.add_argument("--folder", help="folder with images/ and masks/ (same file stems); without masks/ its images "
                                    "are self-calibrated")
    p.add_argument("--coco", help="COCO instances annotation file (single-instance images are used)")
    p.add_argument("--images", help="image folder for --coco, or images without masks to self-calibrate on")
    p.add_argument("--method", default="auto", choices=["auto", "masks", "self"],
                   help="masks: overlap with object masks; self: spatial coherence of keyword attention, no masks; "
                        "auto (default): masks when given")
    p.add_argument("--num-layers", type=int, default=5, help="layers to keep (L)")
    p.add_argument("--top-k", type=int, default=None, help="K for the overlap (default: the mask's token count)")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--out", required=True, help="calibration file to write (JSON)")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("bench", help="latency and memory benchmark of introduction and recognition")
    p.add_argument("--model", default="toy")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--concepts", type=int, nargs="+", default=[1, 10, 50])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--image-px", type=int, default=None, help="square test image size (default: model's)")
    p.add_argument("--keyword-tokens", type=int, default=16, help="fixed number of generated keyword tokens")
    p.add_argument("--out", default=None, help="write results (JSON) here")
    p.set_defaults(func=cmd_bench)

    for registrar in _registrars():
        registrar(sub)
    return parser


def _registrars() -> list[Callable[[Any], None]]:
    """Subcommands contributed by the other parts of the package (toy world, evaluation, ROS demo)."""
    from .quickstart import register as quickstart_register

    out = [quickstart_register]
    from .toy.cli import register as toy_register
    from .toy.train_cli import register_train

    out.append(lambda sub: toy_register(sub, extra=[register_train]))
    from .eval.cli import register as eval_register

    out.append(eval_register)
    from .agents.cli import register as agents_register

    out.append(agents_register)
    try:
        from .ros.cli import register as ros_register
    except ImportError:  # the ROS extra is optional; `demo` needs rclpy
        pass
    else:
        out.append(ros_register)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except EgoError as exc:
        print(f"ego-ros {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (ValueError, FileNotFoundError) as exc:
        print(f"ego-ros {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
