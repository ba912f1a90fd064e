"""The node's concept store under crashes, a second writer and lost files (issue 12, defects 3 and 4).

  * kill -9 of the node while an introduce, rename or remove is in flight, at two random delays after the
    request was sent, then a restart on the same store: every acknowledged change is there, the
    in-flight one happened entirely or not at all, no concept is unavailable, and no temporary or
    unreferenced file is left in the store (the next writer cleans them at open).
  * A second node on the same memory_dir fails its configure with the holder's pid in the message
    (one log line, no traceback) and reports ERROR on /diagnostics; the first keeps working.
  * A concept whose file is missing or damaged stays in the store as unavailable (listed by
    list_concepts' message, WARN on /diagnostics) across later writes, is back when its file is, and
    can be removed meanwhile.

Real ego_node processes on the embedded toy model, one after another on one store directory.
"""

from __future__ import annotations

import json
import random
import shutil
import signal
from pathlib import Path

import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from ros_reliability import TIMEOUT, RunningNode, last_status, running_node

from ego_msgs.srv import IntroduceConcept, ListConcepts, RemoveConcept, RenameConcept

pytestmark = [pytest.mark.ros, pytest.mark.slow]

INDEX = "store.json"


def _index(store: Path) -> dict:
    return json.loads((store / INDEX).read_text())["concepts"]


def _assert_store_whole(store: Path) -> None:
    """Nothing half-written: no temporary file anywhere, every concept file named by the index and every
    index entry's file present."""
    index = _index(store)
    leftovers = [p.name for p in store.rglob("*.tmp")]
    assert not leftovers, f"temporary files left behind: {leftovers}"
    files = {p.name for p in (store / "concepts").glob("*")}
    referenced = {entry["file"] for entry in index.values()}
    assert files == referenced, f"files {sorted(files)} but the index names {sorted(referenced)}"


def _send(node: RunningNode, srv_type, service: str, request):
    client = node.node.create_client(srv_type, node.srv(service))
    assert client.wait_for_service(timeout_sec=TIMEOUT)
    return client.call_async(request)


def _kill_during(node: RunningNode, op: str, delay: float):
    """Send one change request, spin up to `delay` seconds, kill -9 the node; returns the request's future."""
    from ros_env import raw_image

    if op == "introduce":
        future = _send(node, IntroduceConcept, "introduce_concept",
                       IntroduceConcept.Request(name="inflight", images=[raw_image(11), raw_image(12)]))
    elif op == "rename":
        future = _send(node, RenameConcept, "rename_concept", RenameConcept.Request(old_name="b", new_name="b2"))
    else:
        future = _send(node, RemoveConcept, "remove_concept", RemoveConcept.Request(name="a"))
    if delay > 0:
        node.executor.spin_until_future_complete(future, timeout_sec=delay)
    node.proc.send_signal(signal.SIGKILL)
    node.proc.wait(TIMEOUT)
    return future


def _check_after_kill(names: set[str], future, op: str, acknowledged: set[str]) -> set[str]:
    """The concepts a restarted node lists, against what was acknowledged before the kill; returns the
    set the next trial may rely on."""
    done = future.done() and future.result() is not None and future.result().success
    if op == "introduce":
        expected_any = [acknowledged | {"inflight"}] if done else [acknowledged, acknowledged | {"inflight"}]
    elif op == "rename":
        renamed = (acknowledged - {"b"}) | {"b2"}
        expected_any = [renamed] if done else [acknowledged, renamed]
    else:
        removed = acknowledged - {"a"}
        expected_any = [removed] if done else [acknowledged, removed]
    acceptable = [sorted(s) for s in expected_any]
    assert names in expected_any, f"{op}: store holds {sorted(names)}; acceptable: {acceptable}"
    return names


