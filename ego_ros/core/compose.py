"""Composition of every prompt the engine sends: concept context, query image(s), question.

One function builds the sequences of introduction (keywords, area), recognition, questions, captions
and video questions, so that whatever trains a model for the engine (the toy model's trainer) and the
engine itself put the very same tokens in the very same places.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .backends.base import Backend, VisualTokens
from .prompts import Part, Slot, fill
from .sequence import Sequence, VisualBlock, build_sequence

CONTEXT_MODES = ("memory", "keywords", "memory+keywords", "reference_images", "none")


@dataclass
class ContextEntry:
    """One concept as placed in the context: its name plus memory views, keywords or raw references."""

    name: str
    memory: list[VisualBlock] = field(default_factory=list)
    keywords: list[str] = field(default_factory=list)
    references: list[VisualTokens] = field(default_factory=list)


def context_parts(backend: Backend, entries: list[ContextEntry], mode: str) -> list[Part]:
    """The context block (header, one entry per concept, footer) as prompt parts with memory slots."""
    if mode not in CONTEXT_MODES:
        raise ValueError(f"unknown context mode {mode!r}; expected one of {CONTEXT_MODES}")
    p = backend.prompts
    if mode == "none" or not entries:
        return []
    parts: list[Part] = [p.context_header]
    for e in entries:
        keywords = ", ".join(e.keywords)
        if mode == "memory":
            parts += fill(p.memory_entry, name=e.name, memory=_slots("memory", e.name, len(e.memory)))
        elif mode == "keywords":
            parts += fill(p.keywords_entry, name=e.name, keywords=keywords)
        elif mode == "memory+keywords":
            parts += fill(p.memory_keywords_entry, name=e.name, memory=_slots("memory", e.name, len(e.memory)),
                          keywords=keywords)
        else:
            parts += fill(p.reference_entry, name=e.name,
                          memory=_slots("reference", e.name, len(e.references)))
    parts.append(p.context_footer)
    return parts


def _slots(kind: str, name: str, n: int) -> list[Part]:
    if n == 0:
        raise ValueError(f"concept {name!r} has no {kind} views for this context mode")
    return [Slot(kind, name, i) for i in range(n)]


def query_sequence(backend: Backend, entries: list[ContextEntry], images: list[VisualTokens], question: str,
                   mode: str = "memory", video: bool = False) -> Sequence:
    """The full chat-formatted sequence: context, the query image(s), then the question.

    The returned sequence ends with the assistant cue; `Sequence.image_start` marks where the static
    context prefix ends (the first query image), which is what the engine caches.
    """
    p = backend.prompts
    by_name = {e.name: e for e in entries}
    image_parts: list[Part] = [p.video_frames_header] if video else []
    image_parts += [Slot("image", "", i) for i in range(len(images))]
    parts = backend.chat(fill(p.query, context=context_parts(backend, entries, mode), images=image_parts,
                              question=question))

    def resolve(slot: Slot) -> VisualBlock:
        if slot.kind == "image":
            return VisualBlock.full(images[slot.index])
        entry = by_name[slot.key]
        if slot.kind == "memory":
            return entry.memory[slot.index]
        return VisualBlock.full(entry.references[slot.index])

    return build_sequence(backend, parts, resolve)


def view_sequence(backend: Backend, image: VisualTokens, question: str) -> Sequence:
    """A question about one image with no concept context (introduction: keywords and area)."""
    return query_sequence(backend, [], [image], question, mode="none")
