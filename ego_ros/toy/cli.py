"""The ``ego-ros toy`` command group.

`register(subparsers)` adds the ``toy`` parser to the top-level sub-parsers and returns the ``toy``
group's own sub-parsers object, so other modules can add commands to the group, either later::

    toy_commands = ego_ros.toy.cli.register(subparsers)
    ego_ros.toy.train_cli.register_train(toy_commands)     # e.g. ``ego-ros toy train``

or at once, through ``register(subparsers, extra=[register_train])``. Every command sets
``func=handler`` on its parser; the handler takes the parsed namespace and returns an exit code, so the
top-level ``main`` runs ``return args.func(args)``.

``ego-ros toy export --layout yollava|thisismy-multi --concepts N --seed S --out DIR [--size PX]
[--views V] [--test-per-concept T] [--negatives K] [--overwrite] [--world v1|v2]`` writes a benchmark
(see `ego_ros.toy.export`); ``--world v2`` gives the concepts identity signatures (glyph and shade)
and look-alike siblings.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable

from .attributes import DEFAULT_WORLD, WORLDS, WorldError
from .export import LAYOUTS, ExportError, export

Registrar = Callable[[argparse._SubParsersAction], object]


def register(subparsers: argparse._SubParsersAction, extra: Iterable[Registrar] = ()) -> argparse._SubParsersAction:
    """Add ``toy`` (with ``export``, and the commands of `extra`) and return its sub-parsers object."""
    toy = subparsers.add_parser("toy", help="synthetic toy world: benchmark exports and the toy model")
    commands = toy.add_subparsers(dest="toy_command", metavar="COMMAND")
    commands.required = True
    register_export(commands)
    register_masks(commands)
    for registrar in extra:
        registrar(commands)
    return commands


def register_export(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = commands.add_parser(
        "export",
        help="write a toy benchmark in a published dataset layout",
        description="Write a toy-world benchmark (held-out personal concepts with near-duplicate siblings) "
        "in the Yo'LLaVA or This-is-my multi-concept layout, plus toy_manifest.json.",
    )
    p.add_argument("--layout", required=True, choices=LAYOUTS, help="dataset layout to write")
    p.add_argument("--concepts", type=int, required=True, metavar="N", help="number of personal concepts (>= 2)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seed; same arguments give identical files")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (empty or a toy export)")
    p.add_argument("--size", type=int, default=64, metavar="PX", help="image side in pixels (default 64)")
    p.add_argument("--views", type=int, default=5, metavar="V", help="reference views per concept (default 5)")
    p.add_argument(
        "--test-per-concept",
        type=int,
        default=8,
        metavar="T",
        help="test images per concept (yollava) or per pair (thisismy-multi); default 8",
    )
    p.add_argument("--negatives", type=int, default=4, metavar="K", help="yollava negative_example images per concept")
    p.add_argument("--overwrite", action="store_true", help="replace a previous toy export in DIR")
    p.add_argument(
        "--world",
        choices=tuple(WORLDS),
        default=DEFAULT_WORLD,
        help=f"toy world (default {DEFAULT_WORLD}; v2: identity signatures)",
    )
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    p.set_defaults(func=run_export)
    return p


def run_export(args: argparse.Namespace) -> int:
    progress = None if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    try:
        manifest = export(
            args.out,
            args.layout,
            args.concepts,
            seed=args.seed,
            size=args.size,
            views=args.views,
            test_per_concept=args.test_per_concept,
            negatives=args.negatives,
            overwrite=args.overwrite,
            progress=progress,
            world=args.world,
        )
    except (ExportError, WorldError) as exc:
        print(f"ego-ros toy export: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"wrote {len(manifest['images'])} images of {len(manifest['concepts'])} concepts "
        f"({args.layout}, world {args.world}, seed {args.seed}) to {args.out}"
    )
    return 0


def register_masks(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = commands.add_parser(
        "masks",
        help="write reference views with exact object masks (for ego-ros calibrate --folder)",
        description="Write images/ and masks/ of toy reference views (training instances only): the (image, "
        "mask) pairs that layer calibration ranks layers with.",
    )
    p.add_argument("--count", type=int, default=64, metavar="N", help="number of image/mask pairs (default 64)")
    p.add_argument("--seed", type=int, default=0, metavar="S")
    p.add_argument("--size", type=int, default=64, metavar="PX", help="image side in pixels (default 64)")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--world", choices=tuple(WORLDS), default=DEFAULT_WORLD, help=f"toy world (default {DEFAULT_WORLD})")
    p.set_defaults(func=run_masks)
    return p


def run_masks(args: argparse.Namespace) -> int:
    from .export import export_mask_folder

    try:
        n = export_mask_folder(args.out, args.count, seed=args.seed, size=args.size, world=args.world)
    except (ExportError, WorldError) as exc:
        print(f"ego-ros toy masks: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {n} image/mask pairs to {args.out}")
    return 0
