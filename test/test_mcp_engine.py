"""`ego-ros mcp` in engine mode on the embedded toy model, driven over stdio by the SDK's own client
(slow: one server process for the module), and fast checks of its argument and image handling.

One server serves the module (tests use their own concept names); the reference and query pictures
are toy-world scenes rendered into files (a personal instance the toy model never saw in training).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from mcp_env import McpClient, image_from_content, mcp_client, png_base64, server_env
from PIL import Image

TOOLS = {"list_concepts", "introduce_concept", "forget_concept", "rename_concept", "what_do_you_see", "locate",
         "ask", "caption", "latest_frame"}


@dataclass
class Scenes:
    references: list[str]  # files: two views of the instance
    with_it: str  # a query scene that holds it
    without_it: str  # a query scene that holds neither it nor its near-duplicate


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Scenes:
    from ego_ros.toy import world

    tmp = tmp_path_factory.mktemp("scenes")
    rng = np.random.default_rng(7)
    mine = world.sample_instance(rng, held_out=True)
    twin = world.near_duplicates(mine)[0]

    def save(name: str, rgb) -> str:
        path = tmp / name
        Image.fromarray(rgb).save(path)
        return str(path)

    refs = [save(f"ref{i}.png", world.reference_scene(mine, rng).image) for i in range(2)]
    return Scenes(refs, save("with.png", world.query_scene(rng, include=[mine]).image),
                  save("without.png", world.query_scene(rng, exclude=[mine, twin]).image))


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mcp_store")


@pytest.fixture(scope="module")
def mcp(store, tmp_path_factory) -> Iterator[McpClient]:
    log = tmp_path_factory.mktemp("mcp_log") / "server.log"
    with mcp_client(["--model", "toy", "--store", str(store)], server_env(), log) as client:
        yield client


@pytest.mark.slow
def test_lists_every_tool_with_a_description_and_a_json_schema(mcp):
    tools = mcp.tools()
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert tool.description and "\n" not in tool.description.strip(), tool.name
        assert tool.input_schema["type"] == "object", tool.name
    assert tools["introduce_concept"].input_schema["required"] == ["name"]


@pytest.mark.slow
def test_introduce_from_files_reports_progress_per_view_and_stores_the_concept(mcp, scenes, store):
    mcp.progress.clear()
    out = mcp.ok("introduce_concept", {"name": "kona", "image_paths": scenes.references})
    concept = out["introduced"]
    assert concept["name"] == "kona" and concept["views"] == 2 and concept["tokens"] > 0
    assert concept["keywords"]
    assert [(p, t) for p, t, _ in mcp.progress] == [(0, 2), (1, 2), (2, 2)]
    assert "kona" in [c["name"] for c in mcp.ok("list_concepts")["concepts"]]
    index = json.loads((store / "store.json").read_text())
    assert "kona" in index["concepts"], "the concept is written to the store directory"


@pytest.mark.slow
def test_the_server_instructions_name_the_engines_keyword_attention_layers_and_why(mcp):
    from ego_ros.core.engine import EgoEngine

    with EgoEngine.load("toy") as engine:  # the same model, no store: the same layer choice
        choice = engine.layer_choice
    assert "engine mode" in mcp.instructions
    assert choice.message() in mcp.instructions


@pytest.mark.slow
def test_what_do_you_see_scores_the_concept_higher_in_a_scene_that_holds_it(mcp, scenes):
    mcp.ok("introduce_concept", {"name": "seen", "image_paths": scenes.references})
    with_it = mcp.ok("what_do_you_see", {"image_path": scenes.with_it, "concepts": ["seen"]})
    without = mcp.ok("what_do_you_see", {"image_base64": png_base64(Image.open(scenes.without_it))})
    p_with = {s["name"]: s["probability"] for s in with_it["scores"]}["seen"]
    p_without = {s["name"]: s["probability"] for s in without["scores"]}["seen"]
    assert 0.0 <= p_without < p_with <= 1.0
    assert with_it["present"] == [s["name"] for s in with_it["scores"] if s["present"]]
    assert [s["name"] for s in with_it["scores"]] == ["seen"], "the concepts argument restricts the scoring"


@pytest.mark.slow
def test_locate_gives_the_engines_box_and_point_in_pixels_of_the_given_image(mcp, scenes, store):
    from ego_ros.core.engine import EgoEngine

    mcp.ok("introduce_concept", {"name": "where", "image_paths": scenes.references})
    out = mcp.ok("locate", {"name": "where", "image_path": scenes.with_it})
    with EgoEngine.load("toy", store_dir=store, read_only_store=True) as engine:  # beside the server
        rec = engine.locate(Image.open(scenes.with_it), "where")
    assert out["name"] == "where" and out["found"] == rec.present
    assert out["probability"] == pytest.approx(rec.probability, abs=1e-4)
    assert [out["box"][k] for k in ("x_min", "y_min", "x_max", "y_max")] == pytest.approx(rec.location.box, abs=0.05)
    assert (out["point"]["x"], out["point"]["y"]) == pytest.approx(rec.location.point, abs=0.05)
    assert out["image"] == dict(zip(("width", "height"), Image.open(scenes.with_it).size))
    assert out["frame"]["source"] == "given image"


@pytest.mark.slow
def test_locate_without_an_image_searches_the_latest_image_given(mcp, scenes):
    mcp.ok("introduce_concept", {"name": "later", "image_paths": scenes.references})
    given = mcp.ok("locate", {"name": "later", "image_path": scenes.with_it})
    latest = mcp.ok("locate", {"name": "later"})
    assert latest["frame"]["source"] == "latest image given"
    assert {k: v for k, v in latest.items() if k != "frame"} == {k: v for k, v in given.items() if k != "frame"}


@pytest.mark.slow
def test_ask_answers_about_the_latest_image_with_the_concepts_in_context(mcp, scenes):
    mcp.ok("introduce_concept", {"name": "asked", "image_paths": scenes.references})
    mcp.ok("what_do_you_see", {"image_path": scenes.with_it})  # becomes the latest frame
    out = mcp.ok("ask", {"question": "What colour is asked?", "concepts": ["asked"], "max_new_tokens": 8})
    assert out["question"] == "What colour is asked?"
    assert isinstance(out["answer"], str) and out["answer"].strip()
    assert set(out["concepts"]) <= {"asked"}


@pytest.mark.slow
def test_caption_describes_a_given_image(mcp, scenes):
    out = mcp.ok("caption", {"image_path": scenes.with_it, "max_new_tokens": 12})
    assert out["caption"].strip()


@pytest.mark.slow
def test_latest_frame_is_the_last_given_image_downscaled(mcp):
    picture = Image.fromarray(np.random.default_rng(3).integers(0, 256, (100, 200, 3), dtype=np.uint8))
    mcp.ok("caption", {"image_base64": png_base64(picture), "max_new_tokens": 2})
    result = mcp.call("latest_frame", {"max_side": 50, "format": "png"})
    assert not result.is_error
    shown = image_from_content(result)
    assert shown.size == (50, 25) and shown.format == "PNG"


@pytest.mark.slow
def test_forget_removes_the_concept(mcp, scenes):
    mcp.ok("introduce_concept", {"name": "gone", "image_paths": scenes.references[:1]})
    assert mcp.ok("forget_concept", {"name": "gone"}) == {"forgotten": "gone"}
    assert "gone" not in [c["name"] for c in mcp.ok("list_concepts")["concepts"]]
    assert "unknown concept 'gone'" in mcp.error("forget_concept", {"name": "gone"})


@pytest.mark.slow
def test_rename_keeps_the_concept_under_its_new_name(mcp, scenes):
    before = mcp.ok("introduce_concept", {"name": "old", "image_paths": scenes.references[:1]})["introduced"]
    out = mcp.ok("rename_concept", {"old_name": "old", "new_name": "new"})
    assert out["concept"] == {**before, "name": "new"}
    names = [c["name"] for c in mcp.ok("list_concepts")["concepts"]]
    assert "new" in names and "old" not in names


@pytest.mark.slow
def test_an_existing_concept_is_not_overwritten_without_replace(mcp, scenes):
    mcp.ok("introduce_concept", {"name": "twice", "image_paths": scenes.references[:1]})
    assert "already exists" in mcp.error("introduce_concept", {"name": "twice", "image_paths": scenes.references})
    assert mcp.ok("introduce_concept", {"name": "twice", "image_paths": scenes.references,
                                        "replace": True})["introduced"]["views"] == 2


@pytest.mark.slow
@pytest.mark.parametrize(("tool", "arguments", "message"), [
    ("forget_concept", {"name": "nobody"}, "unknown concept 'nobody'"),
    ("rename_concept", {"old_name": "nobody", "new_name": "x"}, "unknown concept 'nobody'"),
    ("introduce_concept", {"name": ""}, "concept name is empty"),
    ("introduce_concept", {"name": "a/b"}, "path separator"),
    ("ask", {"question": "  "}, "question is empty"),
    ("what_do_you_see", {"image_base64": "not base64!"}, "not valid base64"),
    ("what_do_you_see", {"image_base64": "aGVsbG8="}, "not a decodable image"),
    ("what_do_you_see", {"image_path": "/nonexistent/frame.png"}, "no such file"),
    ("what_do_you_see", {"image_path": "/a.png", "image_base64": "aGVsbG8="}, "not both"),
    ("what_do_you_see", {"concepts": ["nobody"]}, "unknown concept 'nobody'"),
    ("locate", {"name": "nobody"}, "unknown concept 'nobody'"),
    ("locate", {"name": "  "}, "concept name is empty"),
    ("locate", {"name": "x", "image_path": "/nonexistent/frame.png"}, "no such file"),
])
def test_bad_input_is_a_tool_error_with_a_clear_message(mcp, scenes, tool, arguments, message):
    mcp.ok("what_do_you_see", {"image_path": scenes.with_it})  # a latest frame exists: only the input is bad
    error = mcp.error(tool, arguments)
    assert message in error
    assert "Traceback" not in error


@pytest.mark.slow
def test_a_file_that_is_not_an_image_is_refused(mcp, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not an image")
    assert "not a decodable image" in mcp.error("introduce_concept", {"name": "txt", "image_paths": [str(path)]})
    assert "txt" not in [c["name"] for c in mcp.ok("list_concepts")["concepts"]]


@pytest.mark.slow
def test_read_only_server_has_no_tools_that_change_memory_and_no_frame_before_an_image(store, tmp_path):
    with mcp_client(["--model", "toy", "--store", str(store), "--read-only"], server_env(),
                    tmp_path / "server.log") as client:
        assert set(client.tools()) == TOOLS - {"introduce_concept", "forget_concept", "rename_concept"}
        assert "no frame yet" in client.error("latest_frame")
        assert "no frame yet" in client.error("what_do_you_see")
        assert "unknown tool" in client.error("forget_concept", {"name": "kona"}).lower()


# ----- fast checks of the argument and image handling (no server) --------------------------------------
def test_a_data_url_is_accepted_as_base64():
    from ego_ros.agents.images import decode_base64

    picture = decode_base64("data:image/png;base64," + png_base64(np.zeros((8, 12, 3), dtype=np.uint8)))
    assert picture.size == (12, 8) and picture.mode == "RGB"


def test_an_image_over_the_pixel_limit_is_refused_before_decoding(monkeypatch):
    from ego_ros.agents import images
    from ego_ros.agents.errors import AgentError

    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(AgentError, match="20x20 pixels; the limit is 100"):
        images.decode_base64(png_base64(np.zeros((20, 20, 3), dtype=np.uint8)))


def test_inline_images_must_be_png_or_jpeg():
    import base64

    from ego_ros.agents.errors import AgentError
    from ego_ros.agents.images import decode_base64

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="BMP")
    with pytest.raises(AgentError, match="PNG or JPEG expected"):
        decode_base64(base64.b64encode(buffer.getvalue()).decode())


def test_too_many_images_are_refused_before_any_is_read():
    from ego_ros.agents.errors import AgentError
    from ego_ros.agents.images import gather_images

    with pytest.raises(AgentError, match="3 images; at most 2"):
        gather_images(["/nonexistent/a.png", "/nonexistent/b.png"], ["x"], True, max_count=2)


def test_content_images_keep_their_aspect_ratio_when_downscaled():
    from ego_ros.agents.images import to_content_bytes

    data, size = to_content_bytes(Image.new("RGB", (640, 480)), max_side=320, fmt="jpeg")
    assert size == (320, 240) and Image.open(io.BytesIO(data)).format == "JPEG"


def test_engine_and_ros_options_do_not_mix():
    from ego_ros.cli import main

    assert main(["mcp", "--model", "toy", "--node", "/robot/ego_node"]) == 2
    assert main(["mcp", "--store", "/tmp/x"]) == 2
    assert main(["mcp", "--model", "toy", "--token-file", "/tmp/token"]) == 2


@pytest.mark.slow
def test_read_only_server_runs_beside_a_writer_on_the_same_store(tmp_path):
    own = tmp_path / "store"
    with mcp_client(["--model", "toy", "--store", str(own)], server_env(), tmp_path / "writer.log"):
        with mcp_client(["--model", "toy", "--store", str(own), "--read-only"], server_env(),
                        tmp_path / "reader.log") as reader:
            assert "introduce_concept" not in reader.tools()
            assert "list_concepts" in reader.tools()
