"""Helpers of the reliability tests of the node (test_reliability_ros*.py): one real ego_node process
on the embedded toy model, driven from this process, with its log at hand for the failure messages."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState
from ros_env import (
    FakeCamera,
    ServiceCaller,
    ego_node_command,
    header_key,
    next_domain,
    raw_image,
    ros_client,
    ros_env,
    spin_until,
    start_process,
    stop_process,
    unique_namespace,
)

from ego_msgs.msg import Recognitions
from ego_msgs.srv import Ask, IntroduceConcept, ListConcepts

TIMEOUT = 60.0  # bound on every wait (covers model loading on a busy machine); never a timing assertion


@dataclass
class RunningNode:
    """One ego_node process and a client node in this process on its private domain."""

    ns: str
    node: object
    executor: object
    call: ServiceCaller
    proc: object
    log: Path
    store: Path

    @property
    def name(self) -> str:
        return f"{self.ns}/ego_node"

    def srv(self, service: str) -> str:
        return f"{self.name}/{service}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def log_tail(self) -> str:
        return self.log_text()[-4000:] or "(no log)"

    def wait(self, predicate, what: str, timeout: float = TIMEOUT) -> None:
        if not spin_until(self.executor, predicate, timeout):
            pytest.fail(f"timed out after {timeout} s waiting for {what}; node log:\n{self.log_tail()}")

    def introduce(self, name: str, seeds: tuple[int, ...] = (1,)) -> IntroduceConcept.Response:
        request = IntroduceConcept.Request(name=name, images=[raw_image(s) for s in seeds])
        return self.call(IntroduceConcept, self.srv("introduce_concept"), request, timeout=TIMEOUT)

    def names(self) -> list[str]:
        response = self.call(ListConcepts, self.srv("list_concepts"))
        assert response.success, response.message
        return [c.name for c in response.concepts]

    def transition(self, label: str) -> bool:
        request = ChangeState.Request(transition=Transition(label=label))
        return self.call(ChangeState, self.srv("change_state"), request, timeout=TIMEOUT).success

    def ask_async(self, question: str = "What is in the picture?", max_new_tokens: int = 4096, seed: int = 3):
        """Send an ask request and return its future without waiting for the answer."""
        client = self.node.create_client(Ask, self.srv("ask"))
        assert client.wait_for_service(timeout_sec=TIMEOUT)
        request = Ask.Request(question=question, image=raw_image(seed), max_new_tokens=max_new_tokens)
        return client.call_async(request)

    def diagnostics(self) -> list:
        """A list that collects this node's /diagnostics statuses from now on."""
        statuses: list = []

        def keep(msg: DiagnosticArray) -> None:
            statuses.extend(s for s in msg.status if s.name == f"{self.name}: ego")

        self.node.create_subscription(DiagnosticArray, "/diagnostics", keep, 10)
        return statuses

    def assert_recognises(self, concept: str) -> None:
        """Camera frames in, recognitions that score `concept` out: the stream still works."""
        got: list[Recognitions] = []
        self.node.create_subscription(Recognitions, f"{self.name}/recognitions", got.append, 10)
        camera = FakeCamera(self.node, f"{self.ns}/image")
        try:
            self.wait(lambda: any(header_key(r.header) in camera.headers and concept in r.names for r in got),
                      f"a recognition of {concept!r} in a camera frame")
        finally:
            camera.close()

    def signal_and_wait(self, sig: signal.Signals, timeout: float = 30.0) -> float:
        """Send `sig` to the node process; seconds until it exited (the test fails if it did not)."""
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except Exception:  # noqa: BLE001 - subprocess.TimeoutExpired; reported with the log below
            pytest.fail(f"the node did not exit within {timeout} s of {sig.name}; log:\n{self.log_tail()}")
        return time.monotonic() - t0


@contextmanager
def running_node(tmp: Path, label: str, params: dict | None = None, wait_ready: bool = True,
                 store: Path | None = None) -> Iterator[RunningNode]:
    """Start ego_node (toy model, autostart, its own store and namespace unless given) and a client."""
    ns = unique_namespace(f"rel_{label}")
    store = store or tmp / f"store_{label}"
    full = {"model": "toy", "autostart": True, "memory_dir": str(store), "max_rate": 5.0, **(params or {})}
    domain = next_domain()
    log = tmp / f"node_{label}.log"
    proc = start_process(ego_node_command(full, ns), ros_env(domain, tmp / "log"), log)
    try:
        with ros_client(domain, f"rel_client_{label}", tmp / "log") as (node, executor):
            running = RunningNode(ns, node, executor, ServiceCaller(node, executor, TIMEOUT), proc, log, store)
            if wait_ready:
                try:
                    assert running.call(ListConcepts, running.srv("list_concepts")).success, running.log_tail()
                except TimeoutError:
                    pytest.fail(f"the node did not come up; its log:\n{running.log_tail()}")
            yield running
    finally:
        stop_process(proc)


def last_status(statuses: list, predicate=lambda s: True):
    """The newest status that satisfies `predicate`, or None."""
    for status in reversed(statuses):
        if predicate(status):
            return status
    return None
