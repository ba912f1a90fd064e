"""Layer calibration (paper 3.4): which LLM layers' keyword attention lands on the described object.

For images that hold one main object with a ground-truth mask, the model describes the object while
keyword->visual attention is captured on every layer. Per layer, the top-K visual tokens by importance
are compared with the tokens the mask covers; layers are ranked by the mean overlap (precision at K)
and the best L are kept. The result is saved as a small JSON file that the engine loads.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .backends.base import Backend
from .errors import CalibrationError, ModelMismatchError
from .images import to_rgb
from .introduce import describe_with_attention
from .sequence import Runner

CALIBRATION_FILE = "ego_calibration.json"

#: How a calibration ranked layers: "masks" (overlap with object masks, paper 3.4) or "self" (no masks:
#: ego_ros.core.self_calibration).
CALIBRATION_METHODS = ("masks", "self")


@dataclass
class Calibration:
    layers: list[int]
    layer_scores: list[float]  # mean overlap of every layer, index = layer
    top_k: int | None
    samples: int
    fingerprint: str
    model: str
    mask_threshold: float = 0.5
    created: float = field(default_factory=time.time)
    #: files written before self-calibration existed have no method: they were all mask-based
    method: str = "masks"
    #: the file it was loaded from or saved to (not written into the file)
    path: str | None = field(default=None, compare=False)

    def save(self, path: str | Path) -> Path:
        from .store import atomic_write_bytes

        path = Path(path)
        data = asdict(self)
        data.pop("path")
        atomic_write_bytes(path, json.dumps(data, indent=1).encode("utf-8"), mode=0o644)
        self.path = str(path)
        return path

    @classmethod
    def load(cls, path: str | Path, fingerprint: str | None = None, num_layers: int | None = None) -> Calibration:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            cal = cls(**data)
            cal.layers = [int(x) for x in cal.layers]
        except (OSError, json.JSONDecodeError, TypeError, ValueError) as exc:
            raise CalibrationError(f"{path}: not a valid calibration file ({exc})") from exc
        if fingerprint is not None and cal.fingerprint != fingerprint:
            raise ModelMismatchError(f"{path}: calibration made for model {cal.model!r} "
                                     f"(fingerprint {cal.fingerprint}), not the loaded model ({fingerprint})")
        if not cal.layers or (num_layers is not None and any(not 0 <= x < num_layers for x in cal.layers)):
            raise CalibrationError(f"{path}: layers {cal.layers} do not fit a model with {num_layers} layers")
        if cal.method not in CALIBRATION_METHODS:
            raise CalibrationError(f"{path}: unknown calibration method {cal.method!r}; expected one of "
                                   f"{CALIBRATION_METHODS}")
        cal.path = str(path)
        return cal


def layer_overlaps(backend: Backend, runner: Runner, image: Image.Image, mask: np.ndarray,
                   top_k: int | None = None, mask_threshold: float = 0.5,
                   max_new_tokens: int = 16) -> np.ndarray:
    """Per layer, the fraction of the top-K tokens (by that layer's importance) that lie on the mask."""
    vt = backend.encode_images([image])[0]
    on_object = vt.mask_fraction(mask) >= mask_threshold
    n_obj = int(on_object.sum())
    if n_obj == 0:
        raise CalibrationError("mask covers no visual token; use larger objects or a lower mask threshold")
    k = min(top_k or n_obj, vt.count)
    ka, _ = describe_with_attention(backend, runner, vt, None, max_new_tokens)
    scores = np.zeros(backend.num_layers)
    for layer in range(backend.num_layers):
        imp = ka.importance([layer])
        top = torch.topk(imp, k).indices.cpu().numpy()
        scores[layer] = on_object[top].mean()
    return scores


def best_layers(scores: np.ndarray, num_layers: int) -> list[int]:
    """The `num_layers` highest-scoring layers (at least one; ties to the lower index), in layer order."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    return sorted(order[:max(1, min(num_layers, len(scores)))])


def calibrate(backend: Backend, pairs: Iterable[tuple[Image.Image | np.ndarray | str | Path, np.ndarray]],
              num_layers: int = 5, top_k: int | None = None, mask_threshold: float = 0.5,
              max_new_tokens: int = 16, progress: Callable[[int], None] | None = None) -> Calibration:
    """Rank layers over (image, mask) pairs and keep the best `num_layers`."""
    runner = Runner(backend)
    total = np.zeros(backend.num_layers)
    count = 0
    with torch.inference_mode():
        for i, (image, mask) in enumerate(pairs):
            img = to_rgb(image, what=f"calibration image {i}")
            mask = np.asarray(mask).astype(bool)
            if mask.shape[:2] != (img.size[1], img.size[0]):
                raise CalibrationError(f"calibration pair {i}: mask {mask.shape[:2]} does not match image "
                                       f"{img.size[1]}x{img.size[0]}")
            total += layer_overlaps(backend, runner, img, mask, top_k, mask_threshold, max_new_tokens)
            count += 1
            if progress:
                progress(count)
    if count == 0:
        raise CalibrationError("no calibration pairs given")
    scores = total / count
    keep = best_layers(scores, num_layers)
    return Calibration(layers=keep, layer_scores=[float(s) for s in scores], top_k=top_k, samples=count,
                       fingerprint=backend.fingerprint(), model=backend.name, mask_threshold=mask_threshold)


def read_mask(path: str | Path) -> np.ndarray:
    with Image.open(path) as im:
        arr = np.asarray(im.convert("L"))
    return arr > 127


def folder_pairs(folder: str | Path) -> list[tuple[Path, Path]]:
    """(image, mask) paths from `folder/images/*` and `folder/masks/<same stem>.*`."""
    folder = Path(folder)
    images_dir, masks_dir = folder / "images", folder / "masks"
    if not images_dir.is_dir() or not masks_dir.is_dir():
        raise CalibrationError(f"{folder}: expected sub-folders images/ and masks/ (masks named like the images)")
    masks = {p.stem: p for p in masks_dir.iterdir() if p.is_file()}
    pairs = []
    for img in sorted(p for p in images_dir.iterdir() if p.is_file()):
        if img.stem not in masks:
            raise CalibrationError(f"{img}: no mask named {img.stem}.* in {masks_dir}")
        pairs.append((img, masks[img.stem]))
    if not pairs:
        raise CalibrationError(f"{images_dir}: no images")
    return pairs


def coco_pairs(annotations: str | Path, image_dir: str | Path,
               limit: int | None = None) -> list[tuple[Path, np.ndarray]]:
    """(image, mask) pairs from COCO instance annotations, as the paper samples them: images holding a
    single annotated instance (of a single category). Polygon masks are rasterised with OpenCV;
    RLE masks need pycocotools."""
    import cv2

    annotations, image_dir = Path(annotations), Path(image_dir)
    try:
        data = json.loads(annotations.read_text(encoding="utf-8"))
        images = {im["id"]: im for im in data["images"]}
        by_image: dict[int, list[dict]] = {}
        for ann in data["annotations"]:
            by_image.setdefault(ann["image_id"], []).append(ann)
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CalibrationError(f"{annotations}: not a COCO instances file ({exc})") from exc
    pairs = []
    for image_id in sorted(by_image):
        anns = [a for a in by_image[image_id] if not a.get("iscrowd", 0)]
        if len(anns) != 1:
            continue
        im, ann = images[image_id], anns[0]
        h, w = int(im["height"]), int(im["width"])
        seg = ann["segmentation"]
        if isinstance(seg, list):
            mask = np.zeros((h, w), np.uint8)
            for poly in seg:
                pts = np.asarray(poly, dtype=np.float64).reshape(-1, 2).round().astype(np.int32)
                cv2.fillPoly(mask, [pts], 1)
            mask = mask.astype(bool)
        else:
            try:
                from pycocotools import mask as mask_utils
            except ImportError as exc:
                raise CalibrationError("RLE masks need pycocotools (pip install pycocotools)") from exc
            rle = mask_utils.frPyObjects(seg, h, w) if isinstance(seg.get("counts"), list) else seg
            mask = mask_utils.decode(rle).astype(bool)
        pairs.append((image_dir / im["file_name"], mask))
        if limit is not None and len(pairs) >= limit:
            break
    if not pairs:
        raise CalibrationError(f"{annotations}: no image with exactly one instance")
    return pairs
