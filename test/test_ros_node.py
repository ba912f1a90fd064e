"""The Ego node's services, action and topics, against one real node process (random:llava model).

One node, started with autostart in a namespace of its own, serves every test of this module; tests use their
own concept names so they do not interfere. The test process publishes synthetic camera frames whose
stamps advance 0.1 s per frame (never wall-clock time), so outputs can be matched to their inputs.
"""

from __future__ import annotations

import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import rclpy
from action_msgs.msg import GoalStatus
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.srv import ListParameters, SetParameters
from rclpy.action import ActionClient
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from ros_env import (
    FakeCamera,
    ServiceCaller,
    ego_node_command,
    header_key,
    next_domain,
    random_rgb,
    raw_image,
    ros_client,
    ros_env,
    spin_until,
    start_process,
    stop_process,
    store_snapshot,
    unique_namespace,
)
from sensor_msgs.msg import CompressedImage, Image

from ego_msgs.action import IntroduceFromCamera
from ego_msgs.msg import Answer, ConceptList, Recognitions
from ego_msgs.srv import Ask, Caption, IntroduceConcept, ListConcepts, Locate, RemoveConcept, RenameConcept
from ego_ros.ros.image_conversion import rgb_to_compressed

pytestmark = [pytest.mark.ros, pytest.mark.slow]

TIMEOUT = 30.0  # bound on every wait; never a timing assertion
NS = unique_namespace("robot")
NODE = f"{NS}/ego_node"
MAX_PIXELS = 20_000  # the node's max_image_pixels: a 200x200 image is "huge" for it
QUESTION = "Is the mug here?"


@dataclass
class Ego:
    node: object
    executor: object
    call: ServiceCaller
    store: Path
    log: Path
    proc: object
    concept_lists: list[ConceptList] = field(default_factory=list)

    def names(self) -> list[str]:
        response = self.call(ListConcepts, f"{NODE}/list_concepts")
        assert response.success, response.message
        return [c.name for c in response.concepts]

    def introduce(self, name: str, seeds: tuple[int, ...] = (1,)) -> IntroduceConcept.Response:
        request = IntroduceConcept.Request(name=name, images=[raw_image(s) for s in seeds])
        return self.call(IntroduceConcept, f"{NODE}/introduce_concept", request)

    def wait(self, predicate, what: str, timeout: float = TIMEOUT) -> None:
        if not spin_until(self.executor, predicate, timeout):
            pytest.fail(f"timed out after {timeout} s waiting for {what}; node log:\n{self.log_tail()}")

    def collect(self, msg_type, topic: str, qos=10) -> list:
        received: list = []
        self.node.create_subscription(msg_type, topic, received.append, qos)
        return received

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else "(no log)"


@pytest.fixture(scope="module")
def ego(tmp_path_factory) -> Iterator[Ego]:
    tmp = tmp_path_factory.mktemp("ego_node")
    domain = next_domain()
    params = {"model": "random:llava", "autostart": True, "memory_dir": str(tmp / "store"), "max_rate": 10.0,
              "max_image_pixels": MAX_PIXELS, "standing_questions": [QUESTION], "max_new_tokens": 4}
    proc = start_process(ego_node_command(params, namespace=NS), ros_env(domain, tmp / "log"), tmp / "node.log")
    try:
        with ros_client(domain, "ego_node_test", tmp / "log") as (node, executor):
            harness = Ego(node, executor, ServiceCaller(node, executor, TIMEOUT), tmp / "store", tmp / "node.log", proc)
            latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                 durability=DurabilityPolicy.TRANSIENT_LOCAL)
            node.create_subscription(ConceptList, f"{NODE}/concepts", harness.concept_lists.append, latched)
            try:
                # autostart configures and activates before the node spins: a first answer means it is active
                assert harness.call(ListConcepts, f"{NODE}/list_concepts", timeout=60.0).success
            except TimeoutError:
                pytest.fail(f"the node did not come up; its log:\n{harness.log_tail()}")
            for name in ("base", "base2"):  # concepts every test may rely on
                assert harness.introduce(name).success
            yield harness
    finally:
        stop_process(proc)


@pytest.fixture
def camera(ego) -> Iterator[FakeCamera]:
    cam = FakeCamera(ego.node, f"{NS}/image")
    yield cam
    cam.close()


