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

`RosGraph` is the reusable part (the benchmark ``bench/ros_stream.py`` drives the same graph).

Regenerate the reference views of ``config/demo_concepts.yaml`` with
``python -m ego_ros.ros.demo write-concepts config``.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from ..core.errors import EgoError
from ..toy import attributes
from ..toy.attributes import Instance

#: The demo's personal concept: a held-out toy-world instance (the toy model never saw it in training).
#: These are its attributes; in world v2 it also carries the glyph DEMO_SIGNATURE (see `demo_instance`).
DEMO_INSTANCE = "red-heart-checkered-white-right"
#: Share of the clips that show the demo's object when the camera draws its clips at random (the
#: launch file's camera and the stream benches); `ego-ros demo` itself plays DEMO_CLIP_CYCLE.
DEMO_INCLUDE_P = 0.8
#: The clips the demo's camera plays in turn: the concept, neither it nor a look-alike, its look-alike.
#: Short clips of DEMO_CLIP_SECONDS make a cycle of 6 s at 30 Hz, so any 10-s window holds at least 2 s
#: of each kind (10 - (6 - 2)), and still 2 s if the camera fell behind to 15 Hz (10 - (12 - 4)).
DEMO_CLIP_CYCLE = ("include", "absent", "lookalike")
DEMO_CLIP_SECONDS = 2.0
#: A demo clip shows its subject with at most one other object, both 0.3-0.4 of the frame: in the
#: busier default (up to 4 objects of 0.2-0.4) the toy model recognises kona in about 2 frames of 3.
DEMO_MAX_OBJECTS = 2
DEMO_OBJECT_SIZE = (0.3, 0.4)
DEMO_NAME = "kona"
#: kona's glyph in world v2 (a held-out one, as kona is a held-out instance).
DEMO_SIGNATURE = attributes.HELD_OUT_SIGNATURES[0]
DEMO_NOTES = "the demo's personal object: a red heart, checkered, with a white mark on the right"
DEMO_QUESTION = f"What colour is {DEMO_NAME}?"
DEMO_VIEWS = 2
DEMO_VIEW_SIZE = 128
DEMO_VIEW_SEED = 7
PROFILE_NAME = "fastdds_large_images.xml"
NODE_NAME = "ego_node"
#: Domains the demo picks from: clear of 0 (everyone's default) and of the ids the tests use (50-200).
DEMO_DOMAINS = range(1, 50)


class DemoError(EgoError):
    """The demo could not run (a process died, a timeout passed); the message says what to check."""


# ------------------------------------------------------------------------ the demo's object and scenario
def demo_instance(world: str | None = None) -> Instance:
    """The demo's personal object in `world` (default: the toy world's default): DEMO_INSTANCE, and in
    world v2 with the glyph DEMO_SIGNATURE."""
    inst = attributes.Instance.from_key(DEMO_INSTANCE)
    world = attributes.check_world(world or attributes.DEFAULT_WORLD)
    return inst if world == "v1" else inst.with_signature(DEMO_SIGNATURE)


def demo_lookalikes(world: str | None = None) -> tuple[Instance, ...]:
    """What the demo calls a look-alike of its object: in world v1 a near-duplicate (same shape and
    colour, another mark or pattern), in v2 a look-alike proper (the same words, another glyph)."""
    inst = demo_instance(world)
    return attributes.near_duplicates(inst) if inst.signature is None else attributes.lookalikes(inst)


def demo_lookalike(world: str | None = None) -> Instance:
    """The look-alike the demo's camera shows. In v1 the mark-colour twin (a black mark where kona's is
    white, same place: the nearest of its near-duplicates by the words that name it); in v2 the first
    look-alike by glyph mask."""
    inst = demo_instance(world)
    if inst.signature is not None:
        return attributes.lookalikes(inst)[0]
    (twin,) = (d for d in attributes.near_duplicates(inst, ("mark",)) if d.mark_position == inst.mark_position)
    return twin


