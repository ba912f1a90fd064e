"""`ego-ros demo`: its concept files, its parameter passing and the whole run on a private ROS domain."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ego_ros.ros import demo

REPO = Path(__file__).resolve().parents[1]


def test_committed_demo_concepts_are_what_the_documented_command_writes(tmp_path):
    written = demo.write_demo_concepts(tmp_path)
    assert written.read_text() == (REPO / "config" / "demo_concepts.yaml").read_text()
    for png in sorted((tmp_path / "demo_concepts").iterdir()):
        assert png.read_bytes() == (REPO / "config" / "demo_concepts" / png.name).read_bytes()


def test_demo_concepts_file_reads_with_the_nodes_parser():
    from ego_ros.ros.concepts_file import load_concepts_file

    (spec,) = load_concepts_file(REPO / "config" / "demo_concepts.yaml")
    assert spec.name == demo.DEMO_NAME
    assert len(spec.images) == demo.DEMO_VIEWS and all(p.is_file() for p in spec.images)


def test_reference_views_show_the_demo_instance_which_the_toy_model_never_trained_on():
    from ego_ros.toy import world

    instance = world.Instance.from_key(demo.DEMO_INSTANCE)
    assert instance.is_held_out
    views = demo.reference_views()
    assert len(views) == demo.DEMO_VIEWS and views[0].shape == (demo.DEMO_VIEW_SIZE, demo.DEMO_VIEW_SIZE, 3)


# ------------------------------------------------------------------------------ the camera's scenario
def test_the_demo_look_alike_in_world_v1_is_kona_with_a_black_mark_in_the_same_place():
    kona, twin = demo.demo_instance("v1"), demo.demo_lookalike("v1")
    assert kona.key == demo.DEMO_INSTANCE
    assert twin.differing_attributes(kona) == ("mark",)
    assert (twin.mark_colour, twin.mark_position) == ("black", kona.mark_position)
    assert twin in demo.demo_lookalikes("v1")


def test_the_demo_follows_the_default_world_and_in_v2_shows_a_look_alike_with_another_glyph(monkeypatch):
    from ego_ros.toy import attributes

    monkeypatch.setattr(attributes, "DEFAULT_WORLD", "v2")
    kona, twin = demo.demo_instance(), demo.demo_lookalike()
    assert kona.signature == demo.DEMO_SIGNATURE and kona.category.key == demo.DEMO_INSTANCE
    assert twin.differing_attributes(kona) == ("signature",)
    assert set(demo.demo_lookalikes()) == set(attributes.lookalikes(kona))
    params = demo.demo_camera_params()
    assert (params["include"], params["lookalikes"]) == ([kona.key], [twin.key])


def _demo_frame_kinds(frames: int) -> list[str]:
    from ego_ros.ros.synthetic_camera import ToyCamera

    camera = ToyCamera(**demo.demo_camera_params(0), width=64, height=48, depth=False)
    keys = frozenset(d.key for d in demo.demo_lookalikes())
    kinds = []
    for _ in range(frames):
        truth = [(t.name, t.recognisable, t.visible_fraction) for t in camera.next_frame().truth]
        kinds.append(demo.frame_truth(truth, demo.DEMO_NAME, keys).kind)
    return kinds


@pytest.mark.parametrize("fps", [30, 15])  # the camera's rate, and half of it for a camera that fell behind
def test_every_10_s_window_of_the_demo_camera_shows_kona_no_kona_and_its_look_alike(fps):
    kinds = _demo_frame_kinds(2 * 180 + 300)
    window = 10 * fps
    for start in range(0, len(kinds) - window + 1, 5):
        shown = {k: kinds[start:start + window].count(k) for k in (demo.DEMO_NAME, "absent", "look-alike")}
        assert min(shown.values()) >= fps, (start, shown)  # at least a second of each


def test_frame_truth_tells_kona_partly_visible_from_its_look_alike_and_from_neither():
    keys = frozenset({"red-heart-checkered-black-right"})
    partly = demo.frame_truth([("kona", False, 0.3), ("blue-star-plain-black-top", True, 1.0)], "kona", keys)
    assert (partly.kind, partly.expected) == ("kona", False) and "partly visible (30% visible)" in partly.text
    present = demo.frame_truth([("kona", True, 1.0)], "kona", keys)
    assert (present.kind, present.expected, present.text) == ("kona", True, "truth: kona present (100% visible)")
    double = demo.frame_truth([("kona", False, 0.0), ("red-heart-checkered-black-right", True, 0.9)], "kona", keys)
    assert (double.kind, double.expected) == ("look-alike", False)
    assert double.text == "truth: look-alike red-heart-checkered-black-right (90% visible, kona out of view)"
    neither = demo.frame_truth([("blue-star-plain-black-top", True, 1.0)], "kona", keys)
    assert (neither.kind, neither.expected, neither.text) == ("absent", False, "truth: absent")


def test_node_parameters_on_the_command_line_keep_their_types():
    cmd = demo.python_module_command("m", {"model": "random:llava", "seconds": 1e3, "autostart": True,
                                           "standing_questions": ["What colour is kona?"], "max_rate": 5.0})
    assert cmd[cmd.index("--ros-args") + 1:] == [
        "-p", 'model:="random:llava"', "-p", "seconds:=1000.0", "-p", "autostart:=true",
        "-p", 'standing_questions:=["What colour is kona?"]', "-p", "max_rate:=5.0"]


def test_ros_subcommands_register_without_initialising_rclpy():
    code = ("import sys; from ego_ros.cli import build_parser; p = build_parser(); "
            "p.parse_args(['demo', '--seconds', '1']); p.parse_args(['bag', 'info', 'x']); "
            "print('rclpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------------------------------ full runs
def _processes_with_env(key: str, value: str) -> list[int]:
    """Pids of live processes whose environment holds key=value (to find leftover children)."""
    needle = f"{key}={value}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _demo_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "ego_ros.cli", "demo", *args]


@pytest.mark.ros
@pytest.mark.slow
def test_demo_with_a_random_model_prints_recognitions_and_exits_cleanly(tmp_path):
    log_dir = tmp_path / "logs"
    done = subprocess.run(_demo_command("--model", "random:llava", "--log-dir", str(log_dir)),  # default 10 s
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    recognitions = [line for line in lines if f" {demo.DEMO_NAME} P=" in line and "truth:" in line]
    assert recognitions, done.stdout
    # the printed window holds frames with kona, frames without it and frames with its look-alike
    for truth in (f"truth: {demo.DEMO_NAME} ", "truth: absent", f"truth: look-alike {demo.demo_lookalike().key} "):
        assert any(truth in line for line in recognitions), (truth, done.stdout)
    assert any(" Q: " in line and " A: " in line for line in lines), done.stdout
    summary = re.compile(rf"^summary: .* agreement with the ground truth \d+/\d+ \({demo.DEMO_NAME} \d+/\d+, "
                         r"absent \d+/\d+, look-alike \d+/\d+\);")
    assert any(summary.match(line) for line in lines), done.stdout
    # where kona is on the latest frame: pixel point and 3-D point from the synthetic camera's depth
    where = re.compile(rf"^where is {demo.DEMO_NAME} \(~/locate on the latest frame, .*optical frame 'camera'\): "
                       r".* at \(\d+, \d+\) px, \([+-]\d+\.\d\d, [+-]\d+\.\d\d, \d+\.\d\d\) m")
    assert any(where.match(line) for line in lines), done.stdout
    assert _processes_with_env("ROS_LOG_DIR", str(log_dir / "ros_log")) == []


@pytest.mark.ros
@pytest.mark.slow
def test_demo_reports_a_model_that_cannot_load_and_stops_its_processes(tmp_path):
    log_dir = tmp_path / "logs"
    done = subprocess.run(_demo_command("--model", str(tmp_path / "no_such_model"), "--seconds", "1",
                                        "--log-dir", str(log_dir)),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 1
    assert "ego_node failed to configure" in done.stderr
    assert _processes_with_env("ROS_LOG_DIR", str(log_dir / "ros_log")) == []


@pytest.mark.ros
@pytest.mark.slow
def test_killing_the_demo_also_stops_its_camera_and_node(tmp_path):
    log_dir = tmp_path / "logs"
    proc = subprocess.Popen(_demo_command("--model", "random:llava", "--seconds", "60", "--log-dir", str(log_dir)),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        started = False
        for line in proc.stdout:
            if "started synthetic_camera" in line:
                started = True
                break
        assert started
        deadline = time.monotonic() + 60
        while len(_processes_with_env("ROS_LOG_DIR", str(log_dir / "ros_log"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 30
        while _processes_with_env("ROS_LOG_DIR", str(log_dir / "ros_log")) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _processes_with_env("ROS_LOG_DIR", str(log_dir / "ros_log")) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
