"""config/fastdds_large_images.xml lets best-effort raw VGA images cross between two processes.

Without the profile, Fast DDS's 512 KB shared-memory segment cannot hold a 900 KB rgb8 frame, the
frame falls back to fragmented UDP, and with sensor-data (best-effort) QoS most frames are lost.

This file is also the publisher/subscriber program the test starts twice:
    python test/test_fastdds_profile.py subscribe|publish TOPIC FRAMES
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "config" / "fastdds_large_images.xml"
WIDTH, HEIGHT = 640, 480
FRAMES = 90  # 3 s at 30 Hz
RATE_HZ = 30.0
# Which variable Fast DDS 3 (ROS 2 Kilted) reads; FASTRTPS_DEFAULT_PROFILES_FILE is Fast DDS 2's.
PROFILE_VARIABLE = "FASTDDS_DEFAULT_PROFILES_FILE"
PROCESS_TIMEOUT_S = 90.0


# ------------------------------------------------------------------------------ child processes


def _subscribe(topic: str, frames: int) -> None:
    """Count the distinct, intact frames received until the publisher says it is done."""
    import rclpy
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from std_msgs.msg import UInt32

    rclpy.init()
    node = rclpy.create_node("fastdds_profile_subscriber")
    received: set[int] = set()
    corrupt = 0
    sent: list[int] = []

    def on_image(msg: Image) -> None:
        nonlocal corrupt
        index = int(msg.header.frame_id)
        if len(msg.data) != msg.step * msg.height or msg.data[0] != index % 256:
            corrupt += 1
        else:
            received.add(index)

    node.create_subscription(Image, topic, on_image, qos_profile_sensor_data)
    done_qos = QoSProfile(
        depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
    )
    node.create_subscription(UInt32, topic + "_done", lambda msg: sent.append(msg.data), done_qos)
    print("READY", flush=True)
    deadline = time.monotonic() + PROCESS_TIMEOUT_S
    while not sent and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    # Frames published just before the done message may still be in flight on another transport.
    drain_until = time.monotonic() + 1.0
    while time.monotonic() < drain_until and len(received) < frames:
        rclpy.spin_once(node, timeout_sec=0.05)
    print(json.dumps({"received": len(received), "corrupt": corrupt, "sent": sent[0] if sent else None}))
    node.destroy_node()
    rclpy.shutdown()


def _publish(topic: str, frames: int) -> None:
    """Publish `frames` VGA rgb8 frames at RATE_HZ once a subscriber is matched."""
    import array

    import rclpy
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from std_msgs.msg import UInt32

    rclpy.init()
    node = rclpy.create_node("fastdds_profile_publisher")
    publisher = node.create_publisher(Image, topic, qos_profile_sensor_data)
    done_qos = QoSProfile(
        depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
    )
    done = node.create_publisher(UInt32, topic + "_done", done_qos)
    deadline = time.monotonic() + PROCESS_TIMEOUT_S / 2
    while publisher.get_subscription_count() < 1:
        if time.monotonic() > deadline:
            sys.exit("publisher: no subscriber matched")
        rclpy.spin_once(node, timeout_sec=0.05)
    time.sleep(0.5)  # discovery is asymmetric: give the reader time to match this writer too

    data = array.array("B", bytes(WIDTH * HEIGHT * 3))
    start = time.monotonic()
    for index in range(frames):
        # Pace on a fixed schedule (not sleep-per-frame) so a slow machine does not lower the rate.
        time.sleep(max(0.0, start + index / RATE_HZ - time.monotonic()))
        data[0] = index % 256
        msg = Image(height=HEIGHT, width=WIDTH, encoding="rgb8", step=WIDTH * 3, data=data)
        msg.header.frame_id = str(index)
        publisher.publish(msg)
    done.publish(UInt32(data=frames))
    done.wait_for_all_acked(rclpy.duration.Duration(seconds=10.0))
    node.destroy_node()
    rclpy.shutdown()


# ------------------------------------------------------------------------------------------ tests


def _private_env(tmp_path: Path, profile: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_DEFAULT_PROFILES_FILE")}
    for key in ("RMW_IMPLEMENTATION", "RMW_FASTRTPS_USE_QOS_FROM_XML", "ROS_LOCALHOST_ONLY"):
        env.pop(key, None)
    env.update(
        # 80-99: away from the default domain 0 and from the ids other test files pick from pids.
        ROS_DOMAIN_ID=str(80 + os.getpid() % 20),
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        ROS_LOG_DIR=str(tmp_path / "ros_log"),
        PYTHONUNBUFFERED="1",
    )
    if profile is not None:
        env[PROFILE_VARIABLE] = str(profile)
    return env


def transfer_vga_frames(tmp_path: Path, profile: Path | None, frames: int = FRAMES) -> dict:
    """Run subscriber and publisher as two processes; return the subscriber's counts."""
    env = _private_env(tmp_path, profile)
    topic = f"/fastdds_profile_test_{os.getpid()}_{time.monotonic_ns()}"
    command = [sys.executable, str(Path(__file__).resolve())]
    with tempfile.TemporaryFile("w+") as sub_err, tempfile.TemporaryFile("w+") as pub_err:
        subscriber = subprocess.Popen(
            [*command, "subscribe", topic, str(frames)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=sub_err,
            text=True,
        )
        publisher = None
        try:
            assert subscriber.stdout.readline().strip() == "READY", "subscriber did not start"
            publisher = subprocess.Popen(
                [*command, "publish", topic, str(frames)], env=env, stdout=subprocess.DEVNULL, stderr=pub_err
            )
            publisher.wait(timeout=PROCESS_TIMEOUT_S)
            out, _ = subscriber.communicate(timeout=PROCESS_TIMEOUT_S)
        finally:
            for process in (publisher, subscriber):
                if process is not None and process.poll() is None:
                    process.terminate()
                    try:
                        process.wait(timeout=5)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait()
        sub_err.seek(0)
        pub_err.seek(0)
        details = f"publisher stderr:\n{pub_err.read()}\nsubscriber stderr:\n{sub_err.read()}"
    assert publisher.returncode == 0, details
    assert subscriber.returncode == 0, details
    return json.loads(out.strip().splitlines()[-1])


def test_profile_file_is_a_fast_dds_default_participant_profile():
    import xml.etree.ElementTree as ET

    ns = {"dds": "http://www.eprosima.com"}
    root = ET.parse(PROFILE).getroot()
    participant = root.find("dds:profiles/dds:participant", ns)
    assert participant is not None and participant.get("is_default_profile") == "true"
    shm = [
        d for d in root.iterfind("dds:profiles/dds:transport_descriptors/dds:transport_descriptor", ns)
        if d.findtext("dds:type", namespaces=ns) == "SHM"
    ]
    assert len(shm) == 1
    assert int(shm[0].findtext("dds:segment_size", namespaces=ns)) == 32 * 1024 * 1024
    assert int(shm[0].findtext("dds:maxMessageSize", namespaces=ns)) == 8 * 1024 * 1024


@pytest.mark.ros
@pytest.mark.slow
def test_best_effort_vga_frames_are_delivered_with_the_profile(tmp_path):
    result = transfer_vga_frames(tmp_path, PROFILE)
    assert result["sent"] == FRAMES
    assert result["corrupt"] == 0
    # Typically every frame arrives; the margin absorbs a loaded CI machine, while without the
    # profile (the failure this guards against) almost none arrive.
    assert result["received"] >= 0.7 * FRAMES, result


if __name__ == "__main__":
    role, topic_name, frame_count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    {"subscribe": _subscribe, "publish": _publish}[role](topic_name, frame_count)
