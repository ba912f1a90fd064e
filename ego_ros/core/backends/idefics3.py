"""The Idefics3 and SmolVLM backend (SigLIP tower, pixel-shuffle connector, Llama-style LLM).

transformers' `SmolVLMForConditionalGeneration` is `Idefics3ForConditionalGeneration` under another name
(the same modules, the same `text_model` attribute, the same processor strings): one backend covers both.
"""

from __future__ import annotations

import math

import torch
from PIL import Image
from transformers.models.idefics3.image_processing_pil_idefics3 import (
    MAX_IMAGE_SIZE,
    _resize_output_size_rescale_to_max_len,
    _resize_output_size_scale_below_upper_bound,
)

from .. import preprocess, resample
from ..profile import stage
from .base import PREPROCESS_METHODS, Backend, VisualTokens
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

    Preprocessing: the processor resamples with Lanczos, which `ego_ros.core.resample` reproduces exactly
    with torch ops; that path is taken on accelerators. On the CPU Pillow's C is several times faster than
    torch's integer ops, so the processor itself runs there unless "tensor" is asked for explicitly.
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

    def preprocessing_method(self, method: str | None = None) -> str:
        chosen = method or self.preprocess
        if chosen not in PREPROCESS_METHODS:
            raise ValueError(f"unknown preprocessing {chosen!r}; expected one of {PREPROCESS_METHODS}")
        if chosen == "pil" or self._tensor_unsupported() is not None:
            return "pil"
        return "pil" if method is None and self.device.type == "cpu" else "tensor"

    def _tensor_unsupported(self) -> str | None:
        """Why the tensor path cannot reproduce this processor (None: it can)."""
        proc = self.image_processor
        if preprocess.processor_kind(proc) not in ("Idefics3ImageProcessor", "SmolVLMImageProcessor"):
            return f"processor {type(proc).__name__} is not covered"
        if getattr(proc, "do_resize", True) and not resample.supported(getattr(proc, "resample", 1)):
            return f"resampling filter {proc.resample!r} is not reproduced"
        if not (proc.size or {}).get("longest_edge") or not (proc.max_image_size or {}).get("longest_edge"):
            return "size and max_image_size need a longest_edge"
        return None

    def _tensor_tiles(self, image: Image.Image) -> torch.Tensor:
        """(1, 3, s, s) pixel values of one image, the processor's steps (resize the longest edge, squeeze to
        one tile, rescale, normalise) as torch ops on the model's device."""
        proc = self.image_processor
        x = preprocess.upload(image, self.device)
        side = int(proc.max_image_size["longest_edge"])
        if getattr(proc, "do_resize", True):
            h, w = _resize_output_size_rescale_to_max_len(x.shape[1], x.shape[2], max_len=proc.size["longest_edge"])
            h, w = _resize_output_size_scale_below_upper_bound(h, w, max_len=MAX_IMAGE_SIZE)
            x = resample.resize(x, h, w, proc.resample)
        # splitting off: the processor resizes to the tile square whatever do_resize says
        x = resample.resize(x, side, side, proc.resample)
        return preprocess.rescale_normalize(x, proc)[None]

    def pixel_inputs(self, images: list[Image.Image], method: str | None = None) -> dict[str, torch.Tensor]:
        """pixel_values (1, B, 3, s, s) and pixel_attention_mask (1, B, s, s): one square tile per image."""
        with stage("preprocess"):
            if self.preprocessing_method(method) == "tensor":
                pv = torch.cat([self._tensor_tiles(img) for img in images])[None]
                mask = torch.ones((*pv.shape[:2], *pv.shape[3:]), dtype=torch.long, device=self.device)
                return {"pixel_values": pv.to(self.dtype), "pixel_attention_mask": mask}
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
