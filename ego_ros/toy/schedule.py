"""The optimizer of a run and its schedule: AdamW over two learning-rate groups (vision side and
language model), the learning-rate factor of each step, and the planner that fits the number of steps
to a wall-clock budget (`TrainConfig.minutes`)."""

from __future__ import annotations

import math
import time

import torch

from .train_config import TrainConfig


def lr_factor(step: int, cfg: TrainConfig, begin: int = 0) -> float:
    """Learning-rate multiplier: 0 before `begin`, linear warm-up after it, cosine decay at the end."""
    if step < begin:
        return 0.0
    if step - begin < cfg.warmup:
        return (step - begin + 1) / cfg.warmup
    start = int(cfg.steps * (1 - cfg.decay_frac))
    if step < start or cfg.decay_frac <= 0:
        return 1.0
    t = min(1.0, (step - start) / max(1, cfg.steps - start))
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t))


def build_optimizer(
    model: torch.nn.Module, heads: torch.nn.Module, cfg: TrainConfig, device: torch.device
) -> torch.optim.AdamW:
    """AdamW over the vision tower, projector and `heads` (`cfg.lr_vision`) and the rest of the LLaVA
    `model` (`cfg.lr_lm`), without weight decay on biases and norms. Each group keeps its `base_lr` and
    the step its schedule starts at (`step_offset`) for `set_learning_rates`."""
    vision = (
        list(model.model.vision_tower.parameters())
        + list(model.model.multi_modal_projector.parameters())
        + list(heads.parameters())
    )
    vision_ids = {id(p) for p in vision}
    lm = [p for p in model.parameters() if id(p) not in vision_ids]
    groups = []
    for params, lr in ((vision, cfg.lr_vision), (lm, cfg.lr_lm)):
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        # the language model starts (and warms up) after the vision-first phase
        offset = 0 if params is vision else cfg.vision_steps
        groups.append(
            {"params": decay, "lr": lr, "base_lr": lr, "weight_decay": cfg.weight_decay, "step_offset": offset}
        )
        groups.append({"params": no_decay, "lr": lr, "base_lr": lr, "weight_decay": 0.0, "step_offset": offset})
    # fused: one kernel for all parameters on CUDA instead of a few per tensor
    fused = {"fused": True} if device.type == "cuda" else {}
    return torch.optim.AdamW(groups, betas=(0.9, 0.98), eps=1e-8, **fused)


def set_learning_rates(optimizer: torch.optim.Optimizer, step: int, cfg: TrainConfig) -> None:
    """Set every group's learning rate for `step` (its base rate times `lr_factor`)."""
    for g in optimizer.param_groups:
        g["lr"] = g["base_lr"] * lr_factor(step, cfg, g.get("step_offset", 0))


class BudgetPlanner:
    """Fits `cfg.steps` to a wall-clock budget: from the measured step rate, re-estimated every
    `every` steps until the learning-rate decay begins (then the plan is fixed, so the decay runs
    whole); past the budget the plan is cut to the current step. The final `steps` is saved with the
    checkpoints, so `--steps N` repeats the run without a budget.

    The rate is that of the last window, and the plan is fixed only after `settle` estimates: the
    first windows of a run (CUDA warm-up, loader workers starting) are several times slower, and a
    resumed run is already past the decay start of a plan made from them, so fixing at once would
    end it after a fraction of its budget (measured on the H100: 2 of 7 minutes)."""

    def __init__(
        self, cfg: TrainConfig, start: int, every: int = 100, reserve_s: float = 20.0, settle: int = 3
    ) -> None:
        self.cfg, self.every, self.reserve, self.settle = cfg, every, reserve_s, settle
        self.estimates = 0
        self.limit = cfg.steps
        self.t0 = time.monotonic()
        self.deadline = self.t0 + cfg.minutes * 60
        # rates are measured after the vision-first phase (its steps are cheaper) and a short warm-up
        self.mark: tuple[int, float] | None = None
        self.begin = max(start, cfg.vision_steps) + 20
        self.fixed = False

    def replan(self, step: int) -> bool:
        """Revise `cfg.steps` after `step`; True when the plan was revised (the progress bar's total
        may have changed)."""
        now = time.monotonic()
        if now >= self.deadline:
            self.cfg.steps = step
            return True
        if self.fixed:
            return False
        if self.mark is None:
            if step >= self.begin:
                self.mark = (step, now)
            return False
        if (step - self.mark[0]) % self.every:
            return False
        rate = (step - self.mark[0]) / max(now - self.mark[1], 1e-9)
        self.mark = (step, now)
        self.estimates += 1
        planned = step + int(rate * max(0.0, self.deadline - now - self.reserve))
        self.cfg.steps = max(step + 1, min(self.limit, planned))
        if self.estimates >= self.settle and step >= int(self.cfg.steps * (1 - self.cfg.decay_frac)):
            self.fixed = True
        return True
