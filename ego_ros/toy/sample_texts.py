"""Texts of the toy model's training samples: question templates, random concept names, answers."""

from __future__ import annotations

import numpy as np

from .attributes import Instance
from .model_config import PROMPT_OVERRIDES

#: Question templates of the extra toy tasks (besides the engine prompts in ego_prompts.json).
QUESTIONS: dict[str, str] = {
    "colour": "what colour is the main object?",
    "shape": "what shape is the main object?",
    "pattern": "what pattern is the main object?",
    "mark": "where is the mark of the main object?",
    "present": "is there a {colour} {shape}?",
    "count": "how many objects?",
    "choose": "which is here, {a} or {b}?",
    "concept_colour": "What colour is {a}?",
    "concept_pattern": "What pattern does {a} have?",
    "concept_shape": "What shape is {a}?",
    "bigger": "Which is bigger in this image, {a} or {b}?",
    "left": "Is {a} to the left of {b}?",
    "ab": "Question: {question}\nOptions:\nA. {a}\nB. {b}\nPlease give a single character from the options above.",
}
#: Other phrasings of the recognition question (the benchmarks' styles), answered yes / no like it.
RECOGNITION_PARAPHRASES: tuple[str, ...] = (
    "Is {name} in this image?",
    "Is {name} in this image? Answer with a single word or phrase.",
    "Can you see {name} in this photo?",
    "is {name} in this image? answer yes or no.",
)
#: The A/B questions of the Yo'LLaVA-style export ({a} is the concept's name).
AB_QUESTIONS: tuple[tuple[str, str], ...] = (
    ("colour", "What is the main colour of {a}?"),
    ("pattern", "What pattern does {a} have?"),
    ("shape", "What shape is {a}?"),
    ("mark_colour", "What colour is the small mark on {a}?"),
)


_CONSONANTS = "bcdfghjklmnprstvwz"
_VOWELS = "aeiou"
_WORDS = ("mug", "cup", "toy", "bag", "hat", "ball", "box", "pen", "book", "shoe", "dog", "cat", "car", "lamp")
_UNICODE = ("é", "ü", "ñ", "ø", "å", "ç", "猫", "犬", "ß", "ł", "ö", "á", "ę", "ж", "λ", "ה")


def _reserved_names() -> set[str]:
    from .export import CONCEPT_NAMES
    from .tokenizer import vocabulary_words

    return {n.lower() for n in CONCEPT_NAMES} | {w.lower() for w in vocabulary_words()}


_RESERVED: set[str] | None = None


def random_name(rng: np.random.Generator) -> str:
    """A random concept name: mostly pronounceable lower-case strings, sometimes capitalised, two words,
    possessive ("Tavi's mug"), random letters or with non-ASCII letters. Never a name of the exports
    (`export.CONCEPT_NAMES`) and never a vocabulary word."""
    global _RESERVED
    if _RESERVED is None:
        _RESERVED = _reserved_names()
    while True:
        syll = int(rng.integers(1, 4))
        base = "".join(
            _CONSONANTS[int(rng.integers(len(_CONSONANTS)))] + _VOWELS[int(rng.integers(len(_VOWELS)))]
            for _ in range(syll)
        )
        if rng.random() < 0.3:
            base += _CONSONANTS[int(rng.integers(len(_CONSONANTS)))]
        style = rng.random()
        if style < 0.6:
            name = base
        elif style < 0.7:
            name = base.capitalize()
        elif style < 0.8:
            name = "".join(chr(int(rng.integers(97, 123))) for _ in range(int(rng.integers(2, 7))))
        elif style < 0.9:
            name = f"{base.capitalize()}'s {_WORDS[int(rng.integers(len(_WORDS)))]}"
        elif style < 0.95:
            name = f"{base} {_WORDS[int(rng.integers(len(_WORDS)))]}"
        else:
            pos = int(rng.integers(len(base) + 1))
            name = base[:pos] + _UNICODE[int(rng.integers(len(_UNICODE)))] + base[pos:]
        if name.lower() not in _RESERVED and len(name) >= 2:
            return name


def distinct_names(rng: np.random.Generator, n: int) -> list[str]:
    names: list[str] = []
    while len(names) < n:
        name = random_name(rng)
        if name not in names:
            names.append(name)
    return names


def keywords_of(inst: Instance) -> list[str]:
    return list(inst.keywords)


def describe_answer(inst: Instance, separator: str = PROMPT_OVERRIDES["keyword_separator"]) -> str:
    return f"{separator} ".join(inst.keywords)
