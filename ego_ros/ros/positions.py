"""3-D positions of located concepts: the node's depth and camera_info subscriptions, the stamp match of a
depth frame to the colour frame being processed, and the ~/positions publisher (issue 15).

While the `use_depth` parameter is true (and the node active) the node subscribes to ``depth``
(sensor_msgs/Image, 16UC1 millimetres or 32FC1 metres, registered to the colour camera) and
``camera_info`` (sensor_msgs/CameraInfo of the colour camera), relative names with sensor-data QoS,
changed by remapping. Every located concept of a processed frame then gets its 3-D point in the colour
camera's optical frame (`depth.position`: median depth over the inner half of its box, back-projected at
its peak), carried in Recognitions.locations and published on ~/positions (ego_msgs/ConceptPositions).

Matching: the depth frame with the stamp nearest the colour frame's, within `depth_tolerance` seconds
(`depth.DepthBuffer`; message_filters is not among this project's ROS wheels, see depth.py); camera_info is
the latest received, since a camera's intrinsics do not change from frame to frame. Without a usable depth
frame or camera_info a frame keeps its 2-D locations, each saying why it has no 3-D point
(ConceptLocation.position_status), and diagnostics report the reason; nothing is guessed.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from geometry_msgs.msg import Point, PointStamped
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from ego_msgs.msg import ConceptPositions

from ..core.localise import Location
from .conversions import copy_header, stamp_seconds
from .depth import Claim, DepthBuffer, DepthError, DepthFrame, Intrinsics, Position, depth_to_metres, position

#: depth frames kept for matching: at 30 Hz half a second, more than the newest colour frame can be old
#: when the worker takes it (the claim then also sees the depth frames that arrive during the model run)
DEPTH_BUFFER_FRAMES = 16


@dataclass
class DepthMatch:
    """What a colour frame found for 3-D: the depth frame and the colour camera's K, or why not."""

    frame: DepthFrame | None
    k: object = None
    status: str = ""

    def locate(self, location: Location, colour_size: tuple[int, int]) -> Position:
        if self.frame is None:
            return Position(None, self.status)
        xyz, why = position(self.frame, self.k, location.box, location.point, colour_size)
        return Position(xyz, why)


def depth_frame(msg: Image) -> DepthFrame:
    """A depth Image message in metres (DepthError if its encoding or size is unusable)."""
    depth = depth_to_metres(msg.data, msg.encoding, msg.width, msg.height, msg.step, bool(msg.is_bigendian))
    return DepthFrame(stamp_seconds(msg.header), depth)


def match_depth(depth_msg: Image | None, why: str, info: CameraInfo | None,
                colour_size: tuple[int, int]) -> DepthMatch:
    """The depth frame and intrinsics for a colour image of `colour_size` (width, height), or the reason
    there is no 3-D for it: no or stale depth (`why` from the buffer), no or unusable camera_info, an
    unusable depth image."""
    if depth_msg is None:
        return DepthMatch(None, status=why)
    if info is None:
        return DepthMatch(None, status="no camera_info received")
    try:
        k = Intrinsics(list(info.k), int(info.width), int(info.height)).for_image(*colour_size)
        frame = depth_frame(depth_msg)
    except DepthError as exc:
        return DepthMatch(None, status=str(exc))
    return DepthMatch(frame, k)


def positions_msg(header: Header, positions: dict[str, Position]) -> ConceptPositions:
    """The ~/positions message of one frame: the concepts that have a 3-D point, each stamped with the
    colour image's header."""
    named = [(name, p.point) for name, p in positions.items() if p.point is not None]
    return ConceptPositions(
        header=copy_header(header), names=[name for name, _ in named],
        points=[PointStamped(header=copy_header(header), point=Point(x=x, y=y, z=z)) for _, (x, y, z) in named])


