"""Verdicts on a run's open-ended answers: exact match, a model judge over HTTP, or the evaluated model
itself as a text-only judge (``local``); model judges' verdicts are cached like samples."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .cache import ResultCache, make_key
from .judges import HttpJudgeConfig, Judge, JudgeError, make_judge
from .session import EvalSession
from .work import WorkItem


def local_judge_ask(engine: Any) -> Callable[[str], str]:
    """Build the ``local`` judge's hook: the engine answering a text-only prompt, no concept in context.

    Uses ``engine.ask_text(prompt)`` when the engine has it, else ``engine.ask(None, prompt, concepts=[])``.
    """
    text_only = getattr(engine, "ask_text", None)

    def ask(prompt: str) -> str:
        try:
            answer = text_only(prompt) if callable(text_only) else engine.ask(None, prompt, concepts=[])
        except (TypeError, ValueError) as exc:  # the engine's InvalidImageError is a ValueError
            raise JudgeError(
                "the local judge needs the engine to answer a prompt without an image "
                f"(EgoEngine.ask_text(prompt) or EgoEngine.ask(None, ...)); it refused: {exc}"
            ) from exc
        return str(getattr(answer, "text", answer))

    return ask


def open_items(work: dict[str, list[WorkItem]]) -> list[WorkItem]:
    return [w for t in ("vqa", "video_qa") for w in work.get(t, []) if not w.record.is_multiple_choice]


def judge_open_answers(
    work: dict[str, list[WorkItem]],
    cache: ResultCache,
    session: EvalSession,
    judge: str,
    jid: str,
    judge_obj: Judge | None,
    judge_config: HttpJudgeConfig | None,
    method: str,
    shash: str,
    progress: bool,
) -> dict[str, dict[str, Any]]:
    """Verdicts on open answers, keyed by the answer's cache key; model judges' verdicts are cached."""
    from tqdm import tqdm

    verdicts: dict[str, dict[str, Any]] = {}
    items = open_items(work)
    if judge == "none" or not items:
        return verdicts
    todo = []
    for w in items:
        answer = cache.get(w.key)
        if answer is None:
            continue
        if judge == "exact":
            assert judge_obj is not None
            verdicts[w.key] = judge_obj.judge(
                w.record.question, w.record.answer, answer["result"]["prediction"]
            ).to_dict()
            continue
        jkey = make_key(f"judge:{jid}", w.image, w.concept, method, shash, w.item)
        if jkey in cache:
            verdicts[w.key] = cache[jkey]["result"]
        else:
            todo.append((w, jkey, answer))
    if todo and judge_obj is None:  # the local judge: built only when something is left to judge
        engine = session.get_engine()
        engine.set_context("none")  # judge with the bare model: no personal memory in context
        session.introduced = False
        judge_obj = make_judge("local", judge_config, ask=local_judge_ask(engine))
    for w, jkey, answer in tqdm(todo, desc=f"judge ({jid})", disable=not progress):
        start = time.perf_counter()
        verdict = judge_obj.judge(w.record.question, w.record.answer, answer["result"]["prediction"]).to_dict()
        cache.put(
            jkey,
            task=f"judge:{jid}",
            image=w.image,
            concept=w.concept,
            item=w.item,
            method=method,
            settings=shash,
            seconds=time.perf_counter() - start,
            result=verdict,
        )
        verdicts[w.key] = verdict
    return verdicts
