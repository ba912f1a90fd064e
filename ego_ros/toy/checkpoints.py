"""Checkpoints of a training run and the `--init` start from an exported model.

A checkpoint holds the config, model, heads, optimizer, step, RNG state and the evaluation history:
everything a resumed run needs to continue exactly (the data depend only on (seed, step)). It is
written to a temporary file and renamed, so a stop while saving never leaves a truncated checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .train_config import TASK_FIELDS, TrainConfig

if TYPE_CHECKING:
    from .train import Trainer

#: written every `TrainConfig.checkpoint_minutes` and at the end of a run
CHECKPOINT_LATEST = "ckpt_latest.pt"
#: the checkpoint of the best held-out matching ROC AUC so far
CHECKPOINT_BEST = "ckpt_best.pt"


def checkpoint_state(trainer: Trainer) -> dict[str, Any]:
    """The checkpoint contents of `trainer` as it stands."""
    return {
        "format": 1,
        "config": trainer.cfg.to_dict(),
        "step": trainer.step,
        "samples_seen": trainer.samples_seen,
        "model": trainer.model.state_dict(),
        "heads": trainer.heads.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "history": trainer.history,
        "best": trainer.best,
    }


def write_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write `state` to `path` atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def read_checkpoint(path: str | Path, **overrides: Any) -> tuple[TrainConfig, dict[str, Any]]:
    """A checkpoint's config, with `overrides` (e.g. steps, device, workers, threads; None: keep), and its
    state for `restore_state`."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    cfg = TrainConfig.from_dict(state["config"])
    for k, v in overrides.items():
        if v is not None:
            setattr(cfg.tasks if k in TASK_FIELDS else cfg, k, v)
    return cfg, state


def restore_state(trainer: Trainer, state: dict[str, Any]) -> None:
    """Put `trainer` (built from the checkpoint's config) where the checkpoint stopped."""
    trainer.model.load_state_dict(state["model"])
    trainer.heads.load_state_dict(state["heads"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    for g in trainer.optimizer.param_groups:  # a checkpoint from another device keeps this one's kernel
        g["fused"] = True if trainer.device.type == "cuda" else None
    # torch keeps Adam's step counters where they were saved unless the *saved* groups were fused;
    # the fused CUDA kernel needs them as float32 on the parameters' device
    for st in trainer.optimizer.state.values():
        if torch.is_tensor(st.get("step")):
            st["step"] = st["step"].to(trainer.device, torch.float32)
    trainer.step = int(state["step"])
    trainer.samples_seen = int(state.get("samples_seen", trainer.step * trainer.cfg.batch_size))
    trainer.history = list(state.get("history", []))
    trainer.best = state.get("best")
    torch.set_rng_state(state["torch_rng"])
    if state.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])


def load_weights(model: torch.nn.Module, model_dir: str | Path) -> None:
    """Start `model` from an exported toy model's weights (every tensor must match: same spec).

    The directory is read with transformers' own loader, which maps the key names it was saved under to
    the current module layout."""
    if not (Path(model_dir) / "config.json").is_file():
        raise FileNotFoundError(f"--init {model_dir}: not a model directory (no config.json)")
    source = type(model).from_pretrained(str(model_dir), dtype=torch.float32)
    try:
        model.load_state_dict(source.state_dict(), strict=True)
    except RuntimeError as exc:
        raise ValueError(f"--init {model_dir}: the weights do not fit this model spec ({exc})") from exc
