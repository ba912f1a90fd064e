"""The Ego node's building blocks without a ROS graph: parameters, the concepts file, message
conversions, debug overlays and the frame buffer."""

from __future__ import annotations

import math
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch

from ego_ros.core.engine import Answer as EngineAnswer
from ego_ros.core.engine import Recognition
from ego_ros.core.errors import BusyError, InvalidImageError, UnknownConceptError
from ego_ros.core.localise import Location
from ego_ros.core.memory import ConceptMemory, MemoryView
from ego_ros.ros.concepts_file import ConceptsFileError, load_concepts_file
from ego_ros.ros.image_conversion import ImageConversionError
from ego_ros.ros.overlay import draw_memory_view, draw_recognitions
from ego_ros.ros.params import SPECS, STRING_ARRAY, ParameterValueError, Settings, model_slug, validate


# ------------------------------------------------------------------------------------------- parameters
def test_every_parameter_has_a_setting_and_the_same_default():
    settings = Settings()
    assert {s.name for s in SPECS} == {f.name for f in fields(Settings)}
    for spec in SPECS:
        expected = [] if spec.default == STRING_ARRAY else spec.default
        assert getattr(settings, spec.name) == expected, spec.name


def test_every_parameter_has_a_description():
    assert all(len(spec.description) > 20 for spec in SPECS)


def test_settings_from_unset_values_are_the_defaults():
    assert Settings.from_values({}) == Settings()


@pytest.mark.parametrize(("name", "value", "reason"), [
    ("threshold", 1.5, "threshold must be a number in [0.0, 1.0]"),
    ("threshold", float("nan"), "threshold"),
    ("max_rate", 0.0, "max_rate"),
    ("max_fraction", 0.0, "greater than 0"),
    ("max_tokens", -1, "max_tokens"),
    ("frame_history", 0, "frame_history"),
    ("max_tiles", -1, "max_tiles must be an integer in [0, 64]"),
    ("device", "gpu", "device must be auto, cpu, cuda or cuda:N"),
    ("dtype", "int8", "dtype must be one of"),
    ("image_transport", "theora", "raw or compressed"),
    ("model", "  ", "model must not be empty"),
    ("concepts", ["fine", "not/fine"], "path separator"),
    ("standing_questions", ["Where is it?", " "], "empty questions"),
])
def test_validate_refuses_bad_values_with_a_reason(name, value, reason):
    with pytest.raises(ParameterValueError) as info:
        validate(name, value)
    assert reason in str(info.value)


@pytest.mark.parametrize(("name", "value"), [
    ("threshold", 0.0), ("threshold", 1.0), ("device", "cuda:1"), ("device", "cpu"), ("dtype", "bfloat16"),
    ("image_transport", "compressed"), ("concepts", []), ("concepts", ["Anna's mug", "猫"]), ("max_tokens", 0),
])
def test_validate_accepts_good_values(name, value):
    validate(name, value)


def test_settings_from_values_reports_the_first_bad_value():
    with pytest.raises(ParameterValueError, match="image_transport"):
        Settings.from_values({"image_transport": "h264"})


@pytest.mark.parametrize(("model", "folder"), [
    ("toy", "toy"), ("random:llava", "random_llava"), ("Qwen/Qwen2.5-VL-7B-Instruct", "Qwen_Qwen2.5-VL-7B-Instruct"),
])
def test_store_directory_defaults_to_one_folder_per_model(model, folder):
    assert Settings(model=model).store_directory() == Path.home() / ".ego_ros" / "stores" / folder
    assert model_slug(model) == folder


def test_memory_dir_overrides_the_default_store_directory(tmp_path):
    assert Settings(memory_dir=str(tmp_path)).store_directory() == tmp_path


def test_auto_device_is_cuda_only_when_available():
    assert Settings(device="auto").torch_device(cuda_available=True) == "cuda:0"
    assert Settings(device="auto").torch_device(cuda_available=False) == "cpu"
    assert Settings(device="cuda:1").torch_device(cuda_available=True) == "cuda:1"


def test_max_tokens_zero_means_use_max_fraction():
    assert Settings(max_tokens=0, max_fraction=0.3).introduce_fields() == {
        "dynamic_k": True, "max_tokens": None, "max_fraction": 0.3}
    assert Settings(max_tokens=12).introduce_fields()["max_tokens"] == 12


# ---------------------------------------------------------------------------------------- concepts file
def test_concepts_file_accepts_the_three_forms_and_resolves_paths_against_its_folder(tmp_path):
    path = tmp_path / "concepts.yaml"
    path.write_text("mug:\n  images: [a.png, sub/b.png]\n  notes: blue\nkona: [k.png]\nanna: /abs/anna.jpg\n")
    specs = load_concepts_file(path)
    assert [(s.name, s.images, s.notes) for s in specs] == [
        ("mug", [tmp_path / "a.png", tmp_path / "sub" / "b.png"], "blue"),
        ("kona", [tmp_path / "k.png"], ""),
        ("anna", [Path("/abs/anna.jpg")], ""),
    ]


