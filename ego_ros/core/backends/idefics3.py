"""The Idefics3 and SmolVLM backend (SigLIP tower, pixel-shuffle connector, Llama-style LLM).

transformers' `SmolVLMForConditionalGeneration` is `Idefics3ForConditionalGeneration` under another name
(the same modules, the same `text_model` attribute, the same processor strings): one backend covers both.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers.models.idefics3.image_processing_pil_idefics3 import (
    MAX_IMAGE_SIZE,
    _resize_output_size_rescale_to_max_len,
    _resize_output_size_scale_below_upper_bound,
)

from .. import preprocess, resample
from ..layout import Grid, Layout
from ..profile import stage
from .base import PREPROCESS_METHODS, Backend, Piece, TokenRun, VisualRun, VisualTokens
from .common import pooled, whole_image

#: The tokens Idefics3's processor writes around an image (`Idefics3Processor.replace_image_token`).
FAKE_TOKEN = "<fake_token_around_image>"
GLOBAL_TAG = "<global-img>"
#: Tiles per image unless the engine says otherwise: the bound the InternVL backend uses (see
#: backends/internvl.py; a 4:3 camera frame becomes 2 x 2 tiles + the global image, a 16:9 one 2 x 3).
#: The processor's own setting (longest edge 4 tiles) would cut a 4:3 frame into 4 x 3 tiles + 1.
DEFAULT_MAX_TILES = 6


def _longest_edge(size: object) -> int | None:
    """`longest_edge` of a processor size (a plain dict, or transformers' SizeDict in some releases)."""
    value = size.get("longest_edge") if isinstance(size, dict) else getattr(size, "longest_edge", None)
    return int(value) if value else None


def _tile_tag(row: int, col: int) -> str:
    return f"<row_{row + 1}_col_{col + 1}>"


class Idefics3Backend(Backend):
    r"""Idefics3 / SmolVLM, tiled as their processor tiles (`do_image_splitting`).

    The processor resizes the longest edge to `size` (aspect kept), then, splitting, stretches the image
    to whole tiles of `max_image_size` (rows x cols), cuts them row-major and adds the whole image
    squeezed to one tile (the global image). Each tile is its own token grid: the connector's pixel
    shuffle merges scale x scale patches into one token, row-major over the tile, (side / patch /
    scale)^2 tokens. The prompt frames each tile `<fake_token_around_image><row_r_col_c>` + tokens, a
    newline after each tile row, then `\n<fake_token_around_image><global-img>` + tokens +
    `<fake_token_around_image>`; an image that is not split is only the last part. Positions are 1-D.

    `max_tiles` bounds the tiles (global image not counted) through the processor's own knob: the
    longest edge is `n` tiles for the largest `n` (at most the processor's `size`) whose arrangement has
    at most `max_tiles` tiles. `max_tiles` 1 turns splitting off (the paper's one image, squeezed to one
    tile); the processor object itself is set not to split, the backend asks for tiles per call.

    Preprocessing: the processor resamples with Lanczos, which `ego_ros.core.resample` reproduces exactly
    with torch ops; that path is taken on accelerators. On the CPU Pillow's C is several times faster than
    torch's integer ops, so the processor itself runs there unless "tensor" is asked for explicitly.
    """

    family = "idefics3"
    tiles_images = True

    def __init__(self, *args, max_tiles: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not getattr(self.image_processor, "do_resize", True):
            # its tiles would then follow the input size alone: max_tiles could not bound them
            raise ValueError(f"an {self.family} image processor with do_resize off is not supported")
        self.image_processor.do_image_splitting = False
        self.set_max_tiles(DEFAULT_MAX_TILES if max_tiles is None else max_tiles)
        self._frame: tuple[list[int], list[int]] | None = None
        self._text_ids: dict[str, list[int]] = {}
        self.visual_frame()  # a tokenizer without the frame tokens is refused now, not at the first image
        self.check_against_processor()

    @property
    def tile_side(self) -> int:
        side = _longest_edge(self.image_processor.max_image_size)
        if side is None:
            raise ValueError(f"the {self.family} image processor has no max_image_size longest_edge (its tile side)")
        return side

    def tile_budget(self, max_pixels: int | None = None) -> int:
        """Tiles per image: `max_tiles`, tightened by a pixel budget (a reference view's
        `reference_max_pixels`) to the tiles that fit in it, at least one."""
        if max_pixels is None:
            return self.max_tiles
        return max(1, min(self.max_tiles, int(max_pixels) // self.tile_side ** 2))

    # ----- tile arithmetic (the processor's, see image_processing_pil_idefics3) ---------------------------
    def resized_size(self, height: int, width: int, longest: int) -> tuple[int, int]:
        """(height, width) after the processor's first resize: the longest edge to `longest`, aspect kept."""
        h, w = _resize_output_size_rescale_to_max_len(height, width, max_len=longest)
        return _resize_output_size_scale_below_upper_bound(h, w, max_len=MAX_IMAGE_SIZE)

    def split_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) of the processor's `resize_for_vision_encoder`: whole tiles, the arithmetic of
        that method (written out here because the processor only offers it fused with the resize)."""
        side = self.tile_side
        aspect = width / height
        if width >= height:
            width = math.ceil(width / side) * side
            height = math.ceil(int(width / aspect) / side) * side
        else:
            height = math.ceil(height / side) * side
            width = math.ceil(int(height * aspect) / side) * side
        return height, width

    def arrangement(self, image: Image.Image, max_tiles: int) -> tuple[int, tuple[int, int]]:
        """(longest edge, (tile rows, tile cols)) for one image; (0, 0) tiles: not split."""
        side = self.tile_side
        if max_tiles <= 1:
            return 0, (0, 0)
        w0, h0 = image.size
        for n in range((_longest_edge(self.image_processor.size) or side) // side, 1, -1):
            h, w = self.split_size(*self.resized_size(h0, w0, n * side))
            rows, cols = h // side, w // side
            if rows * cols <= max_tiles and (rows > 1 or cols > 1):
                return n * side, (rows, cols)
        return 0, (0, 0)

    # ----- tokens ---------------------------------------------------------------------------------------
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
                             "its processor writes around images")
        return int(tid)

    def _text(self, text: str) -> list[int]:
        if text not in self._text_ids:
            self._text_ids[text] = self.tokenize(text) if text else []
        return self._text_ids[text]

    def visual_frame(self) -> tuple[list[int], list[int]]:
        """The frame of an image that is not split (the global image alone)."""
        if self._frame is None:
            fake, tag = self._token_id(FAKE_TOKEN), self._token_id(GLOBAL_TAG)
            self._frame = ([fake, tag], [fake])
        return self._frame

    def frame_visual(self, layout: Layout, indices: np.ndarray) -> list[Piece]:
        r"""The processor's prompt for the grids that hold tokens of this block, each with its kept tokens.

        The separators are tokenised as the processor's text has them: a newline after each tile row,
        and another before the global image (so the last row's newline and that one are one "\n\n",
        which a tokenizer may merge)."""
        if layout.is_single:
            return super().frame_visual(layout, indices)
        fake = self._token_id(FAKE_TOKEN)
        pieces: list[Piece] = []
        pending = ""  # separator text waiting for the next framing tokens
        last_row = None
        for g, start, stop in layout.runs(indices):
            grid = layout.grids[g]
            if grid.kind == "tile":
                if last_row is not None and grid.tile[0] != last_row:
                    pending += "\n"
                last_row = grid.tile[0]
                pieces.append(TokenRun(tuple(self._text(pending) + [fake, self._token_id(_tile_tag(*grid.tile))])))
                pending = ""
                pieces.append(VisualRun(start, stop))
            else:
                if last_row is not None:
                    pending += "\n"
                pieces.append(TokenRun(tuple(self._text(pending + "\n") + [fake, self._token_id(GLOBAL_TAG)])))
                pieces.append(VisualRun(start, stop))
                pieces.append(TokenRun((fake,)))
                last_row, pending = None, ""
        if last_row is not None:  # the global image was not kept: close the last tile row
            pieces.append(TokenRun(tuple(self._text(pending + "\n"))))
        return pieces

    @property
    def suppressed_ids(self) -> list[int]:
        tags = [self.tokenizer.convert_tokens_to_ids(_tile_tag(r, c)) for r in range(6) for c in range(6)]
        unk = self.tokenizer.unk_token_id
        return sorted(set(super().suppressed_ids) | {int(t) for t in tags if t is not None and t != unk})

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
        if not resample.supported(getattr(proc, "resample", 1)):
            return f"resampling filter {proc.resample!r} is not reproduced"
        if not _longest_edge(proc.size) or not _longest_edge(proc.max_image_size):
            return "size and max_image_size need a longest_edge"
        return None

    def _tensor_tiles(self, image: Image.Image, longest: int) -> torch.Tensor:
        """(T, 3, s, s) pixel values of one image (its tiles, then the global image; or the one squeezed
        tile for `longest` 0): the processor's steps as torch ops on the model's device."""
        proc = self.image_processor
        side = self.tile_side
        x = preprocess.upload(image, self.device)
        x = resample.resize(x, *self.resized_size(x.shape[1], x.shape[2], longest or _longest_edge(proc.size)),
                            proc.resample)
        frames = []
        if longest:
            h, w = self.split_size(x.shape[1], x.shape[2])
            x = resample.resize(x, h, w, proc.resample)
            frames = [x[:, r:r + side, c:c + side] for r in range(0, h, side) for c in range(0, w, side)]
        # the global image (or the only one): the whole image squeezed to one tile
        frames.append(resample.resize(x, side, side, proc.resample))
        return torch.stack([preprocess.rescale_normalize(f, proc) for f in frames])

    def pixel_inputs(self, images: list[Image.Image], method: str | None = None,
                     max_tiles: int | None = None) -> dict[str, torch.Tensor]:
        """pixel_values (1, T, 3, s, s) and pixel_attention_mask (1, T, s, s): every image's tiles (then its
        global image), image after image; `max_tiles` defaults to the backend's."""
        plan = [self.arrangement(img, self.max_tiles if max_tiles is None else max_tiles) for img in images]
        expected = sum(r * c + 1 for _, (r, c) in plan)
        with stage("preprocess"):
            if self.preprocessing_method(method) == "tensor":
                pv = torch.cat([self._tensor_tiles(img, longest) for img, (longest, _) in zip(images, plan)])[None]
                mask = torch.ones((*pv.shape[:2], *pv.shape[3:]), dtype=torch.long, device=self.device)
                return {"pixel_values": pv.to(self.dtype), "pixel_attention_mask": mask}
            values, masks = [], []
            for img, (longest, tiles) in zip(images, plan):
                kwargs = {"do_image_splitting": True, "size": {"longest_edge": longest}} if longest else {}
                out = self.image_processor(images=[[img]], return_tensors="pt", return_row_col_info=True, **kwargs)
                if (out["rows"][0][0], out["cols"][0][0]) != tiles:
                    raise RuntimeError(f"the image processor cut {out['rows'][0][0]} x {out['cols'][0][0]} tiles "
                                       f"where {tiles[0]} x {tiles[1]} were expected")
                values.append(out["pixel_values"][0])
                masks.append(out["pixel_attention_mask"][0])
        pv = torch.cat(values)[None]
        if pv.shape[1] != expected:
            raise RuntimeError(f"the image processor made {pv.shape[1]} tiles where {expected} were expected")
        return {"pixel_values": pv.to(self.device, self.dtype), "pixel_attention_mask": torch.cat(masks)[None].to(
            self.device)}

    def encode_images(self, images: list[Image.Image], max_pixels: int | None = None) -> list[VisualTokens]:
        """Visual tokens of each image; `max_pixels` bounds its tiles (see `tile_budget`)."""
        max_tiles = self.tile_budget(max_pixels)
        px = self.pixel_inputs(images, max_tiles=max_tiles)
        with stage("vision"):
            feats = pooled(self.model.model.get_image_features(**px))
        feats = torch.cat(list(feats)) if isinstance(feats, (list, tuple)) else feats.reshape(-1, feats.shape[-1])
        n_tiles = px["pixel_values"].shape[1]
        per_tile = feats.shape[0] // n_tiles
        side = math.isqrt(per_tile)
        if per_tile * n_tiles != feats.shape[0] or side * side != per_tile:
            raise RuntimeError(f"unexpected visual features {tuple(feats.shape)} for {n_tiles} tiles (an all-zero "
                               "tile is dropped by the model as padding)")
        out, at = [], 0
        for img in images:
            longest, (rows, cols) = self.arrangement(img, max_tiles)
            n = (rows * cols + 1) * per_tile
            out.append(self._tokens(img, feats[at:at + n], side, longest, rows, cols))
            at += n
        return out

    def _tokens(self, image: Image.Image, embeds: torch.Tensor, side: int, longest: int, rows: int,
                cols: int) -> VisualTokens:
        if not longest:
            return VisualTokens(embeds=embeds, rows=side, cols=side, box=whole_image(image.size),
                                image_size=image.size)
        return VisualTokens.tiled(embeds, self._split_layout(image.size, side, rows, cols), image.size)

    @staticmethod
    def _split_layout(size: tuple[int, int], side: int, rows: int, cols: int) -> Layout:
        """rows x cols tiles of side x side tokens, then the global image. Tile (r, c) is a crop of the
        image stretched to whole tiles: the same fraction of the original image."""
        w, h = size
        grids = [Grid(offset=(r * cols + c) * side * side, rows=side, cols=side, kind="tile", tile=(r, c),
                      box=(c * w / cols, r * h / rows, (c + 1) * w / cols, (r + 1) * h / rows))
                 for r in range(rows) for c in range(cols)]
        grids.append(Grid(offset=rows * cols * side * side, rows=side, cols=side, kind="thumbnail",
                          box=whole_image(size)))
        return Layout(tuple(grids))

    def processor_image_ids(self, processor: Any, image: Image.Image) -> tuple[list[int], tuple[int, int] | None]:
        """The load-time probe asks the processor for the split this backend chose for the image (its tile
        budget through the processor's longest-edge knob), which one call-wide setting cannot say."""
        longest, _ = self.arrangement(image, self.max_tiles)
        kwargs: dict[str, Any] = {"do_image_splitting": bool(longest)}
        if longest:
            kwargs["size"] = {"longest_edge": longest}
        out = processor(text=[self.probe_text(processor)], images=[[image]], return_tensors="pt",
                        add_special_tokens=False, **kwargs)
        return [int(i) for i in out["input_ids"][0].tolist()], None

    def check_against_processor(self) -> None:
        """Compare, on a probe image, this backend's tiles, token count and framing with what the model's
        own processor code makes of it; refuse the model (ValueError) where they differ.

        Run when the backend is built, so that a model whose image processor, tokenizer or tower this
        backend does not model exactly is refused with the reason instead of run with a wrong prompt. The
        probe is split 2 x 2 (tile rows, the newlines between them and before the global image)."""
        from transformers.models.smolvlm.processing_smolvlm import get_image_prompt_string

        cfg = self.model.config
        side = self.tile_side
        vision = cfg.vision_config
        tokens = vision.image_size // vision.patch_size // cfg.scale_factor
        per_tile = int(self.model.model.image_seq_len)
        if side != vision.image_size or tokens * tokens != per_tile:
            raise ValueError(f"the image processor's tiles ({side} px) do not fit the vision tower "
                             f"({vision.image_size} px, {per_tile} tokens per tile)")
        probe = Image.new("RGB", (640, 480), (128, 96, 64))
        longest = 2 * side
        out = self.image_processor(images=[[probe]], do_image_splitting=True, size={"longest_edge": longest},
                                   return_row_col_info=True, return_tensors="pt")
        rows, cols = int(out["rows"][0][0]), int(out["cols"][0][0])
        h, w = self.split_size(*self.resized_size(probe.size[1], probe.size[0], longest))
        if (rows, cols) != (h // side, w // side) or out["pixel_values"].shape[1] != rows * cols + 1:
            raise ValueError(f"the image processor splits a 640x480 probe into {rows} x {cols} tiles "
                             f"({out['pixel_values'].shape[1]} images) where this backend expects "
                             f"{h // side} x {w // side} + 1")
        mine: list[int] = []
        layout = self._split_layout(probe.size, tokens, rows, cols)
        for piece in self.frame_visual(layout, np.arange(layout.count)):
            is_ids = isinstance(piece, TokenRun)
            mine += list(piece.ids) if is_ids else [self.placeholder_id] * (piece.stop - piece.start)
        text = get_image_prompt_string(rows, cols, per_tile, fake_token_around_image=FAKE_TOKEN,
                                       image_token=getattr(self.tokenizer, "image_token", "<image>"),
                                       global_image_token=GLOBAL_TAG)
        if self.tokenize(text) != mine:
            raise ValueError("the processor's prompt for a split image tokenizes differently from this backend's "
                             "framing (image token, tile tags or newlines)")

    def native_inputs(self, text_ids: list[int], images: list[Image.Image],
                      method: str | None = None) -> dict[str, torch.Tensor]:
        return {"input_ids": torch.tensor([text_ids], device=self.device), **self.pixel_inputs(images, method)}


class SmolVLMBackend(Idefics3Backend):
    """SmolVLM (`SmolVLMForConditionalGeneration`): Idefics3's model and framing under its own name."""

    family = "smolvlm"
