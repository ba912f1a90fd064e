"""The `localisation` task: where each concept an image shows is, scored against a toy export's exact masks.

A toy export's manifest holds every test image's scene spec; re-rendering it gives each object's exact
visible mask (`ego_ros.toy.render`). For every recognition sample and each concept it shows,
`EgoEngine.locate` gives a box, a point and a heatmap (cached like every other task's results); the
metrics are computed from the cache against the masks, so they never depend on a stale scoring rule:

* pointing accuracy: share of cases whose point lies on the concept's mask;
* box IoU against the mask's bounding box: mean, and share >= 0.5;
* per object size (the share of the image its visible mask covers, `SIZES`) and two baselines: the
  image centre (with a centred box of the mean ground-truth box size) and a random visual token (its
  centre and its region, seeded).

Cases whose concept is not visible in the re-rendered scene (an empty mask) are counted, not scored.
Data sets without a toy manifest have no exact masks and so no localisation task.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from statistics import mean
from typing import Any

import numpy as np

from .cache import ResultCache, make_key
from .negatives import MANIFEST_NAME
from .work import WorkItem, select_limited

TASK = "localisation"
#: object size by the share of the image its visible mask covers: toy objects cover 2-7 %, and these bounds
#: are the terciles of the toy test objects of seeds 0 and 1 (bench/toy_localisation.py)
SIZES = (("small", 0.0, 0.035), ("medium", 0.035, 0.0475), ("large", 0.0475, 1.01))
#: cases whose heatmaps the results keep for the report's figure
EXAMPLES = 6


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def mask_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    """The pixel-edge bounding box (x0, y0, x1, y1) of a non-empty boolean mask."""
    ys, xs = np.nonzero(mask)
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


def on_mask(point: Sequence[float], mask: np.ndarray) -> bool:
    x, y = int(point[0]), int(point[1])
    return 0 <= y < mask.shape[0] and 0 <= x < mask.shape[1] and bool(mask[y, x])


def size_of(area: float) -> str:
    return next(name for name, lo, hi in SIZES if lo <= area < hi)


class ToyMasks:
    """Exact visible masks of a toy export's test images, rendered from its manifest on demand."""

    def __init__(self, manifest: Path) -> None:
        data = json.loads(manifest.read_text(encoding="utf-8"))
        self.size = int(data["arguments"]["size"])
        self._records = {(manifest.parent / key).resolve().as_posix(): rec
                         for key, rec in data["images"].items() if rec.get("role") == "test"}

    def masks(self, image: str | Path) -> dict[str, np.ndarray]:
        """{concept: visible mask (H, W) bool} of the named objects of one test image; {} for an image the
        manifest does not hold, and no entry for a concept hidden completely."""
        rec = self._records.get(Path(image).resolve().as_posix())
        if rec is None:
            return {}
        from ego_ros.toy.render import render, scene_spec_from_dict  # only toy exports need the renderer

        scene = render(scene_spec_from_dict(rec["spec"]), size=self.size)
        return {obj["concept"]: scene.masks[k] for k, obj in enumerate(rec["objects"])
                if obj.get("concept") is not None and scene.masks[k].any()}


def load_toy_masks(root: str | Path) -> ToyMasks | None:
    """The masks of the toy export at `root` or its parent (the multi-concept layout's root is the export's
    `Multi-concept/`); None for other data sets."""
    for base in (Path(root), Path(root).parent):
        if (base / MANIFEST_NAME).is_file():
            try:
                return ToyMasks(base / MANIFEST_NAME)
            except (OSError, ValueError, KeyError, TypeError):
                return None  # not a toy manifest this reader knows: no exact masks
    return None


def work_items(ds: Any, limit: int | None, seed: int, method: str, shash: str) -> list[WorkItem]:
    """One item per (recognition sample, concept it shows), the samples limited as recognition's are."""
    items = []
    for s in select_limited(ds.recognition, limit, seed, lambda s: s.group):
        rel = ds.relpath(s.image)
        items += [WorkItem(TASK, make_key(TASK, rel, c, method, shash), rel, c, "", s) for c in s.concepts]
    return items


