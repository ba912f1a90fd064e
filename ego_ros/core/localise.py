"""Where a recognised concept is: a heatmap over the query image's visual-token grid, a box and a point.

Training-free, from signals the recognition frame already has (issue 15):

- "attention": the attention of each concept's recognition question (its last token, the one whose
  logits give P(yes)) over the query image's visual tokens on the calibrated layers, captured on the
  shared packed-tails pass (`attention.Capture`, a few rows, no full maps, no second forward pass);
- "similarity": for each query visual token, its best cosine similarity to the concept's memory tokens
  (the LLM input space, as the context filter of paper 3.5);
- "product": a weighted geometric mean of the two maps, each min-max normalised, attention ** w times
  similarity ** (1 - w) (w = PRODUCT_WEIGHT): a token must be both attended by the question and look like
  the stored memory. A geometric mean keeps one map's dynamic range, so the box's relative threshold means
  the same for every map.

Box and point (`BoxRule`, `DEFAULT_RULE`): the normalised map is resampled bilinearly to sub-token cells
(the toy model's 8x8 grid has 8 px tokens for objects 9-17 px across, so whole-token boxes rarely fit),
cells above the median plus a share of (peak - median) that connect to the peak form the box, and the
point is the map-weighted centroid of those cells (sub-token too). Chosen by measurement on one seed of
the toy benchmark, reported on two (bench/toy_localisation.py, docs/toy_model.md).

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
#: the attention's exponent in the product map (the similarity's: 1 - this), chosen on the toy benchmark
PRODUCT_WEIGHT = 0.25
#: the map the engine uses unless asked otherwise (chosen on the toy benchmark, docs/toy_model.md)
DEFAULT_MAP = "product"
#: the first rule's threshold: a token belongs to the box when its normalised value is this share of the peak
BOX_RELATIVE_THRESHOLD = 0.5


@dataclass
class Location:
    """Where one concept is in one image, in the input image's pixels.

    box: (x0, y0, x1, y1); point: (x, y) as the box rule gives it (DEFAULT_RULE: the map-weighted centroid
    of the box's component); score: the share of the map's mass inside the box's component (1: all of it
    there, a sharp single blob; near the component's share of the grid: a flat map); heatmap: (rows, cols)
    map normalised to [0, 1]."""

    name: str
    box: tuple[float, float, float, float]
    point: tuple[float, float]
    score: float
    heatmap: np.ndarray
    map: str = DEFAULT_MAP
    #: (x0, y0, x1, y1): the region of the input image the heatmap's grid tiles (VisualTokens.box)
    extent: tuple[float, float, float, float] | None = None

    def to_dict(self, heatmap: bool = False) -> dict:
        out = {"name": self.name, "box": [round(v, 2) for v in self.box],
               "point": [round(v, 2) for v in self.point], "score": round(self.score, 4), "map": self.map}
        if heatmap:
            out["heatmap"] = np.round(self.heatmap, 4).tolist()
            out["extent"] = None if self.extent is None else [round(float(v), 2) for v in self.extent]
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
    return normalise(normalise(attention) ** PRODUCT_WEIGHT * normalise(similarity) ** (1 - PRODUCT_WEIGHT))


@dataclass(frozen=True)
class BoxRule:
    """How a map over the token grid becomes a box and a point (`BoxRule()`: the first session's rule, whole
    tokens at half the peak and the peak token's centre; `DEFAULT_RULE`: the measured choice).

    upsample: the map is bilinearly resampled (OpenCV) to this many cells per token side before
        thresholding, so a box edge can fall inside a token (1: boxes of whole tokens);
    relative: a cell is kept when its value is at least `reference + relative * (peak - reference)`;
    reference: "min" (the map's minimum, 0 after normalisation: a share of the peak) or "median" (the
        map's median, a background level);
    point: "peak" (centre of the highest token) or "centroid" (map-weighted centroid of the kept
        component's cells, above the threshold).
    """

    upsample: int = 1
    relative: float = BOX_RELATIVE_THRESHOLD
    reference: str = "min"
    point: str = "peak"

    def __post_init__(self) -> None:
        if self.upsample < 1:
            raise ValueError(f"upsample must be >= 1, got {self.upsample}")
        if not 0.0 <= self.relative <= 1.0:
            raise ValueError(f"relative must lie in [0, 1], got {self.relative}")
        if self.reference not in ("min", "median"):
            raise ValueError(f"reference must be 'min' or 'median', got {self.reference!r}")
        if self.point not in ("peak", "centroid"):
            raise ValueError(f"point must be 'peak' or 'centroid', got {self.point!r}")


#: the box rule the engine uses: chosen on seed 0 of the toy benchmark (docs/toy_model.md, "Localisation")
DEFAULT_RULE = BoxRule(upsample=8, relative=0.3, reference="median", point="centroid")


def box_from_map(heat: np.ndarray, vt: VisualTokens, rule: BoxRule = DEFAULT_RULE
                 ) -> tuple[tuple[float, float, float, float], tuple[float, float], float]:
    """Box, point and score of a map (N,) over `vt`'s grid, by `rule` (`boxes_from_maps` of one map)."""
    return boxes_from_maps(np.asarray(heat)[None], vt, rule)[0]


def boxes_from_maps(heats: np.ndarray, vt: VisualTokens, rule: BoxRule = DEFAULT_RULE
                    ) -> list[tuple[tuple[float, float, float, float], tuple[float, float], float]]:
    """Box, point and score of each of K maps (K, N) over `vt`'s grid, by `rule`.

    Normalise each to [0, 1], resample to `rule.upsample` cells per token side, keep the cells at or above
    the threshold, take the 8-connected component holding the peak and box it, in image pixels clipped to
    the image. The score is the share of the map's mass inside the component. The maps are normalised,
    resampled and thresholded together (one OpenCV resize of a K-channel image: a recognition frame
    locates every concept in context, and per-map calls cost more than the work)."""
    heats = np.asarray(heats, dtype=np.float64).reshape(-1, vt.count)
    # per-token values (token-list order) onto the map grid: the identity for a single-grid image, the
    # tiles assembled into one grid (thumbnail left out) for a tiled one
    heats = heats[:, vt.map_indices().ravel()]
    lo, hi = heats.min(axis=1, keepdims=True), heats.max(axis=1, keepdims=True)
    span = hi - lo
    flat = np.isfinite(span) & (span > 1e-12)
    norm = np.where(flat, (heats - lo) / np.where(flat, span, 1.0), 0.0)  # as `normalise`, per map
    token_peaks = norm.argmax(axis=1)
    f = rule.upsample
    grids = norm.reshape(-1, vt.rows, vt.cols).transpose(1, 2, 0)  # (rows, cols, K)
    if f > 1:
        # INTER_LINEAR aligns cell centres (half-pixel convention): a token's value sits at its centre.
        # In chunks: OpenCV's Python binding refuses images of a few hundred channels (384 fails, 128 works).
        grids = np.concatenate([cv2.resize(np.ascontiguousarray(grids[:, :, i:i + 128]), (vt.cols * f, vt.rows * f),
                                           interpolation=cv2.INTER_LINEAR).reshape(vt.rows * f, vt.cols * f, -1)
                                for i in range(0, grids.shape[2], 128)], axis=2)
    rows, cols, k = grids.shape
    cells = grids.reshape(rows * cols, k)
    peaks = cells.argmax(axis=0)
    top = cells[peaks, np.arange(k)]
    refs = np.median(cells, axis=0) if rule.reference == "median" else cells.min(axis=0)
    keeps = (cells >= refs + rule.relative * (top - refs)).astype(np.uint8)
    keeps[peaks, np.arange(k)] = 1
    totals = cells.sum(axis=0)
    bx0, by0, bx1, by1 = vt.box
    cw, ch = (bx1 - bx0) / cols, (by1 - by0) / rows  # one cell in image pixels
    w, h = vt.image_size
    out = []
    for i in range(k):
        grid = grids[:, :, i]
        _, labels = cv2.connectedComponents(np.ascontiguousarray(keeps[:, i].reshape(rows, cols)), connectivity=8)
        ys, xs = np.nonzero(labels == labels.flat[peaks[i]])
        # Plain min/max: np.clip on four scalars costs more than the rest of a box (per concept, per frame).
        x0, x1 = (min(max(float(v), 0.0), w) for v in (bx0 + xs.min() * cw, bx0 + (xs.max() + 1) * cw))
        y0, y1 = (min(max(float(v), 0.0), h) for v in (by0 + ys.min() * ch, by0 + (ys.max() + 1) * ch))
        values = grid[ys, xs]
        if rule.point == "centroid":
            wts = values - min(float(refs[i]), float(values.min())) + 1e-12
            cx, cy = float(wts @ (xs + 0.5)) / float(wts.sum()), float(wts @ (ys + 0.5)) / float(wts.sum())
        else:  # the peak token's centre: the resampled maximum ties over the cells around it
            cy, cx = ((v + 0.5) * f for v in divmod(int(token_peaks[i]), vt.cols))
        px = min(max(float(bx0 + cx * cw), 0.0), w - 1e-6)
        py = min(max(float(by0 + cy * ch), 0.0), h - 1e-6)
        score = float(values.sum() / totals[i]) if totals[i] > 0 else 0.0
        out.append(((float(x0), float(y0), float(x1), float(y1)), (px, py), score))
    return out


def locate_map(name: str, heat: np.ndarray, vt: VisualTokens, which: str = DEFAULT_MAP,
               rule: BoxRule = DEFAULT_RULE) -> Location:
    return locate_maps([name], np.asarray(heat)[None], vt, which, rule)[0]


def locate_maps(names: list[str], heats: np.ndarray, vt: VisualTokens, which: str = DEFAULT_MAP,
                rule: BoxRule = DEFAULT_RULE) -> list[Location]:
    """A `Location` per name from its map (row of `heats`, (K, N)), boxes by `boxes_from_maps`."""
    extent = tuple(float(v) for v in vt.box)
    return [Location(name=n, box=box, point=point, score=score,
                     heatmap=normalise(vt.to_map(np.asarray(heat))), map=which, extent=extent)
            for n, heat, (box, point, score) in zip(names, heats, boxes_from_maps(heats, vt, rule))]


def attention_rows(records: dict[int, list[torch.Tensor]]) -> np.ndarray:
    """(Q, C) attention of each captured question row over the visual columns, mean over the captured
    layers (each record (1, 1 or H, r, C), concatenated over the forward passes)."""
    per_layer = [torch.cat(recs, dim=2)[0].mean(dim=0) for _, recs in sorted(records.items())]
    return torch.stack(per_layer).mean(dim=0).cpu().numpy()


__all__ = ["Location", "BoxRule", "DEFAULT_RULE", "MAPS", "PRODUCT_WEIGHT", "DEFAULT_MAP", "similarity_map", "combine",
           "box_from_map", "boxes_from_maps", "locate_map", "locate_maps", "normalise", "attention_rows"]
