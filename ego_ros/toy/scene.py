"""A rendered toy scene: image, visible masks, labels and the spec it was drawn from.

``Scene.masks[k]`` is exactly the set of pixels whose final colour came from object k (the visible part
after occlusion and cropping at the border); ``Scene.amodal_masks()`` gives each object's full in-frame
silhouette, ignoring occluders. `render.render` makes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from .attributes import Instance
from .labels import LabelMaps
from .specs import SceneSpec


@dataclass(frozen=True, eq=False)
class Scene:
    """A rendered scene: RGB image (uint8 HxWx3), visible masks (bool NxHxW), labels and its spec."""

    image: np.ndarray
    masks: np.ndarray
    labels: LabelMaps
    spec: SceneSpec
    #: Full area of each object in pixels at this size, parts outside the frame included.
    full_areas: np.ndarray
    #: Whether each object's mark glyph is wholly inside the frame and not covered by another object.
    mark_visible: np.ndarray
    _amodal: tuple[tuple[int, int, np.ndarray] | None, ...] = field(repr=False, default=())

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def instances(self) -> tuple[Instance, ...]:
        return self.spec.instances

    @cached_property
    def visible_pixels(self) -> np.ndarray:
        """Visible pixel count of each object (int64, N)."""
        return self.masks.reshape(len(self.masks), -1).sum(1)

    def visible_fraction(self, k: int) -> float:
        """Share of object k's full area that is visible (occlusion and cropping both reduce it)."""
        return float(self.visible_pixels[k] / max(self.full_areas[k], 1e-9))

    def area_fraction(self, k: int) -> float:
        """Share of the image covered by object k's visible pixels (for "what percentage" questions)."""
        return float(self.visible_pixels[k] / (self.width * self.height))

    @property
    def main_area_fraction(self) -> float | None:
        return None if self.spec.main is None else self.area_fraction(self.spec.main)

    def is_recognisable(self, k: int, min_visible: float = 0.5) -> bool:
        """Object k shows at least `min_visible` of its area and its whole mark: it can be told apart
        from its near-duplicates."""
        return bool(self.mark_visible[k]) and self.visible_fraction(k) >= min_visible

    def visible_instances(self, min_pixels: int = 1) -> tuple[Instance, ...]:
        """Instances with at least `min_pixels` visible pixels, in drawing order."""
        return tuple(o.instance for o, n in zip(self.spec.objects, self.visible_pixels) if n >= min_pixels)

    def bbox(self, k: int) -> tuple[int, int, int, int] | None:
        """(x0, y0, x1, y1), exclusive ends, of object k's visible pixels; None when it is not visible."""
        ys, xs = np.nonzero(self.masks[k])
        if len(xs) == 0:
            return None
        return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1

    def amodal_masks(self) -> np.ndarray:
        """Each object's whole in-frame silhouette, ignoring occluders (bool NxHxW)."""
        out = np.zeros(self.masks.shape, dtype=bool)
        for k, part in enumerate(self._amodal):
            if part is not None:
                y0, x0, m = part
                out[k, y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]] = m
        return out
