"""3-D positions of located concepts from a depth image registered to the colour camera (issue 15).

Pure functions and a small buffer, no rclpy: depth frames (sensor_msgs/Image 16UC1 in millimetres or
32FC1 in metres) are turned into metres with invalid pixels as NaN, matched to a colour frame by the
nearest stamp within a tolerance, and a located concept's robust depth (median over the inner part of
its box) is back-projected through the pinhole intrinsics into the colour camera's optical frame
(x right, y down, z forward). Anything missing or doubtful (no depth frame, a stale one, a different
size than the colour image, too few valid pixels) gives None and a reason, never a wrong point.

The nearest-stamp buffer is written here rather than taken from message_filters because message_filters
is not installed in this project's venv (no message_filters package among its ROS wheels), and what is
needed is a dozen lines.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

#: share of the box (per side, centred) whose pixels give the median depth: the border of a box holds
#: background as often as object
INNER_FRACTION = 0.5
#: fewest valid depth pixels for a depth estimate
MIN_VALID_PIXELS = 4


class DepthError(ValueError):
    """A depth image that cannot be used (encoding, size)."""


def depth_to_metres(data: bytes | np.ndarray, encoding: str, width: int, height: int, step: int = 0,
                    big_endian: bool = False) -> np.ndarray:
    """(H, W) float32 metres from a depth image's fields; zeros, negatives and non-finite values become NaN."""
    if encoding in ("16UC1", "mono16"):
        dtype, scale = np.dtype(">u2" if big_endian else "<u2"), 0.001
    elif encoding == "32FC1":
        dtype, scale = np.dtype(">f4" if big_endian else "<f4"), 1.0
    else:
        raise DepthError(f"unsupported depth encoding {encoding!r}; expected 16UC1 (mm) or 32FC1 (m)")
    row = step or width * dtype.itemsize
    buf = np.frombuffer(bytes(data), dtype=np.uint8)
    if width <= 0 or height <= 0 or row < width * dtype.itemsize or buf.size < row * height:
        raise DepthError(f"depth image {width}x{height} (step {row}) does not fit its {buf.size} bytes")
    rows = buf[:row * height].reshape(height, row)[:, :width * dtype.itemsize]
    depth = np.ascontiguousarray(rows).view(dtype).reshape(height, width).astype(np.float32) * np.float32(scale)
    depth[~np.isfinite(depth) | (depth <= 0)] = np.nan
    return depth


def robust_depth(depth: np.ndarray, box: tuple[float, float, float, float],
                 inner: float = INNER_FRACTION) -> float | None:
    """Median valid depth over the centred `inner` share of the box (per side); None with too few pixels."""
    h, w = depth.shape
    x0, y0, x1, y1 = box
    cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * inner / 2, (y1 - y0) * inner / 2
    xa, xb = int(np.clip(np.floor(cx - hw), 0, w)), int(np.clip(np.ceil(cx + hw), 0, w))
    ya, yb = int(np.clip(np.floor(cy - hh), 0, h)), int(np.clip(np.ceil(cy + hh), 0, h))
    region = depth[ya:yb, xa:xb]
    valid = region[np.isfinite(region)]
    if valid.size < MIN_VALID_PIXELS:
        return None
    return float(np.median(valid))


def back_project(u: float, v: float, z: float, k: np.ndarray | list[float]) -> tuple[float, float, float]:
    """The point at pixel (u, v) and depth z (m) in the camera's optical frame, for intrinsics K (3x3 or the
    9 row-major values of sensor_msgs/CameraInfo.k)."""
    k = np.asarray(k, dtype=np.float64).reshape(3, 3)
    fx, fy, cx, cy = k[0, 0], k[1, 1], k[0, 2], k[1, 2]
    if fx <= 0 or fy <= 0:
        raise DepthError("camera intrinsics have a non-positive focal length")
    return float((u - cx) * z / fx), float((v - cy) * z / fy), float(z)


@dataclass
class DepthFrame:
    """A depth image in metres with its stamp (s) and the colour camera's intrinsics at that time."""

    stamp: float
    depth: np.ndarray
    k: np.ndarray


class DepthBuffer:
    """The latest depth frames, matched to a colour frame by the nearest stamp within `tolerance_s`."""

    def __init__(self, tolerance_s: float = 0.05, size: int = 8) -> None:
        if tolerance_s < 0 or size < 1:
            raise ValueError("tolerance_s must be >= 0 and size >= 1")
        self.tolerance_s = tolerance_s
        self._frames: deque[DepthFrame] = deque(maxlen=size)

    def add(self, frame: DepthFrame) -> None:
        self._frames.append(frame)

    def match(self, stamp: float, size: tuple[int, int]) -> tuple[DepthFrame | None, str]:
        """The depth frame for a colour frame at `stamp` of `size` (width, height), or None and why."""
        if not self._frames:
            return None, "no depth frame received"
        best = min(self._frames, key=lambda f: abs(f.stamp - stamp))
        gap = abs(best.stamp - stamp)
        if gap > self.tolerance_s:
            return None, f"no depth frame within {self.tolerance_s:g} s of the colour frame (nearest {gap:.3f} s)"
        h, w = best.depth.shape
        if (w, h) != tuple(size):
            return None, f"depth image is {w}x{h} but the colour image is {size[0]}x{size[1]}"
        return best, ""


def position(frame: DepthFrame, box: tuple[float, float, float, float], point: tuple[float, float]
             ) -> tuple[tuple[float, float, float] | None, str]:
    """A located concept's 3-D point (optical frame, m): its box's robust depth at its peak pixel."""
    z = robust_depth(frame.depth, box)
    if z is None:
        return None, "too few valid depth pixels in the box"
    return back_project(point[0], point[1], z, frame.k), ""


__all__ = ["DepthError", "DepthFrame", "DepthBuffer", "depth_to_metres", "robust_depth", "back_project",
           "position", "INNER_FRACTION"]
