"""The Gemma 3 backend (SigLIP tower, pooled soft tokens, bidirectional image blocks, sliding-window layers)."""

from __future__ import annotations

import math

import torch
from PIL import Image

from ..errors import ModelLoadError
from ..profile import stage
from ..prompts import Part, Slot, merge_text
from .base import Backend, VisualTokens
from .common import pooled, square_pixels, whole_image

#: The text Gemma3Processor puts around an image's soft tokens (`full_image_sequence`: a blank line, the
#: begin-of-image token, the soft tokens, the end-of-image token, a blank line).
FRAME_TEXT = ("\n\n", "\n\n")
#: Slot kinds that hold visual rows (the rest, e.g. compose's question slot, are text placeholders).
VISUAL_SLOTS = ("image", "memory", "reference")


class Gemma3Backend(Backend):
    r"""Gemma 3 (`Gemma3ForConditionalGeneration`).

    The image processor resizes the whole image to the tower's square input (no crop); the projector
    average-pools the SigLIP patch grid to a fixed square of `mm_tokens_per_image` soft tokens, so the
    token grid covers the whole image. The processor frames the soft tokens as
    `\n\n<start_of_image> <image_soft_token>*N <end_of_image>\n\n` and tokenises the blank lines with
    the text around them (the special tokens split the text; a text ending in a newline can merge with the
    blank line into one token: Gemma's vocabulary holds runs of newlines): `chat` adds them to the
    neighbouring text parts of every visual slot, so that the engine's ids are the processor's.

    The model differs from the other families in two ways the engine reproduces (`masks`): the soft
    tokens of one image attend to each other bidirectionally (text stays causal), and most layers see only
    the last `sliding_window` keys. Text embeddings are scaled by sqrt(hidden) inside the embedding
    layer, image features are not: the engine embeds text with the model's own embedding layer and
    overwrites the visual rows with projector outputs, as the model's forward does.

    Pan-and-scan (extra crops of a wide image, off by default in transformers) is switched off even where
    a processor config turns it on: each image is one square view.
    """

    family = "gemma3"
    bidirectional_visual = True

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        text = self.model.config.get_text_config()
        if getattr(text, "use_bidirectional_attention", False):
            raise ModelLoadError("Gemma 3 with use_bidirectional_attention (every token bidirectional, an "
                                 "embedding model) is not a generative model the engine can run")
        if hasattr(self.image_processor, "do_pan_and_scan"):
            self.image_processor.do_pan_and_scan = False

    @property
    def placeholder_id(self) -> int:
        return int(self.model.config.image_token_id)

    def visual_frame(self) -> tuple[list[int], list[int]]:
        cfg = self.model.config
        return [int(cfg.boi_token_id)], [int(cfg.eoi_token_id)]

    def chat(self, parts: list[Part]) -> list[Part]:
        """The chat-formatted parts with the frame's blank lines joined to the text around each visual slot
        (tokenised with it, as the processor tokenises them)."""
        before, after = FRAME_TEXT
        framed: list[Part] = []
        for part in super().chat(parts):
            if isinstance(part, Slot) and part.kind in VISUAL_SLOTS:
                framed += [before, part, after]
            else:
                framed.append(part)
        return merge_text(framed)

    def probe_text(self, processor) -> str:
        """Gemma3Processor expands its begin-of-image token (not the soft token) into the image's sequence."""
        return str(getattr(processor, "boi_token", None) or self.token_text(int(self.model.config.boi_token_id)))

    def probe_parts(self) -> list[Part]:
        """The probe image framed as prompts frame it: `chat` joins the frame's blank lines to the text."""
        before, after = FRAME_TEXT
        return [before, Slot("image"), after]

    def pixel_inputs(self, images: list[Image.Image], method: str | None = None) -> dict[str, torch.Tensor]:
        pv = square_pixels(self, images, method)
        if pv.shape[0] != len(images):
            raise RuntimeError(f"expected one view per image, got {pv.shape[0]} for {len(images)} images")
        return {"pixel_values": pv}

    def encode_images(self, images: list[Image.Image], max_pixels: int | None = None) -> list[VisualTokens]:
        px = self.pixel_inputs(images)
        with stage("vision"):
            feats = pooled(self.model.model.get_image_features(pixel_values=px["pixel_values"]))
        out = []
        for img, f in zip(images, feats):
            side = math.isqrt(f.shape[0])
            if side * side != f.shape[0]:
                raise RuntimeError(f"expected a square grid of soft tokens, got {f.shape[0]}")
            out.append(VisualTokens(embeds=f, rows=side, cols=side, box=whole_image(img.size), image_size=img.size))
        return out

    def native_inputs(self, text_ids: list[int], images: list[Image.Image],
                      method: str | None = None) -> dict[str, torch.Tensor]:
        """The model's own inputs: ids, pixels and the token types (1 at the soft tokens) its forward turns
        into the bidirectional image mask, as Gemma3Processor returns them."""
        ids = torch.tensor([text_ids], device=self.device)
        return {"input_ids": ids, "token_type_ids": (ids == self.placeholder_id).long(),
                **self.pixel_inputs(images, method)}
