"""The `ego-ros` command line: JSON outputs and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import random_image

from ego_ros.cli import main


@pytest.fixture
def pictures(tmp_path):
    paths = []
    for i in range(3):
        p = tmp_path / f"{i}.png"
        random_image(i).save(p)
        paths.append(str(p))
    return paths


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_introduce_then_recognize_prints_json(tmp_path, pictures, capsys):
    store = str(tmp_path / "store")
    code, out, _ = _run(capsys, "introduce", "--model", "random:llava", "--store", store, "--name", "kona",
                        pictures[0], pictures[1])
    assert code == 0
    intro = json.loads(out)
    assert intro["name"] == "kona" and set(intro) >= {"keywords", "alpha", "k_c", "num_tokens", "seconds"}
    assert len(intro["k_c"]) == 2
    code, out, _ = _run(capsys, "introduce", "--model", "random:llava", "--store", store, "--name", "milo",
                        pictures[1])
    code, out, _ = _run(capsys, "recognize", "--model", "random:llava", "--store", store, pictures[2])
    assert code == 0
    rec = json.loads(out)
    assert set(rec["probabilities"]) == {"kona", "milo"}
    assert all(0.0 <= p <= 1.0 for p in rec["probabilities"].values())


def test_concepts_list_rename_remove(tmp_path, pictures, capsys):
    store = str(tmp_path / "store")
    _run(capsys, "introduce", "--model", "random:llava", "--store", store, "--name", "kona", pictures[0])
    code, out, _ = _run(capsys, "concepts", "--model", "random:llava", "--store", store, "rename", "kona", "Kona")
    assert code == 0
    code, out, _ = _run(capsys, "concepts", "--model", "random:llava", "--store", store, "list")
    assert [c["name"] for c in json.loads(out)["concepts"]] == ["Kona"]
    code, out, _ = _run(capsys, "concepts", "--model", "random:llava", "--store", store, "remove", "Kona")
    code, out, _ = _run(capsys, "concepts", "--model", "random:llava", "--store", store, "list")
    assert json.loads(out)["concepts"] == []


def test_ask_and_caption_print_answers(tmp_path, pictures, capsys):
    store = str(tmp_path / "store")
    _run(capsys, "introduce", "--model", "random:llava", "--store", store, "--name", "kona", pictures[0])
    code, out, _ = _run(capsys, "ask", "--model", "random:llava", "--store", store, pictures[1], "-q",
                        "Where is kona?", "--max-new-tokens", "3")
    assert code == 0 and json.loads(out)["concepts"] == ["kona"]
    code, out, _ = _run(capsys, "caption", "--model", "random:llava", "--store", store, pictures[1],
                        "--max-new-tokens", "3")
    assert code == 0 and "caption" in json.loads(out)


@pytest.mark.parametrize("argv,message", [
    (["recognize", "--model", "random:llava", "nope.png"], "not found"),
    (["introduce", "--model", "random:llava", "--name", "a/b", "X"], "path separator"),
    (["recognize", "--model", "random:nosuch", "X"], "unknown family"),
    (["recognize", "--model", "random:llava", "--device", "cuda:7", "X"], "CUDA"),
])
def test_bad_input_exits_2_with_a_message(tmp_path, capsys, argv, message, monkeypatch):
    monkeypatch.setenv("EGO_ROS_HOME", str(tmp_path))
    code, out, err = _run(capsys, *argv)
    assert code == 2 and message in err and out == ""


def test_unknown_concept_exits_2(tmp_path, pictures, capsys):
    code, _, err = _run(capsys, "recognize", "--model", "random:llava", "--store", str(tmp_path / "s"),
                        pictures[0], "--concepts", "rex")
    assert code == 2 and "unknown concept 'rex'" in err


def test_console_entry_point_runs(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ego_ros.cli", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and "introduce" in proc.stdout and "recognize" in proc.stdout


def test_locate_prints_the_box_and_point_in_pixels(tmp_path, pictures, capsys):
    store = str(tmp_path / "store")
    assert _run(capsys, "introduce", "--model", "random:llava", "--store", store, "--name", "kona",
                pictures[0])[0] == 0
    code, out, _ = _run(capsys, "locate", "--model", "random:llava", "--store", store, "--name", "kona",
                        pictures[1])
    assert code == 0
    loc = json.loads(out)
    assert loc["name"] == "kona" and isinstance(loc["found"], bool) and 0 <= loc["probability"] <= 1
    x0, y0, x1, y1 = loc["box"]
    assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
    assert x0 <= loc["point"][0] <= x1 and y0 <= loc["point"][1] <= y1


def test_locate_of_an_unknown_concept_exits_2(tmp_path, pictures, capsys):
    store = str(tmp_path / "store")
    _run(capsys, "introduce", "--model", "random:llava", "--store", store, "--name", "kona", pictures[0])
    code, _, err = _run(capsys, "locate", "--model", "random:llava", "--store", store, "--name", "nobody",
                        pictures[1])
    assert code == 2 and "nobody" in err


def test_introduce_and_recognize_with_a_tile_budget_on_a_tiling_family(tmp_path, capsys):
    store = str(tmp_path / "store")
    frame = tmp_path / "frame.png"
    random_image(5, (320, 160)).save(frame)  # 2:1, cut into 2 tiles + a thumbnail
    code, out, _ = _run(capsys, "introduce", "--model", "random:internvl", "--max-tiles", "2", "--store", store,
                        "--name", "kona", str(frame))
    assert code == 0 and json.loads(out)["num_tokens"] >= 1
    code, out, _ = _run(capsys, "locate", "--model", "random:internvl", "--max-tiles", "2", "--store", store,
                        "--name", "kona", "--heatmap", str(frame))
    assert code == 0
    x0, y0, x1, y1 = json.loads(out)["box"]
    assert 0 <= x0 < x1 <= 320 and 0 <= y0 < y1 <= 160
    heat = json.loads(out)["heatmap"]
    assert (len(heat), len(heat[0])) == (4, 8)  # the two tiles' 4 x 4 grids side by side


def test_a_tile_budget_for_a_family_that_does_not_tile_exits_2(tmp_path, capsys):
    code, out, err = _run(capsys, "recognize", "--model", "random:llava", "--max-tiles", "4", "--store",
                          str(tmp_path / "s"), "X")
    assert code == 2 and "does not tile" in err and out == ""
