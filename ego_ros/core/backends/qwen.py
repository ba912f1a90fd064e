"""The Qwen2-VL, Qwen2.5-VL and Qwen3-VL backends (M-RoPE; DeepStack for Qwen3-VL)."""

from __future__ import annotations

import torch
from PIL import Image

from .. import preprocess
from ..errors import ModelLoadError
from ..profile import stage
from .base import Backend, VisualTokens
from .common import pooled, whole_image


class Qwen2VLBackend(Backend):
    """Qwen2-VL: `<|vision_start|> <|image_pad|>*N <|vision_end|>` framing and 3-D M-RoPE positions.

    The image processor resizes (aspect kept) to multiples of patch * merge pixels; the merged token grid
    is row-major over the whole image. A still image's M-RoPE positions are the same in Qwen2-VL and
    Qwen2.5-VL (`get_rope_index` differs only in the temporal spacing of video frames), and both towers
    return the merged tokens of each image in the same order, so Qwen2.5-VL is this class under its name.
    """

    family = "qwen2_vl"
    mrope = True

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.sliding_window is not None:
            raise ModelLoadError(f"{self.family} with sliding-window layers (use_sliding_window) is not supported: "
                                 "the engine measures windows in 1-D positions and these models use M-RoPE")

    @property
    def placeholder_id(self) -> int:
        return int(self.model.config.image_token_id)

    def visual_frame(self) -> tuple[list[int], list[int]]:
        cfg = self.model.config
        return [int(cfg.vision_start_token_id)], [int(cfg.vision_end_token_id)]

    def probe_text(self, processor) -> str:
        # Qwen's chat template, not its processor, puts the vision start/end tokens around the image pad
        before, after = self.visual_frame()
        return self.tokenizer.decode(before) + super().probe_text(processor) + self.tokenizer.decode(after)

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
            feats = pooled(self.model.model.get_image_features(px["pixel_values"], px["image_grid_thw"]))
        out = []
        for img, f, thw in zip(images, feats, px["image_grid_thw"].tolist()):
            rows, cols = thw[1] // self.merge, thw[2] // self.merge
            if thw[0] != 1 or rows * cols != f.shape[0]:
                raise RuntimeError(f"unexpected visual grid {thw} for {f.shape[0]} tokens")
            out.append(VisualTokens(embeds=f, rows=rows, cols=cols, box=whole_image(img.size),
                                    image_size=img.size))
        return out

    def native_inputs(self, text_ids: list[int], images: list[Image.Image],
                      method: str | None = None) -> dict[str, torch.Tensor]:
        ids = torch.tensor([text_ids], device=self.device)
        mm = (ids == self.placeholder_id).long()
        return {"input_ids": ids, "mm_token_type_ids": mm, **self.pixel_inputs(images, method)}


class Qwen25VLBackend(Qwen2VLBackend):
    """Qwen2.5-VL: Qwen2-VL's framing and positions (its tower adds windowed attention, which the model
    computes itself)."""

    family = "qwen2_5_vl"


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
        feats = pooled(out)
        layers = out.deepstack_features
        if layers and isinstance(layers[0], torch.Tensor):
            # transformers < 5.2x returns each DeepStack layer unsplit (all images' tokens in one tensor)
            sizes = [f.shape[0] for f in feats]
            layers = [torch.split(layer, sizes) for layer in layers]
        deep = [torch.stack(per_image) for per_image in zip(*layers)]
        result = []
        for img, f, d, thw in zip(images, feats, deep, px["image_grid_thw"].tolist()):
            rows, cols = thw[1] // self.merge, thw[2] // self.merge
            result.append(VisualTokens(embeds=f, rows=rows, cols=cols, box=whole_image(img.size),
                                       image_size=img.size, deepstack=d))
        return result
