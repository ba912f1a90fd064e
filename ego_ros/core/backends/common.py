"""Helpers shared by the family backends: pooled image features, whole-image boxes, square tiles."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from PIL import Image

from .. import preprocess
from ..profile import stage
from .base import Backend, VisualTokens


def pooled(out) -> list[torch.Tensor] | torch.Tensor:
    """get_image_features returns a tensor in older transformers and an output with pooler_output in 5.x."""
    return out.pooler_output if hasattr(out, "pooler_output") else out


def whole_image(size: tuple[int, int]) -> tuple[float, float, float, float]:
    return (0.0, 0.0, float(size[0]), float(size[1]))


def square_pixels(backend: Backend, images: list[Image.Image], method: str | None) -> torch.Tensor:
    """(B, 3, h, w) pixel values of a fixed-size processor (LLaVA's CLIP/SigLIP, InternVL's tile)."""
    with stage("preprocess"):
        if backend.preprocessing_method(method) == "tensor":
            return preprocess.square_pixels(images, backend.image_processor, backend.device, backend.dtype)
        out = backend.image_processor(images=images, return_tensors="pt")
        return out["pixel_values"].to(backend.device, backend.dtype)


def square_grid_tokens(backend: Backend, images: list[Image.Image],
                       box: Callable[[tuple[int, int]], tuple[float, float, float, float]]) -> list[VisualTokens]:
    """Visual tokens of towers with a square token grid per image (LLaVA, InternVL single tile)."""
    px = backend.pixel_inputs(images)
    cfg = backend.model.config
    with stage("vision"):
        feats = pooled(backend.model.model.get_image_features(
            pixel_values=px["pixel_values"], vision_feature_layer=cfg.vision_feature_layer,
            vision_feature_select_strategy=cfg.vision_feature_select_strategy))
    out = []
    for img, f in zip(images, feats):
        side = int(math.isqrt(f.shape[0]))
        out.append(VisualTokens(embeds=f, rows=side, cols=f.shape[0] // side, box=box(img.size),
                                image_size=img.size))
    return out
