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

from ego_ros.ros.depth import depth_to_metres
from ego_ros.ros.synthetic_camera import RECOGNISABLE_FRACTION, ToyCamera, parse_instances
from ego_ros.ros.synthetic_depth import CAMERA_HEIGHT_M, PITCH_DEG, PinholeCamera, encode_depth
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


def test_a_clip_cycle_shows_the_look_alike_named_by_its_key_in_place_of_the_included_instance():
    twin = "red-heart-checkered-black-right"
    camera = ToyCamera(3, 64, 48, include=[MINE], include_names=["kona"], lookalikes=[twin],
                       clip_cycle=["include", "absent", "lookalike"], clip_seconds=[0.1, 0.1])
    names_by_clip: dict[int, set[str]] = {}
    for _ in range(9 * 3):  # 3 frames a clip at 30 Hz
        frame = camera.next_frame()
        names_by_clip.setdefault(frame.clip_index, set()).update(t.name for t in frame.truth)
    for clip, names in names_by_clip.items():
        assert names & {"kona", twin} == [{"kona"}, set(), {twin}][clip % 3], clip


def test_camera_rejects_bad_clip_parameters():
    with pytest.raises(WorldError, match="clip kind"):
        ToyCamera(0, 64, 48, include=[MINE], clip_cycle=["include", "later"])
    with pytest.raises(WorldError, match="clip_seconds"):
        ToyCamera(0, 64, 48, clip_seconds=[2.0])
    with pytest.raises(WorldError, match="max_objects"):
        ToyCamera(0, 64, 48, max_objects=0)
    with pytest.raises(WorldError, match="lookalikes repeats"):
        ToyCamera(0, 64, 48, lookalikes=[MINE, MINE])


def test_unknown_instance_key_is_rejected():
    with pytest.raises(WorldError, match="instance key"):
        parse_instances(["not-a-key"])


def test_include_names_must_match_include():
    with pytest.raises(WorldError, match="include_names"):
        parse_instances([MINE], ["a", "b"])


# ------------------------------------------------------------------------------------------- depth
def test_intrinsics_put_the_principal_point_at_the_image_centre_with_a_60_degree_view():
    camera = PinholeCamera.for_size(640, 480)
    assert (camera.cx, camera.cy) == (319.5, 239.5)
    assert camera.fx == camera.fy == pytest.approx(320 / np.tan(np.radians(30)))


def test_the_floor_is_at_the_camera_height_over_the_pitch_sine_on_the_centre_row_and_farther_above():
    camera = PinholeCamera.for_size(640, 480)
    floor = camera.floor_depth()
    assert float(camera.floor_depth_at(camera.cy)) == pytest.approx(CAMERA_HEIGHT_M / np.sin(np.radians(PITCH_DEG)))
    assert np.all(np.diff(floor[:, 0]) < 0)  # rows nearer the top see farther floor
    assert np.all(floor == floor[:, :1])  # a level floor: one depth per row


def test_rows_above_the_horizon_have_no_depth_and_encode_as_zero_millimetres():
    camera = PinholeCamera.for_size(16, 480)  # a narrow, tall view: its top rows look over the horizon
    floor = camera.floor_depth()
    assert np.isnan(floor[0]).all() and np.isfinite(floor[-1]).all()
    raw = np.frombuffer(encode_depth(floor, "16UC1"), dtype="<u2").reshape(floor.shape)
    assert (raw[0] == 0).all()


def test_each_object_has_one_depth_nearer_than_the_floor_behind_it_and_the_floor_is_elsewhere():
    camera = ToyCamera(1, 320, 240, include=[MINE], include_names=["kona"], include_p=1.0)
    floor = camera.pinhole.floor_depth()
    for _ in range(10):
        frame = camera.next_frame()
        masks = frame.masks
        background = ~masks.any(axis=0)
        np.testing.assert_array_equal(frame.depth[background], floor[background])
        for entry, mask in zip(frame.truth, masks):
            if mask.any():
                assert np.all(frame.depth[mask] == np.float32(entry.where.depth_m))
                assert np.all(frame.depth[mask] <= floor[mask])


def test_ground_truth_3d_point_projects_to_the_mask_centroid_at_the_objects_depth():
    camera = ToyCamera(1, 320, 240, include=[MINE], include_names=["kona"], include_p=1.0)
    k = camera.pinhole
    for _ in range(5):
        for entry in camera.next_frame().truth:
            where = entry.where
            if where.position is None:
                continue
            x, y, z = where.position
            assert z == where.depth_m
            u, v = k.fx * x / z + k.cx, k.fy * y / z + k.cy
            assert (u + 0.5, v + 0.5) == pytest.approx(where.centroid)
            x0, y0, x1, y1 = where.box
            assert x0 <= where.centroid[0] <= x1 and y0 <= where.centroid[1] <= y1


@pytest.mark.parametrize(("encoding", "atol"), [("16UC1", 0.0005), ("32FC1", 1e-6)])
def test_depth_encodings_read_back_as_the_rendered_metres(encoding, atol):
    depth = ToyCamera(0, 64, 48).next_frame().depth
    back = depth_to_metres(encode_depth(depth, encoding), encoding, 64, 48)
    np.testing.assert_allclose(back, depth, atol=atol)