def demo_camera_params(seed: int = 0, world: str | None = None) -> dict[str, Any]:
    """The demo camera's scenario: parameters of the `synthetic_camera` node, and keyword arguments of
    `ToyCamera` alike."""
    return {"seed": seed, "include": [demo_instance(world).key], "include_names": [DEMO_NAME],
            "lookalikes": [demo_lookalike(world).key], "clip_cycle": list(DEMO_CLIP_CYCLE),
            "clip_seconds": [DEMO_CLIP_SECONDS, DEMO_CLIP_SECONDS], "max_objects": DEMO_MAX_OBJECTS,
            "object_size": list(DEMO_OBJECT_SIZE)}


# ------------------------------------------------------------------------------------ reference views
def reference_views(n: int = DEMO_VIEWS, size: int = DEMO_VIEW_SIZE, seed: int = DEMO_VIEW_SEED,
                    instance_key: str | None = None) -> list[np.ndarray]:
    """Reference views (HxWx3 uint8 RGB) of `instance_key` (default: the demo's object in the default
    world): view i comes from ``default_rng([seed, i])``."""
    from ..toy import world

    inst = world.Instance.from_key(instance_key) if instance_key is not None else demo_instance()
    return [world.reference_scene(inst, np.random.default_rng([seed, i]), size=size).image for i in range(n)]


def write_demo_concepts(config_dir: str | Path) -> Path:
    """Write ``demo_concepts.yaml`` and its reference PNGs (``demo_concepts/<name>_<i>.png``) under
    `config_dir`; deterministic (same bytes every time). Returns the YAML path."""
    import cv2

    config_dir = Path(config_dir)
    folder = config_dir / "demo_concepts"
    folder.mkdir(parents=True, exist_ok=True)
    rel = []
    for i, rgb in enumerate(reference_views()):
        path = folder / f"{DEMO_NAME}_{i}.png"
        ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
        if not ok:
            raise DemoError(f"could not encode {path}")
        path.write_bytes(buf.tobytes())
        rel.append(f"demo_concepts/{path.name}")
    yaml_path = config_dir / "demo_concepts.yaml"
    lines = [
        "# Concepts the Ego node introduces at start (parameter concepts_file), used by launch/demo.launch.py.",
        "# name -> reference images (paths relative to this file) and optional notes.",
        f"# The images are toy-world reference views of the held-out instance {demo_instance().key}, which the",
        "# synthetic camera of the demo shows; regenerate them with:",
        "#   python -m ego_ros.ros.demo write-concepts config",
        f"{DEMO_NAME}:",
        "  images:",
        *(f"    - {r}" for r in rel),
        f'  notes: "{DEMO_NOTES}"',
        "",
    ]
    yaml_path.write_text("\n".join(lines), encoding="utf-8")
    return yaml_path


