"""rosbag2 tools: synthetic bags, recording live topics, and replaying the recorded bytes unchanged."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from ros_env import (
    next_domain,
    ros_client,
    ros_env,
    ros_param_args,
    spin_until,
    start_process,
    stop_process,
    unique_namespace,
)

from ego_ros.ros.bag_replay import BagError, bag_info, read_messages, replay_bag, write_synthetic_bag
from ego_ros.ros.synthetic_camera import ToyCamera

START_NS = 1_700_000_000_123_456_789


def _deserialize(raw: bytes, msgtype: str = "sensor_msgs/msg/Image"):
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED).deserialize_cdr(raw, msgtype)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_synthetic_bag_holds_the_toy_camera_frames_stamped_at_the_frame_rate(tmp_path, storage):
    bag = write_synthetic_bag(tmp_path / "bag", 4, seed=3, width=64, height=48, fps=10.0, start_ns=START_NS,
                              storage=storage)
    messages = read_messages(bag.path)
    camera = ToyCamera(3, 64, 48, 10.0)
    assert [t for _, t, _ in messages] == [START_NS + i * 100_000_000 for i in range(4)]
    for topic, t, raw in messages:
        msg = _deserialize(raw)
        assert topic == "/image"
        assert msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec == t
        assert (msg.width, msg.height, msg.encoding, msg.step) == (64, 48, "rgb8", 64 * 3)
        assert np.array_equal(msg.data.reshape(48, 64, 3), camera.next_frame().image)


def test_bag_info_lists_topics_types_and_counts(tmp_path):
    write_synthetic_bag(tmp_path / "bag", 3, width=32, height=24, compressed=True, topic="/cam/image/compressed")
    info = bag_info(tmp_path / "bag")
    assert info["topics"] == {"/cam/image/compressed": {"type": "sensor_msgs/msg/CompressedImage", "count": 3}}


def test_writing_over_an_existing_bag_is_refused(tmp_path):
    write_synthetic_bag(tmp_path / "bag", 1, width=32, height=24)
    with pytest.raises(BagError, match="already exists"):
        write_synthetic_bag(tmp_path / "bag", 1, width=32, height=24)


def test_replaying_a_topic_the_bag_lacks_names_the_topics_it_has(tmp_path):
    write_synthetic_bag(tmp_path / "bag", 1, width=32, height=24)
    with pytest.raises(BagError, match=r"/camera.*not in the bag.*'/image'"):
        replay_bag(tmp_path / "bag", ["/camera"])


def test_a_folder_without_metadata_is_not_a_bag(tmp_path):
    with pytest.raises(BagError, match="not a rosbag2 folder"):
        bag_info(tmp_path)


# ------------------------------------------------------------------------------------ live ROS graph
def _ego_ros(*args: str) -> list[str]:
    return [sys.executable, "-m", "ego_ros.cli", *args]


@pytest.mark.ros
def test_replay_delivers_the_recorded_bytes_in_order(tmp_path):
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    frames = 20
    write_synthetic_bag(tmp_path / "bag", frames, seed=1)
    recorded = [raw for _, _, raw in read_messages(tmp_path / "bag")]
    domain = next_domain()
    topic = unique_namespace("replay") + "/camera/image_raw"
    received: list[bytes] = []
    with ros_client(domain, log_dir=tmp_path / "log") as (node, executor):
        node.create_subscription(Image, topic, received.append,
                                 QoSProfile(depth=frames, reliability=ReliabilityPolicy.RELIABLE), raw=True)
        proc = start_process(_ego_ros("bag", "replay", str(tmp_path / "bag"), "--reliable", "--wait-for-subscribers",
                                      "1", "--remap", f"/image:={topic}"),
                             ros_env(domain, tmp_path / "log"), tmp_path / "replay.log")
        try:
            spin_until(executor, lambda: len(received) >= frames, 60.0)
            proc.wait(30)
        finally:
            code = stop_process(proc)
    log = (tmp_path / "replay.log").read_text()
    assert code == 0, log
    assert received == recorded
    assert json.loads(log.strip().splitlines()[-1])["published"] == frames


@pytest.mark.ros
def test_recording_the_camera_stores_its_frames(tmp_path):
    frames = 10
    domain = next_domain()
    env = ros_env(domain, tmp_path / "log")
    ns = unique_namespace("record")
    camera = start_process([sys.executable, "-m", "ego_ros.ros.synthetic_camera", "--ros-args",
                            *ros_param_args({"seed": 4, "width": 160, "height": 120, "max_frames": frames,
                                             "wait_for_subscribers": 1,
                                             f"qos_overrides.{ns}/image.publisher.reliability": "reliable",
                                             f"qos_overrides.{ns}/image.publisher.depth": frames}),
                            "-r", f"__ns:={ns}"],
                           env, tmp_path / "camera.log")
    try:
        done = subprocess.run(_ego_ros("bag", "record", str(tmp_path / "rec"), "--topic", f"{ns}/image", "--reliable",
                                       "--max-messages", str(frames)),
                              env=env, capture_output=True, text=True, timeout=90)
    finally:
        stop_process(camera)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["messages"] == {f"{ns}/image": frames}
    reference = ToyCamera(4, 160, 120)
    for _, _, raw in read_messages(tmp_path / "rec"):
        assert np.array_equal(_deserialize(raw).data.reshape(120, 160, 3), reference.next_frame().image)


@pytest.mark.ros
@pytest.mark.slow
def test_the_node_recognises_replayed_frames_under_the_bags_stamps(tmp_path):
    from lifecycle_msgs.msg import State
    from lifecycle_msgs.srv import GetState
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from ego_msgs.msg import Recognitions

    bag = write_synthetic_bag(tmp_path / "bag", 45, seed=2, start_ns=START_NS, frame_id="bag_camera")
    stamps = {(t // 1_000_000_000, t % 1_000_000_000) for t in bag.timestamps}
    domain = next_domain()
    env = ros_env(domain, tmp_path / "log")
    ns = unique_namespace("bag_node")
    node_proc = start_process([sys.executable, "-m", "ego_ros.ros.node", "--ros-args",
                               *ros_param_args({"model": "random:llava", "device": "cpu", "autostart": True,
                                                "memory_dir": str(tmp_path / "memory"), "max_rate": 30.0}),
                               "-r", f"__ns:={ns}"],
                              env, tmp_path / "ego_node.log")
    replay = None
    received = []
    try:
        with ros_client(domain, log_dir=tmp_path / "log") as (node, executor):
            node.create_subscription(Recognitions, f"{ns}/ego_node/recognitions", received.append,
                                     QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
            client = node.create_client(GetState, f"{ns}/ego_node/get_state")
            assert spin_until(executor, client.service_is_ready, 120.0), (tmp_path / "ego_node.log").read_text()
            future = client.call_async(GetState.Request())
            assert spin_until(executor, future.done, 300.0)
            assert future.result().current_state.id == State.PRIMARY_STATE_ACTIVE, \
                (tmp_path / "ego_node.log").read_text()
            replay = start_process(_ego_ros("bag", "replay", str(bag.path), "--wait-for-subscribers", "1",
                                            "--remap", f"/image:={ns}/image"),
                                   env, tmp_path / "replay.log")
            spin_until(executor, lambda: replay.poll() is not None, 120.0)
            spin_until(executor, lambda: False, 3.0)  # the last frame's recognition
    finally:
        if replay is not None:
            stop_process(replay)
        stop_process(node_proc)
    assert replay.returncode == 0, (tmp_path / "replay.log").read_text()
    assert received, (tmp_path / "ego_node.log").read_text()
    for msg in received:
        assert (msg.header.stamp.sec, msg.header.stamp.nanosec) in stamps
        assert msg.header.frame_id == "bag_camera"
