"""Cost of asking Pillow for its resize pass order (`ego_ros.core.resample.vertical_first`) for a new
geometry: the median over `--repeats` cold calls (cache cleared before each), per frame size, target and
filter; the cached call's cost for comparison. A camera stream has one geometry, so it pays this once.

Usage: python bench/resize_order.py [--repeats 7] [--out bench/results/resize_order_cpu.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

from PIL import Image

from ego_ros.core.resample import vertical_first

FRAMES = [(640, 480), (1920, 1080)]
#: (width, height) targets: InternVL's 448 px tile, SigLIP-384, a Qwen2.5-VL smart-resize of a 4:3 frame
TARGETS = [(448, 448), (384, 384), (644, 476)]
FILTERS = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "lanczos": Image.LANCZOS}


def _ms(*geometry) -> float:
    start = time.perf_counter()
    vertical_first(*geometry)
    return (time.perf_counter() - start) * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--out", default="bench/results/resize_order_cpu.json")
    args = p.parse_args()
    rows = []
    for w, h in FRAMES:
        for tw, th in TARGETS:
            for name, filt in FILTERS.items():
                cold = []
                for _ in range(args.repeats):
                    vertical_first.cache_clear()
                    cold.append(_ms(w, h, tw, th, filt))
                cached = _ms(w, h, tw, th, filt)
                rows.append({"frame": [w, h], "target": [tw, th], "filter": name,
                             "vertical_first": vertical_first(w, h, tw, th, filt),
                             "new_geometry_ms_median": round(statistics.median(cold), 2),
                             "new_geometry_ms_min": round(min(cold), 2), "cached_ms": round(cached, 4)})
                print(rows[-1])
    result = {"machine": platform.node(), "cpus": os.cpu_count(), "load_average": os.getloadavg(),
              "pillow": Image.__version__, "repeats": args.repeats, "rows": rows}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print("written", args.out)


if __name__ == "__main__":
    main()
