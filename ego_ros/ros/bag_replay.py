"""rosbag2 tools without the `ros2` command: replay camera topics, record them, write synthetic bags.

Pip installs of ROS 2 have no ``ros2 bag``; the `rosbags` library reads and writes rosbag2 (mcap and
sqlite3) in pure Python, and rclpy publishes and receives serialized (CDR) bytes, so this module
only moves bytes between the two:

* `replay_bag`: publishes the recorded CDR bytes of chosen topics unchanged, so the header stamps
  the node copies onto its outputs are the bag's, re-timed to the recorded receive times (scaled
  by `rate`).
* `record_bag`: subscribes to live topics in serialized form and writes them, stamped with their
  receive time.
* `write_synthetic_bag`: toy-camera frames (`ego_ros.ros.synthetic_camera.ToyCamera`) serialized
  with rosbags' own CDR serializer, for tests and offline runs.

rclpy is imported inside the functions that need it: `write_synthetic_bag` and `bag_info` run
without ROS.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import EgoError

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
STORAGES = ("mcap", "sqlite3")


class BagError(EgoError):
    """A bag cannot be read, written or replayed as asked."""


def _typestore():
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED)


def _storage_plugin(storage: str):
    from rosbags.rosbag2 import StoragePlugin

    if storage not in STORAGES:
        raise BagError(f"storage must be one of {STORAGES}, got {storage!r}")
    return StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3


def _writer(path: str | Path, storage: str):
    from rosbags.rosbag2 import Writer

    path = Path(path)
    if path.exists():
        raise BagError(f"{path} already exists; rosbag2 writes a new folder")
    return Writer(path, version=Writer.VERSION_LATEST, storage_plugin=_storage_plugin(storage))


def _reader(path: str | Path):
    from rosbags.rosbag2 import Reader, ReaderError

    path = Path(path)
    if not (path / "metadata.yaml").is_file():
        raise BagError(f"{path} is not a rosbag2 folder (no metadata.yaml)")
    try:
        reader = Reader(path)
        reader.open()
    except ReaderError as exc:
        raise BagError(f"cannot open bag {path}: {exc}") from exc
    return reader


# ----------------------------------------------------------------------------------- synthetic bags
@dataclass
class SyntheticBag:
    """What `write_synthetic_bag` wrote: the bag folder, its topic, and per frame the log time (ns)."""

    path: Path
    topic: str
    msgtype: str
    timestamps: list[int] = field(default_factory=list)


def write_synthetic_bag(path: str | Path, frames: int, *, seed: int = 0, width: int = 640, height: int = 480,
                        fps: float = 30.0, topic: str = "/image", compressed: bool = False,
                        include: Sequence[str] = (), frame_id: str = "camera", start_ns: int | None = None,
                        storage: str = "mcap") -> SyntheticBag:
    """Write `frames` toy-camera frames to a new rosbag2 folder `path`.

    Frame i is stamped (header and log time alike) ``start_ns + i / fps`` seconds; `start_ns`
    defaults to now. `compressed` writes JPEG sensor_msgs/CompressedImage instead of rgb8 Images.
    """
    import numpy as np

    from .image_conversion import rgb_to_compressed
    from .synthetic_camera import ToyCamera

    if frames < 1:
        raise BagError(f"frames must be >= 1, got {frames}")
    store = _typestore()
    msgtype = IMAGE_TYPES[1] if compressed else IMAGE_TYPES[0]
    header_type = store.types["std_msgs/msg/Header"]
    time_type = store.types["builtin_interfaces/msg/Time"]
    msg_type = store.types[msgtype]
    camera = ToyCamera(seed, width, height, fps, include)
    start = time.time_ns() if start_ns is None else int(start_ns)
    out = SyntheticBag(Path(path), topic, msgtype)
    with _writer(path, storage) as writer:
        conn = writer.add_connection(topic, msgtype, typestore=store)
        for i in range(frames):
            frame = camera.next_frame()
            t = start + round(i * 1e9 / fps)
            header = header_type(stamp=time_type(sec=t // 1_000_000_000, nanosec=t % 1_000_000_000), frame_id=frame_id)
            if compressed:
                fields = rgb_to_compressed(frame.image, "jpeg")
                msg = msg_type(header=header, format=fields["format"], data=np.frombuffer(fields["data"], np.uint8))
            else:
                rgb = np.ascontiguousarray(frame.image)
                msg = msg_type(header=header, height=height, width=width, encoding="rgb8", is_bigendian=0,
                               step=width * 3, data=rgb.reshape(-1))
            writer.write(conn, t, bytes(store.serialize_cdr(msg, msgtype)))
            out.timestamps.append(t)
    return out


def bag_info(path: str | Path) -> dict[str, Any]:
    """Topics (type, message count), duration and start time of a bag."""
    reader = _reader(path)
    try:
        return {
            "path": str(path),
            "duration_s": reader.duration / 1e9,
            "start_ns": reader.start_time,
            "messages": reader.message_count,
            "topics": {c.topic: {"type": c.msgtype, "count": c.msgcount} for c in reader.connections},
        }
    finally:
        reader.close()


def read_messages(path: str | Path, topics: Sequence[str] = ()) -> list[tuple[str, int, bytes]]:
    """All (topic, log time ns, CDR bytes) of `topics` (default: every topic), in log-time order."""
    reader = _reader(path)
    try:
        conns = _select(reader, topics, any_type=True)
        return [(c.topic, t, bytes(raw)) for c, t, raw in reader.messages(connections=conns)]
    finally:
        reader.close()


def _select(reader, topics: Sequence[str], any_type: bool = False) -> list:
    known = {c.topic for c in reader.connections}
    missing = [t for t in topics if t not in known]
    if missing:
        raise BagError(f"topic(s) {missing} not in the bag; it has {sorted(known)}")
    if topics:
        return [c for c in reader.connections if c.topic in topics]
    conns = [c for c in reader.connections if any_type or c.msgtype in IMAGE_TYPES]
    if not conns:
        raise BagError(f"the bag has no Image or CompressedImage topic ({sorted(known)}); name one with --topic")
    return conns


# --------------------------------------------------------------------------------------------- replay
def _message_class(msgtype: str):
    """The rclpy message class of a rosbag2 type name such as ``sensor_msgs/msg/Image``."""
    parts = msgtype.split("/")
    if len(parts) != 3 or parts[1] != "msg":
        raise BagError(f"cannot publish type {msgtype!r}: expected package/msg/Name")
    try:
        return getattr(importlib.import_module(f"{parts[0]}.msg"), parts[2])
    except (ImportError, AttributeError) as exc:
        raise BagError(f"message type {msgtype} is not installed for rclpy: {exc}") from exc


def _qos(reliable: bool):
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

    if reliable:
        return QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    return qos_profile_sensor_data


def parse_remaps(remaps: Sequence[str]) -> dict[str, str]:
    """``["/camera/image_raw:=image"]`` -> ``{"/camera/image_raw": "image"}`` (ROS remap syntax)."""
    out = {}
    for item in remaps:
        src, sep, dst = item.partition(":=")
        if not sep or not src or not dst:
            raise BagError(f"remap {item!r} must read FROM:=TO")
        out[src] = dst
    return out


@dataclass
class ReplayStats:
    published: int = 0
    loops: int = 0
    seconds: float = 0.0
    topics: dict[str, str] = field(default_factory=dict)  # bag topic -> published topic


def replay_bag(path: str | Path, topics: Sequence[str] = (), *, rate: float = 1.0, loop: bool = False,
               remap: dict[str, str] | None = None, reliable: bool = False, wait_for_subscribers: int = 0,
               wait_timeout_s: float = 30.0, node_name: str = "ego_bag_replay",
               should_stop: Callable[[], bool] | None = None, log: Callable[[str], None] | None = None,
               args: list[str] | None = None) -> ReplayStats:
    """Publish the recorded CDR bytes of `topics` (default: every Image/CompressedImage topic).

    Messages go out at their recorded log times scaled by 1/`rate` (2.0 plays twice as fast),
    unchanged, so header stamps are the bag's. With `wait_for_subscribers` N, playback starts once
    every replayed topic has N matched subscriptions (or fails after `wait_timeout_s`). Initialises
    rclpy itself (with `args`, e.g. ``["--ros-args", "-r", "__ns:=/robot"]``) when it is not yet.
    """
    import rclpy

    if not rate > 0:
        raise BagError(f"rate must be positive, got {rate}")
    remap = remap or {}
    say = log or (lambda s: None)
    owns_context = not rclpy.ok()
    reader = _reader(path)
    node = None
    stats = ReplayStats()
    try:
        conns = _select(reader, topics)
        if owns_context:
            rclpy.init(args=args if args is not None else [node_name])
        node = rclpy.create_node(node_name)
        publishers = {}
        for c in conns:
            target = remap.get(c.topic, c.topic)
            publishers[c.id] = node.create_publisher(_message_class(c.msgtype), target, _qos(reliable))
            stats.topics[c.topic] = publishers[c.id].topic_name
        say("replaying " + ", ".join(f"{k} -> {v}" for k, v in stats.topics.items()) + f" from {path}")
        if wait_for_subscribers > 0:
            deadline = time.monotonic() + wait_timeout_s
            while min(p.get_subscription_count() for p in publishers.values()) < wait_for_subscribers:
                if time.monotonic() > deadline:
                    raise BagError(f"no {wait_for_subscribers} subscriber(s) on {list(stats.topics.values())} "
                                   f"after {wait_timeout_s:.0f} s")
                time.sleep(0.05)
            time.sleep(0.5)  # discovery is asymmetric: let the readers match this writer too
        t_start = time.monotonic()
        while True:
            first_ns = None
            wall0 = time.monotonic()
            for conn, t_ns, raw in reader.messages(connections=conns):
                if should_stop is not None and should_stop():
                    return stats
                if not rclpy.ok():
                    return stats
                first_ns = t_ns if first_ns is None else first_ns
                delay = wall0 + (t_ns - first_ns) / 1e9 / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                publishers[conn.id].publish(bytes(raw))
                stats.published += 1
            stats.loops += 1
            if not loop or first_ns is None:
                break
        if reliable:
            from rclpy.duration import Duration

            for pub in publishers.values():
                pub.wait_for_all_acked(Duration(seconds=5.0))
        stats.seconds = time.monotonic() - t_start
        return stats
    finally:
        reader.close()
        if node is not None:
            node.destroy_node()
        if owns_context and rclpy.ok():
            rclpy.shutdown()


# --------------------------------------------------------------------------------------------- record
def record_bag(path: str | Path, topics: Sequence[str], *, seconds: float | None = None,
               max_messages: int | None = None, reliable: bool = False, storage: str = "mcap",
               discovery_timeout_s: float = 10.0, node_name: str = "ego_bag_record",
               should_stop: Callable[[], bool] | None = None,
               log: Callable[[str], None] | None = None, args: list[str] | None = None) -> dict[str, int]:
    """Record live `topics` into a new bag folder `path` until `seconds` pass, `max_messages` are
    stored, `should_stop()` is true or rclpy shuts down (Ctrl-C). Returns the message count per topic.

    Each topic's type is taken from the ROS graph (the topic must appear within
    `discovery_timeout_s`) and must be known to rosbags' Kilted type store (sensor_msgs, std_msgs, ...).
    """
    import rclpy
    from rclpy.executors import ExternalShutdownException

    if not topics:
        raise BagError("name at least one topic to record")
    say = log or (lambda s: None)
    store = _typestore()
    owns_context = not rclpy.ok()
    if owns_context:
        rclpy.init(args=args if args is not None else [node_name])
    node = rclpy.create_node(node_name)
    counts: dict[str, int] = {}
    try:
        resolved = {t: node.resolve_topic_name(t) for t in topics}
        deadline = time.monotonic() + discovery_timeout_s
        types: dict[str, str] = {}
        while len(types) < len(resolved):
            graph = dict(node.get_topic_names_and_types())
            for t, name in resolved.items():
                if name in graph:
                    types[t] = graph[name][0]
            if time.monotonic() > deadline:
                missing = [resolved[t] for t in resolved if t not in types]
                raise BagError(f"topic(s) {missing} not found on the ROS graph within {discovery_timeout_s:.0f} s")
            rclpy.spin_once(node, timeout_sec=0.05)
        for t, msgtype in types.items():
            if msgtype not in store.types:
                raise BagError(f"cannot record {resolved[t]}: type {msgtype} is unknown to rosbags' type store")
        with _writer(path, storage) as writer:
            pending: list[tuple[str, int, bytes]] = []

            def on_message(topic: str):
                def cb(raw: bytes) -> None:
                    pending.append((topic, time.time_ns(), raw))
                return cb

            conns = {}
            for t, msgtype in types.items():
                name = resolved[t]
                conns[name] = writer.add_connection(name, msgtype, typestore=store)
                node.create_subscription(_message_class(msgtype), name, on_message(name), _qos(reliable), raw=True)
                counts[name] = 0
            say(f"recording {', '.join(f'{n} ({types[t]})' for t, n in resolved.items())} to {path}")
            end = None if seconds is None else time.monotonic() + seconds

            def flush() -> None:
                for topic, t_ns, raw in pending:
                    if max_messages is None or sum(counts.values()) < max_messages:
                        writer.write(conns[topic], t_ns, raw)
                        counts[topic] += 1
                pending.clear()

            try:
                while rclpy.ok():
                    rclpy.spin_once(node, timeout_sec=0.05)
                    flush()
                    if end is not None and time.monotonic() >= end:
                        break
                    if max_messages is not None and sum(counts.values()) >= max_messages:
                        break
                    if should_stop is not None and should_stop():
                        break
            except (KeyboardInterrupt, ExternalShutdownException):
                flush()  # Ctrl-C ends a recording; what arrived is kept and the bag is closed properly
        return counts
    finally:
        node.destroy_node()
        if owns_context and rclpy.ok():
            rclpy.shutdown()