def test_empty_concepts_file_holds_no_concepts(tmp_path):
    path = tmp_path / "concepts.yaml"
    path.write_text("# nothing yet\n")
    assert load_concepts_file(path) == []


@pytest.mark.parametrize(("text", "reason"), [
    ("mug: [a.png\n", "not valid YAML"),
    ("- a.png\n- b.png\n", "must map concept names to images"),
    ("mug: []\n", "needs one or more image paths"),
    ("mug:\n  notes: only notes\n", "needs one or more image paths"),
    ("mug:\n  images: [a.png]\n  colour: blue\n", "unknown keys"),
    ("'a/b': a.png\n", "path separator"),
    ("mug:\n  images: [a.png]\n  notes: [1, 2]\n", "notes of 'mug' must be text"),
])
def test_malformed_concepts_file_is_refused_with_a_reason(tmp_path, text, reason):
    path = tmp_path / "concepts.yaml"
    path.write_text(text)
    with pytest.raises(ConceptsFileError) as info:
        load_concepts_file(path)
    assert reason in str(info.value)


def test_missing_concepts_file_is_refused_with_its_path(tmp_path):
    with pytest.raises(ConceptsFileError, match="cannot read concepts file"):
        load_concepts_file(tmp_path / "nope.yaml")


# ---------------------------------------------------------------------------------------------- overlays
def _view(indices: list[int], grid=(4, 4), size=(64, 48)) -> MemoryView:
    return MemoryView(embeds=torch.zeros(len(indices), 8), indices=torch.tensor(indices), grid=grid,
                      box=(0.0, 0.0, float(size[0]), float(size[1])), image_size=size, keywords=["mug"],
                      description="mug", alpha=None, k_c=len(indices), importance=torch.zeros(grid[0] * grid[1]))


def test_memory_view_overlay_keeps_selected_patches_and_dims_the_rest():
    rgb = np.full((48, 64, 3), 200, dtype=np.uint8)
    view = _view([15])  # bottom-right cell of a 4x4 grid: x 48-64, y 36-48
    out = draw_memory_view(rgb, view.token_boxes(), view.image_size, "mug")
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert (out[42, 56] == 200).all()  # inside the kept patch
    assert (out[30, 20] < 100).all()  # outside it, away from the title panel
    assert (rgb == 200).all()  # the input is not drawn on


def test_memory_view_overlay_rescales_boxes_to_the_drawn_image():
    view = _view([15])
    out = draw_memory_view(np.full((96, 128, 3), 200, dtype=np.uint8), view.token_boxes(), view.image_size, "mug")
    assert (out[84, 112] == 200).all() and (out[60, 40] < 100).all()


def test_recognition_overlay_keeps_the_frame_size_and_leaves_the_input_untouched():
    rgb = np.full((48, 64, 3), 128, dtype=np.uint8)
    out = draw_recognitions(rgb, [Recognition("mug", 0.9, True), Recognition("cat", 0.1, False)])
    assert out.shape == rgb.shape and not np.array_equal(out, rgb)
    assert (rgb == 128).all()


def test_recognition_overlay_draws_a_located_concepts_box_where_it_is():
    rgb = np.full((96, 128, 3), 128, dtype=np.uint8)
    loc = Location("mug", box=(80.0, 40.0, 120.0, 90.0), point=(100.0, 65.0), score=0.8, heatmap=np.zeros((2, 2)))
    out = draw_recognitions(rgb, [Recognition("mug", 0.9, True, location=loc)])
    assert not (out[40, 100] == 128).all() and not (out[65, 80] == 128).all()  # top and left edges drawn
    assert (out[75, 90] == 128).all()  # inside the box, off the peak's cross: untouched
    assert (out[20, 125] == 128).all()  # outside the box and the text panel


def test_recognition_overlay_labels_a_concept_with_a_3d_point_with_its_depth():
    from ego_ros.ros.depth import Position

    rgb = np.full((96, 128, 3), 128, dtype=np.uint8)
    loc = Location("mug", box=(10.0, 60.0, 40.0, 90.0), point=(25.0, 75.0), score=0.8, heatmap=np.zeros((2, 2)))
    recs = [Recognition("mug", 0.9, True, location=loc)]
    plain = draw_recognitions(rgb, recs, {"mug": Position(None, "no depth frame received")})
    with_depth = draw_recognitions(rgb, recs, {"mug": Position((0.1, 0.2, 1.25))})
    assert np.array_equal(plain, draw_recognitions(rgb, recs))  # no point: the 2-D label
    changed = np.argwhere((plain != with_depth).any(axis=2))
    assert len(changed) and changed[:, 0].max() < 60 and changed[:, 1].min() > 20  # above the box, after "mug"


# ------------------------------------------------------------------------------ message conversions (ROS)
ros = pytest.mark.ros


