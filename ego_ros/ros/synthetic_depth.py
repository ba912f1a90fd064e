"""Depth for the synthetic camera: a pinhole camera looking down at a floor, and the toy world's objects
standing on it as upright cut-outs, so every frame has an exact depth image and exact 3-D ground truth.

Geometry (the colour camera's optical frame: x right, y down, z forward, metres):

* The camera has a horizontal field of view of `HFOV_DEG`, square pixels and its principal point at the
  image centre (`PinholeCamera.for_size`); it is `CAMERA_HEIGHT_M` above a flat floor, pitched down by
  `PITCH_DEG`. The floor's depth along the ray of row v is ``h / (sin(pitch) + cos(pitch) (v - cy) / fy)``
  (`floor_depth_at`); rows at or above the horizon see no floor and have no depth (NaN, 0 in 16UC1).
* Each object of the scene is a flat cut-out facing the camera, standing on the floor at the bottom of its
  circumscribed circle: its whole visible mask has the floor's depth at that row (so it is nearer than the
  floor everywhere above its foot). Occlusion among objects follows the toy world's drawing order, which
  the visible masks already resolve; the depth image follows those masks.
* Ground truth of an object: the centroid of its visible mask, back-projected at the object's depth.

Pixel coordinates here follow the intrinsics convention (pixel i's centre at i), except where a name
says corner (the engine's convention, origin at the image's corner).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..toy.scene import Scene

HFOV_DEG = 60.0
CAMERA_HEIGHT_M = 1.0
PITCH_DEG = 45.0
#: farthest floor depth the camera reports (a real sensor's range); beyond it, no depth
MAX_DEPTH_M = 20.0
DEPTH_ENCODINGS = ("16UC1", "32FC1")


@dataclass(frozen=True)
class PinholeCamera:
    """The synthetic camera's intrinsics for one image size."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    @classmethod
    def for_size(cls, width: int, height: int, hfov_deg: float = HFOV_DEG) -> PinholeCamera:
        f = (width / 2) / math.tan(math.radians(hfov_deg) / 2)
        return cls(int(width), int(height), f, f, (width - 1) / 2, (height - 1) / 2)

    @property
    def k(self) -> list[float]:
        """sensor_msgs/CameraInfo.k (row-major 3x3)."""
        return [self.fx, 0.0, self.cx, 0.0, self.fy, self.cy, 0.0, 0.0, 1.0]

    def floor_depth_at(self, v: np.ndarray | float) -> np.ndarray:
        """Depth (m) of the floor seen along row `v`; NaN at and above the horizon or beyond MAX_DEPTH_M."""
        pitch = math.radians(PITCH_DEG)
        denominator = math.sin(pitch) + math.cos(pitch) * (np.asarray(v, dtype=np.float64) - self.cy) / self.fy
        with np.errstate(divide="ignore", invalid="ignore"):
            z = CAMERA_HEIGHT_M / denominator
        return np.where((denominator > 0) & (z <= MAX_DEPTH_M), z, np.nan)

    def floor_depth(self) -> np.ndarray:
        """(H, W) float32 depth image of the empty floor."""
        column = self.floor_depth_at(np.arange(self.height)).astype(np.float32)
        return np.repeat(column[:, None], self.width, axis=1)

    def back_project(self, u: float, v: float, z: float) -> tuple[float, float, float]:
        return (u - self.cx) * z / self.fx, (v - self.cy) * z / self.fy, z


@dataclass(frozen=True)
class ObjectTruth:
    """Where one object is in one frame: its depth, and (when visible) its mask's box, centroid and 3-D point."""

    depth_m: float
    box: tuple[int, int, int, int] | None  # corner convention, exclusive ends
    centroid: tuple[float, float] | None  # corner convention, as the engine's points
    position: tuple[float, float, float] | None


def object_depth(scene: Scene, k: int, camera: PinholeCamera) -> float:
    """Depth (m) of object k: the floor's at the bottom of its circumscribed circle (MAX_DEPTH_M where that
    row sees no floor)."""
    obj = scene.spec.objects[k]
    bottom = obj.y * camera.height + obj.size * min(camera.width, camera.height) / 2 - 0.5
    z = float(camera.floor_depth_at(max(bottom, 0.0)))
    return z if math.isfinite(z) else MAX_DEPTH_M


def scene_depth(scene: Scene, camera: PinholeCamera, floor: np.ndarray | None = None
                ) -> tuple[np.ndarray, tuple[ObjectTruth, ...]]:
    """The (H, W) float32 depth image (m, NaN: no depth) of a rendered scene and each object's ground truth.

    `floor` is `camera.floor_depth()`, passed in to reuse it across frames."""
    depth = (camera.floor_depth() if floor is None else floor).copy()
    truths = []
    for k in range(len(scene.spec.objects)):
        z = object_depth(scene, k, camera)
        mask = scene.masks[k]
        depth[mask] = z
        # Centroid and box from the mask's row and column counts: a fraction of np.nonzero's time on a
        # 640x480 frame, which the camera renders 30 times a second.
        columns, rows = mask.sum(axis=0), mask.sum(axis=1)
        n = int(columns.sum())
        if n == 0:
            truths.append(ObjectTruth(z, None, None, None))
            continue
        u, v = float(columns @ np.arange(len(columns))) / n, float(rows @ np.arange(len(rows))) / n
        xs, ys = np.flatnonzero(columns), np.flatnonzero(rows)
        box = (int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1)
        truths.append(ObjectTruth(z, box, (u + 0.5, v + 0.5), camera.back_project(u, v, z)))
    return depth, tuple(truths)


def encode_depth(depth: np.ndarray, encoding: str) -> bytes:
    """A depth image (m, NaN: none) as sensor_msgs/Image data: 16UC1 millimetres (0: none) or 32FC1 metres."""
    if encoding == "16UC1":
        mm = np.where(np.isfinite(depth), np.round(depth * 1000.0), 0.0)
        return np.clip(mm, 0, 65535).astype("<u2").tobytes()
    if encoding == "32FC1":
        return depth.astype("<f4").tobytes()
    raise ValueError(f"depth encoding must be one of {DEPTH_ENCODINGS}, got {encoding!r}")


__all__ = ["PinholeCamera", "ObjectTruth", "object_depth", "scene_depth", "encode_depth", "HFOV_DEG",
           "CAMERA_HEIGHT_M", "PITCH_DEG", "MAX_DEPTH_M", "DEPTH_ENCODINGS"]
