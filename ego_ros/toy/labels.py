"""Per-pixel labels of a rendered toy scene and their pooling to a patch grid for dense supervision.

`LabelMaps`: ``object`` (0 = background, k+1 = ``spec.objects[k]``), ``part`` (0 background, 1 body,
2 pattern, 3 mark glyph, 4 identity glyph (v2 only)) and the attribute maps ``shape``, ``colour``,
``pattern``, ``mark`` holding ``attribute id + 1`` on object pixels and ``BACKGROUND_LABEL`` (0)
elsewhere. `pool_labels` / `pool_fractions` reduce them to a patch grid (e.g. 8x8-pixel patches).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .attributes import ATTRIBUTE_VALUES, ATTRIBUTES, Instance, WorldError

BACKGROUND_LABEL = 0
#: Number of classes of each per-pixel label map, background included.
LABEL_CLASSES: dict[str, int] = {a: len(ATTRIBUTE_VALUES[a]) + 1 for a in ATTRIBUTES}
PART_BACKGROUND, PART_BODY, PART_PATTERN, PART_MARK, PART_GLYPH = 0, 1, 2, 3, 4


@dataclass(frozen=True, eq=False)
class LabelMaps:
    """Per-pixel labels of a rendered scene (uint8 HxW each; see the module docstring)."""

    object: np.ndarray
    part: np.ndarray
    instances: tuple[Instance, ...]

    def _lookup(self, attr: str) -> np.ndarray:
        lut = np.zeros(256, dtype=np.uint8)
        for k, inst in enumerate(self.instances):
            lut[k + 1] = getattr(inst, attr) + 1
        return lut[self.object]

    @cached_property
    def shape(self) -> np.ndarray:
        return self._lookup("shape")

    @cached_property
    def colour(self) -> np.ndarray:
        return self._lookup("colour")

    @cached_property
    def pattern(self) -> np.ndarray:
        return self._lookup("pattern")

    @cached_property
    def mark(self) -> np.ndarray:
        return self._lookup("mark")

    def attribute(self, name: str) -> np.ndarray:
        """The label map of attribute `name` (one of ATTRIBUTES)."""
        if name not in ATTRIBUTES:
            raise WorldError(f"unknown attribute {name!r}; known: {ATTRIBUTES}")
        return getattr(self, name)


def _patch_view(label_map: np.ndarray, patch: int) -> np.ndarray:
    if label_map.ndim != 2:
        raise WorldError(f"label map must be HxW, got shape {label_map.shape}")
    h, w = label_map.shape
    if patch <= 0 or h % patch or w % patch:
        raise WorldError(f"patch size {patch} must divide the map size {w}x{h}")
    return (
        label_map.reshape(h // patch, patch, w // patch, patch)
        .transpose(0, 2, 1, 3)
        .reshape(h // patch, w // patch, -1)
    )


def pool_fractions(label_map: np.ndarray, patch: int, n_classes: int) -> np.ndarray:
    """Share of each label in each patch: float32 (n_classes, H/patch, W/patch)."""
    cells = _patch_view(label_map, patch)
    if cells.size and int(cells.max()) >= n_classes:
        raise WorldError(f"label {int(cells.max())} does not fit n_classes={n_classes}")
    onehot = cells[None] == np.arange(n_classes, dtype=label_map.dtype)[:, None, None, None]
    return onehot.mean(-1, dtype=np.float32)


def pool_labels(label_map: np.ndarray, patch: int, n_classes: int) -> np.ndarray:
    """Majority label of each patch (ties go to the lower label): int64 (H/patch, W/patch)."""
    return pool_fractions(label_map, patch, n_classes).argmax(0)
