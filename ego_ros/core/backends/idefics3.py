"""The Idefics3 and SmolVLM backend (SigLIP tower, pixel-shuffle connector, Llama-style LLM).

transformers' `SmolVLMForConditionalGeneration` is `Idefics3ForConditionalGeneration` under another name
(the same modules, the same `text_model` attribute, the same processor strings): one backend covers both.
"""

from __future__ import annotations

import math

import torch
from PIL import Image

from ..profile import stage
from .base import Backend, VisualTokens
from .common import pooled, whole_image

#: The tokens Idefics3's processor writes around an image (`Idefics3Processor.replace_image_token`).
FAKE_TOKEN = "<fake_token_around_image>"
GLOBAL_TAG = "<global-img>"


class Idefics3Backend(Backend):
    """Idefics3 / SmolVLM with the processor's image splitting off: one square tile per image.

    The processor resizes the longest edge to `size`, then squeezes the image to one `max_image_size`
    square (aspect not kept), so the token grid covers the whole image. The connector's pixel shuffle
    merges scale x scale patches into one token, row-major over the tile: (side / patch / scale)^2 tokens,
    framed `<fake_token_around_image><global-img> <image>*N <fake_token_around_image>`.
    Positions are 1-D.
    """

    family = "idefics3"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if getattr(self.image_processor, "do_image_splitting", False):
            self.image_processor.do_image_splitting = False
        self._frame: tuple[list[int], list[int]] | None = None

    @property
    def language_model(self) -> torch.nn.Module:
        return self.model.model.text_model

    @property
    def placeholder_id(self) -> int:
        return int(self.model.config.image_token_id)

    def _token_id(self, token: str) -> int:
        tid = self.tokenizer.convert_tokens_to_ids(token)
        if tid is None or tid == self.tokenizer.unk_token_id or self.tokenize(token) != [tid]:
            raise ValueError(f"the tokenizer of this {self.family} model has no single token {token!r}, which "
                             "its processor writes around every image")
        return int(tid)

    def visual_frame(self) -> tuple[list[int], list[int]]:
        if self._frame is None:
            fake, tag = self._token_id(FAKE_TOKEN), self._token_id(GLOBAL_TAG)
            self._frame = ([fake, tag], [fake])
        return self._frame

    def _fingerprint_tensors(self) -> list[torch.Tensor]:
        # The connector (not named projector/merger) maps the tower into the LLM input space.
        connector = self.model.model.connector.modality_projection.proj.weight
        return [self.model.get_input_embeddings().weight[:64], connector]

    def pixel_inputs(self, images: list[Image.Image], method: str | None = None) -> dict[str, torch.Tensor]:
        """pixel_values (1, B, 3, s, s) and pixel_attention_mask (1, B, s, s): one square tile per image.

        Always the processor's own path: it resamples with Lanczos, which has no tensor equivalent here
        (`preprocess.unsupported` says so), so `method` only selects it."""
        self.preprocessing_method(method)  # rejects an unknown method
        with stage("preprocess"):
            out = self.image_processor(images=[images], return_tensors="pt")
        pv = out["pixel_values"]
        if pv.shape[:2] != (1, len(images)):
            raise RuntimeError(f"expected one tile per image, got pixel values of shape {tuple(pv.shape)} for "
                               f"{len(images)} images")
        return {"pixel_values": pv.to(self.device, self.dtype),
                "pixel_attention_mask": out["pixel_attention_mask"].to(self.device)}

    def encode_images(self, images: list[Image.Image], max_pixels: int | None = None) -> list[VisualTokens]:
        px = self.pixel_inputs(images)
        with stage("vision"):
            feats = pooled(self.model.model.get_image_features(**px))
        feats = torch.cat(list(feats)) if isinstance(feats, (list, tuple)) else feats.reshape(-1, feats.shape[-1])
        per_image = feats.shape[0] // len(images) if images else 0
        side = math.isqrt(per_image)
        if per_image * len(images) != feats.shape[0] or side * side != per_image:
            raise RuntimeError(f"unexpected visual features {tuple(feats.shape)} for {len(images)} images (an all-zero "
                               "tile is dropped by the model as padding)")
        return [VisualTokens(embeds=f, rows=side, cols=side, box=whole_image(img.size), image_size=img.size)
                for img, f in zip(images, feats.split(per_image))]

    def native_inputs(self, text_ids: list[int], images: list[Image.Image],
                      method: str | None = None) -> dict[str, torch.Tensor]:
        return {"input_ids": torch.tensor([text_ids], device=self.device), **self.pixel_inputs(images, method)}


class SmolVLMBackend(Idefics3Backend):
    """SmolVLM (`SmolVLMForConditionalGeneration`): Idefics3's model and framing under its own name."""

    family = "smolvlm"
