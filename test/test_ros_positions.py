"""3-D positions through the node: depth and camera_info matched to the colour frame, points in
Recognitions.locations and on ~/positions, the reasons for 2-D-only results, ~/locate with depth, and the
synthetic camera end to end against its exact ground truth.

One node process (the toy model, use_depth true, locate all, so every scored concept is located) serves
every test; it knows "kona", the demo's concept, introduced from the demo's reference views. Each test
switches use_depth off and on first, so no depth frame or camera_info of an earlier test is left in the
node. The test process publishes the colour, depth and camera_info frames itself (`DepthCamera`: stamps
advance 0.1 s a frame, never wall-clock time), except in the synthetic camera test.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from ros_env import (
    DepthCamera,
    ServiceCaller,
    ego_node_command,
    header_key,
    next_domain,
    raw_image,
    ros_client,
    ros_env,
    ros_param_args,
    spin_until,
    start_process,
    stop_process,
    unique_namespace,
)
from sensor_msgs.msg import Image

from ego_msgs.msg import ConceptPositions, Recognitions
from ego_msgs.srv import IntroduceConcept, ListConcepts, Locate
from ego_ros.ros.demo_concepts import reference_views
from ego_ros.ros.demo_scenario import DEMO_INSTANCE, DEMO_NAME
from ego_ros.ros.depth import back_project
from ego_ros.ros.image_conversion import rgb_to_image_fields

pytestmark = [pytest.mark.ros, pytest.mark.slow]

TIMEOUT = 60.0  # bound on every wait (the toy model on a loaded 2-core machine); never a timing assertion
NS = unique_namespace("rgbd")
NODE = f"{NS}/ego_node"
FLAT_M = 1.5  # the depth of DepthCamera's flat scene


@dataclass
class Node:
    node: object
    executor: object
    call: ServiceCaller
    log: Path
    proc: object
    domain: int
    tmp: Path

    def wait(self, predicate, what: str, timeout: float = TIMEOUT) -> None:
        if not spin_until(self.executor, predicate, timeout):
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else "(no log)"
            pytest.fail(f"timed out after {timeout} s waiting for {what}; node log:\n{log}")

    def collect(self, msg_type, topic: str, qos=10) -> list:
        received: list = []
        self.node.create_subscription(msg_type, topic, received.append, qos)
        return received

    def set(self, name: str, value) -> None:
        request = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
        result = self.call(SetParameters, f"{NODE}/set_parameters", request).results[0]
        assert result.successful, result.reason


@pytest.fixture(scope="module")
def ego(tmp_path_factory) -> Iterator[Node]:
    tmp = tmp_path_factory.mktemp("ego_rgbd")
    domain = next_domain()
    params = {"model": "toy", "autostart": True, "memory_dir": str(tmp / "store"), "max_rate": 5.0,
              "use_depth": True, "locate": "all"}
    proc = start_process(ego_node_command(params, namespace=NS), ros_env(domain, tmp / "log"), tmp / "node.log")
    try:
        with ros_client(domain, "ego_rgbd_test", tmp / "log") as (node, executor):
            harness = Node(node, executor, ServiceCaller(node, executor, TIMEOUT), tmp / "node.log", proc, domain, tmp)
            try:
                assert harness.call(ListConcepts, f"{NODE}/list_concepts", timeout=120.0).success
            except TimeoutError:
                pytest.fail(f"the node did not come up; its log:\n{(tmp / 'node.log').read_text()[-3000:]}")
            views = [Image(**rgb_to_image_fields(v)) for v in reference_views()]
            reply = harness.call(IntroduceConcept, f"{NODE}/introduce_concept",
                                 IntroduceConcept.Request(name=DEMO_NAME, images=views))
            assert reply.success, reply.message
            yield harness
    finally:
        stop_process(proc)


@pytest.fixture(autouse=True)
def fresh_depth(ego) -> Iterator[None]:
    """use_depth off and on: the node forgets the depth frames and camera_info of earlier tests."""
    ego.set("use_depth", False)
    ego.set("use_depth", True)
    yield
    ego.set("depth_tolerance", 0.05)


def located(recognitions: list[Recognitions], camera: DepthCamera) -> list[Recognitions]:
    return [r for r in recognitions if header_key(r.header) in camera.headers and r.locations]


def flat(shape: tuple[int, int] = (48, 64), value: float = FLAT_M) -> np.ndarray:
    return np.full(shape, value, dtype=np.float32)


def expected_point(loc, z: float = FLAT_M) -> tuple[float, float, float]:
    """Where the node must put a location over a flat depth: its peak (corner-origin pixels) back-projected."""
    return back_project(loc.x - 0.5, loc.y - 0.5, z, DepthCamera.K)


def test_each_location_gets_its_peak_back_projected_at_the_depth_and_positions_repeat_it(ego):
    recognitions = ego.collect(Recognitions, f"{NODE}/recognitions")
    positions = ego.collect(ConceptPositions, f"{NODE}/positions")
    camera = DepthCamera(ego.node, NS, depth=flat())
    try:
        ego.wait(lambda: any(loc.has_position for r in located(recognitions, camera) for loc in r.locations)
                 and any(p.names and header_key(p.header) in camera.headers for p in positions),
                 "recognitions and positions with 3-D points")
        rec = next(r for r in located(recognitions, camera) if r.locations[0].has_position)
        for loc in rec.locations:
            assert loc.has_position and loc.position_status == ""
            assert (loc.position.x, loc.position.y, loc.position.z) == pytest.approx(expected_point(loc), abs=1e-4)
        ego.wait(lambda: any(header_key(p.header) == header_key(rec.header) for p in positions),
                 "the positions message of that frame")
        msg = next(p for p in positions if header_key(p.header) == header_key(rec.header))
        assert list(msg.names) == [loc.name for loc in rec.locations]
        for point, loc in zip(msg.points, rec.locations):
            assert header_key(point.header) == header_key(rec.header)  # the colour camera's optical frame
            assert (point.point.x, point.point.y, point.point.z) == (loc.position.x, loc.position.y, loc.position.z)
    finally:
        camera.close()


def test_a_registered_depth_image_at_half_the_resolution_is_read_through_the_scaled_box(ego):
    recognitions = ego.collect(Recognitions, f"{NODE}/recognitions")
    camera = DepthCamera(ego.node, NS, depth=flat((24, 32), 2.0))
    try:
        ego.wait(lambda: any(loc.has_position for r in located(recognitions, camera) for loc in r.locations),
                 "a 3-D point from the half-resolution depth image")
        loc = next(loc for r in located(recognitions, camera) for loc in r.locations if loc.has_position)
        assert (loc.position.x, loc.position.y, loc.position.z) == pytest.approx(expected_point(loc, 2.0), abs=1e-4)
    finally:
        camera.close()


NO_3D = {
    "depth missing": ({"depth": None}, 0.05, "no depth frame received"),
    "depth stale": ({"depth": flat(), "depth_offset_s": 0.05}, 0.01, "no depth frame within 0.01 s"),
    "camera_info missing": ({"depth": flat(), "info": False}, 0.05, "no camera_info received"),
    "zero millimetres": ({"depth": flat(value=0.0)}, 0.05, "too few valid depth pixels in the box"),
    "NaN metres": ({"depth": flat(value=np.nan), "encoding": "32FC1"}, 0.05, "too few valid depth pixels"),
    "another aspect": ({"depth": flat((64, 64))}, 0.05, "register the depth image"),
}


@pytest.mark.parametrize("case", list(NO_3D))
def test_without_usable_depth_locations_stay_2d_and_say_why(ego, case):
    camera_args, tolerance, reason = NO_3D[case]
    ego.set("depth_tolerance", tolerance)
    recognitions = ego.collect(Recognitions, f"{NODE}/recognitions")
    positions = ego.collect(ConceptPositions, f"{NODE}/positions")
    camera = DepthCamera(ego.node, NS, **camera_args)
    try:
        ego.wait(lambda: any(reason in loc.position_status for r in located(recognitions, camera)
                             for loc in r.locations), f"locations saying {reason!r}")
        ours = located(recognitions, camera)
        assert not any(loc.has_position for r in ours for loc in r.locations)  # never a wrong 3-D point
        assert all(list(p.names) == [] for p in positions if header_key(p.header) in camera.headers)
        assert all(len(r.locations) == len(r.names) for r in ours)  # the 2-D result is all there
    finally:
        camera.close()


def test_diagnostics_warn_while_frames_get_no_3d_positions(ego):
    arrays = ego.collect(DiagnosticArray, "/diagnostics")
    camera = DepthCamera(ego.node, NS, depth=None)

    def warning() -> bool:
        return any(s.name == f"{NODE}: ego" and "no 3-D positions (2-D locations only): no depth frame received"
                   in s.message for a in arrays for s in a.status)

    try:
        ego.wait(warning, "a diagnostics warning about missing depth")
    finally:
        camera.close()


def test_locate_answers_the_3d_point_on_the_latest_frame_and_says_a_request_image_has_no_depth(ego):
    recognitions = ego.collect(Recognitions, f"{NODE}/recognitions")
    camera = DepthCamera(ego.node, NS, depth=flat())
    try:
        ego.wait(lambda: any(loc.has_position for r in located(recognitions, camera) for loc in r.locations),
                 "streaming with depth")
        reply = ego.call(Locate, f"{NODE}/locate", Locate.Request(name=DEMO_NAME))
        assert reply.success, reply.message
        assert header_key(reply.header) in camera.headers
        loc = reply.location
        assert loc.has_position and (loc.position.x, loc.position.y, loc.position.z) == pytest.approx(
            expected_point(loc), abs=1e-4)
        given = ego.call(Locate, f"{NODE}/locate", Locate.Request(name=DEMO_NAME, image=raw_image(3)))
        assert given.success and not given.location.has_position
        assert given.location.position_status == "an image given in the request has no depth frame"
    finally:
        camera.close()


# ------------------------------------------------------------------------------- the synthetic camera
#: The 3-D error against the camera's ground truth (the visible mask's centroid at the object's depth).
#: The toy model's map is 8x8 visual tokens, 80x60 px of the 640x480 frame (about 0.17 x 0.13 m at the
#: camera's 1-1.5 m); the point is the map-weighted centroid of the located box and the depth the median over
#: the box's inner half: exact when that lies on the object, the floor's behind it otherwise. Measured with
#: the node's rule on the demo camera (bench/toy_positions.py, bench/results/toy_positions.json, 80 sampled
#: frames with kona recognisable, seeds 0-3): error p50 0.046 m, p95 0.149 m, max 0.21 m; depth error p50 0,
#: max 0.132 m. The frames the node processes are consecutive and correlated: one run had 10 of its 16 frames
#: in a stretch of seed 0's first clip where the box reaches the floor (depth errors 0.06-0.14 m, median
#: 0.083 m, 3-D median 0.16 m). So the test bounds medians, not shares: the 3-D median by 0.2 m, the depth
#: median by 0.15 m (above the bench's worst sampled depth error), and every error by 0.6 m (a point from the
#: wrong frame, intrinsics or unit is metres off).
MEDIAN_TOLERANCE_M = 0.2
MAX_ERROR_M = 0.6
MEDIAN_DEPTH_TOLERANCE_M = 0.15
FRAMES = 16


def test_the_synthetic_cameras_depth_gives_points_near_its_ground_truth(ego):
    camera_params = {"seed": 0, "fps": 10.0, "include": [DEMO_INSTANCE], "include_names": [DEMO_NAME],
                     "include_p": 1.0}
    command = [sys.executable, "-m", "ego_ros.ros.synthetic_camera", "--ros-args", *ros_param_args(camera_params),
               "-r", f"__ns:={NS}"]
    reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    truths = {}
    ego.node.create_subscription(Recognitions, f"{NS}/ground_truth",
                                 lambda m: truths.__setitem__(header_key(m.header), m), reliable)
    recognitions = ego.collect(Recognitions, f"{NODE}/recognitions")

    def pairs() -> list[tuple[object, object]]:
        """(published location of kona, its ground-truth location) on frames where kona is recognisable."""
        out = []
        for r in recognitions:
            truth = truths.get(header_key(r.header))
            if truth is None or DEMO_NAME not in truth.names or not truth.present[list(truth.names).index(DEMO_NAME)]:
                continue
            mine = [loc for loc in r.locations if loc.name == DEMO_NAME and loc.has_position]
            gt = [loc for loc in truth.locations if loc.name == DEMO_NAME]
            if mine and gt:
                out.append((mine[0], gt[0]))
        return out

    proc = start_process(command, ros_env(ego.domain, ego.tmp / "log"), ego.tmp / "camera.log")
    try:
        ego.wait(lambda: len(pairs()) >= FRAMES, f"{FRAMES} frames with kona in view and located in 3-D",
                 timeout=180.0)
    finally:
        stop_process(proc)
    found = pairs()
    errors = [float(np.linalg.norm([p.position.x - t.position.x, p.position.y - t.position.y,
                                    p.position.z - t.position.z])) for p, t in found]
    depth_errors = [abs(p.position.z - t.position.z) for p, t in found]
    report = f"3-D errors (m): {[round(e, 3) for e in errors]}, depth errors {[round(e, 3) for e in depth_errors]}"
    assert np.median(errors) <= MEDIAN_TOLERANCE_M and max(errors) <= MAX_ERROR_M, report
    assert np.median(depth_errors) <= MEDIAN_DEPTH_TOLERANCE_M, report
