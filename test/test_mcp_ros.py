"""`ego-ros mcp` in ROS mode: the SDK's stdio client drives the MCP server, which is a client of real
`ego_node` processes (toy model) on a private ROS domain.

Two nodes serve the module: `robot`, watching the synthetic camera (small frames, a few per second),
and `idle`, active but with no camera at all (for "no camera" and, deactivated for one test, "node
inactive"). A third MCP server points at a node that does not exist. Tests use their own concept names.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mcp_env import McpClient, image_from_content, mcp_client, png_base64, server_env, text
from ros_env import (
    ServiceCaller,
    ego_node_command,
    next_domain,
    random_rgb,
    ros_client,
    ros_env,
    ros_param_args,
    spin_until,
    start_process,
    stop_process,
    unique_namespace,
)

pytestmark = [pytest.mark.ros, pytest.mark.slow]

TIMEOUT = 90.0  # bound on waiting for processes to come up; never a timing assertion
CAMERA = {"width": 96, "height": 96, "fps": 4.0}


@dataclass
class Graph:
    domain: int
    env: dict[str, str]
    robot: str  # fully qualified node names
    idle: str
    call: ServiceCaller
    executor: object
    tmp: Path


def _node_params(store: Path) -> dict:
    return {"model": "toy", "autostart": True, "memory_dir": str(store), "max_rate": 2.0, "max_new_tokens": 8}


@pytest.fixture(scope="module")
def graph(tmp_path_factory) -> Iterator[Graph]:
    from ego_msgs.srv import ListConcepts

    tmp = tmp_path_factory.mktemp("mcp_ros")
    domain = next_domain()
    env = ros_env(domain, tmp / "log")
    robot_ns, idle_ns = unique_namespace("mcp_robot"), unique_namespace("mcp_idle")
    camera = [sys.executable, "-m", "ego_ros.ros.synthetic_camera", "--ros-args", *ros_param_args(CAMERA),
              "-r", f"__ns:={robot_ns}"]
    procs = [start_process(camera, env, tmp / "camera.log"),
             start_process(ego_node_command(_node_params(tmp / "robot_store"), robot_ns), env, tmp / "robot.log"),
             start_process(ego_node_command(_node_params(tmp / "idle_store"), idle_ns), env, tmp / "idle.log")]
    try:
        with ros_client(domain, "mcp_ros_test", tmp / "log") as (node, executor):
            call = ServiceCaller(node, executor, TIMEOUT)
            for ns in (robot_ns, idle_ns):
                try:  # autostart activates before the node spins: an answer means it is active
                    assert call(ListConcepts, f"{ns}/ego_node/list_concepts").success
                except TimeoutError:
                    logs = "\n".join(p.read_text(errors="replace")[-2000:] for p in tmp.glob("*.log"))
                    pytest.fail(f"ego_node {ns} did not come up; logs:\n{logs}")
            yield Graph(domain, {**env, **server_env()}, f"{robot_ns}/ego_node", f"{idle_ns}/ego_node", call,
                        executor, tmp)
    finally:
        for proc in procs:
            stop_process(proc)


def _discovered(client: McpClient) -> McpClient:
    """`client` once its server has discovered the node's services (DDS discovery takes a moment, more
    on a busy machine); the tests' short connect timeouts are for the failures they provoke."""
    deadline = time.monotonic() + TIMEOUT
    while client.call("list_concepts").is_error:
        if time.monotonic() > deadline:
            pytest.fail(f"the MCP server never reached its node; its log:\n{client.log()}")
        time.sleep(0.5)
    return client


@pytest.fixture(scope="module")
def robot(graph) -> Iterator[McpClient]:
    with mcp_client(["--node", graph.robot, "--timeout", "60"], graph.env, graph.tmp / "mcp_robot.log") as client:
        yield _discovered(client)


@pytest.fixture(scope="module")
def idle(graph) -> Iterator[McpClient]:
    with mcp_client(["--node", graph.idle, "--timeout", "5", "--connect-timeout", "2"], graph.env,
                    graph.tmp / "mcp_idle.log") as client:
        yield _discovered(client)


def _names(client: McpClient) -> list[str]:
    return [c["name"] for c in client.ok("list_concepts")["concepts"]]


