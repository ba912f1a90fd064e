"""Helpers for tests that run real ROS 2 processes: private domains on loopback, logs in tmp, SIGTERM.

Each test gets its own ROS_DOMAIN_ID from a range the other test modules do not use (101-200 here;
test_ego_msgs uses 50-79 and test_fastdds_profile 80-99), discovery limited to localhost, and its logs
in a temporary folder. Node processes are stopped with SIGTERM (SIGINT is unreliable for lifecycle
nodes with the pip wheels), with a SIGKILL fallback.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FASTDDS_PROFILE = REPO / "config" / "fastdds_large_images.xml"
_DOMAINS = itertools.cycle(range(101 + (os.getpid() % 10) * 10, 111 + (os.getpid() % 10) * 10))


def next_domain() -> int:
    return next(_DOMAINS) if os.environ.get("EGO_TEST_DOMAIN") is None else int(os.environ["EGO_TEST_DOMAIN"])


def ros_env(domain: int, log_dir: str | Path | None = None, large_images: bool = True) -> dict[str, str]:
    """Environment for a ROS process (and for this process, see `use_ros_env`)."""
    env = dict(os.environ)
    env.update({
        "ROS_DOMAIN_ID": str(domain),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "ROS_LOG_DIR": str(log_dir or tempfile.mkdtemp(prefix="ego_roslog_")),
        "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp",
        "AMENT_PREFIX_PATH": sys.prefix,
        "PYTHONUNBUFFERED": "1",
    })
    if large_images and FASTDDS_PROFILE.is_file():
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(FASTDDS_PROFILE)
    return env


@contextmanager
def use_ros_env(domain: int, log_dir: str | Path | None = None) -> Iterator[dict[str, str]]:
    """Set the ROS environment for this test process (rclpy reads it at init)."""
    env = ros_env(domain, log_dir)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield env
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def start_process(args: list[str], env: dict[str, str], log_path: str | Path) -> subprocess.Popen:
    """Start a node process (its own session, output to a log file)."""
    log = open(log_path, "wb")  # noqa: SIM115 - closed by stop_process
    proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    proc._ego_log = log  # type: ignore[attr-defined]
    return proc


def fastdds_segments(pid: int) -> set[str]:
    """The Fast DDS shared-memory segments that process `pid` owns and has mapped (its participant's
    transport segment and its writers' data-sharing segments, /dev/shm/fastdds_<id>), read from
    /proc/PID/maps; empty where there is no /proc. Port segments (fastdds_port<N>) are left out: every
    participant listening on that port shares them, so they outlive any one process."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return set()
    paths = (fields[5].strip() for fields in (line.split(None, 5) for line in maps.splitlines()) if len(fields) == 6)
    return {p for p in paths if p.startswith("/dev/shm/fastdds_") and not p.startswith("/dev/shm/fastdds_port")}


def stop_process(proc: subprocess.Popen, timeout: float = 15.0) -> int:
    """SIGTERM, wait, then SIGKILL; returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    log = getattr(proc, "_ego_log", None)
    if log is not None:
        log.close()
    return proc.returncode


@contextmanager
def ros_client(domain: int, name: str = "test_client", log_dir: str | Path | None = None) -> Iterator[tuple]:
    """(node, executor) of a private rclpy context in this test process on `domain`; torn down on exit."""
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    with use_ros_env(domain, log_dir):
        context = Context()
        rclpy.init(context=context, domain_id=domain, signal_handler_options=SignalHandlerOptions.NO)
        node = rclpy.create_node(name, context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        try:
            yield node, executor
        finally:
            executor.shutdown()
            node.destroy_node()
            context.shutdown()


def spin_until(executor, predicate, timeout: float) -> bool:
    """Spin `executor` until `predicate()` is true (True) or `timeout` seconds pass (False)."""
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        executor.spin_once(timeout_sec=0.05)
        if predicate():
            return True
    return predicate()


def ros_param_args(params: dict) -> list[str]:
    """``["-p", "k:=v", ...]`` for `params` (strings quoted so ROS's YAML parsing keeps them strings)."""
    import json

    out = []
    for key, value in params.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (list, tuple)):
            text = json.dumps(list(value))
        elif isinstance(value, str):
            text = json.dumps(value)
        else:
            text = str(value)
        out += ["-p", f"{key}:={text}"]
    return out


def ego_node_command(params: dict, namespace: str = "") -> list[str]:
    """The command line of an Ego node process (`python -m ego_ros.ros.node`) with `params`."""
    import sys

    args = [sys.executable, "-m", "ego_ros.ros.node", "--ros-args", *ros_param_args(params)]
    if namespace:
        args += ["-r", f"__ns:={namespace}"]
    return args


class ServiceCaller:
    """Calls services from a test node: one cached client per service, rclpy's
    spin_until_future_complete with a timeout, TimeoutError when no answer comes."""

    def __init__(self, node, executor, timeout: float = 30.0) -> None:
        self.node, self.executor, self.timeout = node, executor, timeout
        self._clients: dict[str, object] = {}

    def __call__(self, srv_type, name: str, request=None, timeout: float | None = None):
        timeout = self.timeout if timeout is None else timeout
        client = self._clients.get(name)
        if client is None or client.srv_type is not srv_type:
            client = self._clients[name] = self.node.create_client(srv_type, name)
        if not client.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f"service {name} did not appear within {timeout} s")
        future = client.call_async(srv_type.Request() if request is None else request)
        self.executor.spin_until_future_complete(future, timeout_sec=timeout)
        if not future.done():
            raise TimeoutError(f"service {name} did not answer within {timeout} s")
        return future.result()


