"""The paper's evaluation protocols as pure functions: prompts, answer parsing and name matching."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import TypeVar

T = TypeVar("T")

#: Version of the prompts and parsing rules below; part of the cache's settings hash.
PROTOCOL_VERSION = 1

_ARTICLES = re.compile(r"\b(a|an|the)\b")


def format_ab_question(question: str, options: Mapping[str, str]) -> str:
    """Build the multiple-choice prompt of the peers' protocol (eval-notes: A/B VQA)."""
    lines = [f"Question: {question}", "Options:"]
    lines += [f"{k}. {v}" for k, v in sorted(options.items())]
    lines.append("Please give a single character from the options above.")
    return "\n".join(lines)


def caption_prompt() -> str:
    """Instruction used for captioning (the engine adds the concept memories)."""
    return "Give a caption of the image."


def normalize_text(text: str) -> str:
    """Lower case, NFKC, straight apostrophes, punctuation to spaces (apostrophes dropped), one space."""
    t = unicodedata.normalize("NFKC", text).replace("\u2019", "'").replace("\u2018", "'").lower()
    t = t.replace("'", "")
    t = re.sub(r"[^\w\s]", " ", t)
    return " ".join(t.split())


def _option_text_key(text: str) -> str:
    return " ".join(_ARTICLES.sub(" ", normalize_text(text)).split())


def parse_choice(text: str | None, options: Mapping[str, str] | Sequence[str] = ("A", "B")) -> str | None:
    """Return the option letter a free-text answer picks, or None when it cannot be told.

    ``options`` is a mapping letter -> option text, or just the valid letters. Rules, first match wins:

    1. an explicit marker: "answer: b", "the answer is (B)", "option A", "choice: a";
    2. the whole reply is one letter, possibly wrapped: "A", "(a)", "B.", "'B'";
    3. the reply starts with a letter followed by ``.``, ``)`` or ``:`` ("A. Brown", "(B) Grey");
    4. the reply names exactly one option's text (articles ignored) and no other.

    A reply such as "A dog" matches none of 1-3 (the article is not an answer) and is decided by 4.
    """
    if text is None:
        return None
    letters = [k.upper() for k in (options.keys() if isinstance(options, Mapping) else options)]
    if not letters:
        raise ValueError("parse_choice needs at least one option letter")
    cls = "".join(sorted({re.escape(x) for x in letters}))
    t = unicodedata.normalize("NFKC", text).strip()
    marker = rf"\b(?:answer|option|choice)\s*(?:is|:|=)?\s*[\(\[\"']?\s*([{cls}])(?![\w'])"
    for m in re.finditer(marker, t, re.IGNORECASE):
        # A lower-case "a" followed by a word is an article ("the answer is a dog"), not a letter.
        tail = t[m.end() :].lstrip(" )]\"'")
        if m.group(1).isupper() or not tail or not tail[0].isalnum():
            return m.group(1).upper()
    bare = t.strip(" \t\n\"'`*.()[]:")
    if len(bare) == 1 and bare.upper() in letters:
        return bare.upper()
    m = re.match(rf"^[\(\[\"'*]*\s*([{cls}])\s*(?:[.):\]]|\s*$)", t, re.IGNORECASE)
    if m:
        return m.group(1).upper()
    if isinstance(options, Mapping):
        reply = f" {_option_text_key(t)} "
        hits = [k.upper() for k, v in options.items() if _option_text_key(v) and f" {_option_text_key(v)} " in reply]
        if len(hits) == 1:
            return hits[0]
    return None


def ab_correct(prediction: str | None, answer: str, options: Mapping[str, str] | Sequence[str]) -> bool:
    """Multiple-choice correctness: the parsed letter equals the answer letter; unparseable is wrong."""
    parsed = parse_choice(prediction, options)
    return parsed is not None and parsed == answer.strip().upper()


def _name_pattern(name: str) -> re.Pattern[str]:
    words = [re.escape(w) for w in normalize_name(name).split()]
    # Whole words only (a hyphen continues a word: "T" is not named by "T-shirt"), any run of spaces
    # between the name's words, case ignored.
    return re.compile(r"(?<![\w-])" + r"\s+".join(words) + r"(?![\w-])", re.IGNORECASE)


def normalize_name(text: str) -> str:
    """NFKC, straight apostrophes, ``_`` read as a space (concept folders use ``_`` for spaces)."""
    t = unicodedata.normalize("NFKC", text).replace("\u2019", "'").replace("\u2018", "'").replace("_", " ")
    return " ".join(t.split())


def contains_name(text: str | None, name: str) -> bool:
    """Whether ``text`` mentions ``name`` as whole words, case-insensitively ("Bo" matches "bo's", not "boat").

    Words are delimited by anything but letters, digits, ``_`` and ``-``.
    """
    if not text or not name.strip():
        return False
    return _name_pattern(name).search(normalize_name(text)) is not None


def caption_mentions(caption: str | None, names: Sequence[Sequence[str] | str]) -> bool:
    """Captioning recall hit: every concept is named; each entry is a name or a list of accepted aliases."""
    if not names:
        raise ValueError("caption_mentions needs at least one concept name")
    for entry in names:
        aliases = [entry] if isinstance(entry, str) else list(entry)
        if not any(contains_name(caption, a) for a in aliases):
            return False
    return True


def exact_match(prediction: str | None, answer: str) -> bool:
    """Open-answer check of the ``exact`` judge: the normalised answer occurs as whole words in the reply.

    Articles are ignored on both sides; an empty answer never matches.
    """
    gold = _option_text_key(answer)
    if not gold or not prediction:
        return False
    return f" {gold} " in f" {_option_text_key(prediction)} "


def sample_frames(frames: Sequence[T], count: int) -> list[T]:
    """``count`` frames spread evenly over the clip, first and last included; all of them if fewer."""
    if count < 1:
        raise ValueError(f"frame count must be at least 1, got {count}")
    n = len(frames)
    if n <= count:
        return list(frames)
    if count == 1:
        return [frames[n // 2]]
    return [frames[round(i * (n - 1) / (count - 1))] for i in range(count)]
