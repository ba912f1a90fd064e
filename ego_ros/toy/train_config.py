"""Settings of a toy-model training run (`TrainConfig`) and the `ego-ros toy train` flags that repeat one.

A checkpoint stores its config as a plain dict (`to_dict`), and a resumed run rebuilds it with
`from_dict`, which drops top-level keys that are no longer fields, so older checkpoints stay loadable.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .model_config import ToyModelSpec
from .tasks import TaskConfig


@dataclass
class TrainConfig:
    seed: int = 0
    steps: int = 60000
    batch_size: int = 16
    lr_vision: float = 2e-4
    lr_lm: float = 5e-4
    weight_decay: float = 0.01
    warmup: int = 300
    #: the learning rates decay (cosine, to 10 %) over this last share of `steps`
    decay_frac: float = 0.15
    grad_clip: float = 1.0
    dense_weight: float = 1.0
    contrastive_weight: float = 0.5
    #: weight of the same contrastive loss on the pooled projector outputs themselves, without the head
    #: (0: off; `losses.contrastive_loss(through_head=False)`)
    raw_contrast_weight: float = 0.0
    #: instances per step whose reference view and cluttered query (and those of a near-duplicate) are
    #: added as vision-only images for the dense and contrastive losses
    contrast_instances: int = 6
    #: vision-first curriculum: the first `vision_steps` steps train only the vision tower and projector
    #: (dense and contrastive losses on `vision_instances` x 4 images per step, several times more images
    #: per second than the full mix); the language model, its warm-up and the hard-negative ramp start after
    vision_steps: int = 4000
    vision_instances: int = 16
    temperature: float = 0.1
    eval_every: int = 500
    eval_match: int = 150
    eval_describe: int = 48
    log_every: int = 25
    checkpoint_minutes: float = 10.0
    #: samples per language-model pass (sorted by length, so a group pads little)
    lm_group: int = 32
    #: wall-clock budget in minutes (0: none); the plan of `steps` is re-estimated from the measured speed
    #: until the learning-rate decay begins, and training stops at the budget in any case
    minutes: float = 0.0
    device: str = "cpu"
    threads: int = 2
    workers: int = 0
    tiny: bool = False
    #: a model directory (an exported toy model) whose weights the run starts from instead of the seed's
    #: random initialisation ("": from scratch); the heads still start from the seed
    init: str = ""
    tasks: TaskConfig = field(default_factory=TaskConfig)

    @property
    def spec(self) -> ToyModelSpec:
        return ToyModelSpec.tiny() if self.tiny else ToyModelSpec()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        data = dict(data)
        tasks = TaskConfig(**data.pop("tasks", {}))
        known = {f.name for f in fields(cls)}
        return cls(tasks=tasks, **{k: v for k, v in data.items() if k in known})


#: `TaskConfig` fields settable from `ego-ros toy train` (and as resume overrides) and their flags
_TASK_FLAGS = {"ramp_steps": "--ramp-steps", "twin_weight": "--twin-weight", "world": "--world"}
TASK_FIELDS = tuple(_TASK_FLAGS)

#: TrainConfig fields settable from `ego-ros toy train` and their flags
_FLAGS = {
    "seed": "--seed",
    "steps": "--steps",
    "batch_size": "--batch-size",
    "lr_vision": "--lr-vision",
    "lr_lm": "--lr-lm",
    "vision_steps": "--vision-steps",
    "vision_instances": "--vision-instances",
    "contrast_instances": "--contrast-instances",
    "lm_group": "--lm-group",
    "raw_contrast_weight": "--raw-contrast-weight",
    "init": "--init",
}


def reproduce_flags(cfg: TrainConfig) -> str:
    """The `ego-ros toy train` flags that give `cfg`: seed, steps and world always (the default world
    changes when v2 weights are committed), then every other setting off its default."""
    default = TrainConfig(tiny=cfg.tiny)
    parts = [f"--seed {cfg.seed}", f"--steps {cfg.steps}", f"--world {cfg.tasks.world}"]
    for name, flag in _FLAGS.items():
        if name not in ("seed", "steps") and getattr(cfg, name) != getattr(default, name):
            parts.append(f"{flag} {getattr(cfg, name)}")
    for name, flag in _TASK_FLAGS.items():
        if name != "world" and getattr(cfg.tasks, name) != getattr(default.tasks, name):
            parts.append(f"{flag} {getattr(cfg.tasks, name)}")
    if cfg.tiny:
        parts.append("--tiny")
    return " ".join(parts)
