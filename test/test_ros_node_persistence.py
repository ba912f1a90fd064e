"""Concepts persist across node restarts; the concepts file is introduced once; a corrupt store file is reported.

The module runs one story with three node processes on the same store directory and concepts file:
  A  starts, introduces the concepts file, learns one more concept by service, is stopped with SIGTERM;
  B  restarts on the same store (the concepts file's concepts are already stored: skipped);
  then one concept file of the store is damaged on disk, and
  C  restarts: the damaged concept is reported and left alone, the others load.
The tests below each check one observation of that story.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest
from ros_env import (
    ServiceCaller,
    ego_node_command,
    fastdds_segments,
    next_domain,
    random_rgb,
    raw_image,
    ros_client,
    ros_env,
    start_process,
    stop_process,
    unique_namespace,
)

from ego_msgs.srv import IntroduceConcept, ListConcepts

pytestmark = [pytest.mark.ros, pytest.mark.slow]

TIMEOUT = 60.0  # bound on every wait (covers model loading); never a timing assertion
NS = unique_namespace("persistence")
NODE = f"{NS}/ego_node"
CONCEPTS_YAML = """\
mug:
  images: [refs/mug_front.png, refs/mug_side.png]
  notes: the blue mug
kona: refs/kona.png
ghost: refs/missing.png
"""


def _write_concepts_file(folder: Path) -> Path:
    (folder / "refs").mkdir(parents=True)
    for i, name in enumerate(("mug_front", "mug_side", "kona")):
        cv2.imwrite(str(folder / "refs" / f"{name}.png"), random_rgb(100 + i))
    path = folder / "concepts.yaml"
    path.write_text(CONCEPTS_YAML)
    return path


def _run_node(tmp: Path, label: str, params: dict, then=None) -> dict:
    """Start a node, list its concepts (and run `then(call)`), stop it with SIGTERM; return what was seen."""
    domain = next_domain()
    log = tmp / f"node_{label}.log"
    proc = start_process(ego_node_command(params, NS), ros_env(domain, tmp / "log"), log)
    seen: dict = {}
    try:
        with ros_client(domain, f"persistence_{label}", tmp / "log") as (node, executor):
            call = ServiceCaller(node, executor, TIMEOUT)
            try:
                seen["list"] = call(ListConcepts, f"{NODE}/list_concepts")
            except TimeoutError:
                pytest.fail(f"node {label} did not come up; its log:\n{log.read_text(errors='replace')[-3000:]}")
            if then is not None:
                seen["then"] = then(call)
    finally:
        seen["shm"] = fastdds_segments(proc.pid)
        seen["exit_code"] = stop_process(proc)
    seen["log"] = log.read_text(errors="replace")
    return seen


@pytest.fixture(scope="module")
def story(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("ego_persistence")
    store = tmp / "store"
    # The node runs in another working directory than the file: relative image paths must follow the file.
    params = {"model": "random:llava", "autostart": True, "memory_dir": str(store),
              "concepts_file": str(_write_concepts_file(tmp / "config")), "max_new_tokens": 4}

    def introduce_one_more(call):
        request = IntroduceConcept.Request(name="via_service", images=[raw_image(7)])
        return call(IntroduceConcept, f"{NODE}/introduce_concept", request)

    a = _run_node(tmp, "a", params, then=introduce_one_more)
    b = _run_node(tmp, "b", params)
    index = json.loads((store / "store.json").read_text())
    damaged = store / "concepts" / index["concepts"]["via_service"]["file"]
    damaged.write_bytes(damaged.read_bytes()[:-7] + b"garbage")
    damaged_bytes = damaged.read_bytes()
    c = _run_node(tmp, "c", params)
    return {"a": a, "b": b, "c": c, "damaged": damaged, "damaged_bytes": damaged_bytes}


def _concepts(seen: dict) -> dict:
    assert seen["list"].success, seen["list"].message
    return {c.name: c for c in seen["list"].concepts}


def test_concepts_file_is_introduced_at_configure(story):
    concepts = _concepts(story["a"])
    assert concepts["mug"].views == 2 and concepts["mug"].notes == "the blue mug"
    assert concepts["kona"].views == 1


def test_concepts_file_entry_with_a_missing_image_is_skipped_and_reported(story):
    assert "ghost" not in _concepts(story["a"])
    message = story["a"]["list"].message
    assert "'ghost' skipped" in message and "file not found" in message


def test_sigterm_stops_the_node_with_exit_code_zero(story):
    assert story["a"]["exit_code"] == 0


def test_sigterm_leaves_none_of_the_nodes_shared_memory_behind(story):
    # Fast DDS unlinks a participant's /dev/shm segments (32 MiB with the large-image profile) only when it
    # is deleted; a node that skipped that leaked them at every stop until the machine ran out of memory.
    if not Path("/proc/self/maps").is_file():
        pytest.skip("no /proc: the node's mapped segments cannot be listed")
    mapped = story["a"]["shm"]
    assert mapped, "the running node mapped no shared-memory segment"
    assert [p for p in sorted(mapped) if Path(p).exists()] == []


def test_concepts_persist_across_a_restart(story):
    assert story["a"]["then"].success, story["a"]["then"].message
    before = _concepts(story["a"])
    before["via_service"] = story["a"]["then"].concept
    after = _concepts(story["b"])
    assert set(after) == set(before)
    for name, concept in after.items():
        assert (concept.tokens, list(concept.keywords)) == (before[name].tokens, list(before[name].keywords))


def test_stored_concepts_of_the_concepts_file_are_skipped_on_restart(story):
    before, after = _concepts(story["a"]), _concepts(story["b"])
    for name in ("mug", "kona"):
        assert after[name].created == before[name].created  # the same memory, not introduced again
        assert f"'{name}' is already in the store; skipped" in story["b"]["log"]


def test_corrupt_concept_file_is_reported_and_the_others_load(story):
    concepts = _concepts(story["c"])
    assert set(concepts) == {"mug", "kona"}
    message = story["c"]["list"].message
    assert "'via_service' is unavailable" in message and "checksum" in message
    assert "via_service" in story["c"]["log"]


def test_corrupt_concept_file_is_left_untouched(story):
    assert story["damaged"].read_bytes() == story["damaged_bytes"]
