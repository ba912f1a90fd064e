"""The records every reader returns: concepts, test samples, VQA / caption / video items, the dataset.

Plain dataclasses of paths and strings; nothing here loads pixels or a model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..localisation import ToyMasks


class DatasetError(ValueError):
    """A dataset file or folder is missing or malformed; names the path and what was expected."""

    def __init__(self, path: str | Path, expected: str) -> None:
        self.path = Path(path)
        self.expected = expected
        super().__init__(f"{self.path}: {expected}")


@dataclass(frozen=True)
class Concept:
    """A personal concept: the name the engine stores it under and its reference views."""

    name: str
    display_name: str
    label: str
    reference_images: tuple[Path, ...]
    available_views: int
    category: str | None = None


@dataclass(frozen=True)
class TestSample:
    """A query image and the concepts present in it (one for single-concept, the pair for multi)."""

    image: Path
    concepts: tuple[str, ...]

    @property
    def group(self) -> str:
        return group_name(self.concepts)


@dataclass(frozen=True)
class VQAItem:
    """A question about concepts in an image; ``answer`` is a letter when ``options`` are given."""

    image: Path
    question: str
    answer: str
    concepts: tuple[str, ...]
    options: tuple[tuple[str, str], ...] = ()
    raw_question: str = ""

    @property
    def is_multiple_choice(self) -> bool:
        return bool(self.options)

    @property
    def options_dict(self) -> dict[str, str]:
        return dict(self.options)


@dataclass(frozen=True)
class CaptionItem:
    """An image to caption; the caption must name every concept in ``concepts``."""

    image: Path
    concepts: tuple[str, ...]
    references: tuple[str, ...] = ()


@dataclass(frozen=True)
class VideoItem:
    """A question about a clip, given as frame files in temporal order."""

    id: str
    frames: tuple[Path, ...]
    question: str
    answer: str
    concepts: tuple[str, ...]
    options: tuple[tuple[str, str], ...] = ()
    raw_question: str = ""

    @property
    def is_multiple_choice(self) -> bool:
        return bool(self.options)

    @property
    def options_dict(self) -> dict[str, str]:
        return dict(self.options)


@dataclass
class Dataset:
    """One benchmark read from disk, with ``views`` reference images chosen per concept."""

    kind: str
    root: Path
    views: int
    concepts: list[Concept]
    recognition: list[TestSample] = field(default_factory=list)
    vqa: list[VQAItem] = field(default_factory=list)
    captions: list[CaptionItem] = field(default_factory=list)
    videos: list[VideoItem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: {concept: {other concept: negative kind}} from a toy export's manifest (`ego_ros.eval.negatives`)
    negative_kinds: dict[str, dict[str, str]] = field(default_factory=dict)
    #: exact object masks of a toy export's test images (`ego_ros.eval.localisation`), None for other data
    masks: ToyMasks | None = None

    @property
    def multi_concept(self) -> bool:
        return any(len(s.concepts) > 1 for s in self.recognition) or any(len(c.concepts) > 1 for c in self.captions)

    @property
    def tasks(self) -> tuple[str, ...]:
        """The tasks this dataset provides, in the order the runner performs them."""
        present = {
            "recognition": self.recognition,
            "localisation": self.recognition if self.masks is not None else [],
            "vqa": self.vqa,
            "captioning": self.captions,
            "video_qa": self.videos,
        }
        return tuple(name for name, items in present.items() if items)

    def concept(self, name: str) -> Concept:
        for c in self.concepts:
            if c.name == name:
                return c
        raise KeyError(name)

    def groups(self) -> list[tuple[str, ...]]:
        """Recognition groups: the concepts for single-concept data, the pairs for multi-concept data."""
        if not self.multi_concept:
            return [(c.name,) for c in self.concepts]
        seen: dict[tuple[str, ...], None] = {}
        for s in self.recognition:
            seen.setdefault(s.concepts, None)
        for c in self.captions:
            seen.setdefault(c.concepts, None)
        return list(seen)

    def relpath(self, path: Path) -> str:
        """``path`` relative to the dataset root (POSIX form) when inside it, else absolute."""
        try:
            return path.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return path.resolve().as_posix()


def group_name(concepts: Sequence[str]) -> str:
    """Display key of a concept group: ``"A + B"`` for pairs, the name itself for one concept."""
    return " + ".join(concepts)
