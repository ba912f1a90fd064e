"""Prompt texts of the Ego engine and the small template language that places visual slots in them.

A prompt is a list of parts: plain strings and `Slot`s (a query image, a stored concept memory, a raw
reference image). Templates are ordinary `str.format` strings whose fields are filled with strings or
slots; `fill` keeps slots as separate parts so the backend can frame and embed them.

Models differ in what they were taught to answer, so every text is overridable per model: a model
directory may hold `ego_prompts.json` with any subset of the `PromptSet` fields (the toy model does).
"""

from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

PROMPTS_FILE = "ego_prompts.json"


@dataclass(frozen=True)
class Slot:
    """A place in a prompt filled by visual tokens rather than text.

    kind: "image" (a query image, index into the call's images), "memory" (a stored concept memory
    view: `key` is the concept name, `index` the view) or "reference" (a raw reference image of a
    concept, encoded by the vision tower at inference time).
    """

    kind: str
    key: str = ""
    index: int = 0


Part = str | Slot


@dataclass(frozen=True)
class PromptSet:
    """Every text the engine sends to a model. Fields with `{...}` are `str.format` templates."""

    keywords: str = "Describe the main subject of this image with a few keywords, separated by commas."
    area: str = ("What percentage of the image area does the main subject cover? "
                 "Answer with a single number between 0 and 100.")
    context_header: str = "These are personal concepts, each given by its name and its appearance:\n"
    memory_entry: str = "{name}: {memory}\n"
    keywords_entry: str = "{name}: {keywords}\n"
    memory_keywords_entry: str = "{name}: {memory} {keywords}\n"
    reference_entry: str = "{name}: {memory}\n"
    context_footer: str = "\n"
    query: str = "{context}{images}\n{question}"
    recognition: str = "Is {name} in this image? Answer with yes or no."
    caption: str = ("Describe this image in one sentence. If one of the personal concepts appears in it, "
                    "call it by its name.")
    video_frames_header: str = "These are frames of a video:\n"
    yes: tuple[str, ...] = ("Yes", "yes", "YES")
    no: tuple[str, ...] = ("No", "no", "NO")
    keyword_separator: str = ","
    #: Words dropped from keyword rows: function words carry no appearance (paper 3.1 keeps keywords only).
    stopwords: tuple[str, ...] = field(default=(
        "a", "an", "the", "and", "or", "of", "in", "on", "with", "to", "is", "are", "it", "its", "this",
        "that", "at", "by", "for", "from", "as", "some", "there",
    ))

    def with_overrides(self, overrides: dict[str, Any]) -> PromptSet:
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown prompt fields {unknown}; known: {sorted(known)}")
        clean = {k: tuple(v) if isinstance(getattr(self, k), tuple) else v for k, v in overrides.items()}
        return replace(self, **clean)


def load_prompts(model_dir: str | Path | None, base: PromptSet | None = None) -> PromptSet:
    """The default prompts, overridden by `<model_dir>/ego_prompts.json` when the model ships one."""
    prompts = base or PromptSet()
    if model_dir is None:
        return prompts
    path = Path(model_dir) / PROMPTS_FILE
    if not path.is_file():
        return prompts
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of prompt fields")
    return prompts.with_overrides(data)


_FORMATTER = string.Formatter()


def fill(template: str, **values: str | Slot | list[Part]) -> list[Part]:
    """Format `template`, keeping Slot values (or lists of parts) as separate parts.

    >>> fill("{name}: {memory}!", name="kona", memory=Slot("memory", "kona"))
    ['kona: ', Slot(kind='memory', key='kona', index=0), '!']
    """
    out: list[Part] = []
    for literal, field_name, spec, conv in _FORMATTER.parse(template):
        if literal:
            out.append(literal)
        if field_name is None:
            continue
        if field_name not in values:
            raise KeyError(f"template field {{{field_name}}} has no value in {template!r}")
        value = values[field_name]
        if isinstance(value, Slot):
            out.append(value)
        elif isinstance(value, list):
            out.extend(value)
        else:
            out.append(_FORMATTER.format_field(_FORMATTER.convert_field(value, conv), spec or ""))
    return merge_text(out)


def merge_text(parts: list[Part]) -> list[Part]:
    """Join adjacent strings and drop empty ones."""
    out: list[Part] = []
    for p in parts:
        if isinstance(p, str):
            if not p:
                continue
            if out and isinstance(out[-1], str):
                out[-1] = out[-1] + p
                continue
        out.append(p)
    return out


_NUMBER = re.compile(r"(-?\d+(?:[.,]\d+)?)\s*(%|percent|per cent)?", re.IGNORECASE)
_WORD_NUMBERS = {
    "none": 0.0, "zero": 0.0, "nothing": 0.0, "tenth": 10.0, "quarter": 25.0, "third": 100 / 3,
    "half": 50.0, "most": 75.0, "whole": 100.0, "entire": 100.0, "all": 100.0, "full": 100.0,
}


def parse_area_percent(text: str) -> float | None:
    """Read the area percentage a model answered; None when the answer holds no usable number.

    Takes the first number (a trailing % or "percent" is allowed; "0.3" with no percent sign and
    a value <= 1 is read as a fraction), else a few number words ("half", "a quarter"). The result
    is clamped to [0, 100].
    """
    m = _NUMBER.search(text)
    if m:
        value = float(m.group(1).replace(",", "."))
        if m.group(2) is None and 0.0 < value <= 1.0 and "." in m.group(1).replace(",", "."):
            value *= 100.0
        return min(100.0, max(0.0, value))
    words = re.findall(r"[a-z]+", text.lower())
    for w in words:
        if w in _WORD_NUMBERS:
            return _WORD_NUMBERS[w]
    return None


def split_keywords(text: str, separator: str = ",") -> list[str]:
    """Keywords of a model's description: split on the separator, newlines and semicolons."""
    pieces = re.split(rf"[{re.escape(separator)};\n]+", text)
    out = []
    for p in pieces:
        p = p.strip().strip(".:!?\"'()[]{}-*").strip()
        if p:
            out.append(p)
    return out
