"""`synthetic_camera`: a ROS 2 camera that films the toy world, with exact per-frame ground truth.

Publishes (relative names, change them by remapping):

* ``image`` (sensor_msgs/Image, rgb8 by default, sensor-data QoS): toy-world video, clip after clip
  of moving objects (`ego_ros.toy.video.VideoStream`).
* ``image/compressed`` (sensor_msgs/CompressedImage, JPEG), only with ``publish_compressed:=true``;
  encoded only while someone subscribes.
* ``depth`` (sensor_msgs/Image, 16UC1 millimetres by default or 32FC1 metres, sensor-data QoS) and
  ``camera_info`` (sensor_msgs/CameraInfo: pinhole K, no distortion), with ``publish_depth`` (default
  true): the depth image registered to the colour image (same size, stamp and frame_id), a floor plane
  plus an exact depth per object (`ego_ros.ros.synthetic_depth` describes the geometry).
* ``ground_truth`` (ego_msgs/Recognitions, reliable): which instances are in each frame, with the
  same header (stamp and frame_id) as the frame. One entry per object of the current clip:
  ``names[i]`` is the concept name given for an included instance (parameter ``include_names``),
  else the instance key (``"red-star-striped-black-top"``); ``probabilities[i]`` is the share of the
  object's area that is visible (0 when it is outside the frame or hidden); ``present[i]`` is true
  when the object is recognisable (its whole mark visible and ``threshold`` = 0.5 of its area), which
  is what a recogniser should report; ``latency_s`` is the render time. ``locations`` has one entry
  per visible object: the box of its visible mask, its centroid as the point (score 1), and its exact
  3-D point in the optical frame (the centroid back-projected at the object's depth; has_position).

What the clips show: by default each clip (``clip_seconds``, 4-8 s) shows each ``include`` instance
with probability ``include_p`` among up to ``max_objects`` random others. A ``clip_cycle`` scripts it
instead: clip k shows what ``clip_cycle[k % len]`` names, ``"include"`` (every included instance),
``"absent"`` (none of them) or ``"lookalike"`` (every instance of ``lookalikes`` in their place; look-alikes
are named by their keys in the ground truth). Included instances and look-alikes are never random others.

The frame sequence depends only on the parameters above, the size and ``fps``: the n-th published
frame of two runs with the same parameters is byte-identical (`ToyCamera` is the ROS-free source,
used by tests to check that). Frames are never skipped: if rendering falls behind
``fps`` the stream slows down instead of changing content. Stamps come from the node's clock.

QoS can be changed with ``qos_overrides./<resolved topic>.publisher.{reliability,depth,history}``.
Run: ``python -m ego_ros.ros.synthetic_camera --ros-args -p include:="['<instance key>']"``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..toy.attributes import Instance, WorldError
from ..toy.video import VideoStream
from .image_conversion import rgb_to_compressed, rgb_to_image_fields
from .synthetic_depth import DEPTH_ENCODINGS, ObjectTruth, PinholeCamera, encode_depth, scene_depth

#: `present` in the ground truth: at least this share of the object visible, and its whole mark.
RECOGNISABLE_FRACTION = 0.5
CAMERA_ENCODINGS = ("rgb8", "bgr8")


@dataclass(frozen=True)
class TruthEntry:
    """Ground truth of one object in one frame."""

    name: str
    instance_key: str
    visible_fraction: float
    recognisable: bool
    #: depth, box, centroid and 3-D point (None without depth, or when the object is not visible)
    where: ObjectTruth | None = None


@dataclass(frozen=True, eq=False)
class CameraFrame:
    """A rendered frame: index in the stream, RGB image (HxWx3 uint8) and per-object ground truth."""

    index: int
    clip_index: int
    image: np.ndarray
    truth: tuple[TruthEntry, ...]
    render_seconds: float
    #: (H, W) float32 metres (NaN: no depth), registered to `image`; None when the camera has no depth
    depth: np.ndarray | None = None
    #: visible mask of each object (bool NxHxW), in `truth` order
    masks: np.ndarray | None = None

    def present_names(self) -> list[str]:
        return [t.name for t in self.truth if t.recognisable]


def parse_instances(keys: Sequence[str], names: Sequence[str] = (),
                    param: str = "include") -> tuple[tuple[Instance, ...], dict[Instance, str]]:
    """Instances from keys such as ``"red-star-striped-black-top"`` and their display names.

    `names` is empty (each instance is named by its key) or parallel to `keys`; `param` names the
    parameter the keys came from in error messages.

    Raises:
        WorldError: an unknown key, a repeated instance, or `names` of another length than `keys`.
    """
    keys, names = list(keys), list(names)
    if names and len(names) != len(keys):
        raise WorldError(f"include_names must be empty or name every included instance: got {len(names)} names "
                         f"for {len(keys)} instances")
    instances = tuple(Instance.from_key(k.strip()) for k in keys)
    if len(set(instances)) != len(instances):
        raise WorldError(f"{param} repeats an instance: {keys}")
    named = {inst: (names[i] if names else inst.key) for i, inst in enumerate(instances)}
    if any(not n.strip() for n in named.values()):
        raise WorldError("include_names must not contain empty names")
    return instances, named


def _pair(name: str, values: Sequence[float]) -> tuple[float, float]:
    """A (low, high) parameter given as a sequence of two numbers."""
    values = [float(v) for v in values]
    if len(values) != 2:
        raise WorldError(f"{name} must be two numbers [low, high], got {values}")
    return values[0], values[1]


class ToyCamera:
    """ROS-free, deterministic frame source behind the node: the same arguments give the same frames."""

    def __init__(self, seed: int = 0, width: int = 640, height: int = 480, fps: float = 30.0,
                 include: Sequence[str] = (), include_names: Sequence[str] = (), include_p: float = 0.6,
                 depth: bool = True, *, lookalikes: Sequence[str] = (), clip_cycle: Sequence[str] = (),
                 clip_seconds: Sequence[float] = (4.0, 8.0), max_objects: int = 4,
                 object_size: Sequence[float] = (0.2, 0.4)) -> None:
        if width < 16 or height < 16:
            raise WorldError(f"camera size must be at least 16x16, got {width}x{height}")
        if not fps > 0:
            raise WorldError(f"fps must be positive, got {fps}")
        if not 1 <= max_objects <= 4:
            raise WorldError(f"max_objects must be in [1, 4], got {max_objects}")
        instances, self.names = parse_instances(include, include_names)
        doubles, _ = parse_instances(lookalikes, param="lookalikes")
        self.stream = VideoStream(seed, size=(int(width), int(height)), fps=float(fps), include=instances,
                                  include_p=include_p, n_objects=(1, int(max_objects)), lookalikes=doubles,
                                  cycle=tuple(clip_cycle), clip_seconds=_pair("clip_seconds", clip_seconds),
                                  object_size=_pair("object_size", object_size))
        self.pinhole = PinholeCamera.for_size(int(width), int(height))
        self._floor = self.pinhole.floor_depth() if depth else None
        self.index = 0

    def next_frame(self) -> CameraFrame:
        t0 = time.perf_counter()
        frame = self.stream.next_frame()
        scene = frame.scene
        depth, where = (None, ()) if self._floor is None else scene_depth(scene, self.pinhole, self._floor)
        truth = tuple(
            TruthEntry(
                name=self.names.get(obj.instance, obj.instance.key),
                instance_key=obj.instance.key,
                visible_fraction=scene.visible_fraction(k),
                recognisable=scene.is_recognisable(k, RECOGNISABLE_FRACTION),
                where=where[k] if where else None,
            )
            for k, obj in enumerate(scene.spec.objects)
        )
        out = CameraFrame(self.index, frame.clip_index, frame.image, truth, time.perf_counter() - t0, depth,
                          scene.masks)
        self.index += 1
        return out


# ------------------------------------------------------------------------------------------ ROS node
def _declare(node, name: str, default, description: str, **ranges):
    """Declare a read-only parameter (the camera is configured at start) with a description and range."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

    descriptor = ParameterDescriptor(description=description, read_only=True)
    if "int_range" in ranges:
        lo, hi = ranges["int_range"]
        descriptor.integer_range = [IntegerRange(from_value=lo, to_value=hi, step=1)]
    if "float_range" in ranges:
        lo, hi = ranges["float_range"]
        descriptor.floating_point_range = [FloatingPointRange(from_value=lo, to_value=hi, step=0.0)]
    return node.declare_parameter(name, default, descriptor).value


