"""The anyres LLaVA backends: LLaVA-NeXT and LLaVA-OneVision (a base grid plus a high-resolution grid).

How these models see an image (transformers' `LlavaNextImageProcessor` / `LlavaOnevisionImageProcessor`
and `pack_image_features`): the processor picks the grid pinpoint (a canvas of rows x cols crops of the
tower's input size) that best fits the image, resizes the image onto it keeping the aspect ratio, pads
it, and cuts the crops; a squashed copy of the whole image comes first (the base crop). The model
encodes every crop, keeps the base crop's grid as it is, assembles the crops' grids into one canvas grid,
drops the rows or columns that only saw padding ("unpad"), LLaVA-OneVision bilinearly downsamples that
grid when it exceeds `vision_aspect_ratio` ("anyres_max_9": about 9 crops' worth), and appends a learned
newline embedding after each of its rows.

Here an image's token list is the base grid's tokens then the high-resolution grid's, row-major, with
no newlines (they are no patch tokens: `frame_visual` adds them back as structural rows of a full
block, so a full memory or query image is laid out exactly as the model's own packing lays it out).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers.image_processing_utils import get_patch_output_size, select_best_resolution
from transformers.image_utils import ChannelDimension
from transformers.models.llava_next.modeling_llava_next import unpad_image

from .. import preprocess
from ..errors import InvalidImageError
from ..layout import Grid, Layout
from ..profile import stage
from .base import Backend, Piece, StructuralRun, VisualRun, VisualTokens
from .internvl import DEFAULT_MAX_TILES as INTERNVL_MAX_TILES
from .llava import covered, field, tower_reason

#: Crops per image (base crop not counted) unless the engine says otherwise (`max_tiles`): InternVL's
#: default tile bound, for the same reason (a robot prefills every frame's tokens). Pinpoints with more
#: crops are left out of the processor's choice; a checkpoint whose pinpoints all fit is unchanged.
DEFAULT_MAX_TILES = INTERNVL_MAX_TILES


class LlavaNextBackend(Backend):
    """LLaVA-NeXT (`LlavaNextForConditionalGeneration`): CLIP or SigLIP crops, anyres packing with newlines."""

    family = "llava_next"
    tiles_images = True
    processors: tuple[str, ...] = ("LlavaNextImageProcessor",)

    def __init__(self, *args: Any, max_tiles: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.set_max_tiles(DEFAULT_MAX_TILES if max_tiles is None else max_tiles)

    # ----- what is modelled -----------------------------------------------------------------------------
    def unsupported_reason(self) -> str | None:
        """A CLIP tower with "default" feature selection or SigLIP with "full" (each crop a square patch
        grid), and the family's anyres image processor with square crops of the tower's input size and the
        model's own grid pinpoints."""
        cfg = self.model.config
        reason = tower_reason(cfg)
        if reason is not None:
            return reason
        side = cfg.vision_config.image_size
        proc = self.image_processor
        kind = type(proc).__name__.removesuffix("Pil").removesuffix("Fast")
        if kind not in self.processors:
            return f"its image processor {type(proc).__name__} is not one of the modelled {list(self.processors)}"
        if not getattr(proc, "do_resize", True):
            return f"its image processor {type(proc).__name__} does not resize its crops"
        if self.crop_side() != side:
            return f"its image processor makes {self.crop_side()} px crops but the tower takes {side} px"
        pinpoints = [list(map(int, p)) for p in (getattr(proc, "image_grid_pinpoints", None) or [])]
        if pinpoints != [list(map(int, p)) for p in cfg.image_grid_pinpoints]:
            return "its image processor's image_grid_pinpoints differ from the model's"
        if any(h % side or w % side for h, w in pinpoints):
            return f"a grid pinpoint is not a whole number of {side} px crops"
        return None

    def crop_side(self) -> int | None:
        """Side of the square crops the processor feeds the tower (None: not square)."""
        proc = self.image_processor
        size, crop = getattr(proc, "size", None), getattr(proc, "crop_size", None)
        if getattr(proc, "do_center_crop", False) and field(crop, "height"):
            out = (field(crop, "height"), field(crop, "width"))
            if field(size, "shortest_edge") and field(size, "shortest_edge") != out[0]:
                return None
        elif field(size, "height"):
            out = (field(size, "height"), field(size, "width"))
        else:
            out = (field(size, "shortest_edge"),) * 2
        return int(out[0]) if out[0] == out[1] and out[0] else None

    # ----- tiles ------------------------------------------------------------------------------------------
    def set_max_tiles(self, max_tiles: int) -> None:
        """Bound the crops of each image (the base crop not counted); at least one pinpoint must fit."""
        super().set_max_tiles(max_tiles)
        if not self._pinpoints(max_tiles):
            raise ValueError(f"no grid pinpoint of {self.name!r} has at most {max_tiles} crops")

    def _pinpoints(self, max_tiles: int) -> list[list[int]]:
        side = int(self.model.config.vision_config.image_size)
        return [[int(h), int(w)] for h, w in self.model.config.image_grid_pinpoints
                if (h // side) * (w // side) <= max_tiles]

    def pinpoints(self, max_pixels: int | None = None) -> list[list[int]]:
        """The grid pinpoints the processor may choose from: those of at most `max_tiles` crops, tightened
        by a pixel budget (a reference view's `reference_max_pixels`) to the crops that fit in it."""
        max_tiles = self.max_tiles
        if max_pixels is not None:
            side = int(self.model.config.vision_config.image_size)
            max_tiles = max(1, min(max_tiles, int(max_pixels) // (side * side)))
        return self._pinpoints(max_tiles) or self._pinpoints(self.max_tiles)

    def processor_image_ids(self, processor: Any, image: Image.Image) -> tuple[list[int], tuple[int, int] | None]:
        # the anyres processors count an image's tokens with their image processor's own pinpoints, whatever
        # pinpoints a call passes: the probe gives a copy the pinpoints that `max_tiles` allows
        bounded = copy.copy(processor)
        bounded.image_processor = copy.copy(processor.image_processor)
        bounded.image_processor.image_grid_pinpoints = self.pinpoints()
        return super().processor_image_ids(bounded, image)

    # ----- tokens ------------------------------------------------------------------------------------------
    @property
    def placeholder_id(self) -> int:
        return int(self.model.config.image_token_index)

    @property
    def newline(self) -> torch.Tensor:
        """The learned embedding after each row of the high-resolution grid."""
        return self.model.model.image_newline

    def frame_visual(self, layout: Layout, indices: np.ndarray) -> list[Piece]:
        """A full block as the model packs it (base grid, then each high-resolution row and a newline);
        a subset memory as its kept tokens, in order."""
        if len(layout.grids) != 2 or len(indices) != layout.count:
            return super().frame_visual(layout, indices)
        base, high = layout.grids
        newline = StructuralRun(self.newline.detach()[None].to(self.dtype))
        pieces: list[Piece] = [VisualRun(0, base.count)]
        for r in range(high.rows):
            start = high.offset + r * high.cols
            pieces += [VisualRun(start, start + high.cols), newline]
        return pieces

    # ----- images ------------------------------------------------------------------------------------------
    def pixel_inputs(self, images: list[Image.Image], method: str | None = None,
                     pinpoints: list[list[int]] | None = None) -> dict[str, torch.Tensor]:
        """Pixel values (B, crops, 3, S, S) and image_sizes (B, 2) (height, width), choosing among
        `pinpoints` (default: those `max_tiles` allows)."""
        pinpoints = pinpoints if pinpoints is not None else self.pinpoints()
        with stage("preprocess"):
            if self.preprocessing_method(method) == "tensor":
                pv, sizes = preprocess.anyres_pixels(images, self.image_processor, self.device, self.dtype,
                                                     pinpoints, int(self.model.config.vision_config.image_size))
                return {"pixel_values": pv, "image_sizes": sizes}
            out = self.image_processor(images=images, return_tensors="pt", image_grid_pinpoints=pinpoints)
        return {"pixel_values": out["pixel_values"].to(self.device, self.dtype),
                "image_sizes": out["image_sizes"].to(self.device)}

    def _project(self, crops: torch.Tensor) -> torch.Tensor:
        """(n, side * side, D) projector outputs of crops: the tower's selected layer(s) and strategy, as
        `get_image_features` computes them before packing (which reads the pinpoints from the config only,
        so it cannot pack an image cut with `max_tiles` fewer crops)."""
        cfg = self.model.config
        out = self.model.model.vision_tower(crops, output_hidden_states=True, return_dict=True)
        layer = cfg.vision_feature_layer
        hidden = (out.hidden_states[layer] if isinstance(layer, int)
                  else torch.cat([out.hidden_states[i] for i in layer], dim=-1))
        if cfg.vision_feature_select_strategy == "default":
            hidden = hidden[:, 1:]
        return self.model.model.multi_modal_projector(hidden)

    def _downsample(self, grid: torch.Tensor, side: int) -> torch.Tensor:
        """(D, H, W) high-resolution grid as the model receives it (LLaVA-NeXT: unchanged)."""
        return grid

    def encode_images(self, images: list[Image.Image], max_pixels: int | None = None) -> list[VisualTokens]:
        """Visual tokens of each image; `max_pixels` bounds its crops (see `pinpoints`)."""
        pinpoints = self.pinpoints(max_pixels)
        px = self.pixel_inputs(images, pinpoints=pinpoints)
        side_px = int(self.model.config.vision_config.image_size)
        side = side_px // int(self.model.config.vision_config.patch_size)
        sizes = [(int(h), int(w)) for h, w in px["image_sizes"].tolist()]
        shapes = [select_best_resolution(hw, pinpoints) for hw in sizes]
        counts = [1 + (ph // side_px) * (pw // side_px) for ph, pw in shapes]
        crops = torch.cat([pv[:n] for pv, n in zip(px["pixel_values"], counts)])
        with stage("vision"):
            feats = torch.split(self._project(crops), counts)
        out = []
        for img, hw, (ph, pw), f in zip(images, sizes, shapes, feats):
            nph, npw = ph // side_px, pw // side_px
            canvas = f[1:].view(nph, npw, side, side, -1).permute(4, 0, 2, 1, 3).reshape(-1, nph * side, npw * side)
            high = unpad_image(canvas, list(hw))
            kept = high.shape[1:]
            if kept[1] == 0 and kept[0] > 0:
                # the model would still append a newline to each of these empty rows: rows of no token
                # have no place in a layout of grids, so such an image is refused rather than misplaced
                raise InvalidImageError(
                    f"a {img.size[0]}x{img.size[1]} image is too narrow for the {self.family} grid pinpoints "
                    f"(its high-resolution grid unpads to {kept[0]} rows of no columns); crop or pad it")
            high = self._downsample(high, side)
            rows, cols = high.shape[1:]
            embeds = torch.cat([f[0], high.flatten(1).transpose(0, 1)])
            w, h = img.size
            kept_frac = covered(side_px, int(self.model.config.vision_config.patch_size)) / side_px
            grids = [Grid(0, side, side, (0.0, 0.0, w * kept_frac, h * kept_frac), "base")]
            if rows * cols:  # an image far wider than its pinpoint can unpad to nothing: the base grid alone
                box = highres_box(img.size, (ph, pw), (nph * side, npw * side), tuple(kept))
                grids.append(Grid(side * side, int(rows), int(cols), box, "highres"))
            layout = Layout(tuple(grids))
            out.append(VisualTokens.tiled(embeds, layout, img.size))
        return out

    def native_inputs(self, text_ids: list[int], images: list[Image.Image],
                      method: str | None = None) -> dict[str, torch.Tensor]:
        """The model's own inputs (its config's pinpoints: equal to the backend's while all of them fit
        `max_tiles`)."""
        px = self.pixel_inputs(images, method, pinpoints=[list(p) for p in self.model.config.image_grid_pinpoints])
        return {"input_ids": torch.tensor([text_ids], device=self.device), **px}


class LlavaOnevisionBackend(LlavaNextBackend):
    """LLaVA-OneVision (`LlavaOnevisionForConditionalGeneration`): LLaVA-NeXT's packing, plus a bilinear
    downsampling of the high-resolution grid beyond `vision_aspect_ratio` ("anyres_max_N")."""

    family = "llava_onevision"
    processors = ("LlavaOnevisionImageProcessor",)

    def unsupported_reason(self) -> str | None:
        reason = super().unsupported_reason()
        ratio = str(getattr(self.model.config, "vision_aspect_ratio", ""))
        if reason is None and not (ratio.startswith("anyres_max_") and ratio[len("anyres_max_"):].isdigit()):
            reason = f"vision_aspect_ratio {ratio!r} is not of the modelled form 'anyres_max_N'"
        return reason

    def _downsample(self, grid: torch.Tensor, side: int) -> torch.Tensor:
        """The model's rule: a grid of more than about N crops' tokens (ratio over 1.1) is resized
        bilinearly to its size divided by the ratio."""
        limit = int(str(self.model.config.vision_aspect_ratio)[len("anyres_max_"):])
        _, h, w = grid.shape
        ratio = math.sqrt(h * w / (limit * side ** 2))
        if ratio <= 1.1:
            return grid
        return torch.nn.functional.interpolate(grid[None], [int(h // ratio), int(w // ratio)], mode="bilinear")[0]

    def native_inputs(self, text_ids: list[int], images: list[Image.Image],
                      method: str | None = None) -> dict[str, torch.Tensor]:
        inputs = super().native_inputs(text_ids, images, method)
        # each image of the prompt cut into crops, as the backend encodes it (the processor's own
        # multi-image case gives each image one uncut crop instead)
        inputs["batch_num_images"] = torch.ones(len(images), dtype=torch.long, device=self.device)
        return inputs


def highres_box(size: tuple[int, int], canvas: tuple[int, int], grid: tuple[int, int], kept: tuple[int, int]
                ) -> tuple[float, float, float, float]:
    """The region of the input image (width, height `size`) that the unpadded high-resolution grid covers.

    The processor resized the image onto the `canvas` (height, width) pinpoint keeping its aspect ratio
    and centred it with padding; the canvas grid has `grid` (rows, cols) cells, and unpadding kept the
    central `kept` (rows, cols) of them. Mapping those cells back through the resize gives the box.

    Cells are taken as evenly spread over the canvas: exact when the crop side is a whole number of
    patches; otherwise (SigLIP-384/14) each crop's last few pixels are no patch, and the even spread errs
    by less than that remainder."""
    w, h = size
    new_h, new_w = get_patch_output_size(np.broadcast_to(np.uint8(0), (1, h, w)), canvas, ChannelDimension.FIRST)
    pad_y, pad_x = (canvas[0] - new_h) // 2, (canvas[1] - new_w) // 2
    cell_y, cell_x = canvas[0] / grid[0], canvas[1] / grid[1]
    top, left = (grid[0] - kept[0]) // 2, (grid[1] - kept[1]) // 2
    sy, sx = new_h / h, new_w / w
    return ((left * cell_x - pad_x) / sx, (top * cell_y - pad_y) / sy,
            ((left + kept[1]) * cell_x - pad_x) / sx, ((top + kept[0]) * cell_y - pad_y) / sy)
