"""The node under absurd requests, long generations and signals (issue 12, defects 1, 2 and 5).

Each request below once blocked the model thread for minutes or for good, or was decoded before its
size was checked; now each is answered with a clear error within a few seconds, and the node still
recognises concepts in its camera stream afterwards. A long generation no longer keeps the node
from stopping: SIGTERM, SIGINT and deactivate end it within one decode step. Real ego_node
processes on the embedded toy model; the bounds on time are generous (the machine is shared), the
answers the node gives are what is asserted.

Long generations run on random:llava (untrained weights, tiny): the trained toy model ends its answers
within a few hundred tokens, so it cannot hold a generation open, while random weights almost never
emit the end token: 4096 new tokens take 10-15 s there on this machine.
"""

from __future__ import annotations

import io
import signal
import struct
import subprocess
import time
import zlib
from collections.abc import Iterator

import pytest
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from ros_env import ego_node_command, next_domain, raw_image, ros_env
from ros_reliability import TIMEOUT, RunningNode, running_node
from sensor_msgs.msg import CompressedImage

from ego_msgs.srv import Ask, Caption, IntroduceConcept

pytestmark = [pytest.mark.ros, pytest.mark.slow]

#: Longest a refused request may take to be answered (it is refused before it queues: far less).
ANSWER_BOUND_S = 10.0
#: Longest the node may take to exit after a signal during a generation (the brief: "a second or two";
#: measured about a second, see docs/reliability.md; generous here because the CPU is shared).
EXIT_BOUND_S = 5.0


#: A node whose generations run to max_new_tokens (see the module docstring).
LONG = {"model": "random:llava"}


@pytest.fixture(scope="module")
def node(tmp_path_factory) -> Iterator[RunningNode]:
    tmp = tmp_path_factory.mktemp("rel_bounds")
    with running_node(tmp, "bounds") as running:
        assert running.introduce("anchor").success  # every test checks recognition of it afterwards
        yield running


@pytest.fixture(scope="module")
def long_node(tmp_path_factory) -> Iterator[RunningNode]:
    tmp = tmp_path_factory.mktemp("rel_long")
    with running_node(tmp, "long", LONG) as running:
        assert running.introduce("anchor").success
        yield running


def _timed(fn):
    t0 = time.monotonic()
    result = fn()
    return result, time.monotonic() - t0


