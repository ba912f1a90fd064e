"""/diagnostics tells the truth (issue 12): ERROR while unconfigured after a failed configure, with the
reason; WARN while the camera is silent; OK again once frames arrive. Real ego_node processes on the
toy model. The rules themselves (including the rate rule) are specified in test_reliability_ros_units.py.
"""

from __future__ import annotations

import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from ros_env import FakeCamera
from ros_reliability import last_status, running_node

from ego_msgs.srv import ListConcepts

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def test_unwritable_memory_dir_fails_configure_with_error_diagnostics(tmp_path):
    with running_node(tmp_path, "proc", {"memory_dir": "/proc/ego"}, wait_ready=False) as node:
        statuses = node.diagnostics()
        node.wait(lambda: last_status(statuses) is not None, "diagnostics")
        status = last_status(statuses)
        listed = node.call(ListConcepts, node.srv("list_concepts"))
        log = node.log_text()
    assert status.level == DiagnosticStatus.ERROR
    assert "configure failed" in status.message and "/proc/ego" in status.message
    assert {v.key: v.value for v in status.values}["state"] == "unconfigured"
    assert not listed.success and "not configured" in listed.message
    assert "Traceback" not in log and "FileNotFoundError" not in log


def test_silent_camera_is_warned_about_and_frames_clear_the_warning(tmp_path):
    with running_node(tmp_path, "silent", {"frame_timeout": 1.0}) as node:
        statuses = node.diagnostics()
        node.wait(lambda: last_status(statuses, lambda s: "no camera frame" in s.message) is not None,
                  "a warning about the silent camera")
        warned = last_status(statuses, lambda s: "no camera frame" in s.message)
        camera = FakeCamera(node.node, f"{node.ns}/image")
        try:
            count = len(statuses)
            node.wait(lambda: any(s.level == DiagnosticStatus.OK for s in statuses[count:]),
                      "diagnostics OK once frames arrive")
        finally:
            camera.close()
    assert warned.level == DiagnosticStatus.WARN
    assert "frame_timeout 1 s" in warned.message and f"{node.ns}/image" in warned.message


def test_processing_far_below_max_rate_is_warned_about(tmp_path):
    # Every frame also answers a standing question of 4096 new tokens on random:llava (no end token):
    # seconds per frame against max_rate 5 Hz and a 20 Hz camera.
    params = {"model": "random:llava", "standing_questions": ["Describe it."], "max_new_tokens": 4096}
    with running_node(tmp_path, "slow", params) as node:
        statuses = node.diagnostics()
        camera = FakeCamera(node.node, f"{node.ns}/image")
        try:
            node.wait(lambda: last_status(statuses, lambda s: "processing" in s.message) is not None,
                      "a warning about the processing rate")
        finally:
            camera.close()
        warned = last_status(statuses, lambda s: "processing" in s.message)
    assert warned.level == DiagnosticStatus.WARN
    assert "below 50% of min(max_rate 5 Hz" in warned.message
