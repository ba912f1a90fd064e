"""`ego-ros demo`: the synthetic camera and the Ego node on a private ROS domain, end to end.

The demo starts two processes, `synthetic_camera` (toy-world video with per-frame ground truth that
plays short clips in turn: the personal instance `demo_instance()`, neither it nor a look-alike, and
its look-alike `demo_lookalike()`; see `demo_camera_params`) and `ego_node`, on a free ROS domain with
discovery limited to this machine. It introduces the concept `DEMO_NAME` through the node's
``~/introduce_concept`` service from reference views rendered in the toy world (the same views as
``config/demo_concepts/``), prints each recognition next to the camera's ground truth for the frame
with the same stamp (which kind of frame it is, kona / absent / look-alike, and with where the node
located it: pixel point, and 3-D point from the camera's depth, since the node runs with use_depth),
and the answers to a standing question; its summary gives the agreement per frame kind; last it asks ``~/locate``
where the concept is on the latest frame and prints the pixel and 3-D point next to the ground truth's,
then stops both processes with SIGTERM.
Children also get SIGTERM if the demo itself dies (Linux parent-death signal).

This module holds the run itself (`run_demo`: the frames' ground truth, the agreement per frame kind,
the printed lines) and its command line. The parts it runs live in their own modules, and every name
they held here still imports from here: the object and the camera's clips in `demo_scenario`, the
reference views and ``config/demo_concepts.yaml`` in `demo_concepts`, the child processes and the
Fast DDS profile in `child_processes`, and the reusable graph `RosGraph` in `demo_graph` (the
benchmark ``bench/ros_stream.py`` drives the same graph).

Regenerate the reference views of ``config/demo_concepts.yaml`` with
``python -m ego_ros.ros.demo write-concepts config``.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from ..toy.attributes import Instance
from .child_processes import PROFILE_NAME, Child, find_profile, python_module_command, stop_child
from .demo_concepts import reference_views, write_demo_concepts
from .demo_graph import DEMO_DOMAINS, NODE_NAME, DemoError, RosGraph, Sample
from .demo_scenario import (
    DEMO_CLIP_CYCLE,
    DEMO_CLIP_SECONDS,
    DEMO_INCLUDE_P,
    DEMO_INSTANCE,
    DEMO_MAX_OBJECTS,
    DEMO_NAME,
    DEMO_NOTES,
    DEMO_OBJECT_SIZE,
    DEMO_QUESTION,
    DEMO_SIGNATURE,
    DEMO_VIEW_SEED,
    DEMO_VIEW_SIZE,
    DEMO_VIEWS,
    demo_camera_params,
    demo_instance,
    demo_lookalike,
    demo_lookalikes,
)

# The names before the split of this module into demo_scenario, demo_concepts, child_processes and
# demo_graph stay importable from here (benchmarks, tests and ros_backend import them from here).
__all__ = [
    "ABSENT_KIND", "DEMO_CLIP_CYCLE", "DEMO_CLIP_SECONDS", "DEMO_DOMAINS", "DEMO_INCLUDE_P", "DEMO_INSTANCE",
    "DEMO_MAX_OBJECTS", "DEMO_NAME", "DEMO_NOTES", "DEMO_OBJECT_SIZE", "DEMO_QUESTION", "DEMO_SIGNATURE",
    "DEMO_VIEWS", "DEMO_VIEW_SEED", "DEMO_VIEW_SIZE", "LOOKALIKE_KIND", "NODE_NAME", "PROFILE_NAME", "Child",
    "DemoError", "DemoResult", "FrameTruth", "RosGraph", "Sample", "add_demo_arguments", "agreement_by_kind",
    "demo_camera_params", "demo_command", "demo_instance", "demo_lookalike", "demo_lookalikes", "find_profile",
    "frame_truth", "main", "python_module_command", "reference_views", "run_demo", "stop_child",
    "write_demo_concepts",
]  # fmt: skip


# ---------------------------------------------------------------------------------------------- demo
#: The kinds of frame the demo's summary counts apart: the concept's own name stands for the first.
LOOKALIKE_KIND = "look-alike"
ABSENT_KIND = "absent"


@dataclass
class DemoResult:
    recognitions: int = 0
    compared: int = 0
    agreed: int = 0
    #: frame kind (DEMO_NAME, LOOKALIKE_KIND, ABSENT_KIND) -> [agreed, compared]
    by_kind: dict[str, list[int]] = field(default_factory=dict)
    answers: list[str] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)
    located: int = 0
    located_3d: int = 0
    where: str = ""
    model: str = ""
    domain_id: int | None = None


def _clock(stamp: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(stamp)) + f".{int(stamp % 1 * 1000):03d}"


def _printable(text: str, limit: int = 100) -> str:
    """Text for the terminal: control and replacement characters shown as '?', cut at `limit`."""
    clean = "".join(c if c.isprintable() and c != "\ufffd" else "?" for c in text)
    return clean if len(clean) <= limit else clean[: limit - 3] + "..."


@dataclass(frozen=True)
class FrameTruth:
    """What the camera's ground truth says of one frame, for the demo's concept."""

    #: DEMO_NAME-like concept name when it shows (even partly), else LOOKALIKE_KIND when one of its
    #: look-alikes shows, else ABSENT_KIND
    kind: str
    #: what a recogniser should answer: the concept is recognisable (whole mark, half its area)
    expected: bool
    text: str


def frame_truth(entries: Iterable[tuple[str, bool, float]], name: str,
                lookalike_keys: frozenset[str] = frozenset()) -> FrameTruth:
    """What a frame's ground truth, ``(name, recognisable, visible fraction)`` per object (a ground-truth
    Recognitions message's names, present and probabilities), says of concept `name`.

    The camera names included objects by their concept name and every other object by its instance
    key, so a look-alike is an entry whose name is one of `lookalike_keys`."""
    seen = {n: (bool(ok), float(frac)) for n, ok, frac in entries}
    if seen.get(name, (False, 0.0))[1] > 0:
        recognisable, frac = seen[name]
        state = "present" if recognisable else "partly visible"
        return FrameTruth(name, recognisable, f"truth: {name} {state} ({frac:.0%} visible)")
    hidden = f", {name} out of view" if name in seen else ""
    doubles = [(n, frac) for n, (_, frac) in seen.items() if n in lookalike_keys and frac > 0]
    if doubles:
        key, frac = doubles[0]
        return FrameTruth(LOOKALIKE_KIND, False, f"truth: {LOOKALIKE_KIND} {key} ({frac:.0%} visible{hidden})")
    return FrameTruth(ABSENT_KIND, False, f"truth: {ABSENT_KIND}" + (f" ({hidden[2:]})" if hidden else ""))


def agreement_by_kind(result: DemoResult, name: str) -> str:
    """``"kona 14/15, absent 15/15, look-alike 12/15"``: agreement per frame kind, in that order."""
    kinds = [k for k in (name, ABSENT_KIND, LOOKALIKE_KIND) if k in result.by_kind]
    return ", ".join(f"{k} {result.by_kind[k][0]}/{result.by_kind[k][1]}" for k in kinds)


def _difference(lookalike: Instance) -> str:
    """How a look-alike differs from the demo's object, in words: "another mark" etc."""
    diff = demo_instance(lookalike.world).differing_attributes(lookalike)
    return "another " + " and ".join("glyph" if d == "signature" else d for d in diff)


