"""The InternVL3 backend (transformers-native InternVLForConditionalGeneration), tiled like its processor."""

from __future__ import annotations

import math

import torch
from PIL import Image

from .. import preprocess
from ..layout import Grid, Layout
from ..profile import stage
from .base import Backend, VisualTokens
from .common import pooled, whole_image

#: Tiles per query frame unless the engine says otherwise. InternVL3's processor allows 12 (a 4:3 frame
#: becomes 12 tiles + a thumbnail, 3,328 visual tokens on InternVL3's 448 px / 256-token tiles). A robot
#: recognises every frame, and prefill grows with the frame's tokens: 6 bounds a frame to 7 tiles
#: (1,792 tokens), which still gives a 640x480 camera frame more than its native resolution (a 4:3
#: frame is cut 3 x 2, a 1344 x 896 canvas) and small objects several times the pixels one tile has.
DEFAULT_MAX_TILES = 6


class InternVLBackend(Backend):
    """InternVL3 through transformers' native `InternVLForConditionalGeneration`.

    Images are encoded as `GotOcr2ImageProcessor` with `crop_to_patches=True` encodes them: the image is
    resized onto the rows x cols canvas of tiles whose aspect ratio is closest to its own (at most
    `max_tiles` tiles), each tile is its own token grid (pixel shuffle merges 2x2 patches, so a tile's
    grid is row-major over the tile), and a thumbnail of the whole image follows when there is more than
    one tile. The processor's prompt frames all of an image's tiles as one run, `<img>` + tokens +
    `</img>`: the default framing, so a subset memory is framed the same way with its kept tokens.
    `max_tiles` 1 is the paper's setting (one 448 px tile per image).

    The processor object itself is set not to tile (`crop_to_patches` False): the backend asks it for
    tiles per call with its own budget (`pixel_inputs`), and the tensor path tiles with the same rule.
    """

    family = "internvl"
    tiles_images = True

    def __init__(self, *args, max_tiles: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if hasattr(self.image_processor, "crop_to_patches"):
            self.image_processor.crop_to_patches = False
        self.set_max_tiles(DEFAULT_MAX_TILES if max_tiles is None else max_tiles)

    @property
    def placeholder_id(self) -> int:
        return int(self.model.config.image_token_id)

    def visual_frame(self) -> tuple[list[int], list[int]]:
        start = self.tokenizer.convert_tokens_to_ids("<img>")
        end = self.tokenizer.convert_tokens_to_ids("</img>")
        return [int(start)], [int(end)]

    @property
    def tile_size(self) -> tuple[int, int]:
        """(height, width) of one tile in pixels (the processor's size)."""
        size = self.image_processor.size
        get = size.get if isinstance(size, dict) else lambda k: getattr(size, k)
        return int(get("height")), int(get("width"))

    def tile_budget(self, max_pixels: int | None = None) -> int:
        """Tiles per image: `max_tiles`, tightened by a pixel budget (a reference view's
        `reference_max_pixels`) to the tiles that fit in it, at least one."""
        if max_pixels is None:
            return self.max_tiles
        h, w = self.tile_size
        return max(1, min(self.max_tiles, int(max_pixels) // (h * w)))

    def tile_arrangements(self, images: list[Image.Image], max_tiles: int) -> list[tuple[int, int]]:
        return [preprocess.tile_arrangement(self.image_processor, img.size[1], img.size[0], max_tiles)
                for img in images]

    def pixel_inputs(self, images: list[Image.Image], method: str | None = None,
                     max_tiles: int | None = None) -> dict[str, torch.Tensor]:
        """Pixel values of every image's tiles (and thumbnails), image after image: (T, 3, h, w)."""
        max_tiles = self.max_tiles if max_tiles is None else max_tiles
        with stage("preprocess"):
            if self.preprocessing_method(method) == "tensor":
                pv, _ = preprocess.tiled_pixels(images, self.image_processor, self.device, self.dtype, max_tiles)
                return {"pixel_values": pv}
            kwargs = {"crop_to_patches": True, "max_patches": max_tiles} if max_tiles > 1 else {}
            out = self.image_processor(images=images, return_tensors="pt", **kwargs)
            pv = out["pixel_values"]
        expected = sum(r * c + (r * c > 1) for r, c in self.tile_arrangements(images, max_tiles))
        if pv.shape[0] != expected:
            raise RuntimeError(f"the image processor made {pv.shape[0]} tiles where {expected} were expected")
        return {"pixel_values": pv.to(self.device, self.dtype)}

    def encode_images(self, images: list[Image.Image], max_pixels: int | None = None) -> list[VisualTokens]:
        """Visual tokens of each image; `max_pixels` bounds its tiles (see `tile_budget`)."""
        max_tiles = self.tile_budget(max_pixels)
        px = self.pixel_inputs(images, max_tiles=max_tiles)
        cfg = self.model.config
        with stage("vision"):
            feats = pooled(self.model.model.get_image_features(
                pixel_values=px["pixel_values"], vision_feature_layer=cfg.vision_feature_layer,
                vision_feature_select_strategy=cfg.vision_feature_select_strategy))
        out, at = [], 0
        for img, (rows, cols) in zip(images, self.tile_arrangements(images, max_tiles)):
            n = rows * cols + (rows * cols > 1)
            tiles = feats[at:at + n]
            at += n
            side = int(math.isqrt(tiles.shape[1]))
            embeds = tiles.reshape(-1, tiles.shape[-1])
            if n == 1:
                out.append(VisualTokens(embeds=embeds, rows=side, cols=tiles.shape[1] // side,
                                        box=whole_image(img.size), image_size=img.size))
                continue
            out.append(VisualTokens.tiled(embeds, tile_layout(img.size, rows, cols, side), img.size))
        if at != feats.shape[0]:
            raise RuntimeError(f"{feats.shape[0]} tiles encoded for {at} expected")
        return out

    def native_inputs(self, text_ids: list[int], images: list[Image.Image],
                      method: str | None = None) -> dict[str, torch.Tensor]:
        return {"input_ids": torch.tensor([text_ids], device=self.device), **self.pixel_inputs(images, method)}


def tile_layout(size: tuple[int, int], rows: int, cols: int, side: int) -> Layout:
    """The layout of an image cut into rows x cols tiles of side x side tokens plus a thumbnail: tile
    (r, c) covers the (r, c) cell of an even rows x cols split of the image (the processor resizes the
    whole image onto the canvas of tiles), the thumbnail all of it."""
    w, h = size
    grids = []
    for r in range(rows):
        for c in range(cols):
            box = (c * w / cols, r * h / rows, (c + 1) * w / cols, (r + 1) * h / rows)
            grids.append(Grid(len(grids) * side * side, side, side, box, "tile", (r, c)))
    grids.append(Grid(len(grids) * side * side, side, side, whole_image(size), "thumbnail"))
    return Layout(tuple(grids))
