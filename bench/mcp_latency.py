"""Round-trip latency of every `ego-ros mcp` tool on the toy model, as an MCP client sees it.

The SDK's stdio client spawns the server and times each `tools/call` from request to result
(JSON-RPC over pipes, argument validation, the model call, the result's serialisation). Engine mode
runs the engine in the server process; ROS mode (`--ros`) starts the synthetic camera and an
`ego_node` on a free localhost-only domain (`ego_ros.ros.demo_graph.RosGraph`) and serves that node.

    python bench/mcp_latency.py [--ros] [--repeats 5] [--out bench/results/mcp_latency_toy.json]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent


def _png_b64(rgb: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def toy_scenes(tmp: Path) -> dict[str, Any]:
    """Two reference views of a held-out toy instance (files) and a query scene holding it (file, base64)."""
    from ego_ros.toy import world

    rng = np.random.default_rng(7)
    mine = world.sample_instance(rng, held_out=True)
    refs = []
    for i in range(2):
        path = tmp / f"ref{i}.png"
        Image.fromarray(world.reference_scene(mine, rng).image).save(path)
        refs.append(str(path))
    query = world.query_scene(rng, include=[mine]).image
    query_path = tmp / "query.png"
    Image.fromarray(query).save(query_path)
    return {"refs": refs, "query": str(query_path), "query_b64": _png_b64(query)}


def plan(mode: str, scenes: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """(label, tool, arguments or a function of the repeat index giving them), in call order."""
    calls: list[tuple[str, str, Any]] = [
        ("introduce_concept (2 image files)", "introduce_concept",
         {"name": "kona", "image_paths": scenes["refs"], "replace": True}),
        ("list_concepts", "list_concepts", {}),
    ]
    if mode == "engine":
        calls.append(("what_do_you_see (image file)", "what_do_you_see", {"image_path": scenes["query"]}))
    else:
        calls.append(("introduce_concept (1 camera frame)", "introduce_concept",
                      {"name": "cam", "frames": 1, "min_interval_s": 0.0, "replace": True}))
        calls.append(("what_do_you_see (latest recognitions)", "what_do_you_see", {}))
    calls += [
        ("ask (latest frame, 8 tokens)", "ask", {"question": "What colour is kona?", "max_new_tokens": 8}),
        ("ask (base64 image, 8 tokens)", "ask", {"question": "What colour is kona?", "max_new_tokens": 8,
                                                 "image_base64": scenes["query_b64"]}),
        ("caption (latest frame, 16 tokens)", "caption", {"max_new_tokens": 16}),
        ("latest_frame (512 px JPEG)", "latest_frame", {}),
        ("introduce_concept (1 image file)", "introduce_concept",
         lambda i: {"name": f"tmp{i}", "image_paths": scenes["refs"][:1]}),
        ("rename_concept", "rename_concept", lambda i: {"old_name": f"tmp{i}", "new_name": f"renamed{i}"}),
        ("forget_concept", "forget_concept", lambda i: {"name": f"renamed{i}"}),
    ]
    return calls


async def measure(server_args: list[str], env: dict[str, str], calls, repeats: int, log) -> dict[str, Any]:
    from mcp import ClientSession, StdioServerParameters, stdio_client

    params = StdioServerParameters(command=sys.executable, args=["-m", "ego_ros.cli", "mcp", *server_args],
                                   env=env, cwd=str(REPO))
    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    async with stdio_client(params, errlog=log) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            out["start_s"] = round(time.perf_counter() - t0, 2)
            t = time.perf_counter()
            await session.list_tools()
            out["tools/list_ms"] = round((time.perf_counter() - t) * 1000, 2)
            results: dict[str, list[float]] = {}
            # One repeat is one pass over every tool, so each sees the state the others left.
            for i in range(repeats + 1):  # pass 0 warms up (first-call costs: lazy subscriptions, caches)
                for label, tool, arguments in calls:
                    args = arguments(i) if callable(arguments) else arguments
                    t = time.perf_counter()
                    result = await session.call_tool(tool, args, read_timeout_seconds=300)
                    elapsed = (time.perf_counter() - t) * 1000
                    if result.is_error:
                        raise RuntimeError(f"{label}: {result.content[0].text}")
                    if i > 0:
                        results.setdefault(label, []).append(elapsed)
    out["tools_ms"] = {label: {"median": round(statistics.median(v), 2), "min": round(min(v), 2),
                               "max": round(max(v), 2), "n": len(v)} for label, v in results.items()}
    return out


def run_engine(repeats: int, tmp: Path, log) -> dict[str, Any]:
    scenes = toy_scenes(tmp)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return asyncio.run(measure(["--model", "toy", "--store", str(tmp / "store")], env, plan("engine", scenes),
                               repeats, log))


def run_ros(repeats: int, tmp: Path, log) -> dict[str, Any]:
    from ego_ros.ros.demo_graph import RosGraph

    scenes = toy_scenes(tmp)
    # no depth image: the node does not use it here, and it costs the camera 5-9 ms per 640x480 frame
    camera = {"seed": 3, "width": 320, "height": 240, "fps": 10.0, "publish_depth": False}
    node = {"model": "toy", "autostart": True, "memory_dir": str(tmp / "ros_store"), "max_rate": 2.0,
            "max_new_tokens": 16}
    with RosGraph(camera, node, log_dir=tmp / "ros_logs", say=lambda s: print(s, file=sys.stderr)) as graph:
        waited = graph.wait_active(180.0)
        graph.wait_for_camera(30.0)
        env = {**graph.env, "PYTHONPATH": str(REPO)}
        result = asyncio.run(measure(["--node", "/ego_node"], env, plan("ros", scenes), repeats, log))
    result["node_active_after_s"] = round(waited, 1)
    result["camera"] = camera
    result["node"] = {k: v for k, v in node.items() if k != "memory_dir"}
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ros", action="store_true", help="also measure ROS mode (starts ego_node + camera)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "mcp_latency_toy.json"))
    args = parser.parse_args()
    report: dict[str, Any] = {
        "what": "round trip of one MCP tools/call over stdio (SDK client -> ego-ros mcp), median of repeats",
        "model": "toy",
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": os.cpu_count(), "note": "shared build machine: other jobs ran beside the benchmark"},
        "repeats": args.repeats,
    }
    with tempfile.TemporaryDirectory(prefix="ego_mcp_bench_") as tmp, open(Path(tmp) / "server.log", "w") as log:
        for mode, run in [("engine", run_engine)] + ([("ros", run_ros)] if args.ros else []):
            load_before = os.getloadavg()
            report[mode] = run(args.repeats, Path(tmp), log)
            # The machine's 1-minute load average around the run: how contended the numbers are.
            report[mode]["load_average_1min"] = {"before": round(load_before[0], 2),
                                                 "after": round(os.getloadavg()[0], 2)}
    print(json.dumps(report, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