def wait_for_streaming(ego: Ego, camera: FakeCamera, frames: int = 1) -> list[Recognitions]:
    """Subscribe to recognitions and spin until `frames` frames of this camera were recognised."""
    recognitions = ego.collect(Recognitions, f"{NODE}/recognitions")
    ego.wait(lambda: len({header_key(r.header) for r in recognitions} & camera.headers) >= frames,
             f"recognitions of {frames} camera frame(s)")
    return recognitions


def test_the_node_logs_at_configure_which_layers_it_uses_and_why(ego):
    assert ("keyword attention on all layers: all layers (no default known for this architecture; run ego-ros "
            "calibrate)") in ego.log.read_text(errors="replace")


# ------------------------------------------------------------------------------------------------ services
def test_introduce_concept_from_request_images_stores_all_views(ego):
    compressed = CompressedImage(**rgb_to_compressed(random_rgb(7), "jpeg"))
    request = IntroduceConcept.Request(name="my_mug", images=[raw_image(5), raw_image(6)],
                                       compressed_images=[compressed], notes="blue, from Anna")
    response = ego.call(IntroduceConcept, f"{NODE}/introduce_concept", request)
    assert response.success, response.message
    assert response.concept.name == "my_mug"
    assert response.concept.views == 3 and len(response.concept.area_percent) == 3
    assert response.concept.tokens >= 3
    assert response.concept.notes == "blue, from Anna"
    assert response.concept.model.startswith("random:llava@")
    assert "my_mug" in ego.names()


def test_concept_list_topic_is_republished_on_every_change(ego):
    assert ego.introduce("listed").success
    ego.wait(lambda: any("listed" in [c.name for c in m.concepts] for m in ego.concept_lists), "a list with 'listed'")
    assert ego.call(RemoveConcept, f"{NODE}/remove_concept", RemoveConcept.Request(name="listed")).success
    ego.wait(lambda: "listed" not in [c.name for c in ego.concept_lists[-1].concepts], "a list without 'listed'")


def test_introduce_concept_from_the_latest_camera_frames(ego, camera):
    wait_for_streaming(ego, camera, frames=3)
    request = IntroduceConcept.Request(name="from_frames", latest_frames=3)
    response = ego.call(IntroduceConcept, f"{NODE}/introduce_concept", request)
    assert response.success, response.message
    assert response.concept.views == 3


def test_remove_concept_forgets_it_in_memory_and_on_disk(ego):
    assert ego.introduce("to_forget").success
    response = ego.call(RemoveConcept, f"{NODE}/remove_concept", RemoveConcept.Request(name="to_forget"))
    assert response.success, response.message
    assert "to_forget" not in ego.names()
    assert "to_forget" not in (ego.store / "store.json").read_text()


def test_rename_concept_keeps_its_memory(ego):
    before = ego.introduce("old_name").concept
    response = ego.call(RenameConcept, f"{NODE}/rename_concept",
                        RenameConcept.Request(old_name="old_name", new_name="new_name"))
    assert response.success, response.message
    assert response.concept.name == "new_name"
    assert (response.concept.tokens, list(response.concept.keywords)) == (before.tokens, list(before.keywords))
    names = ego.names()
    assert "new_name" in names and "old_name" not in names


def test_ask_about_a_given_image_answers_with_its_header(ego):
    image = raw_image(11, stamp=(42, 7), frame_id="hand_camera")
    response = ego.call(Ask, f"{NODE}/ask", Ask.Request(question="Where is base?", image=image, concepts=["base"]))
    assert response.success, response.message
    assert header_key(response.answer.header) == (42, 7, "hand_camera")
    assert response.answer.question == "Where is base?"
    assert set(response.answer.concepts) <= {"base"}


def test_caption_of_a_given_image_answers_with_its_header(ego):
    image = raw_image(12, stamp=(43, 8), frame_id="hand_camera")
    response = ego.call(Caption, f"{NODE}/caption", Caption.Request(image=image))
    assert response.success, response.message
    assert header_key(response.answer.header) == (43, 8, "hand_camera")
    assert response.answer.question == ""


def test_locate_on_a_given_image_gives_a_box_and_point_inside_it_with_its_header(ego):
    image = raw_image(13, stamp=(44, 9), frame_id="hand_camera")
    response = ego.call(Locate, f"{NODE}/locate", Locate.Request(name="base", image=image))
    assert response.success, response.message
    assert header_key(response.header) == (44, 9, "hand_camera")
    assert 0.0 <= response.probability <= 1.0 and response.found == (response.probability >= 0.5)
    loc = response.location
    assert loc.name == "base" and 0.0 <= loc.score <= 1.0
    assert 0 <= loc.x_min < loc.x_max <= image.width and 0 <= loc.y_min < loc.y_max <= image.height
    assert loc.x_min <= loc.x <= loc.x_max and loc.y_min <= loc.y <= loc.y_max


