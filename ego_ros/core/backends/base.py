"""The backend interface: everything that differs between vision-language model families.

The engine itself only sees token ids, visual token embeddings (projector outputs, the LLM input
space), their grid geometry and the LLM decoder stack. A backend knows how its family turns images into
visual tokens, how it frames them with special tokens, whether it uses 3-D (M-RoPE) positions, and where
its language model and head live.

The layout contract (for families whose processor tiles large images):

- `encode_images` returns one `VisualTokens` per image: `embeds` is the image's token list in the order
  the model receives it (projector outputs, patch tokens only) and `layout` (`core.layout.Layout`) its
  grids: each grid's offset in the list, rows x cols (row-major), box in input-image pixels, kind
  ("single", "tile", "thumbnail", "base", "highres") and tile (row, col). Single-grid families pass
  rows/cols/box and no layout; tiled ones build `VisualTokens.tiled(embeds, layout, size)`.
- A memory view keeps, per selected token, its index into that list plus the layout (persisted with the
  memory); `VisualBlock` gives each token its grid row and column (M-RoPE positions use them).
- `frame_visual(layout, indices)` frames one block (a query image, a reference, a full or subset
  memory) as ordered pieces: `TokenRun` (ids placed as they are), `VisualRun` (the block's tokens at
  positions start .. stop of its ascending `indices`, every one placed exactly once, in order) and
  `StructuralRun` (image rows that are no patch, e.g. a learned newline embedding: emitted for full
  blocks only, since a subset memory never selects them). The default is `visual_frame()`'s before +
  all tokens + after. A framing that frames tiles separately should frame a subset memory as the
  framing of each grid that keeps tokens (`Layout.runs`), holding only the kept tokens: a full memory
  is then framed exactly as the native image.
- Framing ids that must never be generated belong in `suppressed_ids` (override it when the framing
  uses ids other than `visual_frame()`'s).
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from .. import attention, preprocess
from ..errors import ModelLoadError
from ..layout import Layout
from ..prompts import Part, PromptSet, Slot

PREPROCESS_METHODS = ("tensor", "pil")
#: Size (width, height) of the load-time probe image: non-square, so that a backend assuming a square
#: grid or a fixed size disagrees with an aspect-keeping processor, and small enough to cost one cheap pass.
PROBE_IMAGE_SIZE = (640, 360)

#: Config keys that say nothing about what the weights compute (paths, dtypes, versions, kernels).
_VOLATILE_CONFIG_KEYS = {
    "_name_or_path", "torch_dtype", "dtype", "transformers_version", "_attn_implementation",
    "_attn_implementation_autoset", "attn_implementation", "use_cache", "output_attentions",
    "output_hidden_states", "return_dict", "_commit_hash", "architectures", "auto_map", "_attn_implementation_internal",
}


@dataclass
class VisualTokens:
    """The visual tokens of one image as the LLM receives them.

    embeds: (N, D) projector outputs, the image's token list in the order the model receives it.
    `layout` says which grid each token belongs to (`core.layout`): a single-grid image (the default,
    `layout` None) is one row-major `rows` x `cols` grid that evenly tiles `box` (x0, y0, x1, y1) of the
    original image, whose size is `image_size` (width, height). A tiled image passes its `Layout`
    (`VisualTokens.tiled`); `rows`, `cols` and `box` are then its map grid (`Layout.map_grid`: the tiles
    assembled into one full-resolution grid), the grid heatmaps are drawn on, and N is the layout's count.
    """

    embeds: torch.Tensor
    rows: int
    cols: int
    box: tuple[float, float, float, float]
    image_size: tuple[int, int]
    #: (layers, N, D) features added to early LLM layers at the visual rows (Qwen3-VL DeepStack), or None
    deepstack: torch.Tensor | None = None
    #: the grids of a multi-grid (tiled) image; None: the one grid rows x cols over box
    layout: Layout | None = None

    def __post_init__(self) -> None:
        if self.layout is None:
            self.layout = Layout.single(self.rows, self.cols, self.box)

    @classmethod
    def tiled(cls, embeds: torch.Tensor, layout: Layout, image_size: tuple[int, int],
              deepstack: torch.Tensor | None = None) -> VisualTokens:
        """Visual tokens of a multi-grid image (its map grid becomes rows x cols over box)."""
        if embeds.shape[0] != layout.count:
            raise ValueError(f"{embeds.shape[0]} visual tokens for a layout of {layout.count}")
        grid, box = layout.map_grid()
        return cls(embeds, int(grid.shape[0]), int(grid.shape[1]), box, image_size, deepstack, layout)

    @property
    def count(self) -> int:
        return self.layout.count

    def map_indices(self) -> np.ndarray:
        """(rows, cols) token indices of the map grid (row-major arange for a single-grid image)."""
        return self.layout.map_grid()[0]

    def to_map(self, values: np.ndarray) -> np.ndarray:
        """A per-token array (N,) as the (rows, cols) map over the image."""
        return np.asarray(values)[self.map_indices()]

    def token_boxes(self) -> np.ndarray:
        """(N, 4) array of each token's region (x0, y0, x1, y1) in original image pixels."""
        return self.layout.token_boxes()

    def mask_fraction(self, mask: np.ndarray) -> np.ndarray:
        """Fraction of each token's region covered by a boolean mask of the original image (H, W)."""
        h, w = mask.shape[:2]
        if (w, h) != tuple(self.image_size):
            raise ValueError(f"mask is {w}x{h} but the image is {self.image_size[0]}x{self.image_size[1]}")
        integral = np.pad(mask.astype(np.float64), ((1, 0), (1, 0))).cumsum(0).cumsum(1)
        out = np.zeros(self.count)
        for i, (bx0, by0, bx1, by1) in enumerate(self.token_boxes()):
            xa, xb = int(np.clip(np.floor(bx0), 0, w)), int(np.clip(np.ceil(bx1), 0, w))
            ya, yb = int(np.clip(np.floor(by0), 0, h)), int(np.clip(np.ceil(by1), 0, h))
            area = max((xb - xa) * (yb - ya), 1)
            out[i] = (integral[yb, xb] - integral[ya, xb] - integral[yb, xa] + integral[ya, xa]) / area
        return out


