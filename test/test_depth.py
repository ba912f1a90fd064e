"""Depth for 3-D positions: depth encodings, robust box depth, pinhole back-projection, intrinsics and
resolution scaling, stamp matching."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ego_ros.ros.depth import (
    DepthBuffer,
    DepthError,
    DepthFrame,
    Intrinsics,
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
    return DepthFrame(stamp, np.full((size[1], size[0]), z, dtype=np.float32))


def buffer_of(*stamps: float, tolerance_s: float = 0.05) -> DepthBuffer:
    buffer = DepthBuffer(tolerance_s=tolerance_s)
    for t in stamps:
        buffer.add(t, frame(t))
    return buffer


def test_the_nearest_depth_frame_within_the_tolerance_is_matched():
    got, why = buffer_of(1.0, 1.1, 1.2).match(1.11)
    assert got is not None and got.stamp == 1.1 and why == ""


def test_a_late_or_stale_depth_frame_is_not_matched():
    got, why = buffer_of(1.0).match(1.3)
    assert got is None and "within 0.05 s" in why and "0.300" in why


def test_no_depth_frame_says_so():
    assert DepthBuffer().match(1.0) == (None, "no depth frame received")


def test_a_depth_frame_arriving_while_the_colour_frame_is_processed_is_matched_however_many_follow():
    buffer = DepthBuffer(tolerance_s=0.05, size=2)
    buffer.add(0.5, frame(0.5))
    claim = buffer.claim(1.0)  # the colour frame at 1.0 s is taken before its depth frame arrived
    for t in (1.01, 1.2, 1.3, 1.4):  # its depth frame, then more than the buffer keeps
        buffer.add(t, frame(t))
    got, why = buffer.settle(claim)
    assert why == "" and got.stamp == 1.01


def test_a_settled_claim_no_longer_collects_frames():
    buffer = buffer_of(0.0)
    claim = buffer.claim(1.0)
    assert buffer.settle(claim)[0] is None
    buffer.add(1.0, frame(1.0))
    assert claim.best[0] == pytest.approx(1.0)


def test_a_located_box_gives_the_back_projected_point_of_its_depth():
    # the peak (32.5, 24.5) in corner-origin pixels is the centre of pixel (32, 24): K's principal point
    got, why = position(frame(0.0, z=2.0), np.array(K).reshape(3, 3), (22, 14, 42, 34), (32.5, 24.5), (64, 48))
    assert why == "" and got == pytest.approx((0.0, 0.0, 2.0))


def test_a_box_over_invalid_depth_gives_no_point_and_a_reason():
    f = frame(0.0)
    f.depth[:] = np.nan
    got, why = position(f, np.array(K).reshape(3, 3), (22, 14, 42, 34), (32.5, 24.5), (64, 48))
    assert got is None and "valid depth" in why


def test_a_box_over_zero_depth_millimetres_gives_no_point():
    raw = np.zeros((48, 64), dtype="<u2")
    raw[:4, :4] = 1000  # valid depth only far from the box
    f = DepthFrame(0.0, depth_to_metres(raw.tobytes(), "16UC1", 64, 48))
    got, why = position(f, np.array(K).reshape(3, 3), (22, 14, 42, 34), (32.5, 24.5), (64, 48))
    assert got is None and "valid depth" in why


def test_a_registered_depth_image_at_half_resolution_is_read_through_the_scaled_box():
    depth = np.full((24, 32), 5.0, dtype=np.float32)  # half of the 64x48 colour image
    depth[7:17, 11:21] = 2.0  # the object, under colour pixels [22, 42) x [14, 34)
    got, why = position(DepthFrame(0.0, depth), np.array(K).reshape(3, 3), (22, 14, 42, 34), (32.5, 24.5), (64, 48))
    assert why == "" and got[2] == pytest.approx(2.0)


def test_a_depth_image_of_another_aspect_is_refused_with_both_sizes():
    got, why = position(frame(0.0, size=(64, 64)), np.array(K).reshape(3, 3), (22, 14, 42, 34), (32.5, 24.5),
                        (64, 48))
    assert got is None and "64x64" in why and "64x48" in why and "register" in why


def test_intrinsics_for_the_colour_image_size_are_used_as_given():
    assert Intrinsics(K, 64, 48).for_image(64, 48) == pytest.approx(np.array(K).reshape(3, 3))
    assert Intrinsics(K).for_image(64, 48) == pytest.approx(np.array(K).reshape(3, 3))  # size not stated


def test_intrinsics_of_a_half_resolution_camera_info_are_scaled_to_the_colour_image():
    half = [50.0, 0.0, 15.75, 0.0, 50.0, 11.75, 0.0, 0.0, 1.0]  # K of the same camera at 32x24
    assert Intrinsics(half, 32, 24).for_image(64, 48) == pytest.approx(np.array(K).reshape(3, 3))


def test_intrinsics_for_another_aspect_or_without_focal_length_are_refused():
    with pytest.raises(DepthError, match="camera_info is for a 64x64 image"):
        Intrinsics(K, 64, 64).for_image(64, 48)
    with pytest.raises(DepthError, match="no valid intrinsics"):
        Intrinsics([0.0] * 9, 64, 48)