def _where_text(location) -> str:
    """Where a ConceptLocation puts its concept: pixel point, and 3-D point (m, optical frame) or why none."""
    text = f"at ({location.x:.0f}, {location.y:.0f}) px"
    if location.has_position:
        p = location.position
        return text + f", ({p.x:+.2f}, {p.y:+.2f}, {p.z:.2f}) m"
    return text + (f", no 3-D: {location.position_status}" if location.position_status else "")


def _truth_where(truth, name: str, pixels: bool = True) -> str:
    """The ground truth's pixel centroid and 3-D point of `name` in a frame ('' when it is not visible)."""
    if truth is None:
        return ""
    for loc in truth.locations:
        if loc.name == name:
            p = loc.position
            return "truth " + (_where_text(loc) if pixels else f"({p.x:+.2f}, {p.y:+.2f}, {p.z:.2f}) m")
    return ""


def run_demo(model: str = "toy", seconds: float = 10.0, device: str = "cpu", *, domain_id: int | None = None,
             startup_timeout: float = 180.0, request_timeout: float = 120.0, seed: int = 0,
             log_dir: str | Path | None = None, out: TextIO = sys.stdout) -> DemoResult:
    """Run the demo (see the module docstring) and return what it saw. Raises DemoError on failure."""

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    if not seconds > 0:
        raise DemoError(f"--seconds must be positive, got {seconds}")
    notes = []
    if model == "toy":
        from ..core.loading import TOY_MODEL_DIR

        if not (TOY_MODEL_DIR / "config.json").is_file():
            notes.append(f"note: the embedded toy model is missing ({TOY_MODEL_DIR}); using a tiny RANDOM model "
                         "instead (train the toy model with `ego-ros toy train`)")
            model = "random:llava"
    profile = find_profile()
    transport = "raw" if profile is not None else "compressed"
    camera_params = {**demo_camera_params(seed), "publish_compressed": transport == "compressed"}
    lookalike = demo_lookalike()
    lookalike_keys = frozenset(d.key for d in demo_lookalikes())
    result = DemoResult(model=model)
    # The demo's concept store is its own (never the user's per-model store): kept with the logs when
    # --log-dir is given, else a temporary folder.
    with (contextlib.nullcontext(str(Path(log_dir) / "memory")) if log_dir is not None
          else tempfile.TemporaryDirectory(prefix="ego_demo_memory_")) as memory_dir:
        node_params = {"model": model, "device": device, "autostart": True, "memory_dir": memory_dir,
                       "image_transport": transport, "standing_questions": [DEMO_QUESTION], "max_new_tokens": 16,
                       "use_depth": True}
        graph = RosGraph(camera_params, node_params, domain_id=domain_id, log_dir=log_dir, say=say)
        try:
            with graph:
                result.domain_id = graph.domain_id
                say(f"ego-ros demo: model {model} on {device}; ROS domain {graph.domain_id} (this machine only)"
                    + (f"; logs in {graph.log_dir}" if log_dir is not None else ""))
                for note in notes:
                    say(note)
                if profile is None:
                    say("note: Fast DDS profile fastdds_large_images.xml not found; using JPEG image/compressed")
                say("started synthetic_camera (640x480 @ 30 Hz) and ego_node; waiting for the model to load ...")
                waited = graph.wait_active(startup_timeout)
                graph.wait_for_camera(30.0)
                say(f"ego_node active after {waited:.1f} s")

                views = reference_views()
                say(f"introducing {DEMO_NAME!r} ({demo_instance().key}) from {len(views)} reference views ...")
                t0 = time.monotonic()
                concept = graph.introduce(DEMO_NAME, views, request_timeout, notes=DEMO_NOTES)
                say(f"  introduced in {time.monotonic() - t0:.1f} s: keywords "
                    f"{[_printable(k, 40) for k in concept.keywords]}, "
                    f"{concept.tokens} memory tokens, area {[round(a, 1) for a in concept.area_percent]} %")

                def on_recognition(s: Sample) -> None:
                    if DEMO_NAME not in s.names:
                        return
                    i = s.names.index(DEMO_NAME)
                    truth_msg = graph.truth_for(s.key)
                    truth = None if truth_msg is None else frame_truth(
                        zip(truth_msg.names, truth_msg.present, truth_msg.probabilities), DEMO_NAME, lookalike_keys)
                    text, verdict = "truth: (frame not seen)", ""
                    if truth is not None:
                        ok = truth.expected == s.present[i]
                        text = truth.text
                        result.compared += 1
                        result.agreed += int(ok)
                        tally = result.by_kind.setdefault(truth.kind, [0, 0])
                        tally[0] += int(ok)
                        tally[1] += 1
                        verdict = "  ok" if ok else "  MISS"
                    result.recognitions += 1
                    result.latencies_s.append(max(0.0, s.arrival - s.stamp))
                    where = s.locations.get(DEMO_NAME)
                    if where is not None:
                        result.located += 1
                        result.located_3d += int(where.has_position)
                    say(f"  {_clock(s.stamp)}  {DEMO_NAME} P={s.probabilities[i]:.2f} "
                        f"{'present' if s.present[i] else 'absent ':7s}   {text}{verdict}"
                        + (f"   {_where_text(where)}" if where is not None else "")
                        + (f" [{_truth_where(truth_msg, DEMO_NAME, pixels=False)}]"
                           if where is not None and where.has_position and _truth_where(truth_msg, DEMO_NAME) else ""))

                last_answer = {"at": -1e9}

                def on_answer(msg) -> None:
                    result.answers.append(msg.answer)
                    # The node answers on every processed frame: print at most one answer a second.
                    now = time.monotonic()
                    if now - last_answer["at"] < 1.0:
                        return
                    last_answer["at"] = now
                    st = msg.header.stamp
                    say(f"  {_clock(st.sec + st.nanosec * 1e-9)}  Q: {msg.question}  A: {_printable(msg.answer)}")

                graph.recognitions.clear()
                graph.on_recognition, graph.on_answer = on_recognition, on_answer
                say(f"the camera plays {DEMO_CLIP_SECONDS:g}-s clips in turn: {DEMO_NAME}; neither it nor a "
                    f"look-alike; its look-alike {lookalike.key} ({_difference(lookalike)})")
                say(f"recognitions for {seconds:g} s (P: the model's probability; truth: the camera's ground truth, "
                    f"{DEMO_NAME} / {ABSENT_KIND} / {LOOKALIKE_KIND}):")
                graph.spin_for(seconds)
                if result.recognitions == 0:
                    say(f"no recognition yet (a busy CPU?); waiting up to {request_timeout:.0f} s for the first one")
                    graph.spin_for(request_timeout, until=lambda: result.recognitions > 0)
                if not result.answers:
                    answer = graph.ask(DEMO_QUESTION, request_timeout, max_new_tokens=16)
                    on_answer(answer)
                if result.recognitions == 0:
                    raise DemoError(f"no recognitions of {DEMO_NAME!r} arrived in {seconds + request_timeout:g} s; "
                                    f"last lines of the node's log:\n{graph.children[-1].tail()}")
                reply = graph.locate(DEMO_NAME, request_timeout)
                stamp = reply.header.stamp
                truth = _truth_where(graph.truth_for((stamp.sec, stamp.nanosec)), DEMO_NAME)
                result.where = _where_text(reply.location)
                say(f"where is {DEMO_NAME} (~/locate on the latest frame, {_clock(stamp.sec + stamp.nanosec * 1e-9)}, "
                    f"optical frame {reply.header.frame_id!r}): "
                    + (f"found (P={reply.probability:.2f}) " if reply.found
                       else f"not found (P={reply.probability:.2f}); best guess ")
                    + result.where + (f"; {truth}" if truth else ""))
                lat = sorted(result.latencies_s)
                say(f"summary: {result.recognitions} recognition(s) in {seconds:g} s "
                    f"({result.recognitions / seconds:.1f} Hz), frame-to-recognition latency p50 "
                    f"{lat[len(lat) // 2] * 1000:.0f} ms; agreement with the ground truth "
                    f"{result.agreed}/{result.compared} ({agreement_by_kind(result, DEMO_NAME) or 'no frame seen'}); "
                    f"located {result.located} time(s), "
                    f"{result.located_3d} with a 3-D point")
                if model.startswith("random:"):
                    say("note: a random model's probabilities and answers are meaningless; this run checks the "
                        "plumbing")
        except DemoError:
            say(f"logs kept in {graph.log_dir}")
            raise
    return result


