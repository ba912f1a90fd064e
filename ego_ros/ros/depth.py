"""3-D positions of located concepts from a depth image registered to the colour camera (issue 15).

Pure functions and a small buffer, no rclpy: depth frames (sensor_msgs/Image 16UC1 in millimetres or
32FC1 in metres) are turned into metres with invalid pixels as NaN, matched to a colour frame by the
nearest stamp within a tolerance, and a located concept's robust depth (median over the inner part of
its box) is back-projected through the pinhole intrinsics into the colour camera's optical frame
(x right, y down, z forward). Anything missing or doubtful (no depth frame, a stale one, a depth image
whose aspect differs from the colour image's, intrinsics for another image size, too few valid pixels)
gives None and a reason, never a wrong point. A depth image registered to the colour camera at another
resolution (same aspect) is used by scaling the box into its pixels.

Pixel conventions: the engine's boxes and points (`core.localise`) put the origin at the top-left
corner of the image (pixel i spans [i, i + 1)); camera intrinsics (sensor_msgs/CameraInfo.k, OpenCV)
put pixel i's centre at i. `position` converts between the two (`CORNER_TO_CENTRE`).

The nearest-stamp buffer is written here rather than taken from message_filters: message_filters is not
among the ROS 2 wheels this project installs from PyPI, and the node does not want a synchroniser that
calls back per matched pair: it keeps only the newest colour frame and runs the model at its own rate,
so it matches a depth frame to the colour frame it is processing, including a depth frame that arrives
while the model runs (`DepthBuffer.claim`).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

#: share of the box (per side, centred) whose pixels give the median depth: the border of a box holds
#: background as often as object
INNER_FRACTION = 0.5
#: fewest valid depth pixels for a depth estimate
MIN_VALID_PIXELS = 4
#: engine pixel coordinates (origin at the image's corner) minus this are camera-intrinsics coordinates
#: (origin at the first pixel's centre)
CORNER_TO_CENTRE = 0.5
#: largest relative difference of the x and y scale between the colour and the depth image for the depth
#: image to count as registered to the colour image at another resolution
ASPECT_TOLERANCE = 0.01


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
    """The point at pixel (u, v) (intrinsics convention: pixel i's centre at i) and depth z (m) in the
    camera's optical frame, for intrinsics K (3x3 or the 9 row-major values of sensor_msgs/CameraInfo.k)."""
    k = np.asarray(k, dtype=np.float64).reshape(3, 3)
    fx, fy, cx, cy = k[0, 0], k[1, 1], k[0, 2], k[1, 2]
    if fx <= 0 or fy <= 0:
        raise DepthError("camera intrinsics have a non-positive focal length")
    return float((u - cx) * z / fx), float((v - cy) * z / fy), float(z)


def _scales(colour_size: tuple[int, int], other_size: tuple[int, int]) -> tuple[float, float] | None:
    """(sx, sy) from colour pixels to the other image's pixels; None when the aspects differ."""
    (w, h), (ow, oh) = colour_size, other_size
    sx, sy = ow / w, oh / h
    return (sx, sy) if abs(sx - sy) <= ASPECT_TOLERANCE * max(sx, sy) else None


@dataclass
class Intrinsics:
    """A camera_info's pinhole matrix K and the image size it is for (0 x 0: not stated)."""

    k: np.ndarray
    width: int = 0
    height: int = 0

    def __post_init__(self) -> None:
        self.k = np.asarray(self.k, dtype=np.float64).reshape(3, 3)
        if not np.isfinite(self.k).all() or self.k[0, 0] <= 0 or self.k[1, 1] <= 0:
            raise DepthError("camera_info has no valid intrinsics (K needs positive, finite fx and fy)")

    def for_image(self, width: int, height: int) -> np.ndarray:
        """K for an image of this size: as given when the sizes agree (or none was stated), scaled for the
        same camera at another resolution; DepthError when the aspect differs."""
        if (self.width, self.height) in ((0, 0), (width, height)):
            return self.k
        scales = _scales((self.width, self.height), (width, height))
        if scales is None:
            raise DepthError(f"camera_info is for a {self.width}x{self.height} image but the colour image is "
                             f"{width}x{height}")
        # Pixel edges scale, centres do not: shift to the corner origin, scale, shift back.
        k = self.k.copy()
        for row, s in ((0, scales[0]), (1, scales[1])):
            k[row, row] *= s
            k[row, 2] = (k[row, 2] + CORNER_TO_CENTRE) * s - CORNER_TO_CENTRE
        return k


@dataclass
class Position:
    """A located concept's 3-D point (optical frame, metres), or None and why there is none."""

    point: tuple[float, float, float] | None
    status: str = ""


@dataclass
class DepthFrame:
    """A depth image in metres (invalid pixels NaN) with its stamp (s)."""

    stamp: float
    depth: np.ndarray


def box_in_depth(box: tuple[float, float, float, float], colour_size: tuple[int, int],
                 depth_size: tuple[int, int]) -> tuple[float, float, float, float]:
    """A box in colour pixels as a box in the registered depth image's pixels (corner origin); DepthError when
    the depth image's aspect differs from the colour image's (not registered to it)."""
    if tuple(depth_size) == tuple(colour_size):
        return box
    scales = _scales(colour_size, depth_size)
    if scales is None:
        raise DepthError(f"depth image is {depth_size[0]}x{depth_size[1]} but the colour image is "
                         f"{colour_size[0]}x{colour_size[1]} (another aspect: register the depth image to the "
                         "colour camera)")
    sx, sy = scales
    x0, y0, x1, y1 = box
    return x0 * sx, y0 * sy, x1 * sx, y1 * sy


def position(frame: DepthFrame, k: np.ndarray, box: tuple[float, float, float, float],
             point: tuple[float, float], colour_size: tuple[int, int]
             ) -> tuple[tuple[float, float, float] | None, str]:
    """A located concept's 3-D point (optical frame, m): its box's robust depth, back-projected at its peak.

    `box` and `point` are in the colour image's pixels (corner origin, as the engine gives them), `k` the
    colour camera's intrinsics for `colour_size` (width, height)."""
    h, w = frame.depth.shape
    try:
        depth_box = box_in_depth(box, colour_size, (w, h))
    except DepthError as exc:
        return None, str(exc)
    z = robust_depth(frame.depth, depth_box)
    if z is None:
        return None, "too few valid depth pixels in the box"
    return back_project(point[0] - CORNER_TO_CENTRE, point[1] - CORNER_TO_CENTRE, z, k), ""


class Claim:
    """A colour frame's wait for its depth frame: the nearest stamp seen so far (see `DepthBuffer.claim`)."""

    def __init__(self, stamp: float) -> None:
        self.stamp = stamp
        self.best: tuple[float, Any] | None = None  # (gap, item)

    def offer(self, stamp: float, item: Any) -> None:
        gap = abs(stamp - self.stamp)
        if self.best is None or gap < self.best[0]:
            self.best = (gap, item)


class DepthBuffer:
    """The latest depth frames (any item, with its stamp), matched to a colour frame by the nearest stamp
    within `tolerance_s`. Thread-safe: the depth subscription adds, the node's worker claims and settles.

    A colour frame is matched in two steps so that a depth frame that arrives while the model works on it
    still counts, however long that takes and however few frames the buffer keeps: `claim(stamp)` when the
    frame is taken (it sees the buffered frames), `settle(claim)` when its result is published (it has also
    seen every frame added in between)."""

    def __init__(self, tolerance_s: float = 0.05, size: int = 8) -> None:
        if tolerance_s < 0 or size < 1:
            raise ValueError("tolerance_s must be >= 0 and size >= 1")
        self.tolerance_s = tolerance_s
        self._frames: deque[tuple[float, Any]] = deque(maxlen=size)
        self._claims: set[Claim] = set()
        self._lock = threading.Lock()

    def add(self, stamp: float, item: Any) -> None:
        with self._lock:
            self._frames.append((stamp, item))
            for claim in self._claims:
                claim.offer(stamp, item)

    def claim(self, stamp: float) -> Claim:
        """Start matching a colour frame at `stamp`: settle the claim to get its depth frame."""
        claim = Claim(stamp)
        with self._lock:
            for s, item in self._frames:
                claim.offer(s, item)
            self._claims.add(claim)
        return claim

    def settle(self, claim: Claim) -> tuple[Any | None, str]:
        """The nearest depth frame to the claim's stamp within the tolerance, or None and why."""
        with self._lock:
            self._claims.discard(claim)
        if claim.best is None:
            return None, "no depth frame received"
        gap, item = claim.best
        if gap > self.tolerance_s:
            return None, f"no depth frame within {self.tolerance_s:g} s of the colour frame (nearest {gap:.3f} s)"
        return item, ""

    def match(self, stamp: float) -> tuple[Any | None, str]:
        """The nearest buffered depth frame to `stamp` within the tolerance, or None and why."""
        return self.settle(self.claim(stamp))

    def clear(self) -> None:
        with self._lock:
            self._frames.clear()


__all__ = ["DepthError", "DepthFrame", "DepthBuffer", "Claim", "Intrinsics", "Position", "depth_to_metres",
           "robust_depth", "back_project", "box_in_depth", "position", "INNER_FRACTION", "CORNER_TO_CENTRE"]
