"""CPU latency of the engine: introduction per view and per-frame recognition (1/16/100 concepts, all in
context), each with its per-stage profile and its plain-transformers baseline measured in the same run.

Usage: python bench/engine_cpu.py [--model toy] [--concepts 1 16 100] [--repeats 5]
                                  [--out bench/results/engine_cpu_<model>.json]
"""

from __future__ import annotations

import argparse
import json
import re

import torch

from ego_ros.benchmarks import run_engine_benchmark, summary_table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="toy")
    p.add_argument("--concepts", type=int, nargs="+", default=[1, 16, 100])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--profile-runs", type=int, default=3, help="profiled calls per measurement (0: no profile)")
    p.add_argument("--no-baseline", action="store_true", help="skip the plain-transformers baseline")
    p.add_argument("--image-px", type=int, default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    slug = re.sub(r"[^A-Za-z0-9]+", "_", args.model).strip("_")
    out = args.out or f"bench/results/engine_cpu_{slug}.json"
    result = run_engine_benchmark(model=args.model, device="cpu", concept_counts=args.concepts,
                                  repeats=args.repeats, image_px=args.image_px, out=out,
                                  profile_runs=args.profile_runs, baseline=not args.no_baseline)
    print(json.dumps(result, indent=1))
    print(summary_table(result))


if __name__ == "__main__":
    main()