def test_a_camera_without_depth_makes_frames_without_it():
    frame = ToyCamera(0, 64, 48, depth=False).next_frame()
    assert frame.depth is None and all(e.where is None for e in frame.truth)


# ------------------------------------------------------------------------------------ the ROS node
def _camera_command(params: dict, namespace: str = "") -> list[str]:
    remap = ["-r", f"__ns:={namespace}"] if namespace else []
    return [sys.executable, "-m", "ego_ros.ros.synthetic_camera", "--ros-args", *ros_param_args(params), *remap]


def _collect(tmp_path, params: dict, frames: int, compressed: bool = False, depth: list | None = None,
             infos: list | None = None) -> tuple[list, list, int]:
    """Run the camera for `frames` frames (reliable, from frame 0); return images, truths, exit code.
    Depth images and camera_info go to `depth` and `infos` when given."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image

    from ego_msgs.msg import Recognitions

    domain = next_domain()
    ns = unique_namespace("camera")  # topics of its own even if another test run shares the domain
    topic = f"{ns}/image/compressed" if compressed else f"{ns}/image"
    params = {**params, "max_frames": frames, "wait_for_subscribers": 1}
    for t in (topic, f"{ns}/depth", f"{ns}/camera_info"):
        params.update({f"qos_overrides.{t}.publisher.reliability": "reliable",
                       f"qos_overrides.{t}.publisher.depth": frames})
    reliable = QoSProfile(depth=frames, reliability=ReliabilityPolicy.RELIABLE)
    images, truths = [], []
    with ros_client(domain, log_dir=tmp_path / "log") as (node, executor):
        node.create_subscription(CompressedImage if compressed else Image, topic, images.append, reliable)
        node.create_subscription(Recognitions, f"{ns}/ground_truth", truths.append, reliable)
        if depth is not None:
            node.create_subscription(Image, f"{ns}/depth", depth.append, reliable)
            node.create_subscription(CameraInfo, f"{ns}/camera_info", infos.append, reliable)
        proc = start_process(_camera_command(params, ns), ros_env(domain, tmp_path / "log"), tmp_path / "camera.log")
        try:
            spin_until(executor, lambda: len(images) >= frames and len(truths) >= frames
                       and (depth is None or (len(depth) >= frames and len(infos) >= frames)), 60.0)
            proc.wait(30)
        finally:
            code = stop_process(proc)
    assert len(images) == frames, (tmp_path / "camera.log").read_text()
    assert len(truths) == frames, (tmp_path / "camera.log").read_text()
    return images, truths, code


@pytest.mark.ros
def test_camera_node_publishes_the_seeded_frames_with_matching_ground_truth(tmp_path):
    params = {"seed": 5, "include": [MINE], "include_names": ["kona"], "include_p": 1.0, "frame_id": "cam_optical"}
    depth, infos = [], []
    images, truths, code = _collect(tmp_path, params, 12, depth=depth, infos=infos)
    assert code == 0
    reference = ToyCamera(5, 640, 480, include=[MINE], include_names=["kona"], include_p=1.0)
    assert len(depth) == len(infos) == 12
    for image, truth, depth_image, info in zip(images, truths, depth, infos):
        expected = reference.next_frame()
        assert depth_image.header == info.header == image.header  # registered: same stamp and frame_id
        assert (depth_image.width, depth_image.height, depth_image.encoding) == (640, 480, "16UC1")
        np.testing.assert_allclose(depth_to_metres(depth_image.data, "16UC1", 640, 480, depth_image.step),
                                   expected.depth, atol=0.0005)
        assert (info.width, info.height) == (640, 480) and list(info.k) == reference.pinhole.k
        visible = [e for e in expected.truth if e.where.box is not None]
        assert [loc.name for loc in truth.locations] == [e.name for e in visible]
        for loc, entry in zip(truth.locations, visible):
            assert loc.has_position and (loc.x, loc.y) == pytest.approx(entry.where.centroid, abs=1e-3)
            assert (loc.position.x, loc.position.y, loc.position.z) == pytest.approx(entry.where.position)
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
def test_camera_node_plays_the_clip_cycle_its_parameters_give(tmp_path):
    twin = "red-heart-checkered-black-right"
    scenario = {"include": [MINE], "include_names": ["kona"], "lookalikes": [twin],
                "clip_cycle": ["include", "absent", "lookalike"], "clip_seconds": [0.1, 0.1], "max_objects": 2,
                "object_size": [0.3, 0.4]}
    images, truths, code = _collect(tmp_path, {"seed": 3, "width": 160, "height": 120, **scenario}, 9)
    assert code == 0
    reference = ToyCamera(3, 160, 120, **scenario)
    for image, truth in zip(images, truths):
        expected = reference.next_frame()
        assert bytes(image.data) == expected.image.tobytes()
        assert list(truth.names) == [e.name for e in expected.truth]
    shown = [set(t.names) & {"kona", twin} for t in truths]
    assert shown == [{"kona"}] * 3 + [set()] * 3 + [{twin}] * 3  # 3 frames a clip at 30 Hz


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