def create_node(args: list[str] | None = None):
    """Build the `synthetic_camera` node (rclpy must be initialised). Returns the node."""
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from rclpy.qos_overriding_options import QoSOverridingOptions
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image

    from ego_msgs.msg import Recognitions

    class SyntheticCamera(Node):
        def __init__(self) -> None:
            super().__init__("synthetic_camera")
            p = {
                "seed": _declare(self, "seed", 0, "Seed of the toy video; same seed, same frames.",
                                 int_range=(0, 2**31 - 1)),
                "width": _declare(self, "width", 640, "Image width in pixels.", int_range=(16, 4096)),
                "height": _declare(self, "height", 480, "Image height in pixels.", int_range=(16, 4096)),
                "fps": _declare(self, "fps", 30.0, "Frames per second (publish rate and video time base).",
                                float_range=(0.1, 240.0)),
                "frame_id": _declare(self, "frame_id", "camera", "header.frame_id of images and ground truth."),
                "encoding": _declare(self, "encoding", "rgb8", "Raw image encoding: rgb8 or bgr8."),
                "include": _declare(self, "include", Parameter.Type.STRING_ARRAY,
                                    "Personal instances (keys like red-star-striped-black-top) to show often."),
                "include_names": _declare(self, "include_names", Parameter.Type.STRING_ARRAY,
                                          "Names for the included instances in the ground truth (parallel "
                                          "to include; empty: their keys)."),
                "include_p": _declare(self, "include_p", 0.6, "Probability that a clip shows each included "
                                      "instance.", float_range=(0.0, 1.0)),
                "lookalikes": _declare(self, "lookalikes", Parameter.Type.STRING_ARRAY,
                                       "Instance keys shown in place of the included ones in 'lookalike' clips "
                                       "of clip_cycle (never otherwise)."),
                "clip_cycle": _declare(self, "clip_cycle", Parameter.Type.STRING_ARRAY,
                                       "Clip kinds played in turn (include, absent, lookalike) instead of "
                                       "drawing with include_p; empty: draw."),
                "clip_seconds": _declare(self, "clip_seconds", [4.0, 8.0], "[low, high] length of a clip in "
                                         "seconds of video (drawn uniformly)."),
                "max_objects": _declare(self, "max_objects", 4, "Objects in a clip at most.", int_range=(1, 4)),
                "object_size": _declare(self, "object_size", [0.2, 0.4], "[low, high] object size as a share of "
                                        "the frame (drawn uniformly per object)."),
                "publish_raw": _declare(self, "publish_raw", True, "Publish sensor_msgs/Image on image."),
                "publish_compressed": _declare(self, "publish_compressed", False,
                                               "Publish JPEG sensor_msgs/CompressedImage on image/compressed."),
                "jpeg_quality": _declare(self, "jpeg_quality", 90, "JPEG quality of image/compressed.",
                                         int_range=(1, 100)),
                "publish_depth": _declare(self, "publish_depth", True, "Publish the registered depth image on "
                                          "depth and the intrinsics on camera_info."),
                "depth_encoding": _declare(self, "depth_encoding", "16UC1", "Depth encoding: 16UC1 (millimetres, "
                                           "0: no depth) or 32FC1 (metres, NaN: no depth)."),
                "max_frames": _declare(self, "max_frames", 0, "Stop (and exit) after this many frames; 0: never.",
                                       int_range=(0, 2**31 - 1)),
                "wait_for_subscribers": _declare(
                    self, "wait_for_subscribers", 0,
                    "Publish nothing until this many subscriptions match image (or image/compressed); "
                    "makes bounded runs start at frame 0.", int_range=(0, 1000)),
            }
            if p["encoding"] not in CAMERA_ENCODINGS:
                raise WorldError(f"encoding must be one of {CAMERA_ENCODINGS}, got {p['encoding']!r}")
            if p["depth_encoding"] not in DEPTH_ENCODINGS:
                raise WorldError(f"depth_encoding must be one of {DEPTH_ENCODINGS}, got {p['depth_encoding']!r}")
            if not (p["publish_raw"] or p["publish_compressed"]):
                raise WorldError("publish_raw and publish_compressed are both false: nothing to publish")
            self.p = p
            self.camera = ToyCamera(p["seed"], p["width"], p["height"], p["fps"], p["include"] or (),
                                    p["include_names"] or (), p["include_p"], depth=p["publish_depth"],
                                    lookalikes=p["lookalikes"] or (), clip_cycle=p["clip_cycle"] or (),
                                    clip_seconds=p["clip_seconds"], max_objects=p["max_objects"],
                                    object_size=p["object_size"])
            overrides = QoSOverridingOptions.with_default_policies()
            self.image_pub = (self.create_publisher(Image, "image", qos_profile_sensor_data,
                                                    qos_overriding_options=overrides)
                              if p["publish_raw"] else None)
            self.compressed_pub = (self.create_publisher(CompressedImage, "image/compressed", qos_profile_sensor_data,
                                                         qos_overriding_options=overrides)
                                   if p["publish_compressed"] else None)
            self.depth_pub = self.info_pub = None
            if p["publish_depth"]:
                self.depth_pub = self.create_publisher(Image, "depth", qos_profile_sensor_data,
                                                       qos_overriding_options=overrides)
                self.info_pub = self.create_publisher(CameraInfo, "camera_info", qos_profile_sensor_data,
                                                      qos_overriding_options=overrides)
            truth_qos = QoSProfile(depth=30, reliability=ReliabilityPolicy.RELIABLE,
                                   durability=DurabilityPolicy.VOLATILE)
            self.truth_pub = self.create_publisher(Recognitions, "ground_truth", truth_qos,
                                                   qos_overriding_options=overrides)
            self.published = 0
            self.finished = False
            self._matched_at: float | None = None
            self.timer = self.create_timer(1.0 / p["fps"], self._tick)
            shown = ", ".join(f"{n} = {i.key}" for i, n in self.camera.names.items()) or "none"
            if p["clip_cycle"]:
                shown += f"; clips cycle {list(p['clip_cycle'])}, look-alikes {list(p['lookalikes'] or [])}"
            self.get_logger().info(
                f"toy camera {p['width']}x{p['height']} @ {p['fps']} Hz, seed {p['seed']}, "
                f"personal instances: {shown}")

        def _subscribers(self) -> int:
            return sum(pub.get_subscription_count() for pub in (self.image_pub, self.compressed_pub) if pub)

        def _ready(self) -> bool:
            wanted = self.p["wait_for_subscribers"]
            if wanted <= 0 or self._matched_at == -1.0:
                return True
            if self._subscribers() < wanted:
                return False
            # Discovery is asymmetric: the readers may not have matched this writer yet.
            now = time.monotonic()
            if self._matched_at is None:
                self._matched_at = now
            if now - self._matched_at < 0.5:
                return False
            self._matched_at = -1.0
            return True

        def _tick(self) -> None:
            if self.finished or not self.context.ok() or not self._ready():
                return
            frame = self.camera.next_frame()
            stamp = self.get_clock().now().to_msg()
            if self.image_pub is not None:
                msg = Image(**rgb_to_image_fields(frame.image, self.p["encoding"]))
                msg.header.stamp = stamp
                msg.header.frame_id = self.p["frame_id"]
                self.image_pub.publish(msg)
            if self.compressed_pub is not None and self.compressed_pub.get_subscription_count() > 0:
                cmsg = CompressedImage(**rgb_to_compressed(frame.image, "jpeg", jpeg_quality=self.p["jpeg_quality"]))
                cmsg.header.stamp = stamp
                cmsg.header.frame_id = self.p["frame_id"]
                self.compressed_pub.publish(cmsg)
            if self.depth_pub is not None and frame.depth is not None:
                h, w = frame.depth.shape
                encoding = self.p["depth_encoding"]
                dmsg = Image(height=h, width=w, encoding=encoding, is_bigendian=0,
                             step=w * (2 if encoding == "16UC1" else 4), data=encode_depth(frame.depth, encoding))
                dmsg.header.stamp = stamp
                dmsg.header.frame_id = self.p["frame_id"]
                self.depth_pub.publish(dmsg)
                pinhole = self.camera.pinhole
                info = CameraInfo(width=pinhole.width, height=pinhole.height, distortion_model="plumb_bob",
                                  d=[0.0] * 5, k=pinhole.k, r=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
                                  p=[pinhole.fx, 0.0, pinhole.cx, 0.0, 0.0, pinhole.fy, pinhole.cy, 0.0,
                                     0.0, 0.0, 1.0, 0.0])
                info.header.stamp = stamp
                info.header.frame_id = self.p["frame_id"]
                self.info_pub.publish(info)
            truth = Recognitions(
                names=[t.name for t in frame.truth],
                probabilities=[t.visible_fraction for t in frame.truth],
                present=[t.recognisable for t in frame.truth],
                threshold=RECOGNISABLE_FRACTION,
                latency_s=frame.render_seconds,
                locations=[_truth_location(t) for t in frame.truth
                           if t.where is not None and t.where.box is not None],
            )
            truth.header.stamp = stamp
            truth.header.frame_id = self.p["frame_id"]
            self.truth_pub.publish(truth)
            self.published += 1
            if self.p["max_frames"] and self.published >= self.p["max_frames"]:
                self.finished = True
                self.timer.cancel()

    return SyntheticCamera()


