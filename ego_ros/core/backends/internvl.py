"""The InternVL3 backend (transformers-native InternVLForConditionalGeneration)."""

from __future__ import annotations

import torch
from PIL import Image

from .base import Backend, VisualTokens
from .common import square_grid_tokens, square_pixels, whole_image


class InternVLBackend(Backend):
    """InternVL3 through transformers' native `InternVLForConditionalGeneration`: `<img> ... </img>` framing.

    One 448-pixel tile per image (the paper's setting): the processor's tiling is switched off when the
    backend is created. Pixel shuffle merges 2x2 patches, so the token grid is row-major over the image.
    """

    family = "internvl"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if hasattr(self.image_processor, "crop_to_patches"):
            self.image_processor.crop_to_patches = False

    def processor_kwargs(self) -> dict:
        # this backend encodes one tile per image (see __init__); the probe asks the processor for the same
        return {"crop_to_patches": False}

    @property
    def placeholder_id(self) -> int:
        return int(self.model.config.image_token_id)

    def visual_frame(self) -> tuple[list[int], list[int]]:
        start = self.tokenizer.convert_tokens_to_ids("<img>")
        end = self.tokenizer.convert_tokens_to_ids("</img>")
        return [int(start)], [int(end)]

    def pixel_inputs(self, images: list[Image.Image], method: str | None = None) -> dict[str, torch.Tensor]:
        pv = square_pixels(self, images, method)
        if pv.shape[0] != len(images):
            raise RuntimeError(f"expected one tile per image, got {pv.shape[0]} tiles for {len(images)} images")
        return {"pixel_values": pv}

    def encode_images(self, images: list[Image.Image], max_pixels: int | None = None) -> list[VisualTokens]:
        return square_grid_tokens(self, images, whole_image)

    def native_inputs(self, text_ids: list[int], images: list[Image.Image],
                      method: str | None = None) -> dict[str, torch.Tensor]:
        return {"input_ids": torch.tensor([text_ids], device=self.device), **self.pixel_inputs(images, method)}