def test_list_concepts_describes_every_stored_concept(ego):
    response = ego.call(ListConcepts, f"{NODE}/list_concepts")
    assert response.success and response.message == ""
    base = {c.name: c for c in response.concepts}["base"]
    assert base.views == 1 and base.tokens >= 1 and base.created.sec > 0
    assert [c.name for c in response.concepts] == sorted(c.name for c in response.concepts)


# ---------------------------------------------------------------------------------------- streaming
def test_recognitions_carry_the_input_image_header(ego, camera):
    recognitions = wait_for_streaming(ego, camera)
    about_frames = [r for r in recognitions if header_key(r.header) in camera.headers]
    latest = about_frames[-1]
    assert "base" in latest.names
    assert len(latest.names) == len(latest.probabilities) == len(latest.present)
    assert all(0.0 <= p <= 1.0 for p in latest.probabilities)
    assert [p >= latest.threshold for p in latest.probabilities] == list(latest.present)
    # every recognition is about some published frame: none is stamped with another clock
    assert all(header_key(r.header) in FakeCamera.ALL_HEADERS for r in recognitions)


def test_standing_questions_are_answered_with_the_input_image_header(ego, camera):
    answers = ego.collect(Answer, f"{NODE}/answers")
    ego.wait(lambda: any(header_key(a.header) in camera.headers for a in answers), "a standing-question answer")
    answer = answers[-1]
    assert answer.question == QUESTION
    assert all(header_key(a.header) in FakeCamera.ALL_HEADERS for a in answers)


def test_ask_about_the_latest_frame_while_streaming(ego, camera):
    recognitions = wait_for_streaming(ego, camera)
    response = ego.call(Ask, f"{NODE}/ask", Ask.Request(question="What is in front of the robot?"))
    assert response.success, response.message
    assert header_key(response.answer.header) in camera.headers
    seen = len(recognitions)
    ego.wait(lambda: len(recognitions) > seen, "recognitions to go on after the call")


def test_debug_image_shows_frames_with_their_header_while_subscribed(ego, camera):
    images = ego.collect(Image, f"{NODE}/debug/image")
    ego.wait(lambda: any(header_key(i.header) in camera.headers for i in images), "a debug image")
    debug = next(i for i in images if header_key(i.header) in camera.headers)
    assert (debug.height, debug.width, debug.encoding) == (48, 64, "rgb8")


def test_debug_image_shows_a_fresh_concepts_reference_with_its_header(ego, camera):
    images = ego.collect(Image, f"{NODE}/debug/image")
    ego.wait(lambda: any(header_key(i.header) in camera.headers for i in images), "a debug image (subscribed)")
    reference = raw_image(21, stamp=(77, 5), frame_id="reference_view")
    response = ego.call(IntroduceConcept, f"{NODE}/introduce_concept",
                        IntroduceConcept.Request(name="shown", images=[reference]))
    assert response.success, response.message
    ego.wait(lambda: any(header_key(i.header) == (77, 5, "reference_view") for i in images),
             "the reference overlay")
    overlay = next(i for i in images if header_key(i.header) == (77, 5, "reference_view"))
    assert (overlay.height, overlay.width) == (reference.height, reference.width)
    assert bytes(overlay.data) != bytes(reference.data)  # patches highlighted, the rest dimmed


def test_camera_subscription_qos_can_be_overridden_by_parameters(ego):
    listed = ego.call(ListParameters, f"{NODE}/list_parameters",
                      ListParameters.Request(prefixes=["qos_overrides"], depth=0))
    names = set(listed.result.names)
    for policy in ("reliability", "depth", "history"):
        assert f"qos_overrides.{NS}/image.subscription.{policy}" in names


def test_diagnostics_report_rate_latency_concepts_memory_and_drops(ego, camera):
    wait_for_streaming(ego, camera)
    arrays = ego.collect(DiagnosticArray, "/diagnostics")

    def ours() -> dict[str, str] | None:
        for array_msg in reversed(arrays):
            for status in array_msg.status:
                if status.name == f"{NODE}: ego":
                    values = {v.key: v.value for v in status.values}
                    if int(values.get("frames_processed", 0)) > 0:
                        return values
        return None

    ego.wait(lambda: ours() is not None, "diagnostics after processed frames")
    values = ours()
    for name in ("processed_rate_hz", "latency_ms", "concepts", "frames_dropped", "frames_received",
                 "memory_concepts_mib"):
        assert name in values
    assert values["state"] == "active"
    assert int(values["concepts"]) >= 1
    assert float(values["latency_ms"]) > 0