def run_items(engine: Any, items: Sequence[WorkItem], cache: ResultCache, method: str, shash: str,
              open_image: Callable[[Path], Any], bar: Any) -> None:
    """Locate each item's concept in its image (`EgoEngine.locate`) and cache what it gives."""
    for w in items:
        image = open_image(w.record.image)
        start = time.perf_counter()
        rec = engine.locate(image, w.concept)
        seconds = time.perf_counter() - start
        loc = rec.location
        cache.put(w.key, task=w.task, image=w.image, concept=w.concept, method=method, settings=shash,
                  seconds=seconds,
                  result={"present": bool(rec.present), "probability": float(rec.probability),
                          **loc.to_dict(heatmap=True), "image_size": list(image.size)})
        bar.update(1)


def _token_regions(result: dict[str, Any]) -> np.ndarray:
    """(N, 4) pixel regions of the heatmap's cells over its extent."""
    rows, cols = np.asarray(result["heatmap"]).shape
    x0, y0, x1, y1 = result["extent"]
    xs, ys = np.linspace(x0, x1, cols + 1), np.linspace(y0, y1, rows + 1)
    r, c = (a.ravel() for a in np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij"))
    return np.stack([xs[c], ys[r], xs[c + 1], ys[r + 1]], axis=1)


def _summary(cases: list[dict[str, Any]]) -> dict[str, Any]:
    ious = [c["iou"] for c in cases]
    return {"cases": len(cases), "pointing": mean(float(c["hit"]) for c in cases), "iou_mean": mean(ious),
            "iou_ge_0.5": mean(float(i >= 0.5) for i in ious)}


def localisation_metrics(items: Sequence[WorkItem], cache: ResultCache, masks: ToyMasks, seed: int = 0
                         ) -> dict[str, Any]:
    """Pointing accuracy and box IoU of the cached locations against the exact masks, overall, per size and
    for the two baselines; plus `EXAMPLES` cases with their heatmaps for the report's figure."""
    rng = np.random.default_rng(seed)
    by_image: dict[str, dict[str, np.ndarray]] = {}
    scored, baseline_rows, hidden = [], [], 0
    for w in items:
        if w.image not in by_image:
            by_image[w.image] = masks.masks(w.record.image)
        mask = by_image[w.image].get(w.concept)
        if mask is None:
            hidden += 1
            continue
        r = cache[w.key]["result"]
        gt = mask_box(mask)
        scored.append({"image": w.image, "concept": w.concept, "size": size_of(float(mask.mean())),
                       "present": r["present"], "hit": on_mask(r["point"], mask), "iou": iou(r["box"], gt),
                       "gt_box": list(gt), "result": r})
        regions = _token_regions(r)
        t = regions[int(rng.integers(len(regions)))]
        baseline_rows.append({"gt": gt, "random": {"hit": on_mask(((t[0] + t[2]) / 2, (t[1] + t[3]) / 2), mask),
                                                   "iou": iou(t, gt)}, "mask": mask, "size": r["image_size"]})
    out: dict[str, Any] = {"cases": len(scored), "hidden": hidden}
    if not scored:
        return out
    mean_w = mean(b["gt"][2] - b["gt"][0] for b in baseline_rows)
    mean_h = mean(b["gt"][3] - b["gt"][1] for b in baseline_rows)
    centre = []
    for b in baseline_rows:
        w, h = b["size"]
        box = (w / 2 - mean_w / 2, h / 2 - mean_h / 2, w / 2 + mean_w / 2, h / 2 + mean_h / 2)
        centre.append({"hit": on_mask((w / 2, h / 2), b["mask"]), "iou": iou(box, b["gt"])})
    out.update(_summary(scored))
    out["present_share"] = mean(float(c["present"]) for c in scored)
    out["map"] = scored[0]["result"].get("map")
    out["by_size"] = {name: _summary(sub) for name, _, _ in SIZES
                      if (sub := [c for c in scored if c["size"] == name])}
    out["baselines"] = {"centre": _summary(centre), "random-token": _summary([b["random"] for b in baseline_rows])}
    out["examples"] = [{k: c[k] for k in ("image", "concept", "hit", "iou", "gt_box")}
                       | {k: c["result"][k] for k in ("box", "point", "heatmap", "extent", "probability")}
                       for c in scored[:: max(1, len(scored) // EXAMPLES)][:EXAMPLES]]
    return out


__all__ = ["TASK", "SIZES", "ToyMasks", "load_toy_masks", "work_items", "run_items", "localisation_metrics",
           "iou", "mask_box", "on_mask", "size_of"]
