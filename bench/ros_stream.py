"""Sustained streaming through ROS 2: frame-to-recognition latency, processed rate and node memory.

The synthetic camera publishes 640x480 rgb8 frames at 30 Hz; ego_node (a separate process, on CPU)
recognises N introduced concepts in the newest frame as fast as `--max-rate` allows. Per run:

* latency: arrival time of ~/recognitions in this process minus the stamp the node copied from the
  frame (the camera stamps with the same system clock), so camera->node transport, waiting in the
  node's buffer, the model and node->bench transport are all included;
* node_latency: the node's own latency_s (model time for that frame);
* processed rate: recognitions per second, against the camera's measured input rate;
* memory: the node process's RSS (VmRSS from /proc) sampled every second over the whole run, with a
  least-squares slope (MB per minute) over the measured window to show growth;
* agreement of `present` with the camera's ground truth (meaningful for the trained toy model only).

The toy model is used when its weights are installed, else random:llava (said in the result).

Usage: python bench/ros_stream.py [--model toy] [--concepts 1 10] [--duration 300] [--warmup 20]
                                  [--max-rate 30] [--out bench/results/ros_stream_<model>.json]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from stats import percentiles_ms, rss_mb, slope_per_minute, write_result

from ego_ros.ros.demo_graph import DemoError, RosGraph, Sample

WIDTH, HEIGHT, FPS = 640, 480, 30.0


def concept_instances(n: int) -> list[str]:
    """Keys of `n` distinct held-out toy instances (fixed order), the benchmark's personal concepts."""
    from ego_ros.toy import world

    rng = np.random.default_rng(2024)
    held = list(world.held_out_instances())
    return [held[i].key for i in rng.choice(len(held), size=n, replace=False)]


