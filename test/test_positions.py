"""The node's 3-D part without a ROS graph: matching a depth frame and camera_info to a colour frame, the
3-D fields of the location messages, the ~/positions message and the diagnostics rule."""

from __future__ import annotations

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from ego_ros.core.engine import Recognition
from ego_ros.core.localise import Location
from ego_ros.ros.conversions import recognitions_msg
from ego_ros.ros.depth import Position
from ego_ros.ros.diagnostics import WARN, Health, assess
from ego_ros.ros.positions import match_depth, positions_msg

K = [100.0, 0.0, 31.5, 0.0, 100.0, 23.5, 0.0, 0.0, 1.0]  # principal point at the centre of a 64x48 image
SIZE = (64, 48)
BOX = (22.0, 14.0, 42.0, 34.0)


def depth_msg(millimetres: np.ndarray, stamp: tuple[int, int] = (5, 0)) -> Image:
    h, w = millimetres.shape
    return Image(header=Header(stamp=Time(sec=stamp[0], nanosec=stamp[1]), frame_id="cam"), height=h, width=w,
                 encoding="16UC1", step=2 * w, data=millimetres.astype("<u2").tobytes())


def camera_info(width: int = 64, height: int = 48, k: list[float] = K) -> CameraInfo:
    return CameraInfo(width=width, height=height, k=k)


def location(name: str = "mug", point: tuple[float, float] = (32.0, 24.0)) -> Location:
    return Location(name=name, box=BOX, point=point, score=0.9, heatmap=np.zeros((3, 4)))


def test_a_matched_depth_frame_and_camera_info_give_the_back_projected_point():
    match = match_depth(depth_msg(np.full((48, 64), 1500)), "", camera_info(), SIZE)
    got = match.locate(location(point=(42.0, 24.0)), SIZE)  # 10 px right of the principal point
    assert got.status == "" and got.point == pytest.approx((0.15, 0.0, 1.5))


@pytest.mark.parametrize(("depth", "why", "info", "reason"), [
    (None, "no depth frame received", camera_info(), "no depth frame received"),
    (None, "no depth frame within 0.05 s of the colour frame (nearest 0.300 s)", camera_info(), "within 0.05 s"),
    (np.full((48, 64), 1500), "", None, "no camera_info received"),
    (np.full((48, 64), 1500), "", camera_info(64, 64), "camera_info is for a 64x64 image"),
    (np.full((48, 64), 1500), "", camera_info(k=[0.0] * 9), "no valid intrinsics"),
    (np.full((30, 64), 1500), "", camera_info(), "depth image is 64x30"),
    (np.zeros((48, 64)), "", camera_info(), "too few valid depth pixels"),
])
def test_without_usable_depth_a_location_has_no_point_and_says_why(depth, why, info, reason):
    match = match_depth(None if depth is None else depth_msg(depth), why, info, SIZE)
    got = match.locate(location(), SIZE)
    assert got.point is None and reason in got.status


def test_a_depth_image_whose_bytes_do_not_fit_its_size_gives_no_point():
    msg = depth_msg(np.full((48, 64), 1500))
    msg.height = 96
    got = match_depth(msg, "", camera_info(), SIZE).locate(location(), SIZE)
    assert got.point is None and "does not fit" in got.status


def test_recognitions_carry_the_point_of_located_concepts_and_the_reason_of_the_others():
    recs = [Recognition("mug", 0.9, True, location=location("mug")),
            Recognition("cup", 0.8, True, location=location("cup"))]
    positions = {"mug": Position((0.1, -0.2, 1.5)), "cup": Position(None, "too few valid depth pixels in the box")}
    msg = recognitions_msg(Header(), recs, 0.5, 0.1, positions)
    mug, cup = msg.locations
    assert mug.has_position and (mug.position.x, mug.position.y, mug.position.z) == (0.1, -0.2, 1.5)
    assert mug.position_status == ""
    assert not cup.has_position and cup.position_status == "too few valid depth pixels in the box"


def test_recognitions_without_depth_leave_the_3d_fields_empty():
    msg = recognitions_msg(Header(), [Recognition("mug", 0.9, True, location=location())], 0.5, 0.1)
    assert not msg.locations[0].has_position and msg.locations[0].position_status == ""


def test_positions_message_holds_the_concepts_with_a_point_stamped_like_the_image():
    header = Header(stamp=Time(sec=7, nanosec=9), frame_id="camera_color_optical_frame")
    msg = positions_msg(header, {"mug": Position((0.1, -0.2, 1.5)), "cup": Position(None, "no camera_info received")})
    assert msg.header == header and list(msg.names) == ["mug"]
    (point,) = msg.points
    assert point.header == header and (point.point.x, point.point.y, point.point.z) == (0.1, -0.2, 1.5)


def test_a_frame_without_3d_positions_warns_in_diagnostics_with_the_reason():
    level, message = assess(Health(state="active", silent_s=0.1, depth_status="no depth frame received"))
    assert level == WARN and "no 3-D positions (2-D locations only): no depth frame received" in message