def _truth_location(entry: TruthEntry):  # -> ego_msgs ConceptLocation (imported with rclpy only)
    """The ground-truth ConceptLocation of a visible object: its mask's box and centroid, its 3-D point."""
    from geometry_msgs.msg import Point

    from ego_msgs.msg import ConceptLocation

    where = entry.where
    x0, y0, x1, y1 = where.box
    x, y, z = where.position
    return ConceptLocation(name=entry.name, x_min=float(x0), y_min=float(y0), x_max=float(x1), y_max=float(y1),
                           x=float(where.centroid[0]), y=float(where.centroid[1]), score=1.0, has_position=True,
                           position=Point(x=x, y=y, z=z))


def main(args: list[str] | None = None) -> int:
    """Console entry point: run the camera until shutdown (SIGINT/SIGTERM) or ``max_frames``."""
    import rclpy
    from rclpy._rclpy_pybind11 import RCLError
    from rclpy.duration import Duration
    from rclpy.executors import ExternalShutdownException

    rclpy.init(args=args if args is not None else sys.argv)
    node = None
    try:
        node = create_node()
        while rclpy.ok() and not node.finished:
            rclpy.spin_once(node, timeout_sec=0.1)
        if node.finished:
            # Let reliable subscribers (recorders, tests) receive the last frames before exiting.
            for pub in (node.image_pub, node.compressed_pub, node.depth_pub, node.info_pub, node.truth_pub):
                if pub is not None:
                    pub.wait_for_all_acked(Duration(seconds=5.0))
            node.get_logger().info(f"published {node.published} frames; done")
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RCLError:
        # SIGTERM can invalidate the context while spin_once builds its wait set (see ego_ros.ros.node).
        if rclpy.ok():
            raise
    except WorldError as exc:
        print(f"synthetic_camera: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
