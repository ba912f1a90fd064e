"""How dataset files name concepts: This-is-my folder labels, loose reference keys, question placeholders.

Display names of This-is-my folder labels (``"Zaks dog kona-dog"``): the text after the last ``-`` is
the category and is dropped; a first word that is capitalised and ends in a single ``s`` in a label
of two or more words is read as a possessive (``Zaks`` -> ``Zak's``). So ``"Zaks dog kona-dog"`` ->
``"Zak's dog kona"``, ``"Sherry-woman"`` -> ``"Sherry"``. A ``display_names.json`` file
(``{"<folder label>": "<display name>"}``) in the dataset folder overrides the rule for any label
(read by :mod:`.thisismy`). For This-is-my the display name is the concept's name (what the model is
told and what captions must contain).

Question placeholders: ``<sks>`` and the bare word ``sks`` (the Yo'LLaVA file uses both) become the
concept's name for single-concept questions, and ``<label>`` tokens naming a concept become its name.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence

from .records import Concept

_POSSESSIVE = re.compile(r"^[A-Z][A-Za-z]*[^sS']s$")


def split_category(label: str) -> tuple[str, str | None]:
    """``"Zaks dog kona-dog"`` -> (``"Zaks dog kona"``, ``"dog"``); labels without ``-`` have no category."""
    base, sep, cat = label.rpartition("-")
    if sep and base.strip() and cat.strip():
        return base.strip(), cat.strip()
    return label.strip(), None


def thisismy_display_name(label: str, overrides: dict[str, str] | None = None) -> tuple[str, str | None]:
    """Display name and category of a This-is-my folder label (rule in the module docstring)."""
    base, category = split_category(label)
    if overrides:
        for key in (label, base):
            if key in overrides:
                return overrides[key], category
    words = base.split()
    if len(words) >= 2 and _POSSESSIVE.match(words[0]) and len(words[0]) >= 3:
        words[0] = words[0][:-1] + "'s"
    return " ".join(words), category


def norm_key(text: str) -> str:
    """Loose key for matching concept references across files: case, apostrophes, ``_`` and ``<>`` ignored."""
    t = unicodedata.normalize("NFKC", text).strip()
    if t.startswith("<") and t.endswith(">"):
        t = t[1:-1]
    t = t.replace("\u2019", "'").replace("'", "").replace("_", " ").lower()
    return " ".join(t.split())


class ConceptResolver:
    """Maps the many spellings of a concept in dataset files (label, base label, name) to its name."""

    def __init__(self, concepts: Iterable[Concept]) -> None:
        self.names: list[str] = []
        table: dict[str, set[str]] = {}
        for c in concepts:
            self.names.append(c.name)
            for alias in {c.name, c.display_name, c.label, split_category(c.label)[0]}:
                table.setdefault(norm_key(alias), set()).add(c.name)
        # An alias shared by two concepts identifies neither.
        self._table = {k: next(iter(v)) for k, v in table.items() if len(v) == 1}

    def one(self, ref: str) -> str | None:
        return self._table.get(norm_key(ref))

    def group(self, ref: str) -> tuple[str, ...] | None:
        """Resolve a single concept or a pair written ``A_and_B``, ``A and B``, ``A_B`` or ``A+B``."""
        single = self.one(ref)
        if single is not None:
            return (single,)
        for sep in ("_and_", " and ", "+"):
            if sep in ref:
                parts = [self.one(p) for p in ref.split(sep)]
                if all(parts) and len(parts) > 1:
                    return tuple(p for p in parts if p)
        # "Casey_Caseys boosted board": the separator is one of possibly several underscores.
        for m in re.finditer("_", ref):
            left, right = self.one(ref[: m.start()]), self.one(ref[m.end() :])
            if left and right:
                return (left, right)
        return None


def resolve_placeholders(question: str, concepts: Sequence[Concept]) -> str:
    """Replace ``<sks>``/``sks`` (single concept) and ``<label>`` tokens with the concepts' names."""
    text = question
    if len(concepts) == 1:
        name = concepts[0].name
        text = re.sub(r"<sks>", lambda _m: name, text, flags=re.IGNORECASE)
        text = re.sub(r"(?<![\w<])sks(?![\w>])", lambda _m: name, text, flags=re.IGNORECASE)
    for c in concepts:
        for alias in {c.label, split_category(c.label)[0], c.name}:
            text = text.replace(f"<{alias}>", c.name)
    return text
