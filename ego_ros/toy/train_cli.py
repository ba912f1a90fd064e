"""``ego-ros toy train``: train the toy model from a seed, resumably, and export it as a model directory.

    ego-ros toy train --seed 0 --steps 60000 --out runs/toy                 # train (CPU or --device cuda)
    ego-ros toy train --resume runs/toy/ckpt_latest.pt --out runs/toy       # continue after a stop
    ego-ros toy train --resume runs/toy/ckpt_best.pt --steps 0 --export ego_ros/toy/model   # export only
    ego-ros toy train --world v2 --seed 0 --out runs/toy-v2                 # the v2 world (identity signatures)

The data stream depends only on (seed, step), so a resumed run continues exactly where the checkpoint
stopped. `--out` receives ``train_log.jsonl`` (losses, throughput, feature variation, held-out
evaluations), ``ckpt_latest.pt`` (every --checkpoint-minutes and at the end) and ``ckpt_best.pt`` (best
held-out matching ROC AUC). `register_train(toy_subparsers)` adds the command to the ``toy`` group;
``python -m ego_ros.toy.train_cli ...`` runs it stand-alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .attributes import DEFAULT_WORLD, WORLDS


def add_train_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--seed", type=int, default=None, help="seed of the initial weights and the data stream (default 0)")
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        metavar="N",
        help="train up to this many optimizer steps in all (default 60000; with --resume: the "
        "checkpoint's; 0 with --resume: export only)",
    )
    p.add_argument(
        "--samples",
        type=int,
        default=None,
        metavar="N",
        help="alternatively the number of training samples in all (steps = samples / batch size)",
    )
    p.add_argument("--batch-size", type=int, default=None, help="samples per step (default 16)")
    p.add_argument("--device", default=None, help="cpu or cuda[:N] (default cpu); bf16 autocast on CUDA")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default 2)")
    p.add_argument("--workers", type=int, default=None, help="data loader worker processes (default 0)")
    p.add_argument("--out", default=None, metavar="DIR", help="directory for logs and checkpoints")
    p.add_argument(
        "--resume",
        default=None,
        metavar="CKPT",
        help="checkpoint to continue from ('auto': DIR/ckpt_latest.pt of --out if it exists)",
    )
    p.add_argument("--export", default=None, metavar="DIR", help="write the model directory here when done")
    p.add_argument("--eval-every", type=int, default=None, metavar="STEPS", help="held-out evaluation interval")
    p.add_argument(
        "--eval-match", type=int, default=None, metavar="N", help="held-out recognition samples per evaluation"
    )
    p.add_argument("--checkpoint-minutes", type=float, default=None, help="checkpoint interval (default 10)")
    p.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="wall-clock budget: the number of steps is fitted to it from the measured speed (the learning-rate "
        "decay still runs whole) and training stops at it in any case",
    )
    p.add_argument("--lr-vision", type=float, default=None, help="learning rate of vision tower, projector, heads")
    p.add_argument("--lr-lm", type=float, default=None, help="learning rate of the language model")
    p.add_argument("--vision-steps", type=int, default=None, help="steps of the vision-first phase")
    p.add_argument("--vision-instances", type=int, default=None, help="instances per vision-first step")
    p.add_argument("--contrast-instances", type=int, default=None, help="vision-only instances per mixed step")
    p.add_argument("--ramp-steps", type=int, default=None, help="steps over which hard negatives ramp in")
    p.add_argument("--twin-weight", type=float, default=None,
                   help="task weight of look-alike negatives trained together with their positive twins "
                   "(beside match's 0.46; default 0)")
    p.add_argument("--raw-contrast-weight", type=float, default=None,
                   help="weight of the contrastive loss on the pooled projector outputs without the head "
                   "(default 0: off)")
    p.add_argument("--lm-group", type=int, default=None, help="samples per language-model pass")
    p.add_argument("--init", default=None, metavar="MODEL_DIR",
                   help="start from an exported toy model's weights instead of the seed's random ones")
    p.add_argument("--tiny", action="store_true", help="a much smaller model (tests and smoke runs)")
    p.add_argument(
        "--world",
        choices=tuple(WORLDS),
        default=None,
        help=f"toy world of the training data (default {DEFAULT_WORLD}; a resumed checkpoint keeps its own and "
        "refuses another)",
    )
    p.add_argument(
        "--measure",
        default=None,
        metavar="MODEL",
        help="only measure an exported model through the engine (description and recognition on held-out "
        "instances) and print the numbers",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def register_train(toy_subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``train`` to the ``ego-ros toy`` command group."""
    p = toy_subparsers.add_parser(
        "train",
        help="train the toy model (resumable) and export it",
        description="Train the embedded toy model on the synthetic world from a seed, on CPU or CUDA, with "
        "periodic checkpoints, held-out evaluation and an export to a model directory.",
    )
    add_train_arguments(p)
    p.set_defaults(func=run_train)
    return p


