"""Judges of open answers; the HTTP judge talks to a real server on 127.0.0.1."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ego_ros.eval.judges import (
    ExactJudge,
    HttpJudge,
    HttpJudgeConfig,
    JudgeError,
    LocalJudge,
    NoJudge,
    make_judge,
    parse_verdict,
)


class ChatServer:
    """A minimal OpenAI-compatible /v1/chat/completions server answering from a script of replies."""

    def __init__(self, replies):
        self.replies = list(replies)  # (status, body) per request; the last one repeats
        self.requests = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length", 0))
                outer.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": json.loads(self.rfile.read(length))}
                )
                status, body = outer.replies[min(len(outer.requests), len(outer.replies)) - 1]
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def completion(content):
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}


def test_http_judge_sends_an_openai_chat_request_and_reads_the_verdict(monkeypatch):
    monkeypatch.setenv("EGO_TEST_JUDGE_KEY", "sekrit")
    with ChatServer([(200, completion('{"pred": "yes", "score": 4}'))]) as server:
        judge = HttpJudge(HttpJudgeConfig(server.base_url, "judge-model", "EGO_TEST_JUDGE_KEY"))
        verdict = judge.judge("What is Zak holding?", "a leash", "He holds a red leash.")
    assert verdict.correct is True and verdict.score == 4.0 and verdict.parsed
    (req,) = server.requests
    assert req["path"] == "/v1/chat/completions"
    assert req["headers"]["Authorization"] == "Bearer sekrit"
    assert req["body"]["model"] == "judge-model" and req["body"]["temperature"] == 0
    user = req["body"]["messages"][-1]["content"]
    assert "What is Zak holding?" in user and "a leash" in user and "He holds a red leash." in user


def test_http_judge_without_key_env_sends_no_authorization():
    with ChatServer([(200, completion("no"))]) as server:
        verdict = HttpJudge(HttpJudgeConfig(server.base_url, "m")).judge("q", "a", "b")
    assert verdict.correct is False
    assert "Authorization" not in server.requests[0]["headers"]


def test_http_judge_client_error_is_raised_without_retrying():
    with ChatServer([(400, {"error": "bad model"})]) as server:
        judge = HttpJudge(HttpJudgeConfig(server.base_url, "m", retries=3, backoff_s=0.0))
        with pytest.raises(JudgeError, match="HTTP 400"):
            judge.judge("q", "a", "b")
    assert len(server.requests) == 1


def test_http_judge_retries_server_errors():
    with ChatServer([(503, {"error": "busy"}), (200, completion('{"pred": "no", "score": 1}'))]) as server:
        verdict = HttpJudge(HttpJudgeConfig(server.base_url, "m", retries=1, backoff_s=0.0)).judge("q", "a", "b")
    assert verdict.correct is False and len(server.requests) == 2


def test_http_judge_reply_without_choices_is_an_error():
    with ChatServer([(200, {"object": "error"})]) as server:
        with pytest.raises(JudgeError, match="choices"):
            HttpJudge(HttpJudgeConfig(server.base_url, "m")).judge("q", "a", "b")


def test_http_judge_unreachable_endpoint_is_a_judge_error():
    with ChatServer([]) as server:
        url = server.base_url
    with pytest.raises(JudgeError):
        HttpJudge(HttpJudgeConfig(url, "m", retries=0, timeout_s=2.0)).judge("q", "a", "b")


def test_http_judge_missing_key_variable_fails_at_setup(monkeypatch):
    monkeypatch.delenv("EGO_TEST_MISSING_KEY", raising=False)
    with pytest.raises(JudgeError, match="EGO_TEST_MISSING_KEY"):
        HttpJudge(HttpJudgeConfig("http://127.0.0.1:9/v1", "m", "EGO_TEST_MISSING_KEY"))


@pytest.mark.parametrize(
    "reply, correct, score, parsed",
    [
        ('{"pred": "yes", "score": 5}', True, 5.0, True),
        ("Sure: {'pred': 'no', 'score': 2}", False, 2.0, True),
        ("Yes.", True, None, True),
        ("No, the answer differs", False, None, True),
        ("maybe", False, None, False),
    ],
)
def test_parse_verdict(reply, correct, score, parsed):
    v = parse_verdict(reply)
    assert (v.correct, v.score, v.parsed) == (correct, score, parsed)


def test_exact_and_none_judges():
    assert ExactJudge().judge("q", "a leash", "Zak holds a leash.").correct is True
    assert ExactJudge().judge("q", "a leash", "Zak holds a ball.").correct is False
    assert NoJudge().judge("q", "a", "b").correct is None


def test_local_judge_asks_with_question_answer_and_reply():
    prompts = []

    def ask(prompt):
        prompts.append(prompt)
        return '{"pred": "yes", "score": 5}'

    assert LocalJudge(ask).judge("Where is Casey?", "park", "In a park.").correct is True
    assert "Where is Casey?" in prompts[0] and "park" in prompts[0] and "In a park." in prompts[0]


def test_make_judge_validates_its_inputs():
    with pytest.raises(JudgeError, match="unknown judge"):
        make_judge("gpt")
    with pytest.raises(JudgeError, match="--judge-url"):
        make_judge("http")
    with pytest.raises(JudgeError, match="ask"):
        make_judge("local")
    with pytest.raises(JudgeError, match="http://"):
        make_judge("http", HttpJudgeConfig("ftp://x", "m"))
