"""Specification of training on toy world v2: a run records its world, logs the look-alike metric,
checkpoints, resumes only on its own world and exports a model directory that says which world it knows."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ego_ros.toy.train import CHECKPOINT_LATEST, TrainConfig, Trainer
from ego_ros.toy.train_cli import main


def _args(out: Path, *extra: str) -> list[str]:
    return ["--tiny", "--batch-size", "2", "--threads", "1", "--out", str(out), "--no-progress", *extra]


def test_a_tiny_v2_run_starts_logs_checkpoints_and_exports_with_its_world(tmp_path: Path):
    out = tmp_path / "run"
    rc = main(_args(out, "--world", "v2", "--steps", "2", "--eval-every", "0", "--export", str(tmp_path / "model")))
    assert rc == 0
    state = torch.load(out / CHECKPOINT_LATEST, weights_only=False)
    assert state["config"]["tasks"]["world"] == "v2" and state["step"] == 2
    assert (out / "train_log.jsonl").read_text().strip()
    training_state = json.loads((tmp_path / "model" / "training_state.json").read_text())
    assert training_state["world_version"] == "v2"
    assert "--world v2" in (tmp_path / "model" / "TRAINING.md").read_text()
    rc = main(["--resume", str(out / CHECKPOINT_LATEST), "--steps", "3", "--out", str(out), "--no-progress"])
    assert rc == 0
    assert torch.load(out / CHECKPOINT_LATEST, weights_only=False)["config"]["tasks"]["world"] == "v2"


def test_the_reproduce_command_names_the_world_even_when_it_is_the_default():
    from ego_ros.toy.train_config import reproduce_flags

    for world in ("v1", "v2"):
        cfg = TrainConfig(tiny=True)
        cfg.tasks.world = world
        assert f"--world {world}" in reproduce_flags(cfg)


def test_a_resume_refuses_another_world(tmp_path: Path, capsys):
    out = tmp_path / "run"
    assert main(_args(out, "--world", "v2", "--steps", "1", "--eval-every", "0")) == 0
    rc = main(["--resume", str(out / CHECKPOINT_LATEST), "--world", "v1", "--steps", "2", "--no-progress"])
    assert rc == 2 and "cannot change on --resume" in capsys.readouterr().err


def test_the_v2_held_out_evaluation_reports_positives_against_lookalikes():
    cfg = TrainConfig(tiny=True, steps=0, eval_every=0, threads=1, eval_match=10, eval_describe=2)
    cfg.tasks.world = "v2"
    res = Trainer(cfg).evaluate()
    assert 0.0 <= res["match_auc_lookalike"] <= 1.0 and 0.0 <= res["match_pairs_lookalike"] <= 1.0
    assert {"match_acc_lookalike", "match_acc_near_duplicate", "match_acc_easy", "match_acc_pos"} <= set(res)


def test_v1_evaluation_has_no_lookalike_metric():
    cfg = TrainConfig(tiny=True, steps=0, eval_every=0, threads=1, eval_match=5, eval_describe=2)
    cfg.tasks.world = "v1"
    assert "match_auc_lookalike" not in Trainer(cfg).evaluate()


def test_a_model_directory_says_which_world_it_was_trained_on(tmp_path: Path):
    from ego_ros.toy.model_world import model_world

    cfg = TrainConfig(tiny=True, steps=0, eval_every=0, threads=1)
    cfg.tasks.world = "v2"
    Trainer(cfg).export(tmp_path / "model")
    assert model_world(str(tmp_path / "model")) == "v2"


def test_a_toy_model_directory_that_records_no_world_was_trained_on_v1(tmp_path: Path):
    from ego_ros.toy.model_world import model_world

    (tmp_path / "training_state.json").write_text(json.dumps({"step": 10, "samples": 160}))
    assert model_world(str(tmp_path)) == "v1"  # weights from before world v2 existed, whatever the default


def test_a_directory_that_is_not_a_toy_model_gets_the_default_world(tmp_path: Path):
    from ego_ros.toy.attributes import DEFAULT_WORLD
    from ego_ros.toy.model_world import model_world

    assert model_world(str(tmp_path / "absent")) == DEFAULT_WORLD


def test_measuring_a_v2_model_directory_uses_v2_instances(tmp_path: Path):
    from ego_ros.toy.train import measure_model_dir

    cfg = TrainConfig(tiny=True, steps=0, eval_every=0, threads=1)
    cfg.tasks.world = "v2"
    Trainer(cfg).export(tmp_path / "model")
    res = measure_model_dir(str(tmp_path / "model"), concepts=2, describe=2)
    assert res["world"] == "v2" and 0.0 <= res["describe_colour"] <= 1.0


def test_the_lookalike_probe_scores_a_v2_checkpoints_vision_features(tmp_path: Path, capsys):
    from ego_ros.toy import probe

    out = tmp_path / "run"
    assert main(_args(out, "--world", "v2", "--steps", "1", "--eval-every", "0")) == 0
    assert probe.main([str(out / CHECKPOINT_LATEST), "--n", "4"]) == 0
    assert probe.main([str(out / CHECKPOINT_LATEST), "--n", "4", "--untrained"]) == 0
    trained, untrained = (json.loads(line) for line in capsys.readouterr().out.strip().splitlines()[-2:])
    assert trained["step"] == 1 and untrained["step"] == 0 and untrained["untrained"]
    for rec in (trained, untrained):
        assert all(0.0 <= rec[k] <= 1.0 for k in ("auc_raw", "auc_head", "paired_raw", "paired_head"))
