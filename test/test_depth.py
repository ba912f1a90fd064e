"""Depth for 3-D positions: depth encodings, robust box depth, pinhole back-projection, stamp matching."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ego_ros.ros.depth import (
    DepthBuffer,
    DepthError,
    DepthFrame,
    back_project,
    depth_to_metres,
    position,
    robust_depth,
)

K = [100.0, 0.0, 32.0, 0.0, 100.0, 24.0, 0.0, 0.0, 1.0]  # fx = fy = 100 px, centre (32, 24)


def test_16uc1_millimetres_become_metres_and_zero_becomes_invalid():
    raw = np.array([[1500, 0], [250, 65535]], dtype="<u2")
    depth = depth_to_metres(raw.tobytes(), "16UC1", 2, 2)
    assert depth[0, 0] == pytest.approx(1.5) and depth[1, 0] == pytest.approx(0.25)
    assert math.isnan(depth[0, 1]) and depth[1, 1] == pytest.approx(65.535)


def test_32fc1_metres_keep_their_value_and_nan_inf_negative_become_invalid():
    raw = np.array([[2.0, np.nan, np.inf, -1.0]], dtype="<f4")
    depth = depth_to_metres(raw.tobytes(), "32FC1", 4, 1)
    assert depth[0, 0] == 2.0 and np.isnan(depth[0, 1:]).all()


def test_a_padded_row_step_is_honoured():
    raw = np.array([[1000, 2000, 9999], [3000, 4000, 9999]], dtype="<u2")  # one padding value per row
    depth = depth_to_metres(raw.tobytes(), "16UC1", 2, 2, step=6)
    np.testing.assert_allclose(depth, [[1.0, 2.0], [3.0, 4.0]])


@pytest.mark.parametrize(("encoding", "nbytes", "message"), [
    ("rgb8", 12, "unsupported depth encoding"),
    ("16UC1", 6, "does not fit"),
])
def test_unusable_depth_images_are_refused_clearly(encoding, nbytes, message):
    with pytest.raises(DepthError, match=message):
        depth_to_metres(bytes(nbytes), encoding, 2, 2)


def test_robust_depth_is_the_median_of_the_box_centre_ignoring_invalid_pixels():
    depth = np.full((40, 40), 5.0, dtype=np.float32)  # background
    depth[10:30, 10:30] = 1.0  # the object, its box
    depth[18:20, 18:20] = np.nan  # a hole in the middle
    depth[20, 20] = 0.2  # one outlier
    assert robust_depth(depth, (10, 10, 30, 30)) == pytest.approx(1.0)


def test_robust_depth_is_none_without_enough_valid_pixels():
    depth = np.full((20, 20), np.nan, dtype=np.float32)
    depth[10, 10] = 1.0
    assert robust_depth(depth, (0, 0, 20, 20)) is None


def test_back_projection_inverts_the_pinhole_projection():
    x, y, z = 0.3, -0.12, 1.5
    u, v = 100.0 * x / z + 32.0, 100.0 * y / z + 24.0
    assert back_project(u, v, z, K) == pytest.approx((x, y, z))
    assert back_project(32.0, 24.0, 2.0, np.array(K).reshape(3, 3)) == pytest.approx((0.0, 0.0, 2.0))


def test_intrinsics_with_no_focal_length_are_refused():
    with pytest.raises(DepthError, match="focal length"):
        back_project(1.0, 1.0, 1.0, [0.0] * 9)


def frame(stamp: float, size: tuple[int, int] = (64, 48), z: float = 2.0) -> DepthFrame:
    return DepthFrame(stamp, np.full((size[1], size[0]), z, dtype=np.float32), np.array(K).reshape(3, 3))


def test_the_nearest_depth_frame_within_the_tolerance_is_matched():
    buffer = DepthBuffer(tolerance_s=0.05)
    for t in (1.0, 1.1, 1.2):
        buffer.add(frame(t, z=t))
    got, why = buffer.match(1.11, (64, 48))
    assert got is not None and got.stamp == 1.1 and why == ""


def test_a_late_or_stale_depth_frame_is_not_matched():
    buffer = DepthBuffer(tolerance_s=0.05)
    buffer.add(frame(1.0))
    got, why = buffer.match(1.3, (64, 48))
    assert got is None and "within 0.05 s" in why and "0.300" in why


def test_no_depth_frame_says_so():
    assert DepthBuffer().match(1.0, (64, 48)) == (None, "no depth frame received")


def test_a_depth_frame_of_another_size_is_not_matched():
    buffer = DepthBuffer()
    buffer.add(frame(1.0, size=(32, 24)))
    got, why = buffer.match(1.0, (64, 48))
    assert got is None and "32x24" in why and "64x48" in why


def test_a_located_box_gives_the_back_projected_point_of_its_depth():
    got, why = position(frame(0.0, z=2.0), (22, 14, 42, 34), (32.0, 24.0))
    assert why == "" and got == pytest.approx((0.0, 0.0, 2.0))


def test_a_box_over_invalid_depth_gives_no_point_and_a_reason():
    f = frame(0.0)
    f.depth[:] = np.nan
    got, why = position(f, (22, 14, 42, 34), (32.0, 24.0))
    assert got is None and "valid depth" in why