def run_one(model: str, device: str, n_concepts: int, duration: float, warmup: float, max_rate: float,
            startup_timeout: float, say) -> dict[str, Any]:
    from ego_ros.ros.demo_concepts import reference_views

    keys = concept_instances(n_concepts)
    names = [f"c{i}" for i in range(n_concepts)]
    # no depth image: the node does not use it here, and it costs the camera 5-9 ms per 640x480 frame
    camera = {"seed": 11, "width": WIDTH, "height": HEIGHT, "fps": FPS, "include": keys, "include_names": names,
              "include_p": min(1.0, 2.0 / n_concepts), "publish_depth": False}
    with tempfile.TemporaryDirectory(prefix="ego_bench_memory_") as memory_dir:
        node = {"model": model, "device": device, "autostart": True, "memory_dir": memory_dir,
                "max_rate": max_rate, "image_transport": "raw"}
        with RosGraph(camera, node, say=say) as graph:
            pid = graph.children[-1].proc.pid
            rss: list[tuple[float, float]] = []

            def sample_rss() -> None:
                value = rss_mb(pid)
                if value is not None:
                    rss.append((time.monotonic(), value))

            waited = graph.wait_active(startup_timeout)
            graph.wait_for_camera(30.0)
            sample_rss()
            say(f"  node active after {waited:.1f} s (RSS {rss[-1][1]:.0f} MB); introducing {n_concepts} concepts")
            t0 = time.monotonic()
            for key, name in zip(keys, names):
                graph.introduce(name, reference_views(n=1, instance_key=key), timeout=300.0)
                sample_rss()
            intro_s = time.monotonic() - t0
            say(f"  introduced in {intro_s:.1f} s; warming up {warmup:g} s, then measuring {duration:g} s")

            def spin_sampling(seconds: float) -> None:
                end = time.monotonic() + seconds
                next_sample = time.monotonic()
                while time.monotonic() < end:
                    graph.spin_for(min(0.2, max(0.01, end - time.monotonic())))
                    if time.monotonic() >= next_sample:
                        sample_rss()
                        next_sample += 1.0

            spin_sampling(warmup)
            samples: list[Sample] = []
            counts = {"agree": 0, "compared": 0}

            def on_recognition(s: Sample) -> None:
                if len(s.names) != n_concepts:
                    return
                samples.append(s)
                truth = graph.truth_for(s.key)
                if truth is None:
                    return
                present_truth = {n for n, p in zip(truth.names, truth.present) if p}
                for name, present in zip(s.names, s.present):
                    counts["compared"] += 1
                    counts["agree"] += int((name in present_truth) == present)

            graph.on_recognition = on_recognition
            frames_before = graph.truth_count
            rss_start_index = len(rss)
            measure_start = time.monotonic()
            spin_sampling(duration)
            elapsed = time.monotonic() - measure_start
            frames_in = graph.truth_count - frames_before
            graph.on_recognition = None
    window = rss[rss_start_index:]
    return {
        "concepts": n_concepts,
        "duration_s": round(elapsed, 1),
        "introduction_total_s": round(intro_s, 2),
        "frames_in": frames_in,
        "input_hz": round(frames_in / elapsed, 2),
        "recognitions": len(samples),
        "processed_hz": round(len(samples) / elapsed, 3),
        "latency_ms": percentiles_ms([max(0.0, s.arrival - s.stamp) for s in samples]),
        "node_latency_ms": percentiles_ms([s.latency_s for s in samples]),
        "rss_mb": {
            "after_start": round(rss[0][1], 1) if rss else None,
            "measure_start": round(window[0][1], 1) if window else None,
            "measure_end": round(window[-1][1], 1) if window else None,
            "max": round(max(v for _, v in rss), 1) if rss else None,
            "slope_mb_per_min": slope_per_minute(window),
            "samples": len(rss),
            # every 10th sample of the measured window: (seconds since it started, MB)
            "series": [(round(t - window[0][0], 1), round(v, 1)) for t, v in window[::10]] if window else [],
        },
        "agreement_with_ground_truth": round(counts["agree"] / counts["compared"], 4) if counts["compared"] else None,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="toy")
    p.add_argument("--device", default="cpu")
    p.add_argument("--concepts", type=int, nargs="+", default=[1, 10])
    p.add_argument("--duration", type=float, default=300.0, help="measured seconds per concept count")
    p.add_argument("--warmup", type=float, default=20.0, help="seconds after the introductions not measured")
    p.add_argument("--max-rate", type=float, default=30.0, help="node's max_rate (30: try every frame)")
    p.add_argument("--startup-timeout", type=float, default=300.0)
    p.add_argument("--out", default=None)
    args = p.parse_args()

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    model, note = args.model, None
    if model == "toy":
        from ego_ros.core.loading import TOY_MODEL_DIR

        if not (TOY_MODEL_DIR / "config.json").is_file():
            model = "random:llava"
            note = f"the toy model is not installed ({TOY_MODEL_DIR}); measured with random:llava instead"
            say("note: " + note)
    result: dict[str, Any] = {
        "benchmark": "ros_stream", "model": model, "requested_model": args.model, "note": note,
        "device": args.device, "input": {"width": WIDTH, "height": HEIGHT, "fps": FPS, "encoding": "rgb8"},
        "node_max_rate": args.max_rate,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    # torch in the node takes its thread count from here (unset: one per core)
                    "omp_num_threads": os.environ.get("OMP_NUM_THREADS")},
        "date": time.strftime("%Y-%m-%d %H:%M:%S"), "runs": [],
        # the machine may be shared: its load before and after the runs says how much
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
    }
    for n in args.concepts:
        say(f"{n} concept(s), model {model}:")
        try:
            run = run_one(model, args.device, n, args.duration, args.warmup, args.max_rate, args.startup_timeout, say)
        except DemoError as exc:
            say(f"error: {exc}")
            return 1
        say(f"  {run['recognitions']} recognitions ({run['processed_hz']} Hz of {run['input_hz']} Hz in), latency "
            f"p50 {run['latency_ms'].get('p50')} ms, RSS slope {run['rss_mb']['slope_mb_per_min']} MB/min")
        result["runs"].append(run)
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    slug = re.sub(r"[^A-Za-z0-9]+", "_", model).strip("_")
    out = Path(args.out or f"bench/results/ros_stream_{slug}.json")
    write_result(out, result, say)
    return 0


if __name__ == "__main__":
    sys.exit(main())