@dataclass(frozen=True)
class TokenRun:
    """Framing: token ids placed as they are (image start/end markers, tile tags, separators)."""

    ids: tuple[int, ...]


@dataclass(frozen=True)
class VisualRun:
    """Framing: the block's visual tokens at positions start .. stop of its (ascending) token list."""

    start: int
    stop: int


@dataclass(frozen=True)
class StructuralRun:
    """Framing: rows that belong to the image but are no patch token, as embeddings (n, D): LLaVA-NeXT's
    learned newline after each grid row. Never selected into a subset memory, so a framing emits them
    for full blocks only; never captured as visual columns."""

    embeds: torch.Tensor


Piece = TokenRun | VisualRun | StructuralRun


class Backend(ABC):
    """One model family. Subclasses implement `encode_images` and the family's framing."""

    family: str = ""
    #: True when the LLM takes 3-D (temporal, row, column) rotary positions (Qwen2-VL family).
    mrope: bool = False
    #: True when the visual rows of one image attend to each other in both directions while text stays
    #: causal (Gemma 3); the engine then gives every visual block, query image or memory view, that mask.
    bidirectional_visual: bool = False
    #: Image preprocessing: "tensor" (torch ops on the model's device, ego_ros.core.preprocess, with the
    #: image processor as the automatic fallback for what it does not cover) or "pil" (the processor).
    preprocess: str = "tensor"
    #: True for families whose processor tiles large images (InternVL, ...): `max_tiles` applies
    tiles_images: bool = False
    #: most tiles (thumbnail not counted) one image is cut into; 1: one tile (or the one grid)
    max_tiles: int = 1

    def __init__(self, model: Any, tokenizer: Any, image_processor: Any, prompts: PromptSet | None = None,
                 name: str = "") -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.prompts = prompts or PromptSet()
        self.name = name or getattr(model.config, "_name_or_path", "") or self.family
        reason = self.unsupported_reason()
        if reason is not None:
            raise ModelLoadError(f"the {self.family} backend does not model {self.name!r} exactly: {reason}; "
                                 "it is refused rather than run with a wrong visual grid")
        attention.register()
        model.set_attn_implementation({"text_config": attention.ATTN_IMPLEMENTATION})
        model.eval()
        self._fingerprint: str | None = None
        self._chat_form: str | None = None
        #: what the load-time probe check found ("passed: ...", "skipped: ...") or "not run"
        self.probe_status = "not run"

    def unsupported_reason(self) -> str | None:
        """Why this backend cannot reproduce the model and its image processor (None: it can).

        Checked before anything runs; a family whose backend models only some towers or processors
        names the first thing it does not model."""
        return None

    def set_max_tiles(self, max_tiles: int) -> None:
        """Bound the tiles of each image (engine option `max_tiles`, CLI `--max-tiles`); families that
        do not tile accept 1 only."""
        if isinstance(max_tiles, bool) or not isinstance(max_tiles, int) or max_tiles < 1:
            raise ValueError(f"max_tiles must be a whole number >= 1, got {max_tiles!r}")
        if max_tiles > 1 and not self.tiles_images:
            raise ValueError(f"the {self.family} family does not tile images: max_tiles must be 1, got {max_tiles}")
        self.max_tiles = max_tiles

    # ----- where things live --------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.get_input_embeddings().weight.dtype

    @property
    def language_model(self) -> torch.nn.Module:
        """The decoder stack (takes inputs_embeds, position_ids, past_key_values)."""
        return self.model.model.language_model

    @property
    def lm_head(self) -> torch.nn.Module:
        return self.model.lm_head

    @property
    def num_layers(self) -> int:
        return int(self.model.config.get_text_config().num_hidden_layers)

    @property
    def sliding_window(self) -> int | None:
        """The window of the LLM's sliding-window layers, None when it has none (every layer sees all keys)."""
        cfg = self.model.config.get_text_config()
        if "sliding_attention" not in (getattr(cfg, "layer_types", None) or []):
            return None
        return int(cfg.sliding_window)

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.get_text_config().hidden_size)

    # ----- tokens --------------------------------------------------------------------------------------
    @property
    @abstractmethod
    def placeholder_id(self) -> int:
        """Token id standing in the id sequence for each visual row (its embedding is overwritten)."""

    def visual_frame(self) -> tuple[list[int], list[int]]:
        """Token ids placed before and after the visual rows of one image or memory view."""
        return [], []

    def frame_visual(self, layout: Layout, indices: np.ndarray) -> list[Piece]:
        """How one visual block is laid out in a sequence: an ordered list of token-id runs, visual-token
        runs and structural runs (see `core.sequence`, "Framing").

        `indices` are the block's tokens (ascending) in the image's token list of `layout`: all of them for
        a query image or a full memory, the kept ones for a subset memory. The default frames every block
        as `visual_frame()`'s before + all its tokens + after (single-grid families, and tiled families
        whose processor frames all tiles as one run, like InternVL's `<img> ... </img>`)."""
        before, after = self.visual_frame()
        pieces: list[Piece] = []
        if before:
            pieces.append(TokenRun(tuple(before)))
        pieces.append(VisualRun(0, len(indices)))
        if after:
            pieces.append(TokenRun(tuple(after)))
        return pieces

    def tokenize(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def token_text(self, token_id: int) -> str:
        return self.tokenizer.decode([token_id], skip_special_tokens=False)

    @property
    def special_ids(self) -> set[int]:
        return set(self.tokenizer.all_special_ids)

    @property
    def eos_ids(self) -> set[int]:
        ids: set[int] = set()
        for src in (self.model.generation_config.eos_token_id, self.tokenizer.eos_token_id):
            if src is None:
                continue
            ids.update(src if isinstance(src, (list, tuple)) else [src])
        return ids

    @property
    def suppressed_ids(self) -> list[int]:
        """Ids that must never be generated (image placeholders and framing tokens)."""
        before, after = self.visual_frame()
        return sorted({self.placeholder_id, *before, *after})

    def embed_ids(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.get_input_embeddings()(ids.to(self.device))

    def chat(self, parts: list[Part]) -> list[Part]:
        """Wrap user content (text and slots) in the model's chat template, ending with the assistant cue.

        Slots are swapped for private-use sentinels while the template renders, then split back out, so
        the model's own template supplies every role marker.
        """
        sentinels: dict[str, Slot] = {}
        text = []
        for p in parts:
            if isinstance(p, Slot):
                key = f"\ue000{len(sentinels)}\ue001"
                sentinels[key] = p
                text.append(key)
            else:
                text.append(p)
        rendered = self._render_chat("".join(text))
        out: list[Part] = []
        rest = rendered
        for key, slot in sentinels.items():
            before, sep, rest = rest.partition(key)
            if not sep:
                raise RuntimeError("chat template dropped a visual slot; the template must keep content verbatim")
            if before:
                out.append(before)
            out.append(slot)
        if rest:
            out.append(rest)
        return out

    def _render_chat(self, content: str) -> str:
        """Render one user turn plus the assistant cue with the tokenizer's chat template.

        Templates differ in what content they take: some print a string as is, multimodal ones iterate
        a list of typed parts (and render a plain string as nothing). The first form whose rendering
        holds the content verbatim is used, and remembered.
        """
        forms = {"text": content, "parts": [{"type": "text", "text": content}]}
        order = [self._chat_form] if self._chat_form else list(forms)
        errors = []
        for form in order:
            try:
                rendered = self.tokenizer.apply_chat_template([{"role": "user", "content": forms[form]}],
                                                              tokenize=False, add_generation_prompt=True)
            except Exception as exc:  # noqa: BLE001 - a template that rejects one form may take the other
                errors.append(f"{form}: {exc}")
                continue
            if content in rendered:
                self._chat_form = form
                return rendered
            errors.append(f"{form}: content not rendered verbatim")
        raise RuntimeError(f"the model's chat template cannot render a user turn ({'; '.join(errors)})")

    # ----- images --------------------------------------------------------------------------------------
    @abstractmethod
    def encode_images(self, images: list[Image.Image], max_pixels: int | None = None) -> list[VisualTokens]:
        """Visual tokens (projector outputs) of each RGB image.

        `max_pixels` tightens the pixel budget of families that keep the aspect ratio and resize to a
        pixel budget (Qwen's smart resize) and bounds the tiles of tiling families (InternVL: at most
        max_pixels / tile area tiles, never more than `max_tiles`); fixed-size families ignore it."""

    def native_inputs(self, text_ids: list[int], images: list[Image.Image],
                      method: str | None = None) -> dict[str, torch.Tensor]:
        """Inputs for the model's own forward (reference path used by tests and baselines)."""
        raise NotImplementedError

    def preprocessing_method(self, method: str | None = None) -> str:
        """Say which path `pixel_inputs` takes for `method` ("tensor" or "pil"; default `self.preprocess`)."""
        method = method or self.preprocess
        if method not in PREPROCESS_METHODS:
            raise ValueError(f"unknown preprocessing {method!r}; expected one of {PREPROCESS_METHODS}")
        if method == "tensor" and preprocess.unsupported(self.image_processor) is not None:
            return "pil"
        return method

    # ----- load-time probe: the backend against the model's own processor ----------------------------
    def processor_image_ids(self, processor: Any, image: Image.Image) -> tuple[list[int], tuple[int, int] | None]:
        """Ids the model's own processor makes of one image, and its token grid (rows, cols) when the
        processor reports one (Qwen's image_grid_thw, merged).

        The text given to the processor is `probe_text`; the ids are those of the image alone (no
        special tokens added by the tokenizer)."""
        out = processor(text=[self.probe_text(processor)], images=[image], return_tensors="pt",
                        add_special_tokens=False, **self.processor_kwargs())
        ids = [int(i) for i in out["input_ids"][0].tolist()]
        grid = None
        thw = out.get("image_grid_thw")
        if thw is not None:
            merge = int(getattr(processor.image_processor, "merge_size", 1) or 1)
            t, h, w = (int(v) for v in thw[0].tolist())
            grid = (h // merge, w // merge) if t == 1 else None
        return ids, grid

    def processor_kwargs(self) -> dict[str, Any]:
        """Settings the backend chose that the processor must be called with to encode images the same way
        (e.g. InternVL's single tile); none by default."""
        return {}

    def probe_text(self, processor: Any) -> str:
        """The text holding one image that the processor expands (its image token); families whose chat
        template, not the processor, frames the image put that framing around it."""
        return str(getattr(processor, "image_token", None) or self.token_text(self.placeholder_id))

    def backend_image_ids(self, image: Image.Image) -> tuple[list[int], tuple[int, int]]:
        """Ids the engine places for one image (placeholders where visual rows go, framing tokens) and
        the token grid of its encoding, through the same sequence builder every prompt uses."""
        from ..sequence import VisualBlock, build_sequence

        vt = self.encode_images([image])[0]
        if vt.embeds.shape[0] != vt.count:
            raise ModelLoadError(f"the {self.family} backend encodes the probe image into {vt.embeds.shape[0]} "
                                 f"tokens but places them on a {vt.rows}x{vt.cols} grid ({vt.count} cells)")
        seq = build_sequence(self, self.probe_parts(), lambda _slot: VisualBlock.full(vt))
        return seq.ids, (vt.rows, vt.cols)

    def probe_parts(self) -> list[Part]:
        """The prompt parts holding the probe image, as prompts hold an image (families whose `chat` puts
        text around visual slots add it here)."""
        return [Slot("image")]

    def check_processor(self, processor: Any, image: Image.Image | None = None) -> str:
        """Raise ModelLoadError unless the backend encodes a probe image into the same ids and grid as
        the model's own `processor`; return what was checked.

        Costs one vision pass of one 640x360 image plus one processor call. A processor that cannot
        run at all is no evidence either way: that raises RuntimeError (the caller decides)."""
        image = image if image is not None else probe_image()
        try:
            expected, expected_grid = self.processor_image_ids(processor, image)
        except Exception as exc:  # noqa: BLE001 - any failure of foreign processor code means "no reference"
            raise RuntimeError(f"the model's processor {type(processor).__name__} cannot process a probe image "
                               f"({type(exc).__name__}: {exc})") from exc
        try:
            actual, grid = self.backend_image_ids(image)
        except ModelLoadError:
            raise
        except Exception as exc:  # noqa: BLE001 - a backend that cannot encode an ordinary image is refused
            raise ModelLoadError(f"the {self.family} backend cannot encode a probe image "
                                 f"({type(exc).__name__}: {exc})") from exc
        size = f"{image.size[0]}x{image.size[1]}"
        ph = self.placeholder_id
        n_exp, n_act = expected.count(ph), actual.count(ph)
        if n_exp != n_act:
            raise ModelLoadError(f"the {self.family} backend makes {n_act} visual tokens of a {size} probe image "
                                 f"(grid {grid[0]}x{grid[1]}) but the model's processor "
                                 f"{type(processor).__name__} makes {n_exp}; refusing to run with a wrong grid")
        if expected_grid is not None and tuple(expected_grid) != tuple(grid):
            raise ModelLoadError(f"the {self.family} backend puts the {size} probe image on a {grid[0]}x{grid[1]} "
                                 f"grid but the model's processor makes {expected_grid[0]}x{expected_grid[1]}")
        if expected != actual:
            at = next((i for i, (a, b) in enumerate(zip(expected, actual)) if a != b), min(len(expected), len(actual)))
            raise ModelLoadError(f"the {self.family} backend frames the {size} probe image differently from the "
                                 f"model's processor {type(processor).__name__}: {len(actual)} vs {len(expected)} "
                                 f"ids, first difference at {at} (backend {self._ids_at(actual, at)}, "
                                 f"processor {self._ids_at(expected, at)})")
        return f"{n_act} visual tokens, grid {grid[0]}x{grid[1]}, on a {size} probe image"

    def _ids_at(self, ids: list[int], at: int) -> str:
        return repr(self.tokenizer.decode(ids[at:at + 3], skip_special_tokens=False)) if at < len(ids) else "end"

    # ----- identity ------------------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """A digest of the architecture and of weights that shape the LLM input space.

        Memories are projector outputs: they are valid only for the same vision tower, projector and
        LLM. Weights are hashed after a cast to bfloat16, so the same model loaded in float32 or bfloat16
        gets the same fingerprint.
        """
        if self._fingerprint is None:
            cfg = _clean_config(self.model.config.to_dict())
            h = hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode())
            for tensor in self._fingerprint_tensors():
                t = tensor.detach().reshape(-1)[:65536].to(torch.bfloat16).view(torch.int16).cpu().numpy()
                h.update(t.tobytes())
            self._fingerprint = h.hexdigest()[:32]
        return self._fingerprint

    def _fingerprint_tensors(self) -> list[torch.Tensor]:
        emb = self.model.get_input_embeddings().weight
        params = [p for n, p in self.model.named_parameters() if "projector" in n or "merger" in n]
        # the last projector weights decide the LLM input space; order by name for stability
        params = [p for _, p in sorted((n, p) for n, p in self.model.named_parameters()
                                       if "projector" in n or "merger" in n)]
        return [emb[:64]] + params[-2:]

    def describe(self) -> dict[str, Any]:
        return {"family": self.family, "name": self.name, "fingerprint": self.fingerprint(),
                "layers": self.num_layers, "hidden_size": self.hidden_size, "dtype": str(self.dtype).replace(
                    "torch.", ""), "device": str(self.device), "probe": self.probe_status}


def probe_image(size: tuple[int, int] = PROBE_IMAGE_SIZE) -> Image.Image:
    """A fixed, textured RGB probe image (textured so that no processor step can skip it as blank)."""
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def _clean_config(cfg: Any) -> Any:
    if isinstance(cfg, dict):
        return {k: _clean_config(v) for k, v in sorted(cfg.items()) if k not in _VOLATILE_CONFIG_KEYS}
    if isinstance(cfg, list):
        return [_clean_config(v) for v in cfg]
    return cfg
