"""Specification of the trainer's module layout: names moved out of `ego_ros.toy.train` stay importable
from it, and a checkpoint is replaced whole or not at all."""

from __future__ import annotations

import importlib
import threading
from pathlib import Path

import pytest
import torch

from ego_ros.toy import train

MOVED = {
    "CHECKPOINT_BEST": "checkpoints",
    "CHECKPOINT_LATEST": "checkpoints",
    "PackedBatch": "batches",
    "StepRecord": "step_stats",
    "TrainConfig": "train_config",
    "VisionTargets": "batches",
    "auc": "train_eval",
    "batch_at": "batches",
    "measure_model_dir": "measure",
    "reproduce_flags": "train_config",
    "sequence_packer": "batches",
    "summarize_steps": "step_stats",
    "training_markdown": "model_export",
}


@pytest.mark.parametrize("name", sorted(MOVED))
def test_a_name_moved_out_of_train_is_still_the_same_object_there(name):
    home = importlib.import_module(f"ego_ros.toy.{MOVED[name]}")
    assert name in train.__all__
    assert getattr(train, name) is getattr(home, name)


def test_a_failed_checkpoint_write_leaves_the_previous_checkpoint_intact(tmp_path: Path):
    from ego_ros.toy.checkpoints import write_checkpoint

    path = write_checkpoint({"step": 3}, tmp_path / "ckpt_latest.pt")
    with pytest.raises(TypeError, match="pickle"):  # a lock cannot be pickled: torch.save fails midway
        write_checkpoint({"step": 4, "lock": threading.Lock()}, path)
    assert torch.load(path, weights_only=False) == {"step": 3}
