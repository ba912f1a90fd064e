"""GPU latency at real scale: randomly initialised Qwen2.5-VL-7B and InternVL3-14B architectures (and, with
--models, Qwen2-VL-2B and Gemma-3-4B).

Configs use the published sizes (ego_ros.core.random_models.SIZES); bf16, 448 px images (256 visual
tokens), 16 keyword tokens fixed, recognition with 1/10/100 concepts (all in context). Each figure
comes with its per-stage profile and its plain-transformers baseline (the same model's own class and
processor: `generate` of 16 tokens; N raw reference images in context and one yes/no forward) from the
same run. Timing does not depend on weight values. Targets from the issue: introduction <= 0.3 s per
view, recognition <= 50 ms per frame with 10 concepts.

Usage (on the lent GPU machine): python bench/engine_gpu.py [--models qwen internvl qwen2vl gemma3] [--out-dir DIR]
CPU smoke test of the script itself: python bench/engine_gpu.py --tiny --device cpu --out-dir /tmp/x
"""

from __future__ import annotations

import argparse
import gc
import json
from pathlib import Path

import torch

from ego_ros.benchmarks import run_engine_benchmark, summary_table

MODELS = {
    "qwen": "random:qwen2_5_vl:qwen2_5_vl_7b:448",
    "internvl": "random:internvl:internvl3_14b:448",
    # Jetson-class models, on request (--models): Gemma 3 runs at its fixed 896 px (256 soft tokens)
    "qwen2vl": "random:qwen2_vl:qwen2_vl_2b:448",
    "gemma3": "random:gemma3:gemma3_4b",
}
#: what runs without --models (the figures docs/benchmarks.md tracks)
DEFAULT_MODELS = ["qwen", "internvl"]
#: the same families at the tests' tiny size, for a smoke test of this script without a GPU
TINY = {"qwen": "random:qwen2_5_vl:tiny:448", "internvl": "random:internvl:tiny:448",
        "qwen2vl": "random:qwen2_vl:tiny:448", "gemma3": "random:gemma3:tiny:64"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--models", nargs="+", default=DEFAULT_MODELS, choices=list(MODELS))
    p.add_argument("--concepts", type=int, nargs="+", default=[1, 10, 100])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--profile-runs", type=int, default=3)
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument("--device", default="cuda:0")
    p.add_argument("--tiny", action="store_true", help="tiny random models (smoke test of the script)")
    p.add_argument("--out-dir", default="bench/results")
    args = p.parse_args()
    on_cuda = args.device.startswith("cuda")
    card = torch.cuda.get_device_name(0).replace(" ", "_") if on_cuda and torch.cuda.is_available() else "cpu"
    for key in args.models:
        spec = (TINY if args.tiny else MODELS)[key]
        out = Path(args.out_dir) / f"engine_gpu_{key}{'_tiny' if args.tiny else ''}_{card}.json"
        result = run_engine_benchmark(model=spec, device=args.device, dtype="bfloat16" if on_cuda else "float32",
                                      concept_counts=args.concepts, repeats=args.repeats, image_px=448,
                                      keyword_tokens=16, out=out, profile_runs=args.profile_runs,
                                      baseline=not args.no_baseline)
        print(json.dumps(result, indent=1), flush=True)
        print(summary_table(result), flush=True)
        gc.collect()
        if on_cuda:
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