# ----------------------------------------------------------------------------------------------- CLI
def add_demo_arguments(p) -> None:
    p.add_argument("--model", default="toy", help="model for ego_node (default: toy, the embedded model)")
    p.add_argument("--seconds", type=float, default=10.0, help="how long to print recognitions (default: 10)")
    p.add_argument("--device", default="cpu", help="cpu or cuda:N (default: cpu)")
    p.add_argument("--domain-id", type=int, default=None, help="ROS domain (default: a free one in 1-49)")
    p.add_argument("--startup-timeout", type=float, default=180.0, help="seconds to wait for the model to load")
    p.add_argument("--log-dir", default=None, help="keep process and ROS logs here (default: temporary)")


def demo_command(args) -> int:
    """`ego-ros demo`: exit 0 after a successful run, 1 with a message on stderr otherwise."""
    previous = None
    if hasattr(signal, "SIGTERM") and _in_main_thread():
        # SIGTERM becomes KeyboardInterrupt so the finally blocks stop the children.
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        run_demo(args.model, args.seconds, args.device, domain_id=args.domain_id,
                 startup_timeout=args.startup_timeout, log_dir=args.log_dir)
        return 0
    except DemoError as exc:
        print(f"ego-ros demo: error: {exc}", file=sys.stderr)
        return 1
    except ImportError as exc:
        print(f"ego-ros demo: error: {exc}. The demo needs ROS 2 for Python (pip install 'ego_ros[ros]') and the "
              "built ego_msgs interfaces (scripts/build_ego_msgs.sh)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ego-ros demo: interrupted; processes stopped", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """``python -m ego_ros.ros.demo [run options] | write-concepts CONFIG_DIR``."""
    import argparse

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["write-concepts"]:
        if len(argv) != 2:
            print("usage: python -m ego_ros.ros.demo write-concepts CONFIG_DIR", file=sys.stderr)
            return 2
        print(write_demo_concepts(argv[1]))
        return 0
    parser = argparse.ArgumentParser(prog="python -m ego_ros.ros.demo", description=__doc__.split("\n\n")[0])
    add_demo_arguments(parser)
    return demo_command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