# ------------------------------------------------------------------------------------------ bad inputs
def _image(encoding: str, height: int, width: int, step: int, size: int) -> Image:
    return Image(encoding=encoding, height=height, width=width, step=step, data=array.array("B", bytes(size)))


BAD_IMAGES = {
    "unknown encoding": (_image("weird42", 4, 4, 12, 48), "unsupported image encoding"),
    "zero size": (_image("rgb8", 0, 4, 12, 0), "zero size"),
    "wrong step": (_image("rgb8", 4, 4, 10, 40), "step 10 is smaller"),
    "data shorter than step x height": (_image("rgb8", 4, 4, 12, 40), "data holds 40 bytes"),
    "huge image": (_image("rgb8", 200, 200, 600, 120_000), "exceeds the limit"),
}


def _bad_requests():
    """(service type, service, request, expected text) for every kind of bad input."""
    cases = {}
    for what, (image, expected) in BAD_IMAGES.items():
        cases[f"introduce: {what}"] = (IntroduceConcept, "introduce_concept",
                                       IntroduceConcept.Request(name=f"bad_{len(cases)}", images=[image]), expected)
        cases[f"ask: {what}"] = (Ask, "ask", Ask.Request(question="What is this?", image=image), expected)
    cases["caption: unknown encoding"] = (Caption, "caption", Caption.Request(image=BAD_IMAGES["unknown encoding"][0]),
                                          "unsupported image encoding")
    cases["introduce: undecodable jpeg"] = (
        IntroduceConcept, "introduce_concept",
        IntroduceConcept.Request(name="bad_jpeg", compressed_images=[CompressedImage(format="jpeg", data=b"no jpeg")]),
        "could not decode")
    good = [raw_image(3)]
    cases["introduce: empty name"] = (IntroduceConcept, "introduce_concept",
                                      IntroduceConcept.Request(name="", images=good), "name is empty")
    cases["introduce: name with a path separator"] = (IntroduceConcept, "introduce_concept",
                                                      IntroduceConcept.Request(name="../evil", images=good),
                                                      "path separator")
    cases["introduce: duplicate name"] = (IntroduceConcept, "introduce_concept",
                                          IntroduceConcept.Request(name="base", images=good), "already exists")
    cases["remove: unknown concept"] = (RemoveConcept, "remove_concept", RemoveConcept.Request(name="nobody"),
                                        "unknown concept 'nobody'")
    cases["rename: unknown concept"] = (RenameConcept, "rename_concept",
                                        RenameConcept.Request(old_name="nobody", new_name="somebody"),
                                        "unknown concept 'nobody'")
    cases["rename: onto an existing name"] = (RenameConcept, "rename_concept",
                                              RenameConcept.Request(old_name="base", new_name="base2"),
                                              "that name exists")
    cases["rename: invalid new name"] = (RenameConcept, "rename_concept",
                                         RenameConcept.Request(old_name="base", new_name=" padded "), "whitespace")
    cases["ask: unknown concept"] = (Ask, "ask", Ask.Request(question="Where?", image=good[0], concepts=["nobody"]),
                                     "unknown concept 'nobody'")
    cases["ask: empty question"] = (Ask, "ask", Ask.Request(question="  ", image=good[0]), "question is empty")
    cases["locate: unknown concept"] = (Locate, "locate", Locate.Request(name="nobody", image=good[0]),
                                        "unknown concept 'nobody'")
    cases["locate: unknown encoding"] = (Locate, "locate",
                                         Locate.Request(name="base", image=BAD_IMAGES["unknown encoding"][0]),
                                         "unsupported image encoding")
    cases["caption: unknown concept"] = (Caption, "caption", Caption.Request(image=good[0], concepts=["nobody"]),
                                         "unknown concept 'nobody'")
    return cases


BAD_REQUESTS = _bad_requests()


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_request_fails_clearly_and_changes_nothing(ego, case):
    srv_type, service, request, expected = BAD_REQUESTS[case]
    names, files = ego.names(), store_snapshot(ego.store)
    response = ego.call(srv_type, f"{NODE}/{service}", request)
    assert not response.success
    assert expected in response.message
    assert ego.names() == names
    assert store_snapshot(ego.store) == files