# ------------------------------------------------------------------------------------------ processes
# Runs in each child before it becomes the node: asks Linux to SIGTERM it when the demo process dies,
# so a killed demo leaves no nodes behind. A wrapper instead of Popen(preexec_fn=...) because
# preexec_fn is unsafe once rclpy's threads run in the parent.
_CHILD_WRAPPER = (
    "import ctypes, os, signal, sys\n"
    "if sys.platform.startswith('linux'):\n"
    "    ctypes.CDLL(None).prctl(1, int(signal.SIGTERM))\n"  # 1 = PR_SET_PDEATHSIG
    "    if os.getppid() != int(sys.argv[1]): sys.exit(1)\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


def find_profile() -> Path | None:
    """The Fast DDS large-image profile: source tree, then ``<prefix>/share/ego_ros/config``."""
    candidates = [Path(__file__).resolve().parents[2] / "config" / PROFILE_NAME,
                  Path(sys.prefix) / "share" / "ego_ros" / "config" / PROFILE_NAME]
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            candidates.append(Path(prefix) / "share" / "ego_ros" / "config" / PROFILE_NAME)
    return next((c for c in candidates if c.is_file()), None)


@dataclass
class Child:
    name: str
    proc: subprocess.Popen
    log_path: Path
    log: Any

    def tail(self, lines: int = 25) -> str:
        self.log.flush()
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def stop_child(child: Child, timeout: float = 10.0) -> int | None:
    """SIGTERM (SIGINT is unreliable for lifecycle nodes), wait, then SIGKILL the child's group."""
    proc = child.proc
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(5)
    child.log.close()
    return proc.returncode


def python_module_command(module: str, params: dict[str, Any], ros_args: Sequence[str] = ()) -> list[str]:
    """``python -m module --ros-args -p k:=v ...`` (values in ROS's YAML parameter syntax)."""
    cmd = [sys.executable, "-m", module, "--ros-args"]
    for key, value in params.items():
        cmd += ["-p", f"{key}:={_param_text(value)}"]
    return cmd + list(ros_args)


def _param_text(value: Any) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(json.dumps(v) if isinstance(v, str) else _param_text(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)  # quoted: "random:llava" or "1e3" stay strings
    return str(value)


# ------------------------------------------------------------------------------------------- the graph
@dataclass
class Sample:
    """A recognitions message as received: arrival time (s, system clock) and its stamp (s)."""

    arrival: float
    stamp: float
    key: tuple[int, int]
    names: list[str]
    probabilities: list[float]
    present: list[bool]
    latency_s: float
    #: name -> ego_msgs/ConceptLocation of the located concepts
    locations: dict[str, Any] = field(default_factory=dict)


class RosGraph:
    """Camera and node processes on a private localhost ROS domain, plus a client node in this process.

    Use as a context manager; on exit the client is destroyed and the children get SIGTERM (then
    SIGKILL). `log_dir` keeps the children's output and ROS logs (default: a temporary folder,
    removed unless `keep_logs`).
    """

    def __init__(self, camera_params: dict[str, Any], node_params: dict[str, Any], *,
                 domain_id: int | None = None, log_dir: str | Path | None = None, keep_logs: bool = False,
                 say: Callable[[str], None] = print, node_module: str = "ego_ros.ros.node",
                 camera_module: str = "ego_ros.ros.synthetic_camera") -> None:
        self.camera_params = dict(camera_params)
        self.node_params = dict(node_params)
        self.requested_domain = domain_id
        self.domain_id: int | None = None
        self.say = say
        self.node_module = node_module
        self.camera_module = camera_module
        self._own_log_dir = log_dir is None
        self.log_dir = Path(log_dir) if log_dir is not None else Path(tempfile.mkdtemp(prefix="ego_demo_"))
        self.keep_logs = keep_logs or log_dir is not None
        self.children: list[Child] = []
        self.env: dict[str, str] = {}
        self._saved_env: dict[str, str | None] = {}
        self.context = None
        self.node = None
        self.executor = None
        self.truth: OrderedDict[tuple[int, int], Any] = OrderedDict()
        self.truth_count = 0
        self.recognitions: list[Sample] = []
        self.answers: list[Any] = []
        self.on_recognition: Callable[[Sample], None] | None = None
        self.on_answer: Callable[[Any], None] | None = None
        self.profile = find_profile()

    # -- lifecycle of the graph ------------------------------------------------------------------
    def __enter__(self) -> RosGraph:
        try:
            self._start()
        except BaseException:
            self.close(failed=True)
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(failed=exc_type is not None)

    def _environment(self, domain: int) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("ROS_LOCALHOST_ONLY", "ROS_STATIC_PEERS")}
        env.update({
            "ROS_DOMAIN_ID": str(domain),
            "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
            "ROS_LOG_DIR": str(self.log_dir / "ros_log"),
            "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp",
            "PYTHONUNBUFFERED": "1",
        })
        if self.profile is not None:
            env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(self.profile)
        return env

    def _apply_env(self, env: dict[str, str]) -> None:
        for key in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOG_DIR", "RMW_IMPLEMENTATION",
                    "FASTDDS_DEFAULT_PROFILES_FILE", "ROS_LOCALHOST_ONLY", "ROS_STATIC_PEERS"):
            if key not in self._saved_env:
                self._saved_env[key] = os.environ.get(key)
            if key in env:
                os.environ[key] = env[key]
            else:
                os.environ.pop(key, None)

    def _init_client(self, domain: int) -> None:
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions

        self.env = self._environment(domain)
        self._apply_env(self.env)  # rclpy and Fast DDS read these when the context starts
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node("ego_demo_client", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def _shutdown_client(self) -> None:
        if self.executor is not None:
            self.executor.shutdown()
        if self.node is not None:
            self.node.destroy_node()
        if self.context is not None and self.context.ok():
            self.context.shutdown()
        self.executor = self.node = self.context = None

    def _pick_domain(self) -> None:
        if self.requested_domain is not None:
            self.domain_id = self.requested_domain
            self._init_client(self.domain_id)
            return
        candidates = random.sample(list(DEMO_DOMAINS), 6)
        for domain in candidates:
            self._init_client(domain)
            # Any other participant on this domain on this machine shows up within a fraction of a second.
            end = time.monotonic() + 0.7
            while time.monotonic() < end:
                self.executor.spin_once(timeout_sec=0.05)
            others = [n for n, _ in self.node.get_node_names_and_namespaces() if n != self.node.get_name()]
            if not others:
                self.domain_id = domain
                return
            self._shutdown_client()
        raise DemoError(f"ROS domains {candidates} are all in use on this machine; pass --domain-id")

    def _start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._pick_domain()
        self._subscribe()
        camera = python_module_command(self.camera_module, self.camera_params)
        self.children.append(self._spawn("synthetic_camera", camera))
        self.children.append(self._spawn(NODE_NAME, python_module_command(self.node_module, self.node_params)))

    def _spawn(self, name: str, cmd: list[str]) -> Child:
        log_path = self.log_dir / f"{name}.log"
        log = open(log_path, "wb")  # noqa: SIM115 - closed by stop_child
        wrapped = [sys.executable, "-c", _CHILD_WRAPPER, str(os.getpid()), *cmd]
        proc = subprocess.Popen(wrapped, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        return Child(name, proc, log_path, log)

    def close(self, failed: bool = False) -> None:
        for child in reversed(self.children):
            stop_child(child)
        self._shutdown_client()
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()
        if self._own_log_dir and not (failed or self.keep_logs):
            shutil.rmtree(self.log_dir, ignore_errors=True)
            self._own_log_dir = False

    # -- client side ---------------------------------------------------------------------------------
    def _subscribe(self) -> None:
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        from ego_msgs.msg import Answer, Recognitions

        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(Recognitions, "ground_truth", self._on_truth, reliable)
        self.node.create_subscription(Recognitions, f"/{NODE_NAME}/recognitions", self._on_recognitions, reliable)
        self.node.create_subscription(Answer, f"/{NODE_NAME}/answers", self._on_answer, reliable)

    def _on_truth(self, msg) -> None:
        self.truth_count += 1
        self.truth[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = msg
        while len(self.truth) > 600:  # 20 s at 30 Hz is plenty to pair recognitions with frames
            self.truth.popitem(last=False)

    def _on_recognitions(self, msg) -> None:
        stamp = msg.header.stamp
        sample = Sample(time.time(), stamp.sec + stamp.nanosec * 1e-9, (stamp.sec, stamp.nanosec), list(msg.names),
                        [float(p) for p in msg.probabilities], [bool(p) for p in msg.present], float(msg.latency_s),
                        {loc.name: loc for loc in msg.locations})
        self.recognitions.append(sample)
        if self.on_recognition is not None:
            self.on_recognition(sample)

    def _on_answer(self, msg) -> None:
        self.answers.append(msg)
        if self.on_answer is not None:
            self.on_answer(msg)

    def check_children(self) -> None:
        """Raise DemoError with the tail of its log if a child process has exited."""
        for child in self.children:
            code = child.proc.poll()
            if code is not None:
                raise DemoError(f"{child.name} exited with status {code}; last lines of {child.log_path}:\n"
                                f"{child.tail()}")

    def spin_for(self, seconds: float, until: Callable[[], bool] | None = None) -> bool:
        """Process callbacks for `seconds` or until `until()` is true (then True); checks the children."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.05)
            if until is not None and until():
                return True
            self.check_children()
        return False

    def call(self, srv_type, name: str, request, timeout: float, what: str):
        """Call a service of the graph, waiting at most `timeout` seconds in all."""
        client = self.node.create_client(srv_type, name)
        try:
            end = time.monotonic() + timeout
            while not client.service_is_ready():
                if time.monotonic() > end:
                    raise DemoError(f"{what}: service {name} did not appear within {timeout:.0f} s")
                self.spin_for(0.1)
            future = client.call_async(request)
            if not self.spin_for(max(0.1, end - time.monotonic()), until=future.done):
                raise DemoError(f"{what}: no reply from {name} within {timeout:.0f} s")
            return future.result()
        finally:
            self.node.destroy_client(client)

    def wait_active(self, timeout: float) -> float:
        """Wait until the node's lifecycle state is active; returns the seconds waited."""
        from lifecycle_msgs.msg import State
        from lifecycle_msgs.srv import GetState

        t0 = time.monotonic()
        end = t0 + timeout
        state = None
        while time.monotonic() < end:
            reply = self.call(GetState, f"/{NODE_NAME}/get_state", GetState.Request(),
                              max(1.0, end - time.monotonic()), "waiting for ego_node")
            state = reply.current_state
            if state.id == State.PRIMARY_STATE_ACTIVE:
                return time.monotonic() - t0
            if state.id == State.PRIMARY_STATE_UNCONFIGURED and self.node_params.get("autostart"):
                # With autostart the node answers only after its configure transition: it failed.
                raise DemoError(f"ego_node failed to configure (model {self.node_params.get('model')!r}); "
                                f"last lines of its log:\n{self.children[-1].tail()}")
            self.spin_for(0.5)
        label = state.label if state is not None else "unknown"
        raise DemoError(f"ego_node did not become active within {timeout:.0f} s (state: {label}); "
                        f"last lines of its log:\n{self.children[-1].tail() if self.children else ''}")

    def wait_for_camera(self, timeout: float) -> None:
        if not self.spin_for(timeout, until=lambda: len(self.truth) > 0):
            raise DemoError(f"no frames from synthetic_camera within {timeout:.0f} s (ground_truth topic silent)")

    def introduce(self, name: str, images: Sequence[np.ndarray], timeout: float, notes: str = "",
                  replace: bool = True):
        """Introduce `name` from RGB `images` through ``~/introduce_concept``; returns the ConceptDescription."""
        from sensor_msgs.msg import Image

        from ego_msgs.srv import IntroduceConcept

        from .image_conversion import rgb_to_image_fields

        req = IntroduceConcept.Request(name=name, notes=notes, replace=replace,
                                       images=[Image(**rgb_to_image_fields(im)) for im in images])
        reply = self.call(IntroduceConcept, f"/{NODE_NAME}/introduce_concept", req, timeout,
                          f"introducing {name!r}")
        if not reply.success:
            raise DemoError(f"ego_node refused to introduce {name!r}: {reply.message}")
        return reply.concept

    def ask(self, question: str, timeout: float, max_new_tokens: int = 0):
        from ego_msgs.srv import Ask

        reply = self.call(Ask, f"/{NODE_NAME}/ask", Ask.Request(question=question, max_new_tokens=max_new_tokens),
                          timeout, "asking the standing question")
        if not reply.success:
            raise DemoError(f"ego_node could not answer {question!r}: {reply.message}")
        return reply.answer

    def locate(self, name: str, timeout: float):
        """Where is `name` on the latest camera frame (``~/locate``); returns the reply."""
        from ego_msgs.srv import Locate

        reply = self.call(Locate, f"/{NODE_NAME}/locate", Locate.Request(name=name), timeout, f"locating {name!r}")
        if not reply.success:
            raise DemoError(f"ego_node could not locate {name!r}: {reply.message}")
        return reply

    def truth_for(self, key: tuple[int, int]):
        return self.truth.get(key)


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
