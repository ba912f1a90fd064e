"""Layer defaults by model identity: a published architecture gets its layers from its config alone,
whatever its directory is called; anything else uses all layers and says why; the engine says which."""

from __future__ import annotations

import copy
import json
import logging

import pytest
import torch
import transformers
from conftest import random_image

from ego_ros.cli import main
from ego_ros.core.calibration import Calibration
from ego_ros.core.engine import EgoEngine, EngineConfig
from ego_ros.core.layer_defaults import KNOWN_MODELS, Architecture, choose_layers, known_model
from ego_ros.core.loading import TOY_MODEL_DIR
from ego_ros.core.random_models import build_random_model

TOY = next(m for m in KNOWN_MODELS if m.name == "toy")


@pytest.fixture(scope="module")
def toy_shaped_dir(tmp_path_factory):
    """A model with the toy's architecture but random weights, saved under an unrelated name."""
    rm = build_random_model("llava", size="toy", seed=3)
    return rm.save(tmp_path_factory.mktemp("models") / "my_robot_vlm")


def test_internvl3_14b_gets_the_authors_layers_without_any_path():
    # The meta device builds the architecture of random:internvl:internvl3_14b without allocating weights.
    config = build_random_model("internvl", size="internvl3_14b", device="meta", dtype=torch.bfloat16).model.config
    choice = choose_layers(config, 48)
    assert choice.layers == [29, 30, 35, 36, 39] and choice.source == "default"
    assert "published default for InternVL3-14B" in choice.reason


def test_qwen2_5_vl_7b_uses_all_layers_because_none_are_published():
    config = build_random_model("qwen2_5_vl", size="qwen2_5_vl_7b", device="meta", dtype=torch.bfloat16).model.config
    choice = choose_layers(config, 28)
    assert choice.layers is None and "Qwen2.5-VL-7B-Instruct" in choice.reason and "not published" in choice.reason


def test_the_shipped_toy_config_is_the_toy_entry_with_its_calibrated_layers():
    config = transformers.AutoConfig.from_pretrained(TOY_MODEL_DIR)
    shipped = json.loads((TOY_MODEL_DIR / "ego_calibration.json").read_text())["layers"]
    assert known_model(config) is TOY and list(TOY.layers) == shipped


def test_a_renamed_directory_with_the_toy_architecture_gets_the_toy_layers(toy_shaped_dir):
    assert not (toy_shaped_dir / "ego_calibration.json").exists()
    engine = EgoEngine.load(str(toy_shaped_dir))
    assert engine.layers == [0, 1] and engine.layer_choice.source == "default"
    assert "default for toy" in engine.layer_choice.reason


def test_one_changed_dimension_makes_another_architecture():
    config = copy.deepcopy(transformers.AutoConfig.from_pretrained(TOY_MODEL_DIR))
    config.text_config.vocab_size += 1
    assert known_model(config) is None
    assert Architecture.of(config).differences(TOY.architecture) == ["vocab_size"]


def test_an_unknown_architecture_uses_all_layers_and_says_to_calibrate(llava):
    choice = choose_layers(llava.model.config, llava.num_layers)
    assert choice.layers is None and choice.source == "all"
    assert choice.reason == "all layers (no default known for this architecture; run ego-ros calibrate)"


def test_explicit_layers_win_over_a_calibration_which_wins_over_the_default():
    config = transformers.AutoConfig.from_pretrained(TOY_MODEL_DIR)
    cal = Calibration(layers=[2, 3], layer_scores=[0.0] * 4, top_k=None, samples=5, fingerprint="x", model="toy",
                      path="/x/cal.json")
    assert choose_layers(config, 4).layers == [0, 1]
    assert choose_layers(config, 4, calibration=cal).to_dict() == {
        "layers": [2, 3], "source": "calibration", "reason": "calibration file /x/cal.json (mask overlap on 5 images)"}
    assert choose_layers(config, 4, layers=[3], calibration=cal).source == "setting"


def test_a_self_calibration_is_named_as_such():
    config = transformers.AutoConfig.from_pretrained(TOY_MODEL_DIR)
    cal = Calibration(layers=[1], layer_scores=[0.0] * 4, top_k=None, samples=7, fingerprint="x", model="toy",
                      method="self", path="/x/self.json")
    choice = choose_layers(config, 4, calibration=cal)
    assert choice.source == "self-calibration" and choice.reason.startswith("self-calibrated (calibration file "
                                                                            "/x/self.json")


def test_the_engine_logs_its_layers_and_why_when_created(llava, caplog):
    with caplog.at_level(logging.INFO, logger="ego_ros.core.engine"):
        engine = EgoEngine(llava, config=EngineConfig(layers=[1]))
    assert "keyword attention on layers [1]: set explicitly" in caplog.text
    assert engine.describe()["attention_layers"] == {"layers": [1], "source": "setting",
                                                     "reason": "set explicitly (EngineConfig.layers / --layers)"}


def test_the_toy_engine_says_it_uses_its_calibration_file():
    engine = EgoEngine.load("toy")
    assert engine.layer_choice.source == "calibration"
    assert engine.layer_choice.reason.startswith(f"calibration file {TOY_MODEL_DIR / 'ego_calibration.json'}")


def test_the_cli_prints_the_layers_and_why_on_stderr_and_in_the_json(tmp_path, capsys):
    random_image(0).save(tmp_path / "ref.png")
    assert main(["introduce", "--model", "random:llava", "--store", str(tmp_path / "store"), "--name", "kona",
                 str(tmp_path / "ref.png")]) == 0
    out, err = capsys.readouterr()
    assert ("ego-ros introduce: keyword attention on all layers: all layers (no default known for this "
            "architecture; run ego-ros calibrate)") in err
    assert json.loads(out)["attention_layers"]["source"] == "all"
