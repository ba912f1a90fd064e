"""Backends for the supported model families: LLaVA, Qwen2.5-VL and InternVL3 (transformers-native)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from PIL import Image

from .. import preprocess
from ..profile import stage
from .base import Backend, VisualTokens


def _pooled(out) -> list[torch.Tensor] | torch.Tensor:
    """get_image_features returns a tensor in older transformers and an output with pooler_output in 5.x."""
    return out.pooler_output if hasattr(out, "pooler_output") else out


def _whole_image(size: tuple[int, int]) -> tuple[float, float, float, float]:
    return (0.0, 0.0, float(size[0]), float(size[1]))


def _square_pixels(backend: Backend, images: list[Image.Image], method: str | None) -> torch.Tensor:
    """(B, 3, h, w) pixel values of a fixed-size processor (LLaVA's CLIP/SigLIP, InternVL's tile)."""
    with stage("preprocess"):
        if backend.preprocessing_method(method) == "tensor":
            return preprocess.square_pixels(images, backend.image_processor, backend.device, backend.dtype)
        out = backend.image_processor(images=images, return_tensors="pt")
        return out["pixel_values"].to(backend.device, backend.dtype)


def _square_grid_tokens(backend: Backend, images: list[Image.Image],
                        box: Callable[[tuple[int, int]], tuple[float, float, float, float]]) -> list[VisualTokens]:
    """Visual tokens of towers with a square token grid per image (LLaVA, InternVL single tile)."""
    px = backend.pixel_inputs(images)
    cfg = backend.model.config
    with stage("vision"):
        feats = _pooled(backend.model.model.get_image_features(
            pixel_values=px["pixel_values"], vision_feature_layer=cfg.vision_feature_layer,
            vision_feature_select_strategy=cfg.vision_feature_select_strategy))
    out = []
    for img, f in zip(images, feats):
        side = int(math.isqrt(f.shape[0]))
        out.append(VisualTokens(embeds=f, rows=side, cols=f.shape[0] // side, box=box(img.size),
                                image_size=img.size))
    return out


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
        return {"pixel_values": _square_pixels(self, images, method)}

    def encode_images(self, images: list[Image.Image], max_pixels: int | None = None) -> list[VisualTokens]:
        return _square_grid_tokens(self, images, self._crop_box)

    def native_inputs(self, text_ids: list[int], images: list[Image.Image],
                      method: str | None = None) -> dict[str, torch.Tensor]:
        return {"input_ids": torch.tensor([text_ids], device=self.device), **self.pixel_inputs(images, method)}


class Qwen25VLBackend(Backend):
    """Qwen2.5-VL: `<|vision_start|> <|image_pad|>*N <|vision_end|>` framing and 3-D M-RoPE positions.

    The image processor resizes (aspect kept) to multiples of patch * merge pixels; the merged token grid
    is row-major over the whole image.
    """

    family = "qwen2_5_vl"
    mrope = True

    @property
    def placeholder_id(self) -> int:
        return int(self.model.config.image_token_id)

    def visual_frame(self) -> tuple[list[int], list[int]]:
        cfg = self.model.config
        return [int(cfg.vision_start_token_id)], [int(cfg.vision_end_token_id)]

    @property
    def merge(self) -> int:
        return int(self.model.config.vision_config.spatial_merge_size)

    def pixel_inputs(self, images: list[Image.Image], method: str | None = None,
                     max_pixels: int | None = None) -> dict[str, torch.Tensor]:
        """Flat patches and image_grid_thw; `max_pixels` tightens the processor's pixel budget."""
        proc = self.image_processor
        with stage("preprocess"):
            if self.preprocessing_method(method) == "tensor":
                pv, thw = preprocess.patch_pixels(images, proc, self.device, self.dtype, max_pixels=max_pixels)
                return {"pixel_values": pv, "image_grid_thw": thw}
            kwargs = {}
            if max_pixels is not None:
                lo, hi = preprocess.pixel_budget(proc, max_pixels)
                kwargs["size"] = {"shortest_edge": lo, "longest_edge": hi}
            out = proc(images=images, return_tensors="pt", **kwargs)
            return {"pixel_values": out["pixel_values"].to(self.device, self.dtype),
                    "image_grid_thw": out["image_grid_thw"].to(self.device)}

    def encode_images(self, images: list[Image.Image], max_pixels: int | None = None) -> list[VisualTokens]:
        px = self.pixel_inputs(images, max_pixels=max_pixels)
        with stage("vision"):
            feats = _pooled(self.model.model.get_image_features(px["pixel_values"], px["image_grid_thw"]))
        out = []
        for img, f, thw in zip(images, feats, px["image_grid_thw"].tolist()):
            rows, cols = thw[1] // self.merge, thw[2] // self.merge
            if thw[0] != 1 or rows * cols != f.shape[0]:
                raise RuntimeError(f"unexpected visual grid {thw} for {f.shape[0]} tokens")
            out.append(VisualTokens(embeds=f, rows=rows, cols=cols, box=_whole_image(img.size),
                                    image_size=img.size))
        return out

    def native_inputs(self, text_ids: list[int], images: list[Image.Image],
                      method: str | None = None) -> dict[str, torch.Tensor]:
        ids = torch.tensor([text_ids], device=self.device)
        mm = (ids == self.placeholder_id).long()
        return {"input_ids": ids, "mm_token_type_ids": mm, **self.pixel_inputs(images, method)}


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

    @property
    def placeholder_id(self) -> int:
        return int(self.model.config.image_token_id)

    def visual_frame(self) -> tuple[list[int], list[int]]:
        start = self.tokenizer.convert_tokens_to_ids("<img>")
        end = self.tokenizer.convert_tokens_to_ids("</img>")
        return [int(start)], [int(end)]

    def pixel_inputs(self, images: list[Image.Image], method: str | None = None) -> dict[str, torch.Tensor]:
        pv = _square_pixels(self, images, method)
        if pv.shape[0] != len(images):
            raise RuntimeError(f"expected one tile per image, got {pv.shape[0]} tiles for {len(images)} images")
        return {"pixel_values": pv}

    def encode_images(self, images: list[Image.Image], max_pixels: int | None = None) -> list[VisualTokens]:
        return _square_grid_tokens(self, images, _whole_image)

    def native_inputs(self, text_ids: list[int], images: list[Image.Image],
                      method: str | None = None) -> dict[str, torch.Tensor]:
        return {"input_ids": torch.tensor([text_ids], device=self.device), **self.pixel_inputs(images, method)}


