"""Images of the toy model's training samples: a rendered scene as the model sees it (64x64) with its
per-patch supervision (`ImageData`), crops, and the render sizes drawn like camera frames."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from .attributes import ATTRIBUTES, COLOURS, PATTERNS, SHAPES, Instance
from .labels import pool_fractions
from .render import render
from .scene import Scene
from .task_config import TaskConfig

IMAGE_SIZE = 64
PATCH = 8
GRID = IMAGE_SIZE // PATCH
N_TOKENS = GRID * GRID

#: Classes of each per-patch label head (background = 0).
LABEL_CLASSES: dict[str, int] = {
    "shape": len(SHAPES) + 1,
    "colour": len(COLOURS) + 1,
    "pattern": len(PATTERNS) + 1,
    "mark": 8 + 1,
}


@dataclass
class ImageData:
    """One 64x64 image with its per-patch supervision."""

    pixels: np.ndarray  # uint8 (64, 64, 3)
    labels: np.ndarray  # int64 (4, G, G): shape, colour, pattern, mark class per patch (0 = background)
    obj_frac: np.ndarray  # float32 (n, G, G): share of each patch covered by each object
    obj_inst: np.ndarray  # int64 (n,): instance uid of each object (`Instance.uid`; the index in v1)
    obj_ok: np.ndarray  # bool (n,): object recognisable (mark visible, mostly visible): a contrastive anchor


_BIG_SIZES: tuple[tuple[int, int], ...] = ((160, 120), (128, 96), (96, 96), (320, 240), (128, 128), (640, 480))
_BIG_P = np.array([0.3, 0.25, 0.15, 0.15, 0.12, 0.03])


def render_size(rng: np.random.Generator, cfg: TaskConfig) -> tuple[int, int]:
    if rng.random() < cfg.big_render_p:
        return _BIG_SIZES[int(rng.choice(len(_BIG_SIZES), p=_BIG_P))]
    return (IMAGE_SIZE, IMAGE_SIZE)


def _attribute_luts(instances: tuple[Instance, ...]) -> np.ndarray:
    lut = np.zeros((4, len(instances) + 1), dtype=np.int64)
    for k, inst in enumerate(instances):
        for a, attr in enumerate(ATTRIBUTES):
            lut[a, k + 1] = getattr(inst, attr) + 1
    return lut


def _labelled(pixels: np.ndarray, obj: np.ndarray, instances: tuple[Instance, ...], ok: np.ndarray) -> ImageData:
    """ImageData of 64x64 `pixels` with object map `obj` (0 = background, k + 1 = object k)."""
    n = len(instances)
    frac = pool_fractions(obj, PATCH, n + 1)  # (n + 1, G, G), background first
    lut = _attribute_luts(instances)
    labels = np.empty((4, GRID, GRID), dtype=np.int64)
    for a, attr in enumerate(ATTRIBUTES):
        # Majority attribute value per patch, from the object shares: a patch half covered by two red
        # objects is red. Shares are multiples of 1/64, so these sums are exact and ties break to the
        # lower label as in `pool_labels` of the attribute map.
        share = np.zeros((LABEL_CLASSES[attr], GRID, GRID), dtype=np.float32)
        np.add.at(share, lut[a], frac)
        labels[a] = share.argmax(0)
    inst = np.array([i.uid for i in instances], dtype=np.int64)
    return ImageData(pixels=np.ascontiguousarray(pixels), labels=labels, obj_frac=frac[1:], obj_inst=inst, obj_ok=ok)


def image_data(scene: Scene) -> ImageData:
    """Resize a rendered scene to the model's input like the image processor does, with its labels."""
    obj = scene.labels.object
    if scene.width != IMAGE_SIZE or scene.height != IMAGE_SIZE:
        pixels = np.asarray(Image.fromarray(scene.image).resize((IMAGE_SIZE, IMAGE_SIZE), Image.BICUBIC))
        obj = cv2.resize(obj, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_NEAREST)
    else:
        pixels = scene.image
    n = len(scene.spec.objects)
    ok = np.array([scene.is_recognisable(k, 0.5) for k in range(n)], dtype=bool)
    return _labelled(pixels, obj, scene.spec.instances, ok)


def crop_scene(scene: Scene, k: int, rng: np.random.Generator) -> ImageData:
    """A crop around object k (re-rendered at a higher resolution, so the crop is sharp), as 64x64."""
    scale = 4
    big = render(scene.spec, (scene.width * scale, scene.height * scale))
    box = big.bbox(k)
    if box is None:
        return image_data(scene)
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    side = max(x1 - x0, y1 - y0) * float(rng.uniform(1.1, 1.6))
    side = min(side, big.width, big.height)
    ax = int(round(min(max(cx - side / 2, 0), big.width - side)))
    ay = int(round(min(max(cy - side / 2, 0), big.height - side)))
    s = int(round(side))
    img = np.ascontiguousarray(big.image[ay : ay + s, ax : ax + s])
    obj = np.ascontiguousarray(big.labels.object[ay : ay + s, ax : ax + s])
    pixels = np.asarray(Image.fromarray(img).resize((IMAGE_SIZE, IMAGE_SIZE), Image.BICUBIC))
    obj = cv2.resize(obj, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_NEAREST)
    ok = np.zeros(len(scene.spec.objects), dtype=bool)
    ok[k] = True
    return _labelled(pixels, obj, scene.spec.instances, ok)