def test_kill_9_during_introduce_rename_and_remove_never_loses_an_acknowledged_concept(tmp_path):
    rng = random.Random(0)
    store = tmp_path / "store"
    trials = [(op, delay) for op in ("introduce", "rename", "remove")
              for delay in (rng.uniform(0.0, 0.05), rng.uniform(0.05, 0.4))]
    previous = None  # (future, op, acknowledged) of the trial before, checked by the next node
    for i in range(len(trials) + 1):
        with running_node(tmp_path, f"kill{i}", store=store) as node:
            listed = set(node.names())
            if previous is not None:
                _assert_store_whole(store)
                _check_after_kill(listed, *previous)
                message = node.call(ListConcepts, node.srv("list_concepts")).message
                assert message == "", f"after kill -9 during {previous[1]}: {message}"
            if i == len(trials):
                break
            # the state every trial starts from: a and b stored, inflight and b2 not
            for name in ("inflight", "b2"):
                if name in listed:
                    request = RemoveConcept.Request(name=name)
                    assert node.call(RemoveConcept, node.srv("remove_concept"), request).success
            for name, image_seed in (("a", 1), ("b", 2)):
                if name not in listed:
                    assert node.introduce(name, (image_seed,)).success
            acknowledged = set(node.names())
            op, delay = trials[i]
            previous = (_kill_during(node, op, delay), op, acknowledged)


# ----------------------------------------------------------------------------------------- two writers
def test_a_second_node_on_the_same_memory_dir_fails_configure_naming_the_holder(tmp_path):
    store = tmp_path / "shared"
    with running_node(tmp_path, "first", store=store) as first:
        assert first.introduce("mine").success
        with running_node(tmp_path, "second", store=store, wait_ready=False) as second:
            statuses = second.diagnostics()
            second.wait(lambda: last_status(statuses) is not None, "diagnostics of the second node")
            status = last_status(statuses)
            log = second.log_text()
            listed = second.call(ListConcepts, second.srv("list_concepts"))
        holder = (store / ".lock").read_text().split()[0]
        assert status.level == DiagnosticStatus.ERROR
        assert "configure failed" in status.message and holder in status.message
        assert not listed.success  # unconfigured
        assert "Traceback" not in log
        assert sum("configure failed" in line for line in log.splitlines()) == 1
        assert holder in log
        assert first.introduce("still_mine").success  # the holder is unaffected
        assert {"mine", "still_mine"} <= set(first.names())


# ----------------------------------------------------------------------------- missing and damaged files
def test_missing_and_damaged_concept_files_stay_listed_through_writes_and_come_back(tmp_path):
    store = tmp_path / "store"
    with running_node(tmp_path, "teach", store=store) as node:
        for i, name in enumerate(("lost", "broken", "fine", "gone")):
            assert node.introduce(name, (20 + i,)).success
    index = _index(store)
    lost_file = store / "concepts" / index["lost"]["file"]
    broken_file = store / "concepts" / index["broken"]["file"]
    shutil.move(lost_file, tmp_path / "lost.bak")
    shutil.copy(broken_file, tmp_path / "broken.bak")
    broken_file.write_bytes(broken_file.read_bytes()[:100])  # truncated: checksum and format fail
    (store / "concepts" / index["gone"]["file"]).unlink()  # lost for good: removed below

    with running_node(tmp_path, "damaged", store=store) as node:
        statuses = node.diagnostics()
        node.wait(lambda: last_status(statuses) is not None, "diagnostics")
        status = last_status(statuses)
        listed = node.call(ListConcepts, node.srv("list_concepts"))
        # writes while two concepts are unavailable must not drop them from the index (defect 4)
        assert node.introduce("new_one", (30,)).success
        renamed = node.call(RenameConcept, node.srv("rename_concept"),
                            RenameConcept.Request(old_name="fine", new_name="fine2"))
        assert renamed.success, renamed.message
        removed = node.call(RemoveConcept, node.srv("remove_concept"), RemoveConcept.Request(name="gone"))
        assert removed.success, removed.message  # an unavailable concept can be removed
    assert status.level == DiagnosticStatus.WARN
    assert "'lost'" in status.message and "'broken'" in status.message
    assert listed.success and "'lost'" in listed.message and "'broken'" in listed.message
    assert {c.name for c in listed.concepts} == {"fine"}
    assert {"lost", "broken"} <= set(_index(store)) and "gone" not in _index(store)

    shutil.move(tmp_path / "lost.bak", lost_file)
    shutil.copy(tmp_path / "broken.bak", broken_file)
    with running_node(tmp_path, "restored", store=store) as node:
        statuses = node.diagnostics()
        node.wait(lambda: last_status(statuses) is not None, "diagnostics")
        status = last_status(statuses)
        names = set(node.names())
        listed = node.call(ListConcepts, node.srv("list_concepts"))
    assert names == {"lost", "broken", "fine2", "new_one"}
    assert listed.message == ""
    assert "unavailable" not in status.message