def _png_declaring(width: int, height: int) -> bytes:
    """A valid 8-bit grey PNG of width x height black pixels: small on the wire (zlib of zeros, built row
    by row), width * height bytes once decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    packer = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte 0, then the row
    body = io.BytesIO()
    for _ in range(height):
        body.write(packer.compress(row))
    body.write(packer.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body.getvalue()) + chunk(b"IEND", b"")


# ------------------------------------------------------------------------------- absurd requests (1, 2, 5)
def test_ask_with_max_new_tokens_4294967295_is_refused_at_once(node):
    request = Ask.Request(question="What is this?", image=raw_image(2), max_new_tokens=4294967295)
    response, seconds = _timed(lambda: node.call(Ask, node.srv("ask"), request, timeout=ANSWER_BOUND_S))
    assert not response.success
    assert "max_new_tokens" in response.message and "1..4096" in response.message
    assert "internal error" not in response.message
    print(f"max_new_tokens 4294967295 refused after {seconds * 1e3:.0f} ms (round trip)")
    node.assert_recognises("anchor")


def test_caption_with_max_new_tokens_100000_is_refused_at_once(node):
    request = Caption.Request(image=raw_image(2), max_new_tokens=100000)
    response = node.call(Caption, node.srv("caption"), request, timeout=ANSWER_BOUND_S)
    assert not response.success
    assert "max_new_tokens" in response.message and "1..4096" in response.message
    node.assert_recognises("anchor")


def test_ask_with_a_100_kb_question_is_refused_at_once(node):
    request = Ask.Request(question="why " * 25_000, image=raw_image(2), max_new_tokens=8)
    response = node.call(Ask, node.srv("ask"), request, timeout=ANSWER_BOUND_S)
    assert not response.success
    assert "question" in response.message and "limit" in response.message
    node.assert_recognises("anchor")


def test_introduce_with_100_kb_notes_is_refused_and_stores_nothing(node):
    request = IntroduceConcept.Request(name="wordy", images=[raw_image(4)], notes="n" * 100_000)
    response = node.call(IntroduceConcept, node.srv("introduce_concept"), request, timeout=ANSWER_BOUND_S)
    assert not response.success
    assert "notes" in response.message
    assert "wordy" not in node.names()


def test_compressed_png_declaring_20000x20000_pixels_is_refused_before_decoding(node):
    png = _png_declaring(20000, 20000)  # about 0.4 GB once decoded, under 1 MB on the wire
    request = IntroduceConcept.Request(name="huge", compressed_images=[CompressedImage(format="png", data=png)])
    response = node.call(IntroduceConcept, node.srv("introduce_concept"), request, timeout=ANSWER_BOUND_S)
    assert not response.success
    assert "exceeds" in response.message or "limit" in response.message, response.message
    assert "huge" not in node.names()
    node.assert_recognises("anchor")


def _set_parameter(node: RunningNode, name: str, value: float) -> None:
    param = ParameterMsg(name=name, value=ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value))
    result = node.call(SetParameters, node.srv("set_parameters"), SetParameters.Request(parameters=[param]))
    assert result.results[0].successful, result.results[0].reason


def test_generation_past_request_timeout_is_abandoned_with_a_clear_error(long_node):
    node = long_node
    _set_parameter(node, "request_timeout", 1.0)
    try:
        request = Ask.Request(question="Describe it.", image=raw_image(2), max_new_tokens=4096)
        response, seconds = _timed(lambda: node.call(Ask, node.srv("ask"), request, timeout=TIMEOUT))
    finally:
        _set_parameter(node, "request_timeout", 120.0)
    assert not response.success
    assert "deadline" in response.message and "internal error" not in response.message
    assert seconds < ANSWER_BOUND_S
    print(f"a 4096-token generation under request_timeout 1 s was answered after {seconds:.2f} s")
    node.assert_recognises("anchor")


# ------------------------------------------------------------------------------------------ stopping (1)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_a_4096_token_generation_stops_the_node_promptly(tmp_path, sig):
    with running_node(tmp_path, f"stop_{sig.name}", LONG) as node:
        future = node.ask_async(max_new_tokens=4096)  # about a minute of decoding on the toy model
        node.executor.spin_until_future_complete(future, timeout_sec=2.0)
        assert not future.done(), "the generation ended before the signal; it cannot test stopping"
        seconds = node.signal_and_wait(sig)
        log = node.log_text()
    print(f"{sig.name} during a 4096-token generation: the node exited after {seconds:.2f} s")
    assert seconds < EXIT_BOUND_S, f"{sig.name} took {seconds:.1f} s; log:\n{log[-3000:]}"
    assert node.proc.returncode == 0
    assert "Traceback" not in log


def test_deactivate_during_a_long_generation_is_prompt_and_logs_no_traceback(long_node):
    node = long_node
    future = node.ask_async(max_new_tokens=4096)
    node.executor.spin_until_future_complete(future, timeout_sec=2.0)
    assert not future.done()
    try:
        ok, seconds = _timed(lambda: node.transition("deactivate"))
        assert ok
        node.executor.spin_until_future_complete(future, timeout_sec=TIMEOUT)
        response = future.result()
        log = node.log_text()
    finally:
        assert node.transition("activate")
    print(f"deactivate during a 4096-token generation took {seconds:.2f} s")
    assert seconds < EXIT_BOUND_S
    assert not response.success and "interrupted" in response.message
    assert "Traceback" not in log and "did not stop" not in log


# ------------------------------------------------------------------------------------------- start-up
def test_invalid_startup_parameter_is_reported_in_one_line_without_traceback(tmp_path):
    args = ego_node_command({"model": "toy", "max_rate": -3.0})
    done = subprocess.run(args, env=ros_env(next_domain(), tmp_path / "log"), capture_output=True, text=True,
                          timeout=TIMEOUT)
    output = (done.stdout + done.stderr).strip()
    assert done.returncode == 2
    assert len(output.splitlines()) == 1, output
    assert "max_rate" in output and "Traceback" not in output


def test_invalid_startup_value_of_a_validated_parameter_exits_too(tmp_path):
    args = ego_node_command({"model": "toy", "device": "gpu7"})
    done = subprocess.run(args, env=ros_env(next_domain(), tmp_path / "log"), capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert done.returncode == 2
    assert "device" in done.stderr and "Traceback" not in done.stderr + done.stdout


def test_the_node_log_has_no_progress_bar_or_library_warning_by_default(node):
    caption = node.call(Caption, node.srv("caption"), Caption.Request(image=raw_image(5), max_new_tokens=4))
    assert caption.success, caption.message
    log = node.log_text()
    assert "it/s]" not in log and "Loading weights" not in log
    assert "Warning" not in log and "warn(" not in log
