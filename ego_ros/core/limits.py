"""Bounds on every request, checked at the engine's entry points before any tokenisation or model work.

The engine runs one model call at a time, so one absurd request (4294967295 new tokens, a 100 kB
question) would otherwise block every other caller for minutes or hours and can exhaust memory. The
bounds are set far above what a person or a robot's behaviour tree asks for in practice, so only
malformed or hostile requests meet them; each one is explained where it is defined.
"""

from __future__ import annotations

import operator
import unicodedata
from typing import Any

from .errors import InvalidTextError, RequestTooLargeError

#: Most tokens one generation may produce (the node's max_new_tokens parameter range is 1..4096). A
#: caption or an answer is tens of tokens; 4096 is already about a minute on the toy model on a CPU.
MAX_NEW_TOKENS = 4096
#: Longest question in characters: a spoken or typed question is well under 500 characters; 2,000
#: leaves room for a paragraph of instructions while keeping tokenisation and prefill cheap.
MAX_QUESTION_CHARS = 2000
#: Longest question in tokens. Real tokenisers give at most about one token a character for ordinary
#: text in any script (English about 4 characters a token), so any 2,000-character question in words
#: fits; text that falls apart into byte pieces (out-of-vocabulary symbols: 3 tokens a character) is
#: refused, because every token costs prefill time and attention memory grows with the square.
MAX_QUESTION_TOKENS = 2048
#: Longest notes text stored with a concept (JSON metadata in the memory file's header, never tokenised
#: into a prompt); a description of an object fits in a few hundred characters.
MAX_NOTES_CHARS = 2000

#: Layout characters a multi-line question or note may hold; every other control character is refused.
_ALLOWED_CONTROLS = frozenset("\n\t\r")


def check_new_tokens(n: Any, what: str = "max_new_tokens") -> int:
    """Return `n` as an int if it lies in 1..MAX_NEW_TOKENS, else raise RequestTooLargeError naming the range."""
    try:
        if isinstance(n, bool):
            raise TypeError
        n = operator.index(n)  # ints and numpy integers; floats and strings are refused
    except TypeError:
        raise RequestTooLargeError(f"{what} must be a whole number in 1..{MAX_NEW_TOKENS}, got {n!r}") from None
    if not 1 <= n <= MAX_NEW_TOKENS:
        raise RequestTooLargeError(f"{what} = {n} is outside the allowed range 1..{MAX_NEW_TOKENS}")
    return n


def check_text(text: Any, what: str, max_chars: int) -> str:
    """Return `text` (NFC-normalised) if it is a string of at most `max_chars` characters without NUL or
    other control characters (newline, tab and carriage return are allowed); raise otherwise.

    The length is checked first, so an oversized text is refused without scanning it."""
    if not isinstance(text, str):
        raise InvalidTextError(f"{what} must be a string, got {type(text).__name__}")
    if len(text) > max_chars:
        raise RequestTooLargeError(f"{what} is {len(text)} characters long; the limit is {max_chars}")
    text = unicodedata.normalize("NFC", text)
    for ch in text:
        if unicodedata.category(ch) == "Cc" and ch not in _ALLOWED_CONTROLS:
            raise InvalidTextError(f"{what} contains a control character (U+{ord(ch):04X})")
    return text


def check_token_count(count: int, what: str, max_tokens: int) -> None:
    """Raise RequestTooLargeError when a tokenised text is longer than `max_tokens` tokens."""
    if count > max_tokens:
        raise RequestTooLargeError(f"{what} is {count} tokens long; the limit is {max_tokens}")