def _overrides(args: argparse.Namespace) -> dict:
    out = {
        "seed": args.seed,
        "batch_size": args.batch_size,
        "device": args.device,
        "threads": args.threads,
        "workers": args.workers,
        "eval_every": args.eval_every,
        "eval_match": args.eval_match,
        "checkpoint_minutes": args.checkpoint_minutes,
        "steps": args.steps,
        "minutes": args.minutes,
        "lr_vision": args.lr_vision,
        "lr_lm": args.lr_lm,
        "vision_steps": args.vision_steps,
        "vision_instances": args.vision_instances,
        "contrast_instances": args.contrast_instances,
        "lm_group": args.lm_group,
        "raw_contrast_weight": args.raw_contrast_weight,
        "ramp_steps": args.ramp_steps,
        "twin_weight": args.twin_weight,
        "world": args.world,
        "init": args.init,
    }
    if args.samples is not None:
        bs = args.batch_size or 16
        out["steps"] = -(-args.samples // bs)
    return {k: v for k, v in out.items() if v is not None}


def run_train(args: argparse.Namespace) -> int:
    # The trainer (torch, transformers) is imported when the command runs, not when `ego-ros` builds its
    # parser: every other subcommand (e.g. `ego-ros mcp` in ROS mode) would otherwise pay ~15 s for it.
    from .checkpoints import CHECKPOINT_LATEST
    from .measure import measure_model_dir
    from .train import Trainer
    from .train_config import TASK_FIELDS, TrainConfig

    if args.measure:
        print(json.dumps(measure_model_dir(args.measure), indent=2))
        return 0
    overrides = _overrides(args)
    # --steps 0: no training at all (export or inspect a checkpoint); the checkpoint keeps its own plan
    train = overrides.get("steps") != 0
    if not train:
        overrides.pop("steps")
        # exporting needs no accelerator (weights are written as float32 CPU tensors), so a checkpoint
        # trained on the lent GPU exports on a CPU-only machine
        if overrides.get("device") is None:
            overrides["device"] = "cpu"
    resume = args.resume
    if resume == "auto":
        cand = Path(args.out or ".") / CHECKPOINT_LATEST
        resume = str(cand) if cand.is_file() else None
    if resume is not None:
        if not Path(resume).is_file():
            print(f"error: checkpoint {resume} does not exist", file=sys.stderr)
            return 2
        if "seed" in overrides:
            print("error: --seed cannot change on --resume (the data stream depends on it)", file=sys.stderr)
            return 2
        world = overrides.pop("world", None)
        trainer = Trainer.from_checkpoint(resume, out=args.out, **overrides)
        if world is not None and world != trainer.cfg.tasks.world:
            print(
                f"error: --world {world} cannot change on --resume (the checkpoint was trained on "
                f"{trainer.cfg.tasks.world})",
                file=sys.stderr,
            )
            return 2
    else:
        cfg = TrainConfig(tiny=args.tiny)
        for k, v in overrides.items():
            setattr(cfg.tasks if k in TASK_FIELDS else cfg, k, v)
        trainer = Trainer(cfg, out=args.out)
    if train and args.out is None and trainer.cfg.steps > trainer.step:
        print("warning: no --out: nothing is checkpointed or logged", file=sys.stderr)
    try:
        if train:
            trainer.run(progress=not args.no_progress)
    except KeyboardInterrupt:
        if args.out is not None:
            path = trainer.save_checkpoint(Path(args.out) / CHECKPOINT_LATEST)
            print(f"interrupted at step {trainer.step}; checkpoint {path}", file=sys.stderr)
        return 130
    summary = {
        "step": trainer.step,
        "samples": trainer.samples_seen,
        "last_eval": trainer.history[-1] if trainer.history else None,
        "best": trainer.best,
    }
    if args.export:
        summary["export"] = str(trainer.export(args.export))
    print(json.dumps(summary, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = add_train_arguments(argparse.ArgumentParser(prog="ego-ros toy train", description=__doc__.split("\n")[0]))
    return run_train(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
