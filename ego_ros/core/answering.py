"""Answering on the engine: free-form questions about an image, a clip or no image, and captions.

The named concepts are placed in the context (after the similarity filter when there are images) and
the answer decoded greedily over the cached context prefix. A mixin of EgoEngine, like locating.py.
"""

from __future__ import annotations

import re
import time

import torch
from PIL import Image

from .compose import question_sequence
from .errors import InvalidImageError
from .images import ImageInput, to_rgb
from .limits import MAX_QUESTION_CHARS, MAX_QUESTION_TOKENS, check_new_tokens, check_text, check_token_count
from .profile import stage
from .results import Answer


class AnsweringMixin:
    """`ask`, `caption` and `ask_video` (they read EgoEngine's attributes)."""

    def ask(self, image: ImageInput | None, question: str, concepts: list[str] | None = None,
            max_new_tokens: int | None = None) -> Answer:
        """Answer a free-form question about an image (or, with image None, a text-only question) with
        the named concepts in context."""
        question, max_new_tokens = self._check_question(question, max_new_tokens)
        return self._answer([] if image is None else [to_rgb(image)], question, concepts, max_new_tokens)

    def caption(self, image: ImageInput, concepts: list[str] | None = None,
                max_new_tokens: int | None = None) -> Answer:
        """A caption that names the stored concepts it sees (candidates: all stored, or `concepts`)."""
        max_new_tokens = check_new_tokens(self.config.max_new_tokens if max_new_tokens is None else max_new_tokens)
        return self._answer([to_rgb(image)], self.backend.prompts.caption, concepts, max_new_tokens)

    def ask_video(self, frames: list[ImageInput], question: str, concepts: list[str] | None = None,
                  max_new_tokens: int | None = None) -> Answer:
        """Answer about a clip given as several frames (multi-image input)."""
        question, max_new_tokens = self._check_question(question, max_new_tokens)
        if not frames:
            raise InvalidImageError("ask_video needs at least one frame")
        rgb = [to_rgb(f, what=f"frame {i}") for i, f in enumerate(frames)]
        return self._answer(rgb, question, concepts, max_new_tokens, video=True)

    def _check_question(self, question: str, max_new_tokens: int | None) -> tuple[str, int]:
        """The request bounds of a question (limits.py), checked before any model work: characters
        first, so tokenising is always cheap, then tokens."""
        max_new_tokens = check_new_tokens(self.config.max_new_tokens if max_new_tokens is None else max_new_tokens)
        question = check_text(question, "question", MAX_QUESTION_CHARS)
        check_token_count(len(self.backend.tokenize(question)), "question", MAX_QUESTION_TOKENS)
        return question, max_new_tokens

    def _answer(self, images: list[Image.Image], question: str, concepts: list[str] | None,
                max_new_tokens: int | None, video: bool = False) -> Answer:
        names = self._names(concepts)
        t0 = time.perf_counter()
        with self._model_call("answering"), torch.inference_mode():
            vts = self._encode_frames(images) if images else []
            self._check()
            if vts:
                names = self._filter(names, vts[0])
            elif len(names) > self.config.max_context_concepts:
                names = names[:self.config.max_context_concepts]
            with stage("compose"):
                context = self._context(names, len(vts), video)
                seq = question_sequence(self.backend, context, vts, question)
            # The static context ends at the first query image or, for a text-only question, with the head.
            prefix = self._prefix(seq, names, seq.image_start if seq.image_start is not None else len(context.head))
            ids = self.runner.generate(seq, check_new_tokens(max_new_tokens or self.config.max_new_tokens),
                                       prefix=prefix)
        text = self.backend.decode(ids).strip()
        return Answer(text=text, concepts=mentioned(text + " " + question, names),
                      seconds=time.perf_counter() - t0)


def mentioned(text: str, names: list[str]) -> list[str]:
    """Names that occur in `text` as whole words (case-insensitive)."""
    low = text.lower()
    out = []
    for n in names:
        if re.search(rf"(?<!\w){re.escape(n.lower())}(?!\w)", low):
            out.append(n)
    return out