class PositionsMixin:
    """EgoNode's 3-D part: depth and camera_info subscriptions (while active with use_depth), the depth
    buffer, and the ~/positions publisher (created at configure)."""

    def _init_positions(self) -> None:
        self._depth_buffer = DepthBuffer(float(self._settings.depth_tolerance), DEPTH_BUFFER_FRAMES)
        self._camera_info: CameraInfo | None = None
        self._depth_subscriptions: list = []
        self._depth_lock = threading.Lock()
        self._positions_pub = None
        self._depth_received = 0
        #: why the last processed frame had no 3-D (empty: it had, or depth is not used)
        self._depth_status = ""

    def _start_depth(self) -> None:
        """Subscribe to depth and camera_info when use_depth is true (called on activate and on a change)."""
        with self._depth_lock:
            if self._depth_subscriptions or not self._settings.use_depth:
                return
            self._depth_buffer.clear()
            self._camera_info = None
            self._depth_status = ""
            qos = QoSProfile(history=qos_profile_sensor_data.history, depth=qos_profile_sensor_data.depth,
                             reliability=qos_profile_sensor_data.reliability,
                             durability=qos_profile_sensor_data.durability)
            overridable = QoSOverridingOptions.with_default_policies()
            self._depth_subscriptions = [
                self.create_subscription(Image, "depth", self._on_depth, qos, callback_group=self._depth_group,
                                         qos_overriding_options=overridable),
                self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, qos,
                                         callback_group=self._depth_group, qos_overriding_options=overridable),
            ]
        self.get_logger().info(f"3-D positions on: reading {self._depth_subscriptions[0].topic_name} and "
                               f"{self._depth_subscriptions[1].topic_name} "
                               f"(stamp tolerance {self._settings.depth_tolerance:g} s)")

    def _stop_depth(self) -> None:
        with self._depth_lock:
            subscriptions, self._depth_subscriptions = self._depth_subscriptions, []
            for sub in subscriptions:
                self.destroy_subscription(sub)
            self._depth_buffer.clear()
            self._camera_info = None
            self._depth_status = ""

    def _apply_depth_settings(self, changed: set[str]) -> None:
        """After a parameter change: the stamp tolerance at once, use_depth by (un)subscribing while active."""
        self._depth_buffer.tolerance_s = float(self._settings.depth_tolerance)
        if "use_depth" in changed and self._state == "active":
            if self._settings.use_depth:
                self._start_depth()
            else:
                self._stop_depth()

    def _on_depth(self, msg: Image) -> None:
        self._depth_received += 1
        self._depth_buffer.add(stamp_seconds(msg.header), msg)  # converted only if a colour frame matches it

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_info = msg

    def _uses_depth(self) -> bool:
        return bool(self._depth_subscriptions)

    def _claim_depth(self, header: Header) -> Claim | None:
        """Start matching a depth frame to the colour frame with `header` (None when depth is not used)."""
        return self._depth_buffer.claim(stamp_seconds(header)) if self._uses_depth() else None

    def _settle_depth(self, claim: Claim | None, colour_size: tuple[int, int]) -> DepthMatch | None:
        """The depth match of a claimed colour frame of `colour_size` (width, height); None without a claim."""
        if claim is None:
            return None
        depth_msg, why = self._depth_buffer.settle(claim)
        return match_depth(depth_msg, why, self._camera_info, colour_size)

    def _frame_positions(self, match: DepthMatch | None, locations: list[Location],
                         colour_size: tuple[int, int]) -> dict[str, Position]:
        """Each located concept's Position (empty without depth); records the frame's status for diagnostics."""
        if match is None:
            return {}
        self._depth_status = match.status
        return {loc.name: match.locate(loc, colour_size) for loc in locations}

    def _publish_positions(self, header: Header, positions: dict[str, Position]) -> None:
        pub = self._positions_pub
        if pub is not None and self._uses_depth():
            pub.publish(positions_msg(header, positions))


__all__ = ["PositionsMixin", "DepthMatch", "match_depth", "positions_msg", "depth_frame",
           "DEPTH_BUFFER_FRAMES"]