# ------------------------------------------------------------------------------------------------ action
@dataclass
class Goal:
    handle: object
    feedback: list = field(default_factory=list)


def send_goal(ego: Ego, **fields) -> Goal:
    client = ActionClient(ego.node, IntroduceFromCamera, f"{NODE}/introduce_from_camera")
    assert client.wait_for_server(timeout_sec=TIMEOUT)
    goal = Goal(handle=None)
    sent = client.send_goal_async(IntroduceFromCamera.Goal(**fields),
                                  feedback_callback=lambda msg: goal.feedback.append(msg.feedback))
    ego.executor.spin_until_future_complete(sent, timeout_sec=TIMEOUT)
    assert sent.done() and sent.result().accepted
    goal.handle = sent.result()
    return goal


def result_of(ego: Ego, goal: Goal):
    future = goal.handle.get_result_async()
    ego.executor.spin_until_future_complete(future, timeout_sec=TIMEOUT)
    assert future.done(), f"no action result within {TIMEOUT} s; node log:\n{ego.log_tail()}"
    return future.result()


def cancel(ego: Ego, goal: Goal) -> None:
    future = goal.handle.cancel_goal_async()
    ego.executor.spin_until_future_complete(future, timeout_sec=TIMEOUT)
    assert future.done() and len(future.result().goals_canceling) == 1


def test_camera_introduction_reports_feedback_and_stores_the_concept(ego, camera):
    goal = send_goal(ego, name="cam_mug", num_frames=3, min_interval_s=0.0, notes="seen live")
    result = result_of(ego, goal)
    assert result.status == GoalStatus.STATUS_SUCCEEDED
    assert result.result.success, result.result.message
    assert result.result.concept.views == 3 and result.result.concept.notes == "seen live"
    ego.wait(lambda: len(goal.feedback) == 3, "three feedback messages")
    assert [f.frames_captured for f in goal.feedback] == [1, 2, 3]
    assert list(goal.feedback[-1].current_keywords) == list(result.result.concept.keywords)
    assert "cam_mug" in ego.names()


def test_camera_introduction_spaces_frames_by_their_stamps(ego, camera):
    recognitions = wait_for_streaming(ego, camera)
    goal = send_goal(ego, name="spaced", num_frames=2, min_interval_s=100.0)
    ego.wait(lambda: len(goal.feedback) == 1, "the first captured frame")
    # Frames 0.1 s apart (by stamp) keep arriving and being recognised, yet none may be captured ...
    seen = {header_key(r.header) for r in recognitions}
    ego.wait(lambda: len({header_key(r.header) for r in recognitions} - seen) >= 3, "three more recognised frames")
    assert len(goal.feedback) == 1
    # ... until a frame stamped past the interval arrives.
    camera.jump(100.0)
    result = result_of(ego, goal)
    assert result.result.success, result.result.message
    assert result.result.concept.views == 2


def test_cancelled_camera_introduction_stores_nothing(ego, camera):
    files = store_snapshot(ego.store)
    goal = send_goal(ego, name="cancelled_one", num_frames=3, min_interval_s=1000.0)
    ego.wait(lambda: len(goal.feedback) == 1, "the first captured frame")
    cancel(ego, goal)
    result = result_of(ego, goal)
    assert result.status == GoalStatus.STATUS_CANCELED
    assert not result.result.success and "nothing was stored" in result.result.message
    assert "cancelled_one" not in ego.names()
    assert store_snapshot(ego.store) == files


def test_introduction_during_a_camera_introduction_fails_as_busy(ego, camera):
    goal = send_goal(ego, name="slow_one", num_frames=2, min_interval_s=1000.0)
    ego.wait(lambda: len(goal.feedback) == 1, "the first captured frame")
    names, files = ego.names(), store_snapshot(ego.store)
    response = ego.introduce("impatient")
    assert not response.success and "busy" in response.message and "slow_one" in response.message
    assert (ego.names(), store_snapshot(ego.store)) == (names, files)
    cancel(ego, goal)
    result_of(ego, goal)


def test_questions_during_a_camera_introduction_are_answered(ego, camera):
    goal = send_goal(ego, name="another_slow_one", num_frames=2, min_interval_s=1000.0)
    ego.wait(lambda: len(goal.feedback) == 1, "the first captured frame")
    response = ego.call(Ask, f"{NODE}/ask", Ask.Request(question="Where is base?", image=raw_image(4)))
    assert response.success, response.message
    assert ego.call(ListConcepts, f"{NODE}/list_concepts").success
    cancel(ego, goal)
    assert result_of(ego, goal).status == GoalStatus.STATUS_CANCELED


