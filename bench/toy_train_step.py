"""Cost of one toy-model training step and of building its batch: what limits the trainer's speed.

The recipe is the GPU warm start of `scripts/device_session.sh` (batch 128, `--lm-group 64`, 16 contrast
instances, no vision-first phase, minimal pairs, world v2; `--init` the committed weights), so the
numbers speak for the run that trains the v2 weights. Reported:

* step: median wall time of `--steps` timed steps after `--warmup` (on CUDA synchronised after each
  step) and the samples per second that gives; on CUDA also the median host time until
  `Trainer.launch_step` returns, i.e. what the host spends queuing a step (the GPU log's 85-107 ms);
* ops: aten operators dispatched in one step (on a GPU each non-view operator is at least one kernel
  launch, so this is what the host time scales with), views apart, and the reads of a tensor's value
  back to the host (`aten._local_scalar_dense`, behind `.item()`, `int()` and `bool()` of a tensor) by
  the code that asks for them. A read of a CUDA tensor makes the host wait for the GPU; on the CPU the
  same reads are listed with the device of the tensor read;
* data: seconds to build one packed batch in this process with one thread, as one data-loader worker
  does, and the samples per second of one worker.

Usage: python bench/toy_train_step.py [--device cpu] [--threads 2] [--steps 4] [--label TEXT]
       [--out bench/results/toy_train_step_cpu.jsonl]   (appends one JSON line per run)
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ego_ros.toy.batches import packed_batch_at
from ego_ros.toy.task_config import TaskConfig
from ego_ros.toy.train import TrainConfig, Trainer

ROOT = Path(__file__).resolve().parent.parent
READ_BACK = "aten._local_scalar_dense.default"
#: operators that only make a view (no kernel on a GPU)
VIEW_OPS = {
    "view", "_unsafe_view", "t", "transpose", "expand", "unsqueeze", "slice", "select", "detach", "alias", "permute",
    "squeeze", "split", "unbind", "as_strided",
}  # fmt: skip


class OpCounter(TorchDispatchMode):
    """Counts dispatched aten operators, and where value reads come from (first frame outside torch)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: collections.Counter[str] = collections.Counter()
        self.reads: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func)
        self.ops[name] += 1
        if name == READ_BACK:
            self.reads[f"{self._caller()} ({args[0].device.type} tensor)"] += 1
        return func(*args, **(kwargs or {}))

    @staticmethod
    def _caller() -> str:
        for frame in reversed(traceback.extract_stack()[:-3]):
            path = frame.filename.replace(os.sep, "/")
            if "/torch/utils/" in path or "/torch/_" in path:
                continue
            short = path.split("site-packages/")[-1].split(str(ROOT).replace(os.sep, "/") + "/")[-1]
            return f"{short}:{frame.lineno} {frame.name}"
        return "?"


def recipe(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        seed=0, batch_size=args.batch_size, lm_group=64, contrast_instances=16, vision_steps=0,
        lr_vision=1e-4, lr_lm=2e-4, init=args.init, device=args.device, threads=args.threads,
        tasks=TaskConfig(world=args.world, twin_weight=0.25, ramp_steps=200),
    )  # fmt: skip


def time_data(cfg: TrainConfig, steps: range) -> float:
    """Median seconds to build one packed batch with one thread (a loader worker's setting)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        packed_batch_at(cfg, steps[0] - 1)  # warm the per-process caches, as a worker's first batch does
        times = []
        for s in steps:
            t = time.perf_counter()
            packed_batch_at(cfg, s)
            times.append(time.perf_counter() - t)
    finally:
        torch.set_num_threads(threads)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2, help="torch threads on the CPU")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--world", default="v2")
    ap.add_argument(
        "--init",
        default=str(ROOT / "ego_ros" / "toy" / "model"),
        help='model directory to start from ("": random weights, which cost the same per step)',
    )
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--label", default="", help="what this run measures (e.g. the commit)")
    ap.add_argument("--out", type=Path, default=None, help="JSON lines file to append to")
    args = ap.parse_args()
    cfg = recipe(args)
    trainer = Trainer(cfg)
    cuda = trainer.device.type == "cuda"
    first = 400  # past the 200-step ramp: the batches of most of a run
    batches = [packed_batch_at(cfg, first + k) for k in range(args.warmup + args.steps + 1)]
    wall, host = [], []
    for k, batch in enumerate(batches[:-1]):
        trainer.step = batch.step
        t0 = time.perf_counter()
        trainer.launch_step(batch)
        t1 = time.perf_counter()
        if cuda:
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        if k >= args.warmup:
            host.append(t1 - t0)
            wall.append(t2 - t0)
    counter = OpCounter()
    trainer.step = batches[-1].step
    with counter:
        trainer.launch_step(batches[-1])
    if cuda:
        torch.cuda.synchronize()
    views = sum(n for op, n in counter.ops.items() if op.split(".")[1] in VIEW_OPS)
    data_s = time_data(cfg, range(first + 100, first + 103))
    step_s = statistics.median(wall)
    result = {
        "label": args.label,
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": platform.node(),
        "device": torch.cuda.get_device_name() if cuda else f"cpu ({os.cpu_count()} cores, {args.threads} threads)",
        "torch": torch.__version__,
        "recipe": {
            "batch_size": cfg.batch_size,
            "lm_group": cfg.lm_group,
            "contrast_instances": cfg.contrast_instances,
            "world": cfg.tasks.world,
            "twin_weight": cfg.tasks.twin_weight,
        },
        "images_per_step": batches[-1].n_images,
        "step_s_median": round(step_s, 4),
        "step_s_all": [round(v, 4) for v in wall],
        "samples_per_s": round(cfg.batch_size / step_s, 1),
        "host_launch_s_median": round(statistics.median(host), 4) if cuda else None,
        "ops_per_step": sum(counter.ops.values()),
        "view_ops_per_step": views,
        "top_ops": dict(counter.ops.most_common(8)),
        "value_reads_per_step": dict(counter.reads.most_common()),
        "data_batch_s_one_thread": round(data_s, 3),
        "data_samples_per_s_per_worker": round(cfg.batch_size / data_s, 1),
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }
    print(json.dumps(result, indent=1))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "a", encoding="utf-8") as f:
            f.write(json.dumps(result) + "\n")
        print(f"appended to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