@ros
def test_only_an_all_empty_image_means_the_latest_frame():
    from sensor_msgs.msg import Image

    from ego_ros.ros.conversions import is_empty_image

    assert is_empty_image(Image())
    assert not is_empty_image(Image(width=4))
    assert not is_empty_image(Image(encoding="rgb8"))


@ros
def test_concept_description_reports_an_unusable_area_answer_as_nan():
    from ego_ros.ros.conversions import concept_description

    memory = ConceptMemory(name="mug", views=[_view([1, 2]), _view([3])], fingerprint="abc", model="toy",
                           notes="blue", created=1_700_000_000.25)
    memory.views[1].alpha = 12.5
    d = concept_description(memory)
    assert (d.name, d.views, d.tokens, d.notes, d.model) == ("mug", 2, 3, "blue", "toy@abc")
    assert math.isnan(d.area_percent[0]) and d.area_percent[1] == 12.5
    assert (d.created.sec, d.created.nanosec) == (1_700_000_000, 250_000_000)
    assert list(d.keywords) == ["mug"]


@ros
def test_recognitions_leave_out_concepts_the_similarity_filter_skipped():
    from std_msgs.msg import Header

    from ego_ros.ros.conversions import recognitions_msg

    header = Header(frame_id="cam")
    header.stamp.sec, header.stamp.nanosec = 5, 6
    msg = recognitions_msg(header, [Recognition("a", 0.75, True), Recognition("b", 0.0, False, considered=False)],
                           0.5, 0.25)
    assert list(msg.names) == ["a"] and list(msg.probabilities) == [0.75] and list(msg.present) == [True]
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == (5, 6, "cam")
    assert (msg.threshold, msg.latency_s) == (0.5, 0.25)
    assert list(msg.locations) == []


@ros
def test_recognitions_carry_each_located_concepts_box_point_and_score_in_pixels():
    from std_msgs.msg import Header

    from ego_ros.ros.conversions import recognitions_msg

    loc = Location("a", box=(8.0, 4.0, 24.0, 20.0), point=(16.0, 12.0), score=0.625, heatmap=np.zeros((2, 2)))
    msg = recognitions_msg(Header(), [Recognition("a", 0.75, True, location=loc), Recognition("b", 0.25, False)],
                           0.5, 0.25)
    (got,) = msg.locations
    assert got.name == "a" and (got.x_min, got.y_min, got.x_max, got.y_max) == (8.0, 4.0, 24.0, 20.0)
    assert (got.x, got.y, got.score) == (16.0, 12.0, 0.625)


@ros
def test_answer_message_copies_the_header_and_the_answer():
    from std_msgs.msg import Header

    from ego_ros.ros.conversions import answer_msg

    msg = answer_msg(Header(frame_id="cam"), "Where?", EngineAnswer(text="on the desk", concepts=["mug"], seconds=0.5))
    assert (msg.header.frame_id, msg.question, msg.answer, list(msg.concepts), msg.latency_s) == (
        "cam", "Where?", "on the desk", ["mug"], 0.5)


@ros
@pytest.mark.parametrize(("exc", "message"), [
    (UnknownConceptError("unknown concept 'x' (known: a)"), "unknown concept 'x' (known: a)"),
    (BusyError("busy: introducing 'a'"), "busy: introducing 'a'"),
    (InvalidImageError("images[0]: bad"), "images[0]: bad"),
    (ImageConversionError("step 3 is smaller"), "invalid image: step 3 is smaller"),
    (ValueError("question is empty"), "invalid request: question is empty"),
    (RuntimeError("boom"), "internal error (RuntimeError: boom); see the node's log"),
])
def test_error_messages_pass_user_errors_on_and_name_internal_ones(exc, message):
    from ego_ros.ros.conversions import error_message, is_user_error

    assert error_message(exc) == message
    assert is_user_error(exc) == (not isinstance(exc, RuntimeError))


# ----------------------------------------------------------------------------------- frame buffer (ROS)
@ros
def test_frame_buffer_counts_frames_replaced_before_the_worker_took_them():
    import threading

    from ego_ros.ros.frames import FrameBuffer

    frames = FrameBuffer(history=3)
    stop = threading.Event()
    frames.put("f1")
    assert frames.take_newest(stop, timeout=0) == "f1"
    frames.put("f2")
    frames.put("f3")  # f2 was never taken
    frames.put("f4")  # nor was f3
    assert frames.take_newest(stop, timeout=0) == "f4"
    assert frames.take_newest(stop, timeout=0) is None  # nothing new
    assert (frames.received, frames.dropped) == (4, 2)


@ros
def test_frame_buffer_keeps_the_latest_frames_oldest_first():
    from ego_ros.ros.frames import FrameBuffer

    frames = FrameBuffer(history=3)
    for name in ("f1", "f2", "f3", "f4"):
        frames.put(name)
    assert frames.latest(2) == ["f3", "f4"]
    assert frames.latest(10) == ["f2", "f3", "f4"]
    frames.clear()
    assert frames.latest(1) == [] and frames.newest() is None