def test_camera_introduction_of_an_existing_name_fails_without_replace(ego, camera):
    files = store_snapshot(ego.store)
    result = result_of(ego, send_goal(ego, name="base", num_frames=1))
    assert result.status == GoalStatus.STATUS_ABORTED
    assert not result.result.success and "already exists" in result.result.message
    assert store_snapshot(ego.store) == files


# -------------------------------------------------------------------------------------------- parameters
def set_parameter(ego: Ego, name: str, value, type_: Parameter.Type | None = None):
    parameter = Parameter(name, value=value) if type_ is None else Parameter(name, type_, value)
    request = SetParameters.Request(parameters=[parameter.to_parameter_msg()])
    return ego.call(SetParameters, f"{NODE}/set_parameters", request).results[0]


@pytest.mark.parametrize(("name", "value", "reason"), [
    ("threshold", 1.5, "threshold"),
    ("max_rate", 0.0, "max_rate"),
    ("max_fraction", 0.0, "max_fraction must be greater than 0"),
    ("concepts", ["ok", "not/ok"], "path separator"),
    ("standing_questions", ["  "], "empty questions"),
    ("model", "random:qwen2_5_vl", "read-only"),
    ("locate", "everywhere", "locate must be one of"),
])
def test_invalid_parameter_values_are_refused(ego, name, value, reason):
    result = set_parameter(ego, name, value)
    assert not result.successful
    assert reason in result.reason


def test_threshold_change_applies_to_the_next_recognitions(ego, camera):
    assert set_parameter(ego, "threshold", 0.875).successful
    try:
        recognitions = ego.collect(Recognitions, f"{NODE}/recognitions")
        ego.wait(lambda: any(r.threshold == 0.875 for r in recognitions), "recognitions with the new threshold")
        changed = next(r for r in recognitions if r.threshold == 0.875)
        assert list(changed.present) == [p >= 0.875 for p in changed.probabilities]
    finally:
        assert set_parameter(ego, "threshold", 0.5).successful


def test_recognitions_locate_every_scored_concept_when_asked(ego, camera):
    assert set_parameter(ego, "locate", "all").successful
    try:
        recognitions = ego.collect(Recognitions, f"{NODE}/recognitions")
        ego.wait(lambda: any(header_key(r.header) in camera.headers and r.locations for r in recognitions),
                 "recognitions with locations")
        latest = next(r for r in reversed(recognitions) if header_key(r.header) in camera.headers and r.locations)
        assert [loc.name for loc in latest.locations] == list(latest.names)
        for loc in latest.locations:  # the camera's frames are 64x48
            assert 0 <= loc.x_min < loc.x_max <= 64 and 0 <= loc.y_min < loc.y_max <= 48
            assert loc.x_min <= loc.x <= loc.x_max and loc.y_min <= loc.y <= loc.y_max
    finally:
        assert set_parameter(ego, "locate", "present").successful


def test_locations_are_left_out_when_locate_is_off(ego, camera):
    assert set_parameter(ego, "locate", "off").successful
    assert set_parameter(ego, "threshold", 0.0).successful  # every concept present
    try:
        recognitions = ego.collect(Recognitions, f"{NODE}/recognitions")
        ego.wait(lambda: any(r.threshold == 0.0 and header_key(r.header) in camera.headers for r in recognitions),
                 "recognitions after the change")
        latest = next(r for r in reversed(recognitions) if r.threshold == 0.0)
        assert all(latest.present) and list(latest.locations) == []
    finally:
        assert set_parameter(ego, "threshold", 0.5).successful
        assert set_parameter(ego, "locate", "present").successful


def test_concepts_parameter_restricts_recognition(ego, camera):
    assert set_parameter(ego, "concepts", ["base"]).successful
    try:
        recognitions = ego.collect(Recognitions, f"{NODE}/recognitions")
        ego.wait(lambda: any(header_key(r.header) in camera.headers for r in recognitions), "recognitions")
        ego.wait(lambda: list(recognitions[-1].names) == ["base"], "recognitions of 'base' alone")
    finally:
        assert set_parameter(ego, "concepts", [], Parameter.Type.STRING_ARRAY).successful


def test_node_process_survived_every_request_of_this_module(ego):
    assert ego.proc.poll() is None
    assert rclpy.ok(context=ego.node.context)
