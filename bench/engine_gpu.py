"""GPU latency at real scale: randomly initialised Qwen2.5-VL-7B and InternVL3-14B architectures.

Configs use the published sizes (ego_ros.core.random_models.SIZES); bf16, 448 px images (256 visual
tokens), 16 keyword tokens fixed, recognition with 1/10/100 concepts. Timing does not depend on weight
values. Targets from the issue: introduction <= 0.3 s per view, recognition <= 50 ms per frame with 10
concepts.

Usage (on the lent GPU machine): python bench/engine_gpu.py [--models qwen internvl] [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import gc
import json
from pathlib import Path

import torch

from ego_ros.benchmarks import run_engine_benchmark

MODELS = {
    "qwen": "random:qwen2_5_vl:qwen2_5_vl_7b:448",
    "internvl": "random:internvl:internvl3_14b:448",
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--concepts", type=int, nargs="+", default=[1, 10, 100])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cuda:0")
    p.add_argument("--out-dir", default="bench/results")
    args = p.parse_args()
    card = torch.cuda.get_device_name(0).replace(" ", "_") if torch.cuda.is_available() else "nocuda"
    for key in args.models:
        out = Path(args.out_dir) / f"engine_gpu_{key}_{card}.json"
        result = run_engine_benchmark(model=MODELS[key], device=args.device, dtype="bfloat16",
                                      concept_counts=args.concepts, repeats=args.repeats, image_px=448,
                                      keyword_tokens=16, out=out)
        print(json.dumps(result, indent=1), flush=True)
        gc.collect()
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
