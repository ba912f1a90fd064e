"""What training steps report: a step's statistics, kept on the device (`StepRecord`), and their means
over a logging window, read back to the host in one transfer (`summarize_steps`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


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
