"""Composition of every prompt the engine sends: concept context, query image(s), question.

One function builds the sequences of introduction (keywords, area), recognition, questions, captions
and video questions, so that whatever trains a model for the engine (the toy model's trainer) and the
engine itself put the very same tokens in the very same places.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .backends.base import Backend, VisualTokens
from .prompts import Part, Slot, fill, merge_text
from .sequence import Sequence, VisualBlock, build_sequence, common_prefix_length, extend_sequence
from .tails import SharedQueries

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
    image_parts: list[Part] = [p.video_frames_header] if video else []
    image_parts += [Slot("image", "", i) for i in range(len(images))]
    parts = backend.chat(fill(p.query, context=context_parts(backend, entries, mode), images=image_parts,
                              question=question))
    return build_sequence(backend, parts, _resolver(entries, images))


def _resolver(entries: list[ContextEntry], images: list[VisualTokens]) -> Callable[[Slot], VisualBlock]:
    by_name = {e.name: e for e in entries}

    def resolve(slot: Slot) -> VisualBlock:
        if slot.kind == "image":
            return VisualBlock.full(images[slot.index])
        entry = by_name[slot.key]
        if slot.kind == "memory":
            return entry.memory[slot.index]
        return VisualBlock.full(entry.references[slot.index])

    return resolve


#: Stands for the question while a query's chat template is rendered once for many questions.
QUESTION = Slot("question")


@dataclass
class QueryContext:
    """The part of a query's composition that stays the same from frame to frame and question to question.

    `template` is the chat-formatted query with the question left as the `QUESTION` slot; `head` is its
    first `head_parts` parts built (the static context: every concept memory, up to the first query image),
    so that a frame or a question costs only the composition of what follows.
    """

    template: list[Part]
    head: Sequence
    head_parts: int
    #: token ids of the per-question text parts seen so far (recognition asks the same questions every frame)
    tokens: dict[str, list[int]] = field(default_factory=dict, repr=False)

    def tokenize(self, backend: Backend, text: str) -> list[int]:
        ids = self.tokens.get(text)
        if ids is None:
            ids = self.tokens[text] = backend.tokenize(text)
        return ids

    def after_head(self, question: str) -> list[Part]:
        """The parts after the head with the question substituted (only these change per question)."""
        return with_question(self.template[self.head_parts:], question)


def query_context(backend: Backend, entries: list[ContextEntry], n_images: int, mode: str = "memory",
                  video: bool = False) -> QueryContext:
    """Render the query template once (question as a slot) and build its static head.

    Substituting a question into the template gives the parts `query_sequence` builds (the chat template
    must keep content verbatim, which `Backend.chat` already requires)."""
    p = backend.prompts
    image_parts: list[Part] = [p.video_frames_header] if video else []
    image_parts += [Slot("image", "", i) for i in range(n_images)]
    template = backend.chat(fill(p.query, context=context_parts(backend, entries, mode), images=image_parts,
                                 question=QUESTION))
    cut = len(template)
    for i, part in enumerate(template):
        if part == QUESTION:
            # the text just before the question merges with it once substituted: keep it out of the head
            cut = i - 1 if i > 0 and isinstance(template[i - 1], str) else i
            break
        if isinstance(part, Slot) and part.kind == "image":
            cut = i
            break
    head = build_sequence(backend, template[:cut], _resolver(entries, []))
    return QueryContext(template=template, head=head, head_parts=cut)


def with_question(template: list[Part], question: str) -> list[Part]:
    return merge_text([question if part == QUESTION else part for part in template])


def question_sequence(backend: Backend, context: QueryContext, images: list[VisualTokens], question: str
                      ) -> Sequence:
    """The full sequence of one question: `query_sequence`'s tokens, with the context head reused."""
    return extend_sequence(backend, context.head.copy(), context.after_head(question), _resolver([], images))


def recognition_queries(backend: Backend, context: QueryContext, images: list[VisualTokens],
                        questions: list[str]) -> SharedQueries:
    """Several questions about the same image(s) with the same context, composed once.

    The shared part is everything up to the first token where the questions' sequences differ; each tail
    holds only a question's own tokens. Token for token, shared part + tail equals the `query_sequence`
    of that question."""
    resolve = _resolver([], images)
    return _split(backend, context, [context.after_head(q) for q in questions], [resolve] * len(questions),
                  varying_images=False)


def frame_queries(backend: Backend, context: QueryContext, frames: list[VisualTokens], question: str
                  ) -> SharedQueries:
    """The same question about each of several frames (a context for one image): the context is shared,
    each tail holds a frame and the question."""
    parts = context.after_head(question)
    return _split(backend, context, [parts] * len(frames), [_resolver([], [f]) for f in frames],
                  varying_images=True)


def _split(backend: Backend, context: QueryContext, queries: list[list[Part]],
           resolvers: list[Callable[[Slot], VisualBlock]], varying_images: bool) -> SharedQueries:
    """Build the parts all queries share once (after the context head), then each query's own remainder.

    `queries` hold each query's parts after the context head."""

    def same(a: Part, b: Part) -> bool:
        if isinstance(a, Slot):
            return a == b and not (varying_images and a.kind == "image")
        return a == b

    first = queries[0]
    limit = min(len(q) for q in queries)
    k = 0
    while k < limit and all(same(first[k], q[k]) for q in queries[1:]):
        k += 1
    shared = extend_sequence(backend, context.head.copy(), first[:k], resolvers[0])
    context_end = shared.image_start
    if context_end is None and k < limit and isinstance(first[k], Slot) and first[k].kind == "image":
        context_end = len(shared)
    own: list[list[int]] = [[] for _ in queries]
    rest = k
    if k < limit and all(isinstance(q[k], str) for q in queries):
        # The queries differ inside one text part: share its common leading tokens too.
        toks = [context.tokenize(backend, q[k]) for q in queries]
        common = common_prefix_length(toks)
        shared.ids.extend(toks[0][:common])
        own = [t[common:] for t in toks]
        rest = k + 1
    if any(not o and rest >= len(q) for o, q in zip(own, queries)):
        # A query with no token of its own (it equals the shared part): every query takes the shared part's
        # last token back, so that each tail ends on the token whose logits it needs.
        last = len(shared.ids) - 1
        if last < (context_end or 0) or any(s <= last < s + blk.embeds.shape[0] for s, blk in shared.blocks):
            raise ValueError("queries must end with a text token")
        token = shared.ids.pop()
        own = [[token, *o] for o in own]
    tails = [extend_sequence(backend, Sequence(ids=o), q[rest:], r) for q, r, o in zip(queries, resolvers, own)]
    return SharedQueries(shared=shared, tails=tails, context_end=context_end)


def view_sequence(backend: Backend, image: VisualTokens, question: str) -> Sequence:
    """A question about one image with no concept context (introduction: keywords and area)."""
    return query_sequence(backend, [], [image], question, mode="none")