class Qwen3VLBackend(Qwen25VLBackend):
    """Qwen3-VL: Qwen2.5-VL framing and M-RoPE, plus DeepStack.

    Qwen3-VL adds features from intermediate vision layers to the hidden states of the first LLM layers
    at every visual row. A memory therefore keeps, for each selected token, its DeepStack features too,
    and the sequence layer passes them with the rows being fed.
    """

    family = "qwen3_vl"
    deepstack = True

    def encode_images(self, images: list[Image.Image], max_pixels: int | None = None) -> list[VisualTokens]:
        px = self.pixel_inputs(images, max_pixels=max_pixels)
        with stage("vision"):
            out = self.model.model.get_image_features(px["pixel_values"], px["image_grid_thw"])
        feats = _pooled(out)
        layers = out.deepstack_features
        if layers and isinstance(layers[0], torch.Tensor):
            # transformers < 5.2x returns each DeepStack layer unsplit (all images' tokens in one tensor)
            sizes = [f.shape[0] for f in feats]
            layers = [torch.split(layer, sizes) for layer in layers]
        deep = [torch.stack(per_image) for per_image in zip(*layers)]
        result = []
        for img, f, d, thw in zip(images, feats, deep, px["image_grid_thw"].tolist()):
            rows, cols = thw[1] // self.merge, thw[2] // self.merge
            result.append(VisualTokens(embeds=f, rows=rows, cols=cols, box=_whole_image(img.size),
                                       image_size=img.size, deepstack=d))
        return result


BACKENDS: dict[str, type[Backend]] = {
    "llava": LlavaBackend,
    "qwen2_5_vl": Qwen25VLBackend,
    "internvl": InternVLBackend,
    "qwen3_vl": Qwen3VLBackend,
}