def store_snapshot(directory: str | Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under a concept store directory (to prove it unchanged)."""
    import hashlib

    root = Path(directory)
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def random_rgb(seed: int, height: int = 48, width: int = 64):
    """A reproducible noise picture (HxWx3 uint8)."""
    import numpy as np

    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def raw_image(seed: int, stamp: tuple[int, int] = (0, 0), frame_id: str = ""):
    """A sensor_msgs/Image (rgb8) of `random_rgb(seed)` with the given header."""
    from builtin_interfaces.msg import Time
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from ego_ros.ros.image_conversion import rgb_to_image_fields

    return Image(header=Header(stamp=Time(sec=stamp[0], nanosec=stamp[1]), frame_id=frame_id),
                 **rgb_to_image_fields(random_rgb(seed)))


def header_key(header) -> tuple[int, int, str]:
    """(sec, nanosec, frame_id) of a std_msgs/Header, to match outputs with their input frames."""
    return header.stamp.sec, header.stamp.nanosec, header.frame_id


class FakeCamera:
    """Publishes noise frames from a test node on a 20 Hz timer, raw or JPEG-compressed, with
    sensor-data QoS. Stamps advance `step_ns` per frame (synthetic time, never the wall clock).

    Each camera starts its stamps 1000 s after the previous one's, and every header any camera
    published is kept in `ALL_HEADERS`, so an output can be traced to exactly one input frame.
    """

    ALL_HEADERS: set[tuple[int, int, str]] = set()
    _instances = 0

    def __init__(self, node, topic: str, compressed: bool = False, frame_id: str = "cam_optical",
                 step_ns: int = 100_000_000) -> None:
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import CompressedImage, Image

        self.node, self.compressed, self.frame_id, self.step_ns = node, compressed, frame_id, step_ns
        self.publisher = node.create_publisher(CompressedImage if compressed else Image, topic,
                                               qos_profile_sensor_data)
        FakeCamera._instances += 1
        self.ns = 1_000 * FakeCamera._instances * 10**9
        self.count = 0
        self.headers: set[tuple[int, int, str]] = set()
        self.timer = node.create_timer(0.05, self.publish_one)

    def publish_one(self) -> None:
        from builtin_interfaces.msg import Time
        from sensor_msgs.msg import CompressedImage, Image
        from std_msgs.msg import Header

        from ego_ros.ros.image_conversion import rgb_to_compressed, rgb_to_image_fields

        self.count += 1
        self.ns += self.step_ns
        header = Header(stamp=Time(sec=self.ns // 10**9, nanosec=self.ns % 10**9), frame_id=self.frame_id)
        rgb = random_rgb(self.count)
        if self.compressed:
            msg = CompressedImage(header=header, **rgb_to_compressed(rgb, "jpeg"))
        else:
            msg = Image(header=header, **rgb_to_image_fields(rgb))
        self.headers.add(header_key(header))
        FakeCamera.ALL_HEADERS.add(header_key(header))
        self.publisher.publish(msg)
        self.last_header = header

    def jump(self, seconds: float) -> None:
        """Advance the stamp of the next frame by `seconds` (simulated time passing)."""
        self.ns += int(seconds * 1e9)

    def close(self) -> None:
        self.node.destroy_timer(self.timer)
        self.node.destroy_publisher(self.publisher)


class DepthCamera(FakeCamera):
    """A FakeCamera that also publishes a depth image registered to each frame and the camera's intrinsics,
    both with the frame's header unless told otherwise: `depth` (H, W) metres (NaN: none), encoded as
    `encoding` (16UC1 millimetres or 32FC1 metres); its stamp shifted by `depth_offset_s`; no depth image
    when `depth` is None and no camera_info when `info` is False. K: fx = fy = 50 px, principal point at
    the 64x48 image's centre."""

    K = (50.0, 0.0, 31.5, 0.0, 50.0, 23.5, 0.0, 0.0, 1.0)

    def __init__(self, node, namespace: str, depth=None, encoding: str = "16UC1", depth_offset_s: float = 0.0,
                 info: bool = True) -> None:
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, Image

        self.depth, self.encoding, self.depth_offset_s, self.info = depth, encoding, depth_offset_s, info
        self.depth_publisher = node.create_publisher(Image, f"{namespace}/depth", qos_profile_sensor_data)
        self.info_publisher = node.create_publisher(CameraInfo, f"{namespace}/camera_info", qos_profile_sensor_data)
        super().__init__(node, f"{namespace}/image")

    def publish_one(self) -> None:
        import numpy as np
        from builtin_interfaces.msg import Time
        from sensor_msgs.msg import CameraInfo, Image
        from std_msgs.msg import Header

        super().publish_one()
        header = self.last_header
        if self.depth is not None:
            ns = header.stamp.sec * 10**9 + header.stamp.nanosec + int(self.depth_offset_s * 1e9)
            shifted = Header(stamp=Time(sec=ns // 10**9, nanosec=ns % 10**9), frame_id=header.frame_id)
            h, w = self.depth.shape
            if self.encoding == "16UC1":
                data = np.where(np.isfinite(self.depth), np.round(self.depth * 1000), 0).astype("<u2").tobytes()
            else:
                data = self.depth.astype("<f4").tobytes()
            self.depth_publisher.publish(Image(header=shifted, height=h, width=w, encoding=self.encoding,
                                               step=len(data) // h, data=data))
        if self.info:
            self.info_publisher.publish(CameraInfo(header=header, width=64, height=48, k=list(self.K)))

    def close(self) -> None:
        super().close()
        self.node.destroy_publisher(self.depth_publisher)
        self.node.destroy_publisher(self.info_publisher)


_NAMESPACES = itertools.count(1)


def unique_namespace(stem: str = "test") -> str:
    """A namespace no other test process uses (pid + counter): names cannot collide even when two
    test runs on one machine happen to share a ROS domain."""
    return f"/{stem}_{os.getpid()}_{next(_NAMESPACES)}"