def test_ros_mode_serves_what_do_you_see_on_the_camera_stream_only(robot):
    tools = robot.tools()
    assert {"list_concepts", "introduce_concept", "forget_concept", "rename_concept", "what_do_you_see", "locate",
            "ask", "caption", "latest_frame"} == set(tools)
    assert set(tools["what_do_you_see"].input_schema["properties"]) == {"concepts"}


def test_introduce_from_camera_frames_reports_each_frame_as_progress(robot):
    robot.progress.clear()
    out = robot.ok("introduce_concept", {"name": "cam_mug", "frames": 2, "min_interval_s": 0.2})
    assert out["introduced"]["name"] == "cam_mug" and out["introduced"]["views"] == 2
    assert out["source"] == "2 camera frame(s)"
    assert [(p, t) for p, t, _ in robot.progress] == [(0, 2), (1, 2), (2, 2)]
    assert "cam_mug" in _names(robot)


def test_what_do_you_see_reports_the_nodes_latest_recognitions(robot):
    robot.ok("introduce_concept", {"name": "seen_cam", "frames": 1})
    deadline = time.monotonic() + TIMEOUT
    while True:  # the node scores a new concept from its next processed frame on
        out = robot.ok("what_do_you_see")
        if any(s["name"] == "seen_cam" for s in out["scores"]) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    scores = {s["name"]: s for s in out["scores"]}
    assert "seen_cam" in scores, out
    assert all(0.0 <= s["probability"] <= 1.0 for s in scores.values())
    assert out["present"] == [s["name"] for s in out["scores"] if s["present"]]
    assert out["frame"]["frame_id"] == "camera" and out["frame"]["stamp"] > 0
    only = robot.ok("what_do_you_see", {"concepts": ["seen_cam"]})
    assert [s["name"] for s in only["scores"]] in (["seen_cam"], [])


def test_ask_and_caption_use_the_camera_frame_or_a_given_image(robot):
    asked = robot.ok("ask", {"question": "What is in the image?", "max_new_tokens": 4})
    assert asked["frame"]["source"] == "camera" and asked["frame"]["frame_id"] == "camera"
    assert isinstance(asked["answer"], str)
    given = robot.ok("caption", {"image_base64": png_base64(random_rgb(5, 64, 64)), "max_new_tokens": 4})
    assert given["frame"]["source"] == "given image" and isinstance(given["caption"], str)


def test_locate_answers_from_the_nodes_locate_service_on_the_camera_frame_or_a_given_image(robot):
    robot.ok("introduce_concept", {"name": "where_cam", "frames": 1})
    out = robot.ok("locate", {"name": "where_cam"})
    assert out["name"] == "where_cam" and isinstance(out["found"], bool) and 0.0 <= out["probability"] <= 1.0
    box, point = out["box"], out["point"]
    assert 0 <= box["x_min"] < box["x_max"] <= CAMERA["width"] and 0 <= box["y_min"] < box["y_max"] <= CAMERA["height"]
    assert box["x_min"] <= point["x"] <= box["x_max"] and box["y_min"] <= point["y"] <= box["y_max"]
    assert out["frame"]["source"] == "camera" and out["frame"]["frame_id"] == "camera" and "image" not in out
    given = robot.ok("locate", {"name": "where_cam", "image_base64": png_base64(random_rgb(6, 48, 80))})
    assert given["frame"]["source"] == "given image" and given["image"] == {"width": 80, "height": 48}
    assert given["box"]["x_max"] <= 80 and given["box"]["y_max"] <= 48


def test_latest_frame_is_the_camera_image_downscaled(robot):
    result = robot.call("latest_frame", {"max_side": 48})
    assert not result.is_error, result.content
    assert image_from_content(result).size == (48, 48)  # the camera's 96x96 frames, halved


def test_introduce_from_a_given_file_then_rename_then_forget(robot, tmp_path):
    from PIL import Image

    path = tmp_path / "ref.png"
    Image.fromarray(random_rgb(11, 64, 64)).save(path)
    robot.progress.clear()
    out = robot.ok("introduce_concept", {"name": "file_mug", "image_paths": [str(path)], "notes": "from a file"})
    assert out["introduced"]["views"] == 1 and out["introduced"]["notes"] == "from a file"
    assert robot.progress[-1][:2] == (1, 1)
    renamed = robot.ok("rename_concept", {"old_name": "file_mug", "new_name": "file_cup"})
    assert renamed["concept"]["name"] == "file_cup"
    assert robot.ok("forget_concept", {"name": "file_cup"}) == {"forgotten": "file_cup"}
    names = _names(robot)
    assert "file_mug" not in names and "file_cup" not in names


