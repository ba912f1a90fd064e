"""Does tiling help small objects? Recognition ROC AUC on a small-object toy export, tiling off vs on.

The toy model is LLaVA (a fixed 64 px tower, one 8 x 8 grid), so tiling here is the engine's opt-in
query-frame tiling (`EngineConfig.crop_tiles`, ego_ros/core/crops.py): a frame is its thumbnail plus
crops at their own resolution, each crop its own grid. The toy model was never trained on such input:
whatever this shows is what engine-level tiling gives a model that was not trained for it.

Per export seed: a Yo'LLaVA-layout export whose test scenes are `--size` px with objects of
`--object-size` (diameter, fraction of the side; the default query scenes use 0.22-0.34), reference
views at the same size (objects medium-large, as always); then the paper's recognition protocol (every
test image against every concept, one concept in context) with tiling off (crop_tiles 1) and on, for
each method. Reference views are never tiled, so memories are the same in both arms.

Usage: python bench/tiling_small_objects.py [--seeds 0 1] [--crop-tiles 9] [--size 192]
       [--object-size 0.08 0.12] [--out bench/results/tiling_small_objects.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from ego_ros.core.crops import check_crop_tiles
from ego_ros.core.engine import EgoEngine
from ego_ros.eval.runner import run_eval
from ego_ros.toy.export import export
from ego_ros.toy.model_world import model_world


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="toy")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--concepts", type=int, default=12)
    p.add_argument("--test-per-concept", type=int, default=8)
    p.add_argument("--size", type=int, default=192, help="export image side in pixels")
    p.add_argument("--object-size", type=float, nargs=2, default=[0.08, 0.12],
                   help="test objects' diameter range as a fraction of the side")
    p.add_argument("--crop-tiles", type=int, default=9, help="crops per frame with tiling on")
    p.add_argument("--methods", nargs="+", default=["ego:1", "ego:5"], help="eval method:views")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="bench/results/tiling_small_objects.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    world = model_world(args.model)
    engine = EgoEngine.load(args.model)
    check_crop_tiles(engine.backend, args.crop_tiles)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    runs: list[dict] = []

    def write() -> dict:
        """The result file as it stands (rewritten after every run, so a stopped benchmark keeps its runs)."""
        summary = {}
        for spec in args.methods:
            method, views = spec.split(":")
            for tiles in (1, args.crop_tiles):
                aucs = [r["auc"] for r in runs
                        if (r["method"], r["views"], r["crop_tiles"]) == (method, int(views), tiles)]
                if aucs:
                    summary[f"{method}:{views}:crop_tiles={tiles}"] = {"auc_mean": sum(aucs) / len(aucs),
                                                                       "auc": aucs}
        result = {"model": args.model, "fingerprint": engine.backend.fingerprint(), "world": world,
                  "seeds": args.seeds, "concepts": args.concepts, "test_per_concept": args.test_per_concept,
                  "size": args.size, "object_size": args.object_size, "crop_tiles": args.crop_tiles,
                  "protocol": "every test image against every concept, one concept in context",
                  "machine": f"{platform.machine()} CPU, {args.threads} threads (shared 2-core build machine)",
                  "runs": runs, "summary": summary}
        out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        return summary

    for seed in args.seeds:
        data = Path(tempfile.mkdtemp(prefix=f"tiling_small_{seed}_"))
        export(data, "yollava", args.concepts, seed=seed, size=args.size, views=5,
               test_per_concept=args.test_per_concept, world=world, query_object_size=tuple(args.object_size))
        for spec in args.methods:
            method, views = spec.split(":")
            for tiles in (1, args.crop_tiles):
                engine.config.crop_tiles = tiles
                t0 = time.perf_counter()
                res = run_eval(f"yollava:{data}", args.model, method, int(views),
                               Path(tempfile.mkdtemp(prefix="tiling_run_")), tasks=["recognition"],
                               progress=False, engine=engine, recognition_context="each", seed=seed)
                rec = res["metrics"]["recognition"]
                runs.append({"seed": seed, "method": method, "views": int(views), "crop_tiles": tiles,
                             "auc": rec["auc"], "accuracy": rec["accuracy"], "f1": rec["f1_of_means"],
                             "auc_by_negative_kind": {k: v["auc"] for k, v in rec.get("by_negative_kind", {}).items()},
                             "decisions": rec["num_decisions"], "seconds": round(time.perf_counter() - t0, 1)})
                print(json.dumps(runs[-1]), flush=True)
                write()
    engine.config.crop_tiles = 1
    print(json.dumps(write(), indent=1))


if __name__ == "__main__":
    main()
