"""Judges of open-ended answers (the paper used ChatGPT; here it is pluggable and optional).

* ``none`` (default): answers are recorded, nothing is scored.
* ``exact``: normalised containment of the reference answer in the reply (:func:`protocols.exact_match`).
* ``local``: the evaluated (or another) engine asked, without an image, whether the reply matches;
  :class:`LocalJudge` takes any ``ask(prompt) -> str`` callable, the runner passes the engine's.
* ``http``: an OpenAI-compatible ``/chat/completions`` endpoint (base URL, model, name of the
  environment variable holding the API key), called with the standard library only.

Every judge returns a :class:`Judgment`; ``correct`` is None only for ``none``. A judge reply that
says neither yes nor no is recorded as wrong with ``parsed=False``, so a run never stops on it.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from .protocols import exact_match

JUDGES = ("none", "exact", "local", "http")

JUDGE_SYSTEM_PROMPT = (
    "You evaluate answers to questions about images. Compare the predicted answer with the correct "
    "answer and decide whether they mean the same thing; paraphrases and synonyms count as matches, "
    "missing or contradicting key facts do not."
)


def judge_prompt(question: str, answer: str, prediction: str) -> str:
    """User message sent to LLM judges (in the style of Video-ChatGPT's QA evaluation)."""
    return (
        f"Question: {question}\n"
        f"Correct answer: {answer}\n"
        f"Predicted answer: {prediction}\n"
        'Reply with a JSON object only: {"pred": "yes" or "no", "score": an integer from 0 to 5}, '
        'where "pred" says whether the predicted answer matches the correct answer.'
    )


class JudgeError(RuntimeError):
    """A judge cannot be set up or its endpoint failed."""


@dataclass(frozen=True)
class Judgment:
    correct: bool | None
    score: float | None = None
    parsed: bool = True
    raw: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Judge(Protocol):
    name: str

    def judge(self, question: str, answer: str, prediction: str) -> Judgment: ...


def parse_verdict(reply: str) -> Judgment:
    """Read a judge's reply: a JSON ``{"pred", "score"}`` object, else the first yes/no word."""
    text = reply.strip()
    m = re.search(r"\{.*\}", text, re.DOTALL)
    if m:
        try:
            obj = json.loads(m.group(0).replace("'", '"'))
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict) and isinstance(obj.get("pred"), str):
            pred = obj["pred"].strip().lower()
            score = obj.get("score")
            score = float(score) if isinstance(score, (int, float)) and not isinstance(score, bool) else None
            if pred in ("yes", "no"):
                return Judgment(pred == "yes", score, True, reply)
    w = re.search(r"\b(yes|no)\b", text, re.IGNORECASE)
    if w:
        return Judgment(w.group(1).lower() == "yes", None, True, reply)
    return Judgment(False, None, False, reply)


class NoJudge:
    name = "none"

    def judge(self, question: str, answer: str, prediction: str) -> Judgment:
        return Judgment(None)


class ExactJudge:
    name = "exact"

    def judge(self, question: str, answer: str, prediction: str) -> Judgment:
        return Judgment(exact_match(prediction, answer))


class LocalJudge:
    """Judge with a local model: ``ask(prompt) -> reply text`` (no image).

    Hook for the engine: ``LocalJudge(lambda p: engine.ask(None, p, concepts=[]).text)``; the engine
    must accept a question without an image and with no concept in context.
    """

    name = "local"

    def __init__(self, ask: Callable[[str], str]) -> None:
        self._ask = ask

    def judge(self, question: str, answer: str, prediction: str) -> Judgment:
        prompt = JUDGE_SYSTEM_PROMPT + "\n\n" + judge_prompt(question, answer, prediction)
        return parse_verdict(self._ask(prompt))


@dataclass(frozen=True)
class HttpJudgeConfig:
    """Where the OpenAI-compatible judge lives. ``api_key_env`` names an environment variable."""

    base_url: str
    model: str
    api_key_env: str | None = None
    timeout_s: float = 60.0
    retries: int = 2
    backoff_s: float = 1.0


class HttpJudge:
    """OpenAI-compatible chat-completions judge over ``urllib`` (no client library needed)."""

    name = "http"

    def __init__(self, config: HttpJudgeConfig) -> None:
        if not config.base_url.startswith(("http://", "https://")):
            raise JudgeError(f"judge base URL must start with http:// or https://, got {config.base_url!r}")
        if not config.model:
            raise JudgeError("the HTTP judge needs a model name")
        self.config = config
        self._key: str | None = None
        if config.api_key_env:
            key = os.environ.get(config.api_key_env)
            if not key:
                raise JudgeError(f"environment variable {config.api_key_env} (judge API key) is not set")
            self._key = key

    @property
    def url(self) -> str:
        return self.config.base_url.rstrip("/") + "/chat/completions"

    def judge(self, question: str, answer: str, prediction: str) -> Judgment:
        body = {
            "model": self.config.model,
            "messages": [
                {"role": "system", "content": JUDGE_SYSTEM_PROMPT},
                {"role": "user", "content": judge_prompt(question, answer, prediction)},
            ],
            "temperature": 0,
            "max_tokens": 32,
        }
        reply = self._post(body)
        try:
            content = reply["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise JudgeError(f"{self.url}: reply without choices[0].message.content: {str(reply)[:200]}") from exc
        if not isinstance(content, str):
            raise JudgeError(f"{self.url}: message content is not text: {content!r}"[:300])
        return parse_verdict(content)

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        last: Exception | None = None
        for attempt in range(self.config.retries + 1):
            request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.config.timeout_s) as response:
                    return json.loads(response.read().decode("utf-8"))
            except urllib.error.HTTPError as exc:
                detail = exc.read().decode("utf-8", "replace")[:200]
                last = JudgeError(f"{self.url}: HTTP {exc.code}: {detail}")
                if exc.code < 500 and exc.code != 429:  # a client error will not go away by retrying
                    raise last from exc
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                last = JudgeError(f"{self.url}: {getattr(exc, 'reason', exc)}")
            except json.JSONDecodeError as exc:
                raise JudgeError(f"{self.url}: reply is not JSON ({exc.msg})") from exc
            if attempt < self.config.retries:
                time.sleep(min(self.config.backoff_s * 2.0**attempt, 30.0))
        assert last is not None
        raise last


def make_judge(
    name: str,
    http_config: HttpJudgeConfig | None = None,
    ask: Callable[[str], str] | None = None,
) -> Judge:
    """Build the judge called ``name``; ``http`` needs ``http_config``, ``local`` needs ``ask``."""
    if name == "none":
        return NoJudge()
    if name == "exact":
        return ExactJudge()
    if name == "local":
        if ask is None:
            raise JudgeError("the local judge needs an ask(prompt) -> str callable (the engine's ask)")
        return LocalJudge(ask)
    if name == "http":
        if http_config is None:
            raise JudgeError("the http judge needs --judge-url and --judge-model")
        return HttpJudge(http_config)
    raise JudgeError(f"unknown judge {name!r}; known judges: {', '.join(JUDGES)}")


def judge_id(name: str, http_config: HttpJudgeConfig | None = None) -> str:
    """Identity of a judge for caching its verdicts (which model judged)."""
    if name == "http" and http_config is not None:
        return f"http:{http_config.base_url.rstrip('/')}#{http_config.model}"
    return name
