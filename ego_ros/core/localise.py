"""Where a recognised concept is: a heatmap over the query image's visual-token grid, a box and a point.

Training-free, from signals the recognition frame already has (issue 15):

- "attention": the attention of each concept's recognition question (its last token, the one whose
  logits give P(yes)) over the query image's visual tokens on the calibrated layers, captured on the
  shared packed-tails pass (`attention.Capture`, a few rows, no full maps, no second forward pass);
- "similarity": for each query visual token, its best cosine similarity to the concept's memory tokens
  (the LLM input space, as the context filter of paper 3.5);
- "product": the geometric mean of the two maps, each min-max normalised: a token must be both attended
  by the question and look like the stored memory. The square root of the product ranks tokens exactly
  as the product does but keeps one map's dynamic range, so the box's relative threshold means the same
  for every map.

Geometry comes from `VisualTokens`: its map grid (`rows` x `cols` over `box`) tiles the original image
(Qwen's merged 2x2 patches, InternVL's pixel-shuffled grid, LLaVA's centre crop or padded square), so a
token maps to input pixels the same way for every family; boxes are clipped to the image (letterbox
padding lies outside it). A tiled image's map grid is its tiles assembled into one full-resolution grid
(`Layout.map_grid`; the thumbnail, a coarser copy of the same pixels, is left out of the map), so the
heatmap, box and point of a tiled frame are in input-image pixels as for any other.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from .backends.base import VisualTokens

MAPS = ("attention", "similarity", "product")
#: the map the engine uses unless asked otherwise (chosen on the toy benchmark, docs/toy_model.md)
DEFAULT_MAP = "product"
#: a token belongs to the box when its normalised map value is at least this share of the peak
BOX_RELATIVE_THRESHOLD = 0.5


@dataclass
class Location:
    """Where one concept is in one image, in the input image's pixels.

    box: (x0, y0, x1, y1); point: (x, y) the centre of the peak token; score: the share of the map's mass
    inside the box's component (1: all of it there, a sharp single blob; near the component's share of
    the grid: a flat map); heatmap: (rows, cols) map normalised to [0, 1]."""

    name: str
    box: tuple[float, float, float, float]
    point: tuple[float, float]
    score: float
    heatmap: np.ndarray
    map: str = DEFAULT_MAP

    def to_dict(self, heatmap: bool = False) -> dict:
        out = {"name": self.name, "box": [round(v, 2) for v in self.box],
               "point": [round(v, 2) for v in self.point], "score": round(self.score, 4), "map": self.map}
        if heatmap:
            out["heatmap"] = np.round(self.heatmap, 4).tolist()
        return out


def normalise(values: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1]; a flat map becomes all zeros (no location in it)."""
    v = np.asarray(values, dtype=np.float64)
    lo, hi = float(v.min()), float(v.max())
    if not np.isfinite(lo) or not np.isfinite(hi) or hi - lo <= 1e-12:
        return np.zeros_like(v)
    return (v - lo) / (hi - lo)


def similarity_map(query: torch.Tensor, memory: torch.Tensor) -> np.ndarray:
    """(N,) best cosine similarity of each query visual token (N, D) to any memory token (M, D)."""
    with torch.no_grad():
        q = torch.nn.functional.normalize(query.float(), dim=-1)
        m = torch.nn.functional.normalize(memory.float().to(q.device), dim=-1)
        return (q @ m.T).max(dim=1).values.cpu().numpy()


def combine(attention: np.ndarray | None, similarity: np.ndarray, which: str) -> np.ndarray:
    """The candidate map `which` from the attention map (None when not captured) and the similarity map."""
    if which not in MAPS:
        raise ValueError(f"unknown localisation map {which!r}; expected one of {MAPS}")
    if which == "similarity":
        return normalise(similarity)
    if attention is None:
        raise ValueError("the attention map was not captured")
    if which == "attention":
        return normalise(attention)
    return normalise(np.sqrt(normalise(attention) * normalise(similarity)))


def box_from_map(heat: np.ndarray, vt: VisualTokens, relative: float = BOX_RELATIVE_THRESHOLD
                 ) -> tuple[tuple[float, float, float, float], tuple[float, float], float]:
    """Box, peak point and score of a map (N,) over `vt`'s grid.

    Rule: normalise to [0, 1], keep tokens >= `relative` (of the peak, which is 1), take the 8-connected
    component holding the peak, and box the union of its tokens' regions, clipped to the image. The point
    is the centre of the peak token (clipped too); the score is the share of the map's mass inside the
    component."""
    grid = normalise(vt.to_map(np.asarray(heat, dtype=np.float64)))
    boxes = vt.token_boxes()[vt.map_indices().ravel()]
    w, h = vt.image_size
    peak = int(np.argmax(grid))
    keep = (grid >= relative).astype(np.uint8)
    keep.flat[peak] = 1
    _, labels = cv2.connectedComponents(keep, connectivity=8)
    component = labels == labels.flat[peak]
    sel = boxes[component.ravel()]
    x0, y0 = float(np.clip(sel[:, 0].min(), 0, w)), float(np.clip(sel[:, 1].min(), 0, h))
    x1, y1 = float(np.clip(sel[:, 2].max(), 0, w)), float(np.clip(sel[:, 3].max(), 0, h))
    px = float(np.clip((boxes[peak, 0] + boxes[peak, 2]) / 2, 0, w - 1e-6))
    py = float(np.clip((boxes[peak, 1] + boxes[peak, 3]) / 2, 0, h - 1e-6))
    total = float(grid.sum())
    score = float(grid[component].sum() / total) if total > 0 else 0.0
    return (x0, y0, x1, y1), (px, py), score


def locate_map(name: str, heat: np.ndarray, vt: VisualTokens, which: str = DEFAULT_MAP) -> Location:
    box, point, score = box_from_map(heat, vt)
    return Location(name=name, box=box, point=point, score=score,
                    heatmap=normalise(vt.to_map(np.asarray(heat))), map=which)


def attention_rows(records: dict[int, list[torch.Tensor]]) -> np.ndarray:
    """(Q, C) attention of each captured question row over the visual columns, mean over the captured
    layers (each record (1, 1 or H, r, C), concatenated over the forward passes)."""
    per_layer = [torch.cat(recs, dim=2)[0].mean(dim=0) for _, recs in sorted(records.items())]
    return torch.stack(per_layer).mean(dim=0).cpu().numpy()


__all__ = ["Location", "MAPS", "DEFAULT_MAP", "similarity_map", "combine", "box_from_map", "locate_map",
           "normalise", "attention_rows"]
