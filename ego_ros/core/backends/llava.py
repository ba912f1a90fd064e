"""The LLaVA backend (CLIP or SigLIP tower, the toy model's family)."""

from __future__ import annotations

import torch
from PIL import Image

from .base import Backend, VisualTokens
from .common import square_grid_tokens, square_pixels


class LlavaBackend(Backend):
    """LLaVA (`LlavaForConditionalGeneration`) with a CLIP or SigLIP tower; no framing tokens.

    The image processor either resizes to a fixed size (SigLIP) or resizes the shortest edge and takes a
    centre crop (CLIP); the token grid covers the full image or that crop accordingly.
    """

    family = "llava"

    @property
    def placeholder_id(self) -> int:
        return int(self.model.config.image_token_index)

    def _crop_box(self, size: tuple[int, int]) -> tuple[float, float, float, float]:
        w, h = size
        proc = self.image_processor
        if not getattr(proc, "do_center_crop", False):
            return (0.0, 0.0, float(w), float(h))
        shortest = (getattr(proc, "size", None) or {}).get("shortest_edge")
        crop = getattr(proc, "crop_size", None) or {}
        ch, cw = crop.get("height"), crop.get("width")
        if not shortest or not ch or not cw:
            return (0.0, 0.0, float(w), float(h))
        scale = shortest / min(w, h)
        rw, rh = w * scale, h * scale
        x0, y0 = (rw - cw) / 2 / scale, (rh - ch) / 2 / scale
        return (max(0.0, x0), max(0.0, y0), min(float(w), x0 + cw / scale), min(float(h), y0 + ch / scale))

    def pixel_inputs(self, images: list[Image.Image], method: str | None = None) -> dict[str, torch.Tensor]:
        return {"pixel_values": square_pixels(self, images, method)}

    def encode_images(self, images: list[Image.Image], max_pixels: int | None = None) -> list[VisualTokens]:
        return square_grid_tokens(self, images, self._crop_box)

    def native_inputs(self, text_ids: list[int], images: list[Image.Image],
                      method: str | None = None) -> dict[str, torch.Tensor]:
        return {"input_ids": torch.tensor([text_ids], device=self.device), **self.pixel_inputs(images, method)}
