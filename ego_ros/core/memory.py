"""Concept memories: the selected visual tokens of each reference view, with what made them.

A memory is the model's own representation of a personal concept (paper 3.2): for each reference view,
the K_c projector-output embeddings picked by keyword attention, in their original order, plus their
places in the view's token list and its layout (each token's grid, row and column: needed by M-RoPE
models and by tiled framings), the keywords, the area estimate alpha, the importance of every visual
token and the geometry that maps tokens back onto the image (for debug overlays).
"""

from __future__ import annotations

import time
import unicodedata
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .errors import InvalidConceptNameError
from .layout import Layout

MAX_NAME_LENGTH = 64


def validate_name(name: Any) -> str:
    """Return the NFC-normalised concept name or raise InvalidConceptNameError.

    Unicode letters are welcome ("Kona", "Anna's mug", "猫"); empty names, names over 64 characters,
    leading/trailing whitespace, path separators and control or format characters are refused so a name
    can never escape the store directory or corrupt a log line or a prompt.
    """
    if not isinstance(name, str):
        raise InvalidConceptNameError(f"concept name must be a string, got {type(name).__name__}")
    norm = unicodedata.normalize("NFC", name)
    if not norm.strip():
        raise InvalidConceptNameError("concept name is empty")
    if norm != norm.strip():
        raise InvalidConceptNameError(f"concept name {name!r} has leading or trailing whitespace")
    if len(norm) > MAX_NAME_LENGTH:
        raise InvalidConceptNameError(f"concept name is {len(norm)} characters long; the limit is {MAX_NAME_LENGTH}")
    if norm in (".", ".."):
        raise InvalidConceptNameError(f"concept name {name!r} is reserved")
    for ch in norm:
        if ch in "/\\":
            raise InvalidConceptNameError(f"concept name {name!r} contains a path separator")
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            raise InvalidConceptNameError(f"concept name {name!r} contains a control or unassigned character "
                                          f"(U+{ord(ch):04X})")
    return norm


@dataclass
class MemoryView:
    """What one reference view contributes to a concept memory."""

    embeds: torch.Tensor  # (k_c, D) selected visual tokens, original order
    indices: torch.Tensor  # (k_c,) their indices in the view's row-major token grid
    grid: tuple[int, int]  # (rows, cols) of the view's token grid
    box: tuple[float, float, float, float]  # region of the image the grid covers (x0, y0, x1, y1)
    image_size: tuple[int, int]  # (width, height) of the reference image
    keywords: list[str]
    description: str  # the model's raw keyword answer
    alpha: float | None  # area percentage the model estimated (None: unusable answer or fixed K)
    k_c: int
    importance: torch.Tensor  # (N_r,) importance of every visual token (eq. 3)
    area_answer: str = ""
    reference: np.ndarray | None = None  # the reference image (H, W, 3) uint8, kept only when asked for
    deepstack: torch.Tensor | None = None  # (layers, k_c, D) DeepStack features (Qwen3-VL only)
    #: the reference image's grids (core.layout); None: the one grid `grid` over `box` (memories stored
    #: before tiling load this way). For a tiled view `grid` and `box` are its map grid.
    layout: Layout | None = None

    def __post_init__(self) -> None:
        if self.layout is None:
            self.layout = Layout.single(int(self.grid[0]), int(self.grid[1]), tuple(self.box))

    def block(self):
        """This view as a VisualBlock placed in prompts (each token keeps its grid, row and column)."""
        from .sequence import VisualBlock

        return VisualBlock.of_layout(self.layout, tuple(self.grid), self.indices.cpu().to(torch.long), self.embeds,
                                     self.deepstack)

    @property
    def num_visual_tokens(self) -> int:
        return int(self.layout.count)

    def token_boxes(self) -> np.ndarray:
        """Regions (x0, y0, x1, y1) of the selected tokens in reference-image pixels, for overlays."""
        return self.layout.token_boxes(self.indices.cpu().numpy())


@dataclass
class ConceptMemory:
    """A named personal concept: its views' memories and provenance."""

    name: str
    views: list[MemoryView]
    fingerprint: str
    model: str
    selection: str = "attention"
    notes: str = ""
    created: float = field(default_factory=time.time)
    seconds: float = 0.0

    @property
    def keywords(self) -> list[list[str]]:
        return [v.keywords for v in self.views]

    @property
    def alpha(self) -> list[float | None]:
        return [v.alpha for v in self.views]

    @property
    def k_c(self) -> list[int]:
        return [v.k_c for v in self.views]

    @property
    def num_tokens(self) -> int:
        return int(sum(v.embeds.shape[0] for v in self.views))

    def unique_keywords(self) -> list[str]:
        """Keywords of all views, first occurrence order, case-insensitively de-duplicated."""
        seen: set[str] = set()
        out = []
        for view in self.views:
            for k in view.keywords:
                if k.lower() not in seen:
                    seen.add(k.lower())
                    out.append(k)
        return out

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> ConceptMemory:
        for v in self.views:
            v.embeds = v.embeds.to(device=device, dtype=dtype or v.embeds.dtype)
            if v.deepstack is not None:
                v.deepstack = v.deepstack.to(device=device, dtype=dtype or v.deepstack.dtype)
        return self

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly description (no tensors)."""
        return {
            "name": self.name,
            "keywords": self.unique_keywords(),
            "alpha": [None if a is None else round(a, 2) for a in self.alpha],
            "k_c": self.k_c,
            "num_tokens": self.num_tokens,
            "views": len(self.views),
            "selection": self.selection,
            "model": self.model,
            "fingerprint": self.fingerprint,
            "created": self.created,
            "seconds": round(self.seconds, 4),
            "notes": self.notes,
        }
