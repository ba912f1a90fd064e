"""Fault injection, engine: absurd requests are refused fast, deadlines and interrupts end model calls.

Each test bounds the call it makes in a helper thread, so code that would hang (the defects of issue
12: 4294967295 new tokens, a 100 kB question) fails the test instead of blocking the suite.
"""

from __future__ import annotations

import threading
import time

import pytest
from conftest import random_image

from ego_ros.core.engine import EgoEngine, EngineConfig
from ego_ros.core.errors import (
    InvalidTextError,
    RequestCancelledError,
    RequestTimeoutError,
    RequestTooLargeError,
)
from ego_ros.core.introduce import IntroduceOptions
from ego_ros.core.limits import MAX_NEW_TOKENS, MAX_NOTES_CHARS, MAX_QUESTION_CHARS, check_new_tokens, check_text
from ego_ros.core.sequence import Runner

FAST = IntroduceOptions(max_new_tokens=4, area_max_new_tokens=3)
#: keyword generation of this many tokens takes tens of seconds on the tiny random model
LONG = IntroduceOptions(max_new_tokens=MAX_NEW_TOKENS, min_new_tokens=MAX_NEW_TOKENS, dynamic_k=False)
#: generous bound for "answered promptly instead of hanging" on a shared 2-core machine
PROMPT_S = 20.0


@pytest.fixture
def engine(llava):
    return EgoEngine(llava, config=EngineConfig(introduce=FAST, request_timeout_s=0))


def bounded(fn, seconds: float = PROMPT_S) -> tuple[BaseException | None, float]:
    """Run fn in a thread; return what it raised (None if it returned) and how long it took.
    Fails the test when fn has not finished after `seconds`."""
    result: list[BaseException | None] = []
    t0 = time.monotonic()

    def target() -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            result.append(exc)
        else:
            result.append(None)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"the call did not finish within {seconds} s"
    return result[0], time.monotonic() - t0


# ----- bounds --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [0, MAX_NEW_TOKENS + 1, 4294967295, -1])
def test_ask_refuses_max_new_tokens_outside_the_range(engine, n):
    exc, _ = bounded(lambda: engine.ask(random_image(1), "what is this?", max_new_tokens=n))
    assert isinstance(exc, RequestTooLargeError) and f"1..{MAX_NEW_TOKENS}" in str(exc)


@pytest.mark.parametrize("call", ["caption", "ask_video"])
def test_caption_and_video_refuse_absurd_max_new_tokens(engine, call):
    if call == "caption":
        exc, _ = bounded(lambda: engine.caption(random_image(1), max_new_tokens=4294967295))
    else:
        exc, _ = bounded(lambda: engine.ask_video([random_image(1)], "what?", max_new_tokens=4294967295))
    assert isinstance(exc, RequestTooLargeError)


def test_max_new_tokens_at_the_bound_is_accepted():
    assert check_new_tokens(MAX_NEW_TOKENS) == MAX_NEW_TOKENS and check_new_tokens(1) == 1


@pytest.mark.parametrize("n", [0, MAX_NEW_TOKENS + 1, 2.5, "64", True])
def test_engine_config_max_new_tokens_is_held_to_the_range(llava, n):
    with pytest.raises(RequestTooLargeError):
        EgoEngine(llava, config=EngineConfig(max_new_tokens=n))


def test_introduce_options_new_tokens_are_held_to_the_range(engine):
    with pytest.raises(RequestTooLargeError):
        engine.introduce("kona", [random_image(1)], options=IntroduceOptions(max_new_tokens=4294967295))
    assert engine.store.names() == []


@pytest.mark.parametrize("question", ["x" * 100_000, "\u2603" * 10_000], ids=["100kB", "10k-oov"])
def test_oversized_question_is_refused_before_tokenising(engine, question):
    exc, _ = bounded(lambda: engine.ask(random_image(1), question, max_new_tokens=4))
    assert isinstance(exc, RequestTooLargeError) and "characters" in str(exc)


def test_question_that_tokenises_into_too_many_tokens_is_refused(engine):
    question = "\u2603" * MAX_QUESTION_CHARS  # within the character bound; byte pieces: 3 tokens each
    exc, _ = bounded(lambda: engine.ask(None, question, max_new_tokens=4))
    assert isinstance(exc, RequestTooLargeError) and "tokens" in str(exc)


