"""The synthetic camera: deterministic toy-world frames with exact ground truth, as a ROS 2 node."""

from __future__ import annotations

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

from ego_ros.ros.synthetic_camera import RECOGNISABLE_FRACTION, ToyCamera, parse_instances
from ego_ros.toy.attributes import WorldError

MINE = "red-heart-checkered-white-right"


def test_same_seed_gives_the_same_frames_and_another_seed_other_frames():
    a, b, c = (ToyCamera(seed, 160, 120) for seed in (3, 3, 4))
    for _ in range(5):
        fa, fb, fc = a.next_frame(), b.next_frame(), c.next_frame()
        assert np.array_equal(fa.image, fb.image)
        assert fa.truth == fb.truth
    assert not np.array_equal(fa.image, fc.image)


def test_frames_have_the_requested_size_and_count_up():
    camera = ToyCamera(0, 200, 100)
    frames = [camera.next_frame() for _ in range(3)]
    assert [f.index for f in frames] == [0, 1, 2]
    assert frames[0].image.shape == (100, 200, 3) and frames[0].image.dtype == np.uint8


def test_ground_truth_names_the_included_instance_and_marks_it_recognisable_only_when_mostly_visible():
    camera = ToyCamera(1, 160, 120, include=[MINE], include_names=["kona"], include_p=1.0)
    seen = [entry for _ in range(120) for entry in camera.next_frame().truth if entry.name == "kona"]
    assert len(seen) == 120  # include_p=1: every clip holds it
    assert {e.instance_key for e in seen} == {MINE}
    assert all(e.visible_fraction >= RECOGNISABLE_FRACTION for e in seen if e.recognisable)
    assert any(e.recognisable for e in seen)


def test_other_objects_are_named_by_their_instance_keys():
    camera = ToyCamera(2, 160, 120, include=[MINE], include_names=["kona"], include_p=1.0)
    truth = camera.next_frame().truth
    assert all(e.name == e.instance_key for e in truth if e.instance_key != MINE)


def test_unknown_instance_key_is_rejected():
    with pytest.raises(WorldError, match="instance key"):
        parse_instances(["not-a-key"])


def test_include_names_must_match_include():
    with pytest.raises(WorldError, match="include_names"):
        parse_instances([MINE], ["a", "b"])


# ------------------------------------------------------------------------------------ the ROS node
def _camera_command(params: dict, namespace: str = "") -> list[str]:
    remap = ["-r", f"__ns:={namespace}"] if namespace else []
    return [sys.executable, "-m", "ego_ros.ros.synthetic_camera", "--ros-args", *ros_param_args(params), *remap]


def _collect(tmp_path, params: dict, frames: int, compressed: bool = False) -> tuple[list, list, int]:
    """Run the camera for `frames` frames (reliable, from frame 0); return images, truths, exit code."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage, Image

    from ego_msgs.msg import Recognitions

    domain = next_domain()
    ns = unique_namespace("camera")  # topics of its own even if another test run shares the domain
    topic = f"{ns}/image/compressed" if compressed else f"{ns}/image"
    params = {**params, "max_frames": frames, "wait_for_subscribers": 1,
              f"qos_overrides.{topic}.publisher.reliability": "reliable",
              f"qos_overrides.{topic}.publisher.depth": frames}
    reliable = QoSProfile(depth=frames, reliability=ReliabilityPolicy.RELIABLE)
    images, truths = [], []
    with ros_client(domain, log_dir=tmp_path / "log") as (node, executor):
        node.create_subscription(CompressedImage if compressed else Image, topic, images.append, reliable)
        node.create_subscription(Recognitions, f"{ns}/ground_truth", truths.append, reliable)
        proc = start_process(_camera_command(params, ns), ros_env(domain, tmp_path / "log"), tmp_path / "camera.log")
        try:
            spin_until(executor, lambda: len(images) >= frames and len(truths) >= frames, 60.0)
            proc.wait(30)
        finally:
            code = stop_process(proc)
    assert len(images) == frames, (tmp_path / "camera.log").read_text()
    assert len(truths) == frames, (tmp_path / "camera.log").read_text()
    return images, truths, code


@pytest.mark.ros
def test_camera_node_publishes_the_seeded_frames_with_matching_ground_truth(tmp_path):
    params = {"seed": 5, "include": [MINE], "include_names": ["kona"], "include_p": 1.0, "frame_id": "cam_optical"}
    images, truths, code = _collect(tmp_path, params, 12)
    assert code == 0
    reference = ToyCamera(5, 640, 480, include=[MINE], include_names=["kona"], include_p=1.0)
    for image, truth in zip(images, truths):
        expected = reference.next_frame()
        assert (image.width, image.height, image.encoding, image.step) == (640, 480, "rgb8", 640 * 3)
        assert bytes(image.data) == expected.image.tobytes()
        assert image.header == truth.header  # same stamp and frame_id on frame and ground truth
        assert image.header.frame_id == "cam_optical"
        assert list(truth.names) == [e.name for e in expected.truth]
        assert list(truth.present) == [e.recognisable for e in expected.truth]
        assert np.allclose(truth.probabilities, [e.visible_fraction for e in expected.truth], atol=1e-6)
    stamps = [(m.header.stamp.sec, m.header.stamp.nanosec) for m in images]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)


@pytest.mark.ros
def test_camera_node_publishes_jpeg_on_image_compressed(tmp_path):
    from ego_ros.ros.image_conversion import compressed_to_rgb

    params = {"seed": 2, "width": 320, "height": 240, "publish_raw": False, "publish_compressed": True}
    images, _, code = _collect(tmp_path, params, 3, compressed=True)
    reference = ToyCamera(2, 320, 240)
    for msg in images:
        assert "jpeg" in msg.format
        rgb = compressed_to_rgb(msg.format, msg.data)
        # JPEG is lossy: close to the rendered frame, not equal.
        assert np.abs(rgb.astype(int) - reference.next_frame().image.astype(int)).mean() < 8


@pytest.mark.ros
def test_camera_node_rejects_an_unknown_instance_with_a_clear_message(tmp_path):
    domain = next_domain()
    proc = start_process(_camera_command({"include": ["purple-blob"]}), ros_env(domain, tmp_path / "log"),
                         tmp_path / "camera.log")
    try:
        proc.wait(60)
    finally:
        stop_process(proc)
    assert proc.returncode == 2
    assert "instance key" in (tmp_path / "camera.log").read_text()
