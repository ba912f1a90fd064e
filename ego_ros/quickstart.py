"""`ego-ros quickstart`: the engine end to end on the toy world, no ROS and no downloads.

Renders two reference views of a personal toy-world instance that the toy model never saw in
training, introduces it as a concept, then recognises it among query scenes that hold it, a hard
near-duplicate ("a mug" versus "my mug"), or neither, and answers a question and a caption.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np
from PIL import Image


def run_quickstart(model: str = "toy", device: str = "cpu", seed: int = 7, name: str = "kona",
                   out=sys.stdout) -> dict[str, Any]:
    from .core.engine import EgoEngine
    from .core.errors import ModelLoadError
    from .toy import world

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    try:
        engine = EgoEngine.load(model, device=device)
    except ModelLoadError as exc:
        if model != "toy":
            raise
        say(f"note: {exc}\nnote: falling back to a tiny RANDOM model (answers are meaningless)")
        engine = EgoEngine.load("random:llava", device=device)
    b = engine.backend
    say(f"model: {b.name} ({b.family}, {sum(p.numel() for p in b.model.parameters()) / 1e6:.2f} M parameters, "
        f"{b.device}, layers {engine.layers or 'all'})")

    rng = np.random.default_rng(seed)
    mine = world.sample_instance(rng, held_out=True)
    twin = world.near_duplicates(mine)[0]
    refs = [world.reference_scene(mine, rng).image for _ in range(2)]
    queries = [
        ("contains it", world.query_scene(rng, include=[mine]).image, True),
        ("contains it", world.query_scene(rng, include=[mine]).image, True),
        ("near duplicate", world.query_scene(rng, include=[twin], exclude=[mine]).image, False),
        ("neither", world.query_scene(rng, exclude=[mine, twin]).image, False),
    ]
    say(f"\npersonal concept {name!r}: {mine.keyword_text} (held out from training)")
    say(f"hard negative: {twin.keyword_text}")
    t0 = time.perf_counter()
    memory = engine.introduce(name, [Image.fromarray(r) for r in refs])
    say(f"introduced in {time.perf_counter() - t0:.2f} s: keywords {memory.keywords}, area {memory.alpha}, "
        f"K_c {memory.k_c}, {memory.num_tokens} memory tokens")
    rows = []
    say("\nrecognition (P(yes) that the concept is in the image):")
    for label, image, truth in queries:
        (rec,) = engine.recognize(Image.fromarray(image), [name])
        rows.append({"query": label, "truth": truth, "probability": rec.probability, "present": rec.present})
        verdict = "ok" if rec.present == truth else "wrong"
        say(f"  {label:15s} P={rec.probability:.3f} -> {'present' if rec.present else 'absent':8s} ({verdict})")
    question = f"What colour is {name}?"
    answer = engine.ask(Image.fromarray(queries[0][1]), question, max_new_tokens=16)
    caption = engine.caption(Image.fromarray(queries[0][1]), max_new_tokens=24)
    say(f"\nQ: {question}\nA: {answer.text}")
    say(f"caption: {caption.text}")
    return {"concept": memory.summary(), "recognition": rows, "answer": answer.text, "caption": caption.text}


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("quickstart", help="introduce and recognise a toy-world concept (no ROS needed)")
    p.add_argument("--model", default="toy")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--name", default="kona")

    def run(args: argparse.Namespace) -> int:
        run_quickstart(args.model, args.device, args.seed, args.name)
        return 0

    p.set_defaults(func=run)