def test_question_at_the_character_bound_in_words_is_answered(engine):
    question = ("is it here " * (MAX_QUESTION_CHARS // 11))[:MAX_QUESTION_CHARS]
    assert isinstance(engine.ask(None, question, max_new_tokens=2).text, str)


@pytest.mark.parametrize("question", ["what\x00 is this?", "bell\x07"])
def test_question_with_control_characters_is_refused(engine, question):
    with pytest.raises(InvalidTextError, match="control character"):
        engine.ask(random_image(1), question, max_new_tokens=2)


def test_multiline_question_is_accepted():
    assert check_text("first line\nsecond\tline", "question", 100) == "first line\nsecond\tline"


@pytest.mark.parametrize("notes,error", [("n" * (MAX_NOTES_CHARS + 1), RequestTooLargeError),
                                         ("a\x00b", InvalidTextError)])
def test_bad_notes_are_refused_and_nothing_is_stored(engine, notes, error):
    with pytest.raises(error):
        engine.introduce("kona", [random_image(1)], notes=notes)
    assert engine.store.names() == []


# ----- deadlines -----------------------------------------------------------------------------------------
def test_generation_past_its_deadline_raises_timeout_and_the_engine_answers_the_next_call(engine):
    engine.config.request_timeout_s = 0.2
    exc, seconds = bounded(lambda: engine.ask(random_image(1), "describe it", max_new_tokens=MAX_NEW_TOKENS))
    assert isinstance(exc, RequestTimeoutError) and isinstance(exc, TimeoutError)
    assert "0.2 s" in str(exc)
    engine.config.request_timeout_s = 60.0
    assert isinstance(engine.ask(random_image(1), "describe it", max_new_tokens=3).text, str)


def test_introduction_past_its_deadline_stores_nothing(engine):
    engine.config.request_timeout_s = 0.3
    exc, _ = bounded(lambda: engine.introduce("kona", [random_image(1)], options=LONG))
    assert isinstance(exc, RequestTimeoutError)
    assert engine.store.names() == [] and engine.introducing is None


def test_request_timeout_must_be_a_finite_non_negative_number(llava):
    for bad in (-1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="request_timeout_s"):
            EgoEngine(llava, config=EngineConfig(request_timeout_s=bad))


# ----- interrupt -----------------------------------------------------------------------------------------
def _interrupt_after(engine: EgoEngine, seconds: float) -> threading.Thread:
    t = threading.Timer(seconds, engine.interrupt)
    t.start()
    return t


def test_interrupt_ends_a_long_generation_promptly(engine):
    _interrupt_after(engine, 0.5)
    exc, seconds = bounded(lambda: engine.ask(random_image(1), "describe it", max_new_tokens=MAX_NEW_TOKENS))
    assert isinstance(exc, RequestCancelledError)
    assert seconds < PROMPT_S


def test_interrupted_introduction_stores_nothing(engine):
    _interrupt_after(engine, 0.5)
    exc, _ = bounded(lambda: engine.introduce("kona", [random_image(1), random_image(2)], options=LONG))
    assert isinstance(exc, RequestCancelledError)
    assert engine.store.names() == [] and engine.introducing is None


def test_calls_started_after_an_interrupt_run_normally(engine):
    engine.interrupt()
    engine.introduce("kona", [random_image(1)])
    assert engine.store.names() == ["kona"]
    assert len(engine.recognize(random_image(2))) == 1


def test_interrupt_also_cancels_a_call_waiting_for_the_engine(engine):
    errors: dict[str, BaseException | None] = {}

    def run(key, fn):
        try:
            fn()
            errors[key] = None
        except BaseException as exc:  # noqa: BLE001
            errors[key] = exc

    long = threading.Thread(target=run, args=("long", lambda: engine.ask(None, "talk", max_new_tokens=MAX_NEW_TOKENS)))
    long.start()
    time.sleep(0.3)
    waiting = threading.Thread(target=run, args=("waiting", lambda: engine.ask(None, "hi", max_new_tokens=2)))
    waiting.start()
    time.sleep(0.2)
    engine.interrupt()
    long.join(PROMPT_S)
    waiting.join(PROMPT_S)
    assert not long.is_alive() and not waiting.is_alive()
    assert isinstance(errors["long"], RequestCancelledError)
    assert isinstance(errors["waiting"], RequestCancelledError)


def test_runner_calls_check_before_every_decode_step(llava):
    calls = []
    runner = Runner(llava, check=lambda: calls.append(1))
    from ego_ros.core.compose import query_sequence

    seq = query_sequence(llava, [], [], "hello", "none")
    out = runner.generate(seq, 5, min_new_tokens=5)
    assert len(out) == 5 and len(calls) >= 5


def test_runner_stops_when_check_raises(llava):
    from ego_ros.core.compose import query_sequence

    steps = []

    def check():
        steps.append(1)
        if len(steps) > 3:
            raise RequestCancelledError("stop")

    seq = query_sequence(llava, [], [], "hello", "none")
    with pytest.raises(RequestCancelledError):
        Runner(llava, check=check).generate(seq, 100, min_new_tokens=100)
    assert len(steps) == 4


# ----- quiet start ---------------------------------------------------------------------------------------
QUIET_START = """
import numpy as np
from PIL import Image
from ego_ros.core.engine import EgoEngine
engine = EgoEngine.load("toy")
engine.ask(Image.fromarray(np.zeros((64, 64, 3), np.uint8)), "what is it?", max_new_tokens=2)
print("done")
"""


@pytest.mark.slow
def test_loading_and_first_inference_print_no_progress_bar_or_library_warning():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-W", "default", "-c", QUIET_START], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "done", proc.stderr
    assert "Loading weights" not in proc.stderr and "Warning" not in proc.stderr, proc.stderr
