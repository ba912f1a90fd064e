"""The rules of the node's /diagnostics level and its rate window, and the error messages of the
reliability errors, without a ROS graph (issue 12: diagnostics that tell the truth)."""

from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticStatus

from ego_ros.core.errors import RequestCancelledError, RequestTimeoutError, RequestTooLargeError, StoreLockedError
from ego_ros.core.limits import check_new_tokens
from ego_ros.ros.conversions import error_message, is_user_error
from ego_ros.ros.diagnostics import RATE_WINDOW_S, Health, RateWindow, assess
from ego_ros.ros.params import ParameterValueError, Settings

OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR


def _active(**fields) -> Health:
    return Health(**{"state": "active", "silent_s": 0.1, "input_rate": 20.0, "processed_rate": 5.0, "max_rate": 5.0,
                     **fields})


# ------------------------------------------------------------------------------------------ level rules
def test_a_healthy_active_node_is_ok():
    assert assess(_active()) == (OK, "active")


def test_an_inactive_node_without_problems_is_ok():
    assert assess(Health(state="inactive")) == (OK, "inactive")


def test_unconfigured_after_a_failed_configure_is_error_with_the_reason():
    level, message = assess(Health(state="unconfigured", configure_error="memory_dir /proc/ego is not writable"))
    assert level == ERROR
    assert "configure failed" in message and "/proc/ego" in message


def test_unconfigured_without_a_failed_configure_is_ok():
    assert assess(Health(state="unconfigured"))[0] == OK


def test_unavailable_concepts_warn_with_names_and_reasons():
    level, message = assess(_active(unavailable={"mug": "file missing", "cup": "checksum mismatch"}))
    assert level == WARN
    assert "2 concept(s) unavailable" in message
    assert "'mug' (file missing)" in message and "'cup' (checksum mismatch)" in message


def test_unavailable_concepts_warn_in_any_configured_state():
    assert assess(Health(state="inactive", unavailable={"mug": "file missing"}))[0] == WARN


def test_a_camera_silent_for_frame_timeout_warns_while_active():
    level, message = assess(_active(silent_s=7.5, frame_timeout=5.0, topic="/robot/image"))
    assert level == WARN
    assert "no camera frame on /robot/image for 7.5 s" in message


def test_a_camera_silent_for_less_than_frame_timeout_is_ok():
    assert assess(_active(silent_s=4.9, frame_timeout=5.0))[0] == OK


def test_frame_timeout_zero_disables_the_silence_rule():
    assert assess(_active(silent_s=1e6, frame_timeout=0.0))[0] == OK


def test_silence_is_not_checked_while_inactive():
    assert assess(Health(state="inactive", silent_s=100.0))[0] == OK


def test_processing_below_half_of_max_rate_while_frames_arrive_warns():
    level, message = assess(_active(input_rate=30.0, processed_rate=2.4, max_rate=5.0))
    assert level == WARN
    assert "processing 2.40 Hz" in message and "max_rate 5 Hz" in message


def test_processing_is_compared_with_the_input_rate_when_the_camera_is_slower_than_max_rate():
    assert assess(_active(input_rate=2.0, processed_rate=1.8, max_rate=10.0))[0] == OK
    assert assess(_active(input_rate=2.0, processed_rate=0.9, max_rate=10.0))[0] == WARN


def test_processing_at_half_the_expected_rate_is_still_ok():
    assert assess(_active(input_rate=30.0, processed_rate=2.5, max_rate=5.0))[0] == OK


def test_the_rate_rule_waits_for_a_full_window():
    assert assess(_active(input_rate=None, processed_rate=None))[0] == OK


def test_every_warning_that_holds_is_in_the_message():
    level, message = assess(_active(unavailable={"mug": "file missing"}, silent_s=9.0, processed_rate=0.0))
    assert level == WARN
    assert "unavailable" in message and "no camera frame" in message and "processing 0.00 Hz" in message


def test_a_failed_last_frame_warns_while_active():
    level, message = assess(_active(last_frame_error="invalid image: zero size"))
    assert level == WARN and "last frame error: invalid image: zero size" in message


# ------------------------------------------------------------------------------------------ rate window
def test_rate_window_reports_nothing_until_a_window_has_passed():
    window = RateWindow(10.0)
    assert window.add(0, 0, now=0.0) == (None, None)
    assert window.add(100, 20, now=5.0) == (None, None)


def test_rate_window_reports_rates_over_the_last_window():
    window = RateWindow(10.0)
    for t in range(0, 31):  # 30 frames/s in, 5 frames/s processed, sampled once a second
        inp, proc = window.add(30 * t, 5 * t, now=float(t))
    assert inp == 30.0 and proc == 5.0


def test_rate_window_forgets_what_is_older_than_the_window():
    window = RateWindow(10.0)
    for t in range(0, 21):
        window.add(30 * t, 5 * t, now=float(t))  # fast for 20 s
    for t in range(21, 33):
        inp, proc = window.add(30 * t, 5 * 20, now=float(t))  # then processing stops
    assert proc == 0.0 and inp == 30.0


def test_rate_window_default_is_the_documented_window():
    assert RateWindow().window == RATE_WINDOW_S


# ---------------------------------------------------------------------------- messages of the new errors
def test_request_errors_are_the_callers_with_their_own_message():
    for exc in (RequestTooLargeError("max_new_tokens = 5000 is outside the allowed range 1..4096"),
                RequestTimeoutError("answering took longer than the 120 s deadline"),
                RequestCancelledError("answering was interrupted; nothing was changed"),
                StoreLockedError("concept store /s is locked by process 12 on host h")):
        assert error_message(exc) == str(exc)
        assert is_user_error(exc)


def test_max_new_tokens_bound_names_the_range():
    try:
        check_new_tokens(4294967295)
    except RequestTooLargeError as exc:
        assert "1..4096" in str(exc)
    else:
        raise AssertionError("4294967295 tokens were accepted")


# ----------------------------------------------------------------------------------------- parameters
def test_request_timeout_and_frame_timeout_are_parameters_with_ranges():
    settings = Settings.from_values({"request_timeout": 30.0, "frame_timeout": 0.0})
    assert settings.request_timeout == 30.0 and settings.frame_timeout == 0.0
    for name, bad in (("request_timeout", -1.0), ("frame_timeout", -0.5), ("request_timeout", float("nan"))):
        try:
            Settings.from_values({name: bad})
        except ParameterValueError:
            continue
        raise AssertionError(f"{name}={bad} was accepted")
