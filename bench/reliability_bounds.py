"""How fast absurd requests are refused and how promptly deadlines and interrupts end model calls.

For each defect of issue 12 that the engine now bounds, measures the wall-clock time until the caller
gets its error (and the process's peak RSS growth for the crafted huge image), on the toy model:
max_new_tokens 4294967295, a 100 kB question, 10,000 out-of-vocabulary characters, a PNG declaring
20000x20000; plus the overshoot of a 0.5 s deadline on a long generation and the time from
`interrupt()` to the cancelled call's return. Writes a JSON file.

Usage: python bench/reliability_bounds.py [--model toy] [--out bench/results/reliability_bounds.json]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ego_ros.core.engine import EgoEngine
from ego_ros.core.errors import EgoError
from ego_ros.core.images import to_rgb
from ego_ros.core.limits import MAX_NEW_TOKENS


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _refusal(fn) -> dict:
    t0 = time.perf_counter()
    rss0 = _peak_rss_mib()
    try:
        fn()
        error = None
    except EgoError as exc:
        error = f"{type(exc).__name__}: {exc}"[:200]
    return {"seconds": round(time.perf_counter() - t0, 4), "peak_rss_growth_mib": round(_peak_rss_mib() - rss0, 1),
            "error": error}


def _png_declaring(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="toy")
    ap.add_argument("--out", default="bench/results/reliability_bounds.json")
    args = ap.parse_args()
    engine = EgoEngine.load(args.model, request_timeout_s=0)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    engine.ask(image, "what is it?", max_new_tokens=2)  # warm-up
    out: dict = {"model": args.model, "machine": platform.processor() or platform.machine(),
                 "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                 "load_average_at_start": [round(x, 2) for x in os.getloadavg()], "refusals": {}}
    png = Path("/tmp/reliability_bounds_20000.png")
    png.write_bytes(_png_declaring(20000, 20000))
    cases = {
        "max_new_tokens=4294967295": lambda: engine.ask(image, "what is it?", max_new_tokens=4294967295),
        "question 100 kB": lambda: engine.ask(image, "x" * 100_000, max_new_tokens=4),
        "question 10,000 OOV chars": lambda: engine.ask(image, "\u2603" * 10_000, max_new_tokens=4),
        "question 2,000 OOV chars (token bound)": lambda: engine.ask(image, "\u2603" * 2000, max_new_tokens=4),
        f"png declaring 20000x20000 ({png.stat().st_size} bytes)": lambda: to_rgb(png),
    }
    for name, fn in cases.items():
        out["refusals"][name] = _refusal(fn)

    engine.config.request_timeout_s = 0.5
    t = _refusal(lambda: engine.ask(image, "describe it", max_new_tokens=MAX_NEW_TOKENS))
    out["deadline_0.5s"] = {**t, "overshoot_s": round(t["seconds"] - 0.5, 4)}
    engine.config.request_timeout_s = 0

    timer = threading.Timer(1.0, engine.interrupt)
    fired: list[float] = []
    timer.function = lambda: (fired.append(time.perf_counter()), engine.interrupt())
    timer.start()
    t = _refusal(lambda: engine.ask(image, "describe it", max_new_tokens=MAX_NEW_TOKENS))
    returned = time.perf_counter()
    out["interrupt_after_1s"] = {**t, "interrupt_to_return_s": round(returned - fired[0], 4) if fired else None}
    t0 = time.perf_counter()
    engine.ask(image, "what is it?", max_new_tokens=4)
    out["next_call_after_interrupt_s"] = round(time.perf_counter() - t0, 4)

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    print(json.dumps(out, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
