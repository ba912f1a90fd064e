"""The ego_msgs interfaces are generated as specified and travel through real rclpy/Fast DDS.

Needs the interface package built into the venv: `scripts/build_ego_msgs.sh`.
"""

from __future__ import annotations

import array
import os
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

pytestmark = pytest.mark.ros

try:
    import rclpy
    from builtin_interfaces.msg import Time
    from geometry_msgs.msg import Point, PointStamped
    from rclpy.action import ActionClient, ActionServer
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage, Image
    from std_msgs.msg import Header

    from ego_msgs.action import IntroduceFromCamera
    from ego_msgs.msg import Answer, ConceptDescription, ConceptList, ConceptLocation, ConceptPositions, Recognitions
    from ego_msgs.srv import Ask, Caption, IntroduceConcept, ListConcepts, Locate, RemoveConcept, RenameConcept
except ImportError as exc:  # pragma: no cover - environment problem, reported as a collection error
    raise ImportError(f"{exc}; build the interfaces first with scripts/build_ego_msgs.sh") from exc

TIMEOUT_S = 20.0  # generous bound for discovery and delivery; never a timing assertion


# --------------------------------------------------------------------------------- field layout

HEADER = "std_msgs/Header"
DESCRIPTION = "ego_msgs/ConceptDescription"
LOCATION = "ego_msgs/ConceptLocation"

EXPECTED_FIELDS = {
    Recognitions: {
        "header": HEADER,
        "names": "sequence<string>",
        "probabilities": "sequence<float>",
        "present": "sequence<boolean>",
        "threshold": "float",
        "latency_s": "float",
        "locations": f"sequence<{LOCATION}>",
    },
    ConceptLocation: {
        "name": "string",
        "x_min": "float",
        "y_min": "float",
        "x_max": "float",
        "y_max": "float",
        "x": "float",
        "y": "float",
        "score": "float",
        "has_position": "boolean",
        "position": "geometry_msgs/Point",
        "position_status": "string",
    },
    ConceptPositions: {
        "header": HEADER,
        "names": "sequence<string>",
        "points": "sequence<geometry_msgs/PointStamped>",
    },
    Answer: {
        "header": HEADER,
        "question": "string",
        "answer": "string",
        "concepts": "sequence<string>",
        "latency_s": "float",
    },
    ConceptDescription: {
        "name": "string",
        "keywords": "sequence<string>",
        "views": "uint32",
        "tokens": "uint32",
        "area_percent": "sequence<float>",
        "model": "string",
        "created": "builtin_interfaces/Time",
        "notes": "string",
    },
    ConceptList: {"header": HEADER, "concepts": f"sequence<{DESCRIPTION}>"},
    IntroduceConcept.Request: {
        "name": "string",
        "images": "sequence<sensor_msgs/Image>",
        "compressed_images": "sequence<sensor_msgs/CompressedImage>",
        "latest_frames": "uint32",
        "notes": "string",
        "replace": "boolean",
    },
    IntroduceConcept.Response: {"success": "boolean", "message": "string", "concept": DESCRIPTION},
    RemoveConcept.Request: {"name": "string"},
    RemoveConcept.Response: {"success": "boolean", "message": "string"},
    RenameConcept.Request: {"old_name": "string", "new_name": "string"},
    RenameConcept.Response: {"success": "boolean", "message": "string", "concept": DESCRIPTION},
    ListConcepts.Request: {},
    ListConcepts.Response: {
        "success": "boolean",
        "message": "string",
        "concepts": f"sequence<{DESCRIPTION}>",
    },
    Ask.Request: {
        "question": "string",
        "image": "sensor_msgs/Image",
        "concepts": "sequence<string>",
        "max_new_tokens": "uint32",
    },
    Ask.Response: {"success": "boolean", "message": "string", "answer": "ego_msgs/Answer"},
    Caption.Request: {"image": "sensor_msgs/Image", "concepts": "sequence<string>", "max_new_tokens": "uint32"},
    Caption.Response: {"success": "boolean", "message": "string", "answer": "ego_msgs/Answer"},
    Locate.Request: {"name": "string", "image": "sensor_msgs/Image"},
    Locate.Response: {
        "success": "boolean",
        "message": "string",
        "found": "boolean",
        "probability": "float",
        "location": LOCATION,
        "header": HEADER,
    },
    IntroduceFromCamera.Goal: {
        "name": "string",
        "num_frames": "uint32",
        "min_interval_s": "float",
        "notes": "string",
        "replace": "boolean",
    },
    IntroduceFromCamera.Result: {"success": "boolean", "message": "string", "concept": DESCRIPTION},
    IntroduceFromCamera.Feedback: {"frames_captured": "uint32", "current_keywords": "sequence<string>"},
}


