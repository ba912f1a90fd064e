"""The demo's ROS graph: the synthetic camera and the Ego node as child processes on a private localhost
domain, and a client node in this process that pairs their topics and calls the node's services.

Apart from the demo's run because the stream, soak and MCP benchmarks (``bench/ros_stream.py``,
``bench/ros_soak.py``, ``bench/mcp_latency.py``) drive the same graph with their own camera and node
parameters. rclpy and the interfaces are imported only when a graph starts.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import EgoError
from .child_processes import Child, find_profile, python_module_command, spawn_child, stop_child

NODE_NAME = "ego_node"
#: Domains the demo picks from: clear of 0 (everyone's default) and of the ids the tests use (50-200).
DEMO_DOMAINS = range(1, 50)


class DemoError(EgoError):
    """The demo could not run (a process died, a timeout passed); the message says what to check."""


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
        self.children.append(spawn_child("synthetic_camera", camera, self.log_dir, self.env))
        node = python_module_command(self.node_module, self.node_params)
        self.children.append(spawn_child(NODE_NAME, node, self.log_dir, self.env))

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
