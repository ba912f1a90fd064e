"""Soak of the ROS node: a 30 Hz camera and a steady mix of service calls for a long run (issue 12).

The synthetic camera publishes 640x480 rgb8 frames at 30 Hz; ego_node (a separate process, toy model on
CPU) recognises the introduced concepts at most `--max-rate` times a second, while this process calls
its services round-robin, one call every `--interval` seconds, each kind waiting for its previous call:

    ask (latest frame, 16 new tokens), list_concepts, caption (latest frame, 16 new tokens), and a
    concept cycle: introduce_concept from the latest camera frame, rename it, remove it.

Reported (JSON in bench/results/ros_soak_<date>.json): the processed recognition rate against the
input rate; per service the call count and latency percentiles (p50/p95/p99, milliseconds from the
request to the reply in this process, so queueing behind the model thread is included); failures by
kind (a reply with success=false, by message, or no reply within `--call-timeout`); the node's RSS at
the start and end of the measured window and its least-squares slope in MB per minute; the levels
/diagnostics reported; whether the node was still alive and answering at the end.

Usage: python bench/ros_soak.py [--duration 600] [--interval 0.5] [--max-rate 5] [--model toy]
                                [--out bench/results/ros_soak_<date>.json]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from stats import percentiles_ms, rss_mb, slope_per_minute, write_result

from ego_ros.ros.demo_concepts import reference_views
from ego_ros.ros.demo_graph import NODE_NAME, DemoError, RosGraph

WIDTH, HEIGHT, FPS = 640, 480, 30.0
BASE_CONCEPTS = ("soak_base_a", "soak_base_b")
NEW_TOKENS = 16
LEVELS = {0: "OK", 1: "WARN", 2: "ERROR", 3: "STALE"}


class ServiceMix:
    """Round-robin service calls against the node, asynchronous so the executor keeps spinning."""

    def __init__(self, graph: RosGraph, call_timeout: float) -> None:
        from ego_msgs.srv import Ask, Caption, IntroduceConcept, ListConcepts, RemoveConcept, RenameConcept

        self.graph, self.call_timeout = graph, call_timeout
        self.types = {"ask": Ask, "caption": Caption, "list_concepts": ListConcepts,
                      "introduce_concept": IntroduceConcept, "rename_concept": RenameConcept,
                      "remove_concept": RemoveConcept}
        self.clients = {k: graph.node.create_client(t, f"/{NODE_NAME}/{k}") for k, t in self.types.items()}
        self.order = ["ask", "list_concepts", "caption", "cycle"]
        self.turn = 0
        self.cycle_step = 0  # 0 introduce, 1 rename, 2 remove
        self.cycle_index = 0
        self.pending: dict[str, tuple[str, float, Any]] = {}  # lane -> (service, start, future)
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.calls: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self.measuring = False

    def _request(self, service: str):
        from ego_msgs.srv import Ask, Caption, IntroduceConcept, RemoveConcept, RenameConcept

        name = f"soak_{self.cycle_index}"
        if service == "ask":
            return Ask.Request(question="Is soak_base_a here?", max_new_tokens=NEW_TOKENS)
        if service == "caption":
            return Caption.Request(max_new_tokens=NEW_TOKENS)
        if service == "introduce_concept":
            return IntroduceConcept.Request(name=name, latest_frames=1, replace=True)
        if service == "rename_concept":
            return RenameConcept.Request(old_name=name, new_name=f"{name}_renamed")
        if service == "remove_concept":
            return RemoveConcept.Request(name=f"{name}_renamed")
        return self.types[service].Request()

    def issue_next(self) -> None:
        lane = self.order[self.turn % len(self.order)]
        self.turn += 1
        if lane in self.pending:
            return  # this kind's previous call is still running: skip its turn (counted by the call count)
        service = ("introduce_concept", "rename_concept", "remove_concept")[self.cycle_step] if lane == "cycle" \
            else lane
        future = self.clients[service].call_async(self._request(service))
        self.pending[lane] = (service, time.monotonic(), future)

    def collect(self) -> None:
        now = time.monotonic()
        for lane, (service, start, future) in list(self.pending.items()):
            if future.done():
                del self.pending[lane]
                reply = future.result()
                ok = reply is not None and reply.success
                self._record(service, now - start, None if ok else (reply.message if reply is not None else "none"))
                if lane == "cycle":
                    self._advance_cycle(ok)
            elif now - start > self.call_timeout:
                del self.pending[lane]
                self._record(service, now - start, f"no reply within {self.call_timeout:g} s")
                if lane == "cycle":
                    self._advance_cycle(False)

    def _advance_cycle(self, ok: bool) -> None:
        if ok and self.cycle_step < 2:
            self.cycle_step += 1
        else:  # a finished or a failed cycle starts over with a fresh name
            self.cycle_step = 0
            self.cycle_index += 1

    def _record(self, service: str, seconds: float, failure: str | None) -> None:
        if not self.measuring:
            return
        self.calls[service] += 1
        self.latencies[service].append(seconds)
        if failure is not None:
            self.failures[f"{service}: {failure[:120]}"] += 1


def run(args: argparse.Namespace, say) -> dict[str, Any]:
    # no depth image: the node does not use it here, and it costs the camera 5-9 ms per 640x480 frame
    camera = {"seed": 11, "width": WIDTH, "height": HEIGHT, "fps": FPS, "publish_depth": False}
    with tempfile.TemporaryDirectory(prefix="ego_soak_memory_") as memory_dir:
        node = {"model": args.model, "device": "cpu", "autostart": True, "memory_dir": memory_dir,
                "max_rate": args.max_rate, "image_transport": "raw"}
        with RosGraph(camera, node, say=say) as graph:
            from diagnostic_msgs.msg import DiagnosticArray

            levels: Counter[str] = Counter()
            messages: Counter[str] = Counter()
            measuring = {"on": False}

            def on_diagnostics(msg) -> None:
                for status in msg.status:
                    if status.name == f"/{NODE_NAME}: ego" and measuring["on"]:
                        level = LEVELS.get(int.from_bytes(status.level, "little") if isinstance(status.level, bytes)
                                           else int(status.level), "?")
                        levels[level] += 1
                        if level != "OK":
                            messages[status.message[:160]] += 1

            graph.node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
            pid = graph.children[-1].proc.pid  # the wrapper execs the node: same pid
            waited = graph.wait_active(args.startup_timeout)
            graph.wait_for_camera(30.0)
            for i, name in enumerate(BASE_CONCEPTS):
                graph.introduce(name, reference_views(n=1, seed=100 + i), timeout=120.0)
            say(f"node active after {waited:.1f} s, pid {pid}, RSS {rss_mb(pid):.0f} MB; warming up {args.warmup:g} s")

            mix = ServiceMix(graph, args.call_timeout)
            rss: list[tuple[float, float]] = []
            recognitions = {"n": 0}

            def on_recognition(_sample) -> None:
                if measuring["on"]:
                    recognitions["n"] += 1

            graph.on_recognition = on_recognition

            def spin(seconds: float) -> None:
                end = time.monotonic() + seconds
                next_call = next_sample = next_report = time.monotonic()
                while time.monotonic() < end:
                    graph.spin_for(0.02)
                    now = time.monotonic()
                    mix.collect()
                    if now >= next_call:
                        mix.issue_next()
                        next_call += args.interval
                    if now >= next_sample:
                        value = rss_mb(pid)
                        if value is not None and measuring["on"]:
                            rss.append((now, value))
                        next_sample += 1.0
                    if measuring["on"] and now >= next_report:
                        say(f"  {now - start:6.0f} s: {recognitions['n']} recognitions, {sum(mix.calls.values())} "
                            f"calls, {sum(mix.failures.values())} failures, RSS {rss[-1][1] if rss else 0:.0f} MB")
                        next_report += 60.0

            start = time.monotonic()
            spin(args.warmup)
            measuring["on"] = mix.measuring = True
            frames_before = graph.truth_count
            start = time.monotonic()
            spin(args.duration)
            elapsed = time.monotonic() - start
            measuring["on"] = mix.measuring = False
            frames_in = graph.truth_count - frames_before
            alive = graph.children[-1].proc.poll() is None
            from ego_msgs.srv import ListConcepts

            final = graph.call(ListConcepts, f"/{NODE_NAME}/list_concepts", ListConcepts.Request(), 30.0,
                               "final list_concepts") if alive else None
    return {
        "duration_s": round(elapsed, 1),
        "input_hz": round(frames_in / elapsed, 2),
        "recognitions": recognitions["n"],
        "processed_hz": round(recognitions["n"] / elapsed, 3),
        "services": {s: {"calls": mix.calls[s], **percentiles_ms(mix.latencies[s])} for s in mix.types},
        "calls_total": sum(mix.calls.values()),
        "failures_total": sum(mix.failures.values()),
        "failures_by_kind": dict(mix.failures.most_common()),
        "rss_mb": {"start": round(rss[0][1], 1) if rss else None, "end": round(rss[-1][1], 1) if rss else None,
                   "max": round(max(v for _, v in rss), 1) if rss else None, "slope_mb_per_min": slope_per_minute(rss),
                   "samples": len(rss)},
        "diagnostics_levels": dict(levels),
        "diagnostics_non_ok_messages": dict(messages.most_common(5)),
        "node_alive_at_end": alive,
        "final_list_concepts_ok": bool(final is not None and final.success),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="toy")
    p.add_argument("--duration", type=float, default=600.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=15.0, help="seconds of the same load before measuring")
    p.add_argument("--interval", type=float, default=0.5, help="seconds between service calls (round-robin)")
    p.add_argument("--max-rate", type=float, default=5.0, help="the node's max_rate parameter")
    p.add_argument("--call-timeout", type=float, default=60.0, help="a call without reply this long is a failure")
    p.add_argument("--startup-timeout", type=float, default=180.0)
    p.add_argument("--note", default="", help="free text stored with the result (e.g. what else ran)")
    p.add_argument("--out", default=None)
    args = p.parse_args()

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    result: dict[str, Any] = {
        "benchmark": "ros_soak", "model": args.model, "device": "cpu", "node_max_rate": args.max_rate,
        "input": {"width": WIDTH, "height": HEIGHT, "fps": FPS, "encoding": "rgb8"},
        "service_interval_s": args.interval, "new_tokens": NEW_TOKENS, "note": args.note,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    try:
        result["run"] = run(args, say)
    except DemoError as exc:
        say(f"error: {exc}")
        return 1
    out = Path(args.out or f"bench/results/ros_soak_{time.strftime('%Y-%m-%d')}.json")
    write_result(out, result, say)
    return 0


if __name__ == "__main__":
    sys.exit(main())