@pytest.mark.parametrize("interface", list(EXPECTED_FIELDS), ids=lambda t: t.__qualname__)
def test_interface_has_the_specified_fields(interface):
    assert interface.get_fields_and_field_types() == EXPECTED_FIELDS[interface]


# ------------------------------------------------------------------------------------ transport


@pytest.fixture
def ros_context(tmp_path, monkeypatch) -> Iterator[rclpy.Context]:
    """Yield an rclpy context on a private domain that only talks over loopback."""
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.setenv("ROS_LOG_DIR", str(tmp_path / "ros_log"))
    context = rclpy.Context()
    # 50-79: away from the default domain 0 and from test_fastdds_profile.py's 80-99.
    rclpy.init(context=context, domain_id=50 + os.getpid() % 30)
    yield context
    context.try_shutdown()


@pytest.fixture
def node_pair(ros_context) -> Iterator[tuple[rclpy.node.Node, rclpy.node.Node, SingleThreadedExecutor]]:
    """Yield a server-side and a client-side node spun by one executor."""
    suffix = uuid.uuid4().hex[:8]
    server = rclpy.create_node(f"ego_msgs_server_{suffix}", context=ros_context)
    client = rclpy.create_node(f"ego_msgs_client_{suffix}", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(server)
    executor.add_node(client)
    yield server, client, executor
    executor.shutdown()
    server.destroy_node()
    client.destroy_node()


def spin_until(executor: SingleThreadedExecutor, done: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not done():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {TIMEOUT_S} s waiting for {what}")
        executor.spin_once(timeout_sec=0.05)


def unique_topic(stem: str) -> str:
    return f"/{stem}_{uuid.uuid4().hex[:8]}"


def sample_description(name: str = "my_mug") -> ConceptDescription:
    return ConceptDescription(
        name=name,
        keywords=["white", "ceramic", "mug", "blue handle"],
        views=2,
        tokens=37,
        area_percent=[12.5, 30.0],
        model="toy-llava@3f2a9c",
        created=Time(sec=1_700_000_000, nanosec=5),
        notes="from the kitchen",
    )


def test_recognitions_round_trip_through_a_publisher_and_subscriber(node_pair):
    server, client, executor = node_pair
    topic = unique_topic("recognitions")
    received: list[Recognitions] = []
    client.create_subscription(Recognitions, topic, received.append, 10)
    publisher = server.create_publisher(Recognitions, topic, 10)
    spin_until(executor, lambda: publisher.get_subscription_count() > 0, "the subscriber to match")

    sent = Recognitions(
        header=Header(stamp=Time(sec=42, nanosec=123), frame_id="camera_optical_frame"),
        names=["my_mug", "Anna"],
        probabilities=[0.875, 0.125],
        present=[True, False],
        threshold=0.5,
        latency_s=0.25,
        locations=[ConceptLocation(name="my_mug", x_min=16.0, y_min=8.0, x_max=48.0, y_max=40.0, x=32.0, y=24.0,
                                   score=0.75, has_position=True, position=Point(x=0.25, y=-0.125, z=1.5)),
                   ConceptLocation(name="Anna", position_status="no depth frame received")],
    )

    def publish_until_received() -> bool:
        if not received:
            publisher.publish(sent)
        return bool(received)

    spin_until(executor, publish_until_received, "a Recognitions message")
    got = received[0]
    assert got.header == sent.header
    assert list(got.names) == ["my_mug", "Anna"]
    assert list(got.probabilities) == [0.875, 0.125]  # exactly representable in float32
    assert list(got.present) == [True, False]
    assert (got.threshold, got.latency_s) == (0.5, 0.25)
    assert list(got.locations) == list(sent.locations)


def test_concept_positions_round_trip_with_a_stamped_point_per_name(node_pair):
    server, client, executor = node_pair
    topic = unique_topic("positions")
    received: list[ConceptPositions] = []
    client.create_subscription(ConceptPositions, topic, received.append, 10)
    publisher = server.create_publisher(ConceptPositions, topic, 10)
    spin_until(executor, lambda: publisher.get_subscription_count() > 0, "the subscriber to match")
    header = Header(stamp=Time(sec=42, nanosec=123), frame_id="camera_color_optical_frame")
    sent = ConceptPositions(header=header, names=["my_mug"],
                            points=[PointStamped(header=header, point=Point(x=0.25, y=-0.125, z=1.5))])

    def publish_until_received() -> bool:
        if not received:
            publisher.publish(sent)
        return bool(received)

    spin_until(executor, publish_until_received, "a ConceptPositions message")
    assert received[0] == sent


def test_concept_list_is_delivered_to_a_late_transient_local_subscriber(node_pair):
    server, client, executor = node_pair
    topic = unique_topic("concepts")
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    publisher = server.create_publisher(ConceptList, topic, latched)
    concepts = [sample_description(), sample_description("Anna")]
    publisher.publish(ConceptList(header=Header(stamp=Time(sec=7)), concepts=concepts))

    received: list[ConceptList] = []
    client.create_subscription(ConceptList, topic, received.append, latched)
    spin_until(executor, lambda: bool(received), "the latched ConceptList")
    assert [c.name for c in received[0].concepts] == ["my_mug", "Anna"]
    assert received[0].concepts[0] == sample_description()


def test_introduce_concept_request_and_response_cross_a_service_call(node_pair):
    server, client, executor = node_pair
    service = unique_topic("introduce_concept")
    seen: list[IntroduceConcept.Request] = []

    def handle(request: IntroduceConcept.Request, response: IntroduceConcept.Response):
        seen.append(request)
        response.success = True
        response.concept = sample_description(request.name)
        response.concept.views = len(request.images) + len(request.compressed_images)
        response.concept.notes = request.notes
        return response

    server.create_service(IntroduceConcept, service, handle)
    caller = client.create_client(IntroduceConcept, service)
    spin_until(executor, caller.service_is_ready, "the service to be ready")

    pixels = array.array("B", range(2 * 3 * 3))
    request = IntroduceConcept.Request(
        name="my_mug",
        images=[Image(height=2, width=3, encoding="rgb8", step=9, data=pixels)],
        compressed_images=[CompressedImage(format="jpeg", data=b"\xff\xd8\xff\xd9")],
        latest_frames=0,
        notes="on the desk",
        replace=True,
    )
    future = caller.call_async(request)
    spin_until(executor, future.done, "the service response")

    response = future.result()
    assert response.success and response.message == ""
    assert response.concept.name == "my_mug" and response.concept.views == 2
    assert response.concept.notes == "on the desk"
    got = seen[0]
    assert got.images[0].data == pixels and got.images[0].step == 9
    assert bytes(got.compressed_images[0].data) == b"\xff\xd8\xff\xd9"
    assert got.replace is True


def test_introduce_from_camera_goal_feedback_and_result_cross_an_action(node_pair):
    server, client, executor = node_pair
    action = unique_topic("introduce_from_camera")

    def execute(goal_handle):
        for captured in range(1, goal_handle.request.num_frames + 1):
            goal_handle.publish_feedback(
                IntroduceFromCamera.Feedback(frames_captured=captured, current_keywords=["mug"] * captured)
            )
        goal_handle.succeed()
        return IntroduceFromCamera.Result(success=True, concept=sample_description(goal_handle.request.name))

    ActionServer(server, IntroduceFromCamera, action, execute)
    action_client = ActionClient(client, IntroduceFromCamera, action)
    spin_until(executor, action_client.server_is_ready, "the action server")

    feedback: list[IntroduceFromCamera.Feedback] = []
    goal = IntroduceFromCamera.Goal(name="my_mug", num_frames=3, min_interval_s=0.5, notes="", replace=False)
    send = action_client.send_goal_async(goal, feedback_callback=lambda msg: feedback.append(msg.feedback))
    spin_until(executor, send.done, "goal acceptance")
    assert send.result().accepted
    result_future = send.result().get_result_async()
    spin_until(executor, result_future.done, "the action result")

    result = result_future.result().result
    assert result.success and result.concept.name == "my_mug"
    # Feedback travels on its own (reliable) topic, so it may be processed after the result.
    spin_until(executor, lambda: len(feedback) == 3, "three feedback messages")
    assert [f.frames_captured for f in feedback] == [1, 2, 3]
    assert list(feedback[-1].current_keywords) == ["mug", "mug", "mug"]