@pytest.mark.parametrize(("tool", "arguments", "message"), [
    ("forget_concept", {"name": "nobody"}, "unknown concept 'nobody'"),
    ("rename_concept", {"old_name": "nobody", "new_name": "x"}, "unknown concept 'nobody'"),
    ("ask", {"question": "Where is nobody?", "concepts": ["nobody"]}, "unknown concept 'nobody'"),
    ("what_do_you_see", {"concepts": ["nobody"]}, "unknown concept(s) 'nobody'"),
    ("introduce_concept", {"name": "", "frames": 1}, "concept name is empty"),
    ("introduce_concept", {"name": "", "images_base64": [png_base64(random_rgb(1))]}, "concept name is empty"),
    ("ask", {"question": ""}, "question is empty"),
    ("locate", {"name": "nobody"}, "unknown concept 'nobody'"),
])
def test_bad_input_gets_the_nodes_clear_message(robot, tool, arguments, message):
    error = robot.error(tool, arguments)
    assert message in error and "Traceback" not in error


def test_without_a_camera_the_node_says_no_frame_yet(idle):
    assert "no camera frame received yet" in idle.error("ask", {"question": "What is here?"})
    assert "no recognitions" in idle.error("what_do_you_see")
    assert "no camera frame on" in idle.error("latest_frame")
    # the action waits for frames that never come: bounded by the server's timeout, and cancelled
    error = idle.error("introduce_concept", {"name": "never", "frames": 1}, timeout=60)
    assert "did not finish" in error and "nothing publishes" in error and "nothing was stored" in error
    assert "never" not in _names(idle)


def test_a_second_introduction_while_one_runs_is_refused_as_busy(idle):
    waiting = idle.start("introduce_concept", {"name": "waits", "frames": 1}, timeout=60)  # no camera: it waits
    probe = {"name": "probe", "images_base64": [png_base64(random_rgb(4))]}
    error = None
    while not waiting.done():  # until the node has taken the first goal, the probe may get through
        result = idle.call("introduce_concept", probe)
        if result.is_error:
            error = text(result)
            break
        idle.ok("forget_concept", {"name": "probe"})
        time.sleep(0.2)
    assert error is not None and "busy" in error and "'waits' is being introduced" in error, error
    assert waiting.result(60).is_error  # the camera introduction times out, cancelled: nothing stored
    assert "waits" not in _names(idle) and "probe" not in _names(idle)


def test_an_inactive_node_says_so(graph, idle):
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState

    def change(transition: int) -> None:
        request = ChangeState.Request(transition=Transition(id=transition))
        assert graph.call(ChangeState, f"{graph.idle}/change_state", request).success

    change(Transition.TRANSITION_DEACTIVATE)
    try:
        assert "inactive" in idle.error("introduce_concept", {"name": "asleep", "frames": 1})
        assert "the node is inactive" in idle.error("ask", {"question": "What is here?"})
        assert "is inactive" in idle.error("what_do_you_see")
        change(Transition.TRANSITION_CLEANUP)
        assert "not configured" in idle.error("list_concepts")
        assert "not configured" in idle.error("introduce_concept", {"name": "x", "images_base64": [
            png_base64(random_rgb(2))]})
    finally:
        # back to active for any later test; spin so the node's answers are not stuck in this test's queue
        spin_until(graph.executor, lambda: True, 0.1)
        for transition in (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE):
            try:
                change(transition)
            except AssertionError:
                pass  # already in that state


def test_a_node_that_is_not_running_is_not_available(graph, tmp_path):
    missing = f"{unique_namespace('absent')}/ego_node"
    with mcp_client(["--node", missing, "--connect-timeout", "1"], graph.env, tmp_path / "mcp.log") as client:
        for tool, arguments in [("list_concepts", {}), ("forget_concept", {"name": "x"}),
                                ("ask", {"question": "hi"}), ("what_do_you_see", {}),
                                ("introduce_concept", {"name": "x", "frames": 1})]:
            error = client.error(tool, arguments, timeout=30)
            assert f"node {missing} not available" in error, (tool, error)
