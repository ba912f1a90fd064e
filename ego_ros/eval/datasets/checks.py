"""Checks and notes every reader applies to the concepts and test samples it read."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .records import Concept, DatasetError, TestSample


def check_unique(concepts: Sequence[Concept], where: Path) -> None:
    """Raise DatasetError when two folder labels give the same concept name (the engine keys on names)."""
    seen: dict[str, str] = {}
    for c in concepts:
        if c.name in seen:
            raise DatasetError(where, f"distinct concept names; {seen[c.name]!r} and {c.label!r} both give {c.name!r}")
        seen[c.name] = c.label


def note_short_views(concepts: Sequence[Concept], views: int, notes: list[str]) -> None:
    """Note the concepts that have fewer than ``views`` reference images (they use all they have)."""
    short = [c.name for c in concepts if c.available_views < views]
    if short:
        notes.append(
            f"{len(short)} concept(s) have fewer than {views} reference views and use all they have: "
            + ", ".join(short)
        )


def note_untested(concepts: Sequence[Concept], samples: Sequence[TestSample], notes: list[str]) -> None:
    """Note the concepts no test image shows (they still serve as negatives)."""
    tested = {n for s in samples for n in s.concepts}
    untested = [c.name for c in concepts if c.name not in tested]
    if untested:
        notes.append("concepts without test images (negatives only): " + ", ".join(untested))
