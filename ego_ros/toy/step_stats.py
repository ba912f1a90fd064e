"""What training steps report: a step's statistics, kept on the device (`StepRecord`), their means
over a logging window, read back to the host in one transfer (`summarize_steps`), and the window's
line of the training log (`window_record`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .schedule import lr_factor
from .train_config import TrainConfig


@dataclass
class StepRecord:
    """What one training step reports, its losses still on the device."""

    scalars: dict[str, torch.Tensor]  # 0-d float tensors: losses, accuracies, feature spread, grad norm
    tokens: int
    images: int
    per_sample: torch.Tensor  # (n,) language-model loss of each sample
    task_keys: list[str]


def summarize_steps(records: list[StepRecord]) -> dict[str, float]:
    """Means over steps (and, per task, over samples) of a window of steps, read back in one transfer."""
    keys = sorted(records[0].scalars)  # every step reports the same statistics
    table = torch.stack([torch.stack([r.scalars[k] for k in keys]) for r in records])
    flat = torch.cat([table.reshape(-1), *[r.per_sample.float() for r in records]]).cpu()
    # a plain mean: a non-finite loss in any step of the window must show in the log (the loop stops on it)
    values = flat[: table.numel()].reshape(table.shape).double()
    out = {k: float(values[:, i].mean()) for i, k in enumerate(keys)}
    out["tokens"] = float(np.mean([r.tokens for r in records]))
    out["images"] = float(np.mean([r.images for r in records]))
    task_loss: dict[str, list[float]] = {}
    per_sample = flat[table.numel() :].tolist()
    for key, v in zip((k for r in records for k in r.task_keys), per_sample):
        task_loss.setdefault(key, []).append(v)
    out.update({f"lm_{k}": float(np.mean(v)) for k, v in task_loss.items()})
    return out


def window_record(
    records: list[StepRecord], cfg: TrainConfig, step: int, samples: int, started: float, wait: float, busy: float
) -> dict[str, Any]:
    """The log line of a window of steps that began at `started` (`time.perf_counter()`) and ends at
    `step`: its means, throughput and the host's time per step waiting for data (`wait`) and launching
    steps (`busy`, both summed over the window)."""
    stats = summarize_steps(records)
    # timed after the read-back, which on a GPU waits for the window's steps to finish
    dt = time.perf_counter() - started
    rec = {
        "step": step,
        "samples": samples,
        "samples_per_s": round(len(records) * cfg.batch_size / max(dt, 1e-9), 2) if step > cfg.vision_steps else 0.0,
        "images_per_s": round(stats.pop("images") * len(records) / max(dt, 1e-9), 1),
        "lr_factor": round(lr_factor(step - 1, cfg), 4),
        "hard_share": round(cfg.tasks.hard_share(step - cfg.vision_steps), 3),
        "data_wait_ms": round(1000 * wait / len(records), 1),
        "step_host_ms": round(1000 * busy / len(records), 1),
    }
    rec.update({k: round(v, 4) for k, v in stats.items()})
    return rec
