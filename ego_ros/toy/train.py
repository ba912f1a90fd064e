"""Trainer of the toy model: language modelling on engine-format sequences plus dense vision supervision.

Each step draws a batch of samples (`ego_ros.toy.tasks`; the data depend only on (seed, step), so a run
is reproducible and resumes exactly), encodes every image of the batch once with the vision tower and
projector, builds each sample's token sequence with the engine's own `compose.query_sequence` and
`sequence.sequence_embeds` (the same layout the engine uses at inference), appends the answer and the
end-of-turn token and trains on the answer tokens.

Two training-only losses on the projector outputs (the LLM-input visual tokens that Ego stores as
memories) supervise the vision tower densely; without them instance matching stays at chance (toy
notes):

* per-patch attribute classification: a linear head predicts, for each of the 64 tokens, the shape,
  colour, pattern and mark of the object covering most of that patch (or background);
* instance contrast: features mask-pooled over each recognisable object are compared across all
  images of the batch (supervised contrastive loss, temperature 0.1). The same instance seen in a
  reference view, a crop and a cluttered query is a positive; everything else, including the
  near-duplicates the matching tasks put in the same batch, a negative.

Training starts with a vision-first phase (`TrainConfig.vision_steps`): only the vision tower,
projector and heads learn, on many images per step and no text, which on CPU teaches the attributes
several times faster per second than the full mix; then every task trains together. The heads are not
part of the exported model. Checkpoints hold model, heads, optimizer, step, RNG
state and the evaluation history; `export` writes a model directory the engine loads.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ego_ros.core.backends.base import VisualTokens
from ego_ros.core.backends.families import LlavaBackend
from ego_ros.core.compose import ContextEntry, query_sequence, view_sequence
from ego_ros.core.prompts import split_keywords
from ego_ros.core.sequence import Runner, Sequence, VisualBlock, sequence_embeds

from .model_config import (
    PROMPT_OVERRIDES,
    ToyModelSpec,
    build_image_processor,
    build_model,
    count_parameters,
    save_model_dir,
    toy_prompts,
)
from .tasks import (
    IMAGE_SIZE,
    LABEL_CLASSES,
    ImageData,
    Sample,
    TaskConfig,
    contrast_images,
    heldout_describe_set,
    heldout_match_set,
    make_batch,
)
from .tokenizer import build_tokenizer

CHECKPOINT_LATEST = "ckpt_latest.pt"
#: weight of background patches in the per-patch attribute loss (object patches weigh 1)
BACKGROUND_WEIGHT = 0.25
CHECKPOINT_BEST = "ckpt_best.pt"
LOG_FILE = "train_log.jsonl"


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


class Heads(torch.nn.Module):
    """Training-only heads on the projector outputs: per-patch attributes and the contrastive projection."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.sizes = [LABEL_CLASSES[a] for a in ("shape", "colour", "pattern", "mark")]
        # Projector outputs live at the scale of token embeddings (std ~0.03): the heads normalise them
        # first, otherwise a linear head on such small inputs learns little beyond its bias.
        self.dense = torch.nn.Sequential(torch.nn.LayerNorm(dim), torch.nn.Linear(dim, sum(self.sizes)))
        self.proj = torch.nn.Sequential(
            torch.nn.LayerNorm(dim), torch.nn.Linear(dim, dim), torch.nn.GELU(), torch.nn.Linear(dim, 128)
        )


def _lr_factor(step: int, cfg: TrainConfig, begin: int = 0) -> float:
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


def auc(pos: list[float], neg: list[float]) -> float:
    """ROC AUC as the Mann-Whitney statistic (ties count one half); a few lines, no extra dependency."""
    if not pos or not neg:
        return float("nan")
    p = np.asarray(pos)[:, None]
    n = np.asarray(neg)[None, :]
    return float(((p > n).sum() + 0.5 * (p == n).sum()) / (p.size * n.size))


class _BatchDataset(torch.utils.data.Dataset):
    """Batch k is the batch of step start + k; generated in DataLoader workers when there are any."""

    def __init__(self, cfg: TrainConfig, start: int) -> None:
        self.cfg, self.start = cfg, start

    def __len__(self) -> int:
        return max(0, self.cfg.steps - self.start)

    def __getitem__(self, k: int) -> PackedBatch:
        return packed_batch_at(self.cfg, self.start + k)


def batch_at(cfg: TrainConfig, step: int) -> tuple[int, list[Sample], list[ImageData]]:
    """The training data of one step: samples and the vision-only contrast images."""
    if step < cfg.vision_steps:
        return step, [], contrast_images(cfg.seed, step, cfg.vision_instances, cfg.tasks)
    samples = make_batch(cfg.seed, step, cfg.batch_size, cfg.tasks, curriculum_step=step - cfg.vision_steps)
    return step, samples, contrast_images(cfg.seed, step, cfg.contrast_instances, cfg.tasks)


def image_tokens(embeds: torch.Tensor, grid: int) -> VisualTokens:
    """A toy image's visual tokens: `embeds` (grid * grid rows) over the whole 64x64 image."""
    return VisualTokens(embeds=embeds, rows=grid, cols=grid, box=(0.0, 0.0, 64.0, 64.0),
                        image_size=(IMAGE_SIZE, IMAGE_SIZE))


def sample_sequence(backend: LlavaBackend, sample: Sample, image_embeds: list[torch.Tensor], grid: int) -> Sequence:
    """The engine's sequence of one sample (context memories, query images, question), with
    `image_embeds[i]` (grid * grid rows) standing for the sample's i-th image."""
    vts = [image_tokens(emb, grid) for emb in image_embeds]
    entries = []
    for e in sample.entries:
        blocks = [
            VisualBlock.full(vts[i]) if idx is None else VisualBlock.subset(vts[i], torch.from_numpy(idx))
            for i, idx in e.views
        ]
        entries.append(ContextEntry(name=e.name, memory=blocks, keywords=list(e.keywords)))
    return query_sequence(backend, entries, [vts[i] for i in sample.query], sample.question, mode=sample.mode)


@dataclass
class PackedGroup:
    """Token ids of a few samples, right-padded, and where projector outputs replace placeholder rows."""

    index: torch.Tensor  # (b,) the samples' positions in the batch
    ids: torch.Tensor  # (b, L)
    targets: torch.Tensor  # (b, L) answer token at each position, -100 where there is no loss
    lengths: torch.Tensor  # (b,)
    vis_row: torch.Tensor  # (n,) row of each visual position
    vis_pos: torch.Tensor  # (n,) column (sequence position) of each visual position
    vis_src: torch.Tensor  # (n,) image index * tokens per image + token index
    # Answer positions, listed here so that the trainer picks them by index: a boolean selection on the
    # device would wait for the GPU (it must count the selected rows) once per group.
    ans_row: torch.Tensor  # (a,) row of each answer token
    ans_pos: torch.Tensor  # (a,) position whose logits predict it
    ans_ids: torch.Tensor  # (a,) the token
    ans_count: torch.Tensor  # (b,) answer tokens per row (at least 1)

    def pin_memory(self) -> PackedGroup:
        return PackedGroup(**{k: v.pin_memory() for k, v in vars(self).items()})


@dataclass
class VisionTargets:
    """Every image of a step, stacked, with the targets of the two dense vision losses."""

    pixels: torch.Tensor  # uint8 (N, 64, 64, 3)
    labels: torch.Tensor  # int64 (N, 4, T): per-patch shape, colour, pattern, mark class (0 = background)
    anchor_image: torch.Tensor  # (M,) image of each contrastive anchor (a recognisable object)
    anchor_instance: torch.Tensor  # (M,) its instance
    anchor_weights: torch.Tensor  # float32 (M, T) its mask-pooling weights (sum 1)

    @classmethod
    def of(cls, images: list[ImageData]) -> VisionTargets:
        tokens = images[0].labels[0].size if images else 0
        img, inst, weights = [], [], []
        for n, im in enumerate(images):
            for k in range(len(im.obj_inst)):
                w = im.obj_frac[k].reshape(-1)
                total = float(w.sum())
                if im.obj_ok[k] and total >= 1.0:
                    weights.append(w / total)
                    img.append(n)
                    inst.append(int(im.obj_inst[k]))
        return cls(
            pixels=torch.from_numpy(np.stack([im.pixels for im in images]))
            if images
            else torch.zeros((0, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=torch.uint8),
            labels=torch.from_numpy(np.stack([im.labels.reshape(4, -1) for im in images]).astype(np.int64))
            if images
            else torch.zeros((0, 4, tokens), dtype=torch.long),
            anchor_image=torch.tensor(img, dtype=torch.long),
            anchor_instance=torch.tensor(inst, dtype=torch.long),
            anchor_weights=torch.from_numpy(np.stack(weights).astype(np.float32))
            if weights
            else torch.zeros((0, tokens), dtype=torch.float32),
        )

    def pin_memory(self) -> VisionTargets:
        return VisionTargets(**{k: v.pin_memory() for k, v in vars(self).items()})


@dataclass
class PackedBatch:
    """One step's data with every sequence already laid out and every image stacked (built in the
    data-loader workers, so that the main process only launches work on the device)."""

    step: int
    vision: VisionTargets
    groups: list[PackedGroup]
    task_keys: list[str]

    @property
    def n_samples(self) -> int:
        return len(self.task_keys)

    @property
    def n_images(self) -> int:
        return int(self.vision.pixels.shape[0])

    def pin_memory(self) -> PackedBatch:
        """Page-locked copy (DataLoader(pin_memory=True) calls this), so host-to-device copies run async."""
        return PackedBatch(self.step, self.vision.pin_memory(), [g.pin_memory() for g in self.groups], self.task_keys)


class SequencePacker:
    """Lays out samples as token ids plus a map of visual rows, using the engine's own sequence builder.

    `query_sequence` is called with VisualTokens whose "embeddings" are the global token indices of the
    batch's images, so the blocks it places (full images or token subsets) say which projector output
    goes to which position. The trainer then fills a whole group with one embedding lookup and one
    scatter instead of assembling every sample on the device: on a GPU the per-sample assembly is what
    limits throughput.
    """

    def __init__(self, spec: ToyModelSpec) -> None:
        tokenizer = build_tokenizer()
        # the backend is used for text only (chat template, tokenizer, framing): any model size will do
        model = build_model(tokenizer, ToyModelSpec.tiny(), seed=0)
        self.backend = LlavaBackend(model, tokenizer, build_image_processor(spec), prompts=toy_prompts(), name="toy")
        self.grid = spec.grid
        self.tokens = spec.n_visual_tokens
        self.eos = int(tokenizer.convert_tokens_to_ids("<|im_end|>"))
        self.pad = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos)

    def layout(
        self, sample: Sample, first_image: int, with_answer: bool = True
    ) -> tuple[list[int], list[int], list[int], list[int]]:
        """(ids, targets, visual positions, visual sources) of one sample."""
        b = self.backend
        # each image's "embeddings" are its rows' global indices among the batch's projector outputs
        index_rows = [
            ((first_image + i) * self.tokens + torch.arange(self.tokens))[:, None] for i in range(len(sample.images))
        ]
        seq = sample_sequence(b, sample, index_rows, self.grid)
        ids = list(seq.ids)
        targets = [-100] * len(ids)
        if with_answer:
            ans = b.tokenize(sample.answer) + [self.eos]
            ids += ans[:-1]
            targets = [-100] * (len(seq.ids) - 1) + ans
        pos: list[int] = []
        src: list[int] = []
        for start, block in seq.blocks:
            n = block.embeds.shape[0]
            pos.extend(range(start, start + n))
            src.extend(block.embeds[:, 0].tolist())
        return ids, targets, pos, src

    def pack(self, step: int, samples: list[Sample], extra: list[ImageData], group: int = 32) -> PackedBatch:
        images: list[ImageData] = []
        layouts = []
        for s in samples:
            layouts.append(self.layout(s, len(images)))
            images.extend(s.images)
        images.extend(extra)
        order = sorted(range(len(samples)), key=lambda i: len(layouts[i][0]))
        groups = []
        for k in range(0, len(order), max(1, group)):
            idx = order[k : k + group]
            lmax = max(len(layouts[i][0]) for i in idx)
            ids = torch.full((len(idx), lmax), self.pad, dtype=torch.long)
            tgt = torch.full((len(idx), lmax), -100, dtype=torch.long)
            rows, pos, src = [], [], []
            for j, i in enumerate(idx):
                seq_ids, seq_tgt, p, sr = layouts[i]
                ids[j, : len(seq_ids)] = torch.tensor(seq_ids)
                tgt[j, : len(seq_tgt)] = torch.tensor(seq_tgt)
                rows.extend([j] * len(p))
                pos.extend(p)
                src.extend(sr)
            ans = (tgt != -100).nonzero()
            groups.append(
                PackedGroup(
                    index=torch.tensor(idx, dtype=torch.long),
                    ids=ids,
                    targets=tgt,
                    lengths=torch.tensor([len(layouts[i][0]) for i in idx], dtype=torch.long),
                    vis_row=torch.tensor(rows, dtype=torch.long),
                    vis_pos=torch.tensor(pos, dtype=torch.long),
                    vis_src=torch.tensor(src, dtype=torch.long),
                    ans_row=ans[:, 0].contiguous(),
                    ans_pos=ans[:, 1].contiguous(),
                    ans_ids=tgt[ans[:, 0], ans[:, 1]],
                    ans_count=(tgt != -100).sum(1).clamp(min=1),
                )
            )
        keys = [s.task if s.task != "match" else f"match_{s.kind}" for s in samples]
        return PackedBatch(step=step, vision=VisionTargets.of(images), groups=groups, task_keys=keys)


_PACKERS: dict[ToyModelSpec, SequencePacker] = {}


def sequence_packer(spec: ToyModelSpec) -> SequencePacker:
    """One packer per process (each data-loader worker builds its own)."""
    if spec not in _PACKERS:
        _PACKERS[spec] = SequencePacker(spec)
    return _PACKERS[spec]


def packed_batch_at(cfg: TrainConfig, step: int) -> PackedBatch:
    _, samples, extra = batch_at(cfg, step)
    return sequence_packer(cfg.spec).pack(step, samples, extra, cfg.lm_group)


class _BudgetPlanner:
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


def _identity(x):
    return x


def _worker_init(_: int) -> None:
    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)


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


class Trainer:
    """Builds the model, trains it and writes checkpoints and exports."""

    def __init__(self, cfg: TrainConfig, out: str | Path | None = None) -> None:
        self.cfg = cfg
        self.out = Path(out) if out is not None else None
        if cfg.device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(
                f"device {cfg.device!r} requested but CUDA is not available "
                "(a checkpoint trained on CUDA resumes here with --device cpu)"
            )
        self.device = torch.device(cfg.device)
        if self.device.type == "cpu" and cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        self.tokenizer = build_tokenizer()
        self.spec = cfg.spec
        self.model = build_model(self.tokenizer, self.spec, seed=cfg.seed)
        if cfg.init:
            load_weights(self.model, cfg.init)
        self.model = self.model.to(self.device)
        dim = self.model.config.text_config.hidden_size
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed + 1)
            self.heads = Heads(dim).to(self.device)
        self.backend = LlavaBackend(
            self.model, self.tokenizer, build_image_processor(self.spec), prompts=toy_prompts(), name="toy"
        )
        self.eos = int(self.tokenizer.convert_tokens_to_ids("<|im_end|>"))
        self.yes_id = self.backend.tokenize(PROMPT_OVERRIDES["yes"][0])[0]
        self.no_id = self.backend.tokenize(PROMPT_OVERRIDES["no"][0])[0]
        vision = (
            list(self.model.model.vision_tower.parameters())
            + list(self.model.model.multi_modal_projector.parameters())
            + list(self.heads.parameters())
        )
        vision_ids = {id(p) for p in vision}
        lm = [p for p in self.model.parameters() if id(p) not in vision_ids]
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
        fused = {"fused": True} if self.device.type == "cuda" else {}
        self.optimizer = torch.optim.AdamW(groups, betas=(0.9, 0.98), eps=1e-8, **fused)
        self._trained = list(self.model.parameters()) + list(self.heads.parameters())
        self.step = 0
        self.samples_seen = 0
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self._eval_sets: tuple[list[Sample], list] | None = None
        self._log_file = None

    # ----- forward pieces ------------------------------------------------------------------------
    def _autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def encode(self, images: list[ImageData] | torch.Tensor) -> torch.Tensor:
        """(N, 64, D) projector outputs of the images (the path `LlavaBackend.encode_images` takes);
        `images` may also be their stacked uint8 pixels (N, 64, 64, 3)."""
        if not isinstance(images, torch.Tensor):
            images = torch.from_numpy(np.stack([im.pixels for im in images]))
        px = images.to(self.device, non_blocking=True)
        # SigLIP processor at 64x64 input: rescale 1/255, normalise with mean = std = 0.5.
        px = px.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
        cfg = self.model.config
        out = self.model.model.get_image_features(
            pixel_values=px,
            vision_feature_layer=cfg.vision_feature_layer,
            vision_feature_select_strategy=cfg.vision_feature_select_strategy,
        )
        feats = out.pooler_output if hasattr(out, "pooler_output") else out
        return torch.stack(list(feats))

    def _sequences(
        self, samples: list[Sample], feats: torch.Tensor, offsets: list[int], with_answer: bool
    ) -> tuple[list[torch.Tensor], list[list[int]]]:
        """Per sample: input embeddings (L, D) and target ids aligned to positions (-100 = no loss)."""
        b = self.backend
        grid = self.spec.grid
        embeds, targets = [], []
        # One unbind instead of an index per image: its backward is a single stack, where per-image
        # indexing would allocate a zero gradient of the whole batch for every image.
        per_image = feats.unbind(0)
        for s, off in zip(samples, offsets):
            seq = sample_sequence(b, s, [per_image[off + i] for i in range(len(s.images))], grid)
            emb = sequence_embeds(b, seq)
            if with_answer:
                ans = b.tokenize(s.answer) + [self.eos]
                emb = torch.cat([emb, b.embed_ids(torch.tensor(ans[:-1], dtype=torch.long))], dim=0)
                tgt = [-100] * (len(seq) - 1) + ans
            else:
                tgt = [-100] * len(seq)
            embeds.append(emb)
            targets.append(tgt)
        return embeds, targets

    def _lm_chunks(self, embeds: list[torch.Tensor], chunk: int = 8) -> list[tuple[list[int], torch.Tensor]]:
        """The language model over groups of sequences of similar length (less padding than one batch):
        [(sample indices, hidden states (b, L, D))]."""
        order = sorted(range(len(embeds)), key=lambda i: embeds[i].shape[0])
        out = []
        for k in range(0, len(order), chunk):
            idx = order[k : k + chunk]
            hidden, _ = self._lm([embeds[i] for i in idx])
            out.append((idx, hidden))
        return out

    def _lm(self, embeds: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the language model on right-padded sequences; returns hidden states (B, L, D) and lengths."""
        lengths = torch.tensor([e.shape[0] for e in embeds])
        lmax = int(lengths.max())
        d = embeds[0].shape[-1]
        x = embeds[0].new_zeros(len(embeds), lmax, d)
        for i, e in enumerate(embeds):
            x[i, : e.shape[0]] = e
        mask = (torch.arange(lmax)[None, :] < lengths[:, None]).long().to(self.device)
        pos = torch.arange(lmax, device=self.device)[None, :].expand(len(embeds), -1)
        out = self.model.model.language_model(inputs_embeds=x, attention_mask=mask, position_ids=pos, use_cache=False)
        return out.last_hidden_state, lengths

    # The losses below stay on the device (no boolean selections, no Python numbers): every read-back
    # to the host would make the CPU wait for the GPU once per step.
    def dense_loss(self, feats: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Per-patch attribute loss; `labels` (N, 4, T) as in `VisionTargets`. Returns the loss and the
        accuracy of each attribute on object patches (0-d tensors)."""
        logits = self.heads.dense(feats.float())  # (N, T, C)
        labels = labels.to(self.device, non_blocking=True)
        total = feats.new_zeros((), dtype=torch.float32)
        accs = {}
        start = 0
        for a, (name, size) in enumerate(zip(("shape", "colour", "pattern", "mark"), self.heads.sizes)):
            lg = logits[..., start : start + size]
            start += size
            y = labels[:, a]
            obj = y > 0
            # Object patches are about an eighth of all patches: down-weight the background so the heads
            # do not settle on "background everywhere".
            w = torch.where(obj, 1.0, BACKGROUND_WEIGHT).reshape(-1)
            ce = F.cross_entropy(lg.reshape(-1, size), y.reshape(-1), reduction="none")
            total = total + (ce * w).sum() / w.sum()
            accs[name] = ((lg.argmax(-1) == y) & obj).sum() / obj.sum().clamp(min=1)
        return total / 4, accs

    def contrastive_loss(self, feats: torch.Tensor, vision: VisionTargets) -> tuple[torch.Tensor, torch.Tensor]:
        """Supervised contrastive loss over mask-pooled object features of the whole batch, and the
        retrieval accuracy (is an anchor's nearest neighbour the same instance?)."""
        zero = feats.new_zeros((), dtype=torch.float32)
        m = int(vision.anchor_instance.shape[0])
        if m < 2:
            return zero, zero
        dev = self.device
        w = vision.anchor_weights.to(dev, non_blocking=True)  # (M, T)
        img = vision.anchor_image.to(dev, non_blocking=True)
        labels = vision.anchor_instance.to(dev, non_blocking=True)
        pooled = torch.einsum("mt,mtd->md", w, feats.float()[img])
        z = F.normalize(self.heads.proj(pooled), dim=-1)
        sim = z @ z.T / self.cfg.temperature
        eye = torch.eye(m, dtype=torch.bool, device=dev)
        sim = sim.masked_fill(eye, float("-inf"))
        pos = (labels[:, None] == labels[None, :]) & ~eye
        has = pos.any(1)
        n_has = has.sum().clamp(min=1)
        logp = sim - torch.logsumexp(sim, dim=1, keepdim=True)
        per_anchor = logp.masked_fill(~pos, 0.0).sum(1) / pos.sum(1).clamp(min=1)
        loss = -(per_anchor * has).sum() / n_has
        acc = ((labels[sim.argmax(1)] == labels) & has).sum() / n_has
        return loss, acc

    # ----- training ----------------------------------------------------------------------------------
    def _packed_hidden(self, group: PackedGroup, feats: torch.Tensor) -> torch.Tensor:
        """Hidden states (b, L, D) of a packed group: one embedding lookup, one scatter of visual rows."""
        dev = self.device
        ids = group.ids.to(dev, non_blocking=True)
        emb = self.backend.embed_ids(ids)
        flat = feats.reshape(-1, feats.shape[-1])
        vals = flat[group.vis_src.to(dev, non_blocking=True)].to(emb.dtype)
        emb = emb.index_put((group.vis_row.to(dev, non_blocking=True), group.vis_pos.to(dev, non_blocking=True)), vals)
        lmax = ids.shape[1]
        lengths = group.lengths.to(dev, non_blocking=True)
        mask = (torch.arange(lmax, device=dev)[None, :] < lengths[:, None]).long()
        pos = torch.arange(lmax, device=dev)[None, :].expand(ids.shape[0], -1)
        out = self.model.model.language_model(inputs_embeds=emb, attention_mask=mask, position_ids=pos, use_cache=False)
        return out.last_hidden_state

    def sample_losses(self, batch: PackedBatch, feats: torch.Tensor) -> torch.Tensor:
        """(n_samples,) language-model loss of each sample: mean over its answer tokens."""
        per_sample = torch.zeros(batch.n_samples, device=self.device)
        for g in batch.groups:
            dev = self.device
            hidden = self._packed_hidden(g, feats)
            rows = g.ans_row.to(dev, non_blocking=True)
            logits = self.model.lm_head(hidden[rows, g.ans_pos.to(dev, non_blocking=True)]).float()
            tok_loss = F.cross_entropy(logits, g.ans_ids.to(dev, non_blocking=True), reduction="none")
            # each sample weighs the same, whatever the length of its answer
            per_row = torch.zeros(len(g.index), device=dev).index_add(0, rows, tok_loss)
            per_row = per_row / g.ans_count.to(dev, non_blocking=True)
            per_sample = per_sample.index_add(0, g.index.to(dev, non_blocking=True), per_row)
        return per_sample

    def pack(self, samples: list[Sample], extra: list[ImageData] | None = None) -> PackedBatch:
        return sequence_packer(self.spec).pack(self.step, list(samples), list(extra or []), self.cfg.lm_group)

    def train_step(
        self, batch: PackedBatch | list[Sample], extra: list[ImageData] | None = None
    ) -> dict[str, float]:
        """One optimizer step on a packed batch, or on `samples` plus vision-only `extra` images: language
        modelling on the samples, dense and contrastive losses on every image. Returns its statistics."""
        return summarize_steps([self.launch_step(batch, extra)])

    def launch_step(self, batch: PackedBatch | list[Sample], extra: list[ImageData] | None = None) -> StepRecord:
        """`train_step` without reading anything back: the statistics stay on the device until
        `summarize_steps` reads a whole logging window at once, so on a GPU the host can queue the next
        step while this one runs."""
        cfg = self.cfg
        if not isinstance(batch, PackedBatch):
            batch = self.pack(batch, extra)
        self.model.train()
        self.heads.train()
        for g in self.optimizer.param_groups:
            g["lr"] = g["base_lr"] * _lr_factor(self.step, cfg, g.get("step_offset", 0))
        vision = batch.vision
        n = batch.n_samples
        with self._autocast():
            feats = self.encode(vision.pixels)
            per_sample = self.sample_losses(batch, feats)
            lm_loss = per_sample.mean() if n else feats.new_zeros((), dtype=torch.float32)
            dense, dense_acc = self.dense_loss(feats, vision.labels)
            contrast, contrast_acc = self.contrastive_loss(feats, vision)
            loss = lm_loss + cfg.dense_weight * dense + cfg.contrastive_weight * contrast
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self._trained, cfg.grad_clip)
        self.optimizer.step()
        self.step += 1
        self.samples_seen += n
        with torch.no_grad():
            f = feats.detach().float()
            fstd = f.std(dim=(0, 1)).mean()
            # between-image variation of the mean feature relative to the overall token spread:
            # goes to 0 if the projector collapses to one output for every image
            fimg = f.mean(1).std(0).mean() / fstd.clamp(min=1e-8)
        scalars = {
            "loss": loss.detach(),
            "lm": lm_loss.detach(),
            "dense": dense.detach(),
            "contrast": contrast.detach(),
            "contrast_acc": contrast_acc,
            "fstd": fstd,
            "fimg": fimg,
            "grad_norm": grad_norm,
        }
        scalars.update({f"dense_{k}": v for k, v in dense_acc.items()})
        return StepRecord(
            scalars={k: v.detach().float().reshape(()) for k, v in scalars.items()},
            tokens=sum(int(g.lengths.sum()) for g in batch.groups),
            images=batch.n_images,
            per_sample=per_sample.detach(),
            task_keys=list(batch.task_keys),
        )

    # ----- evaluation --------------------------------------------------------------------------------
    @torch.no_grad()
    def yes_probabilities(self, samples: list[Sample], batch: int = 32) -> list[float]:
        """P(yes) of each recognition sample, read like the engine reads it (yes vs no logits)."""
        self.model.eval()
        out: list[float] = []
        for i in range(0, len(samples), batch):
            chunk = samples[i : i + batch]
            images, offsets = [], []
            for s in chunk:
                offsets.append(len(images))
                images.extend(s.images)
            with self._autocast():
                feats = self.encode(images)
                embeds, _ = self._sequences(chunk, feats, offsets, with_answer=False)
                hidden, lengths = self._lm(embeds)
                last = hidden[torch.arange(len(chunk)), (lengths - 1).to(self.device)]
                logits = self.model.lm_head(last).float()
            out.extend(torch.sigmoid(logits[:, self.yes_id] - logits[:, self.no_id]).tolist())
        return out

    @torch.no_grad()
    def describe(self, images: list[ImageData], max_new_tokens: int = 12) -> list[str]:
        self.model.eval()
        runner = Runner(self.backend)
        feats = self.encode(images)
        texts = []
        for f in feats:
            vt = image_tokens(f, self.spec.grid)
            ids = runner.generate(view_sequence(self.backend, vt, PROMPT_OVERRIDES["keywords"]), max_new_tokens)
            texts.append(self.backend.decode(ids))
        return texts

    def evaluate(self) -> dict[str, Any]:
        cfg = self.cfg
        if self._eval_sets is None:
            world = cfg.tasks.world
            self._eval_sets = (
                heldout_match_set(cfg.eval_match, world=world),
                heldout_describe_set(cfg.eval_describe, world=world),
            )
        match, describe = self._eval_sets
        t0 = time.perf_counter()
        probs = self.yes_probabilities(match)
        res: dict[str, Any] = {"step": self.step, "samples": self.samples_seen}
        correct = [(p >= 0.5) == (s.kind == "pos") for p, s in zip(probs, match)]
        res["match_acc"] = float(np.mean(correct))
        res["match_auc"] = auc(
            [p for p, s in zip(probs, match) if s.kind == "pos"], [p for p, s in zip(probs, match) if s.kind != "pos"]
        )
        kinds = [k for k in ("pos", "hard", "lookalike", "near_duplicate", "easy") if any(s.kind == k for s in match)]
        for kind in kinds:
            res[f"match_acc_{kind}"] = float(np.mean([c for c, s in zip(correct, match) if s.kind == kind]))
        if "lookalike" in kinds:
            # v2: positives against look-alikes only (the glyph is the only difference): the pilot's curve
            res["match_auc_lookalike"] = auc(
                [p for p, s in zip(probs, match) if s.kind == "pos"],
                [p for p, s in zip(probs, match) if s.kind == "lookalike"],
            )
        forms = [
            "keywords" if s.mode == "keywords" else ("full" if s.entries[0].views[0][1] is None else "mask")
            for s in match
        ]
        for form in sorted(set(forms)):
            res[f"match_acc_{form}"] = float(np.mean([c for c, f in zip(correct, forms) if f == form]))
        texts = self.describe([d for d, _ in describe])
        fields_ok = {"colour": [], "shape": [], "pattern": [], "mark": [], "exact": []}
        for text, (_, inst) in zip(texts, describe):
            kw = [k.lower() for k in split_keywords(text, PROMPT_OVERRIDES["keyword_separator"])]
            truth = list(inst.keywords)
            checks = {
                "colour": truth[0] in kw,
                "shape": truth[1] in kw,
                "pattern": truth[2] in kw,
                "mark": truth[3] in kw and truth[4] in kw,
            }
            for k, v in checks.items():
                fields_ok[k].append(v)
            fields_ok["exact"].append(kw == truth)
        res.update({f"describe_{k}": float(np.mean(v)) for k, v in fields_ok.items()})
        res["describe_example"] = texts[0] if texts else ""
        res["eval_seconds"] = round(time.perf_counter() - t0, 2)
        return res

    # ----- checkpoints ---------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "format": 1,
            "config": self.cfg.to_dict(),
            "step": self.step,
            "samples_seen": self.samples_seen,
            "model": self.model.state_dict(),
            "heads": self.heads.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "history": self.history,
            "best": self.best,
        }

    def save_checkpoint(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save(self.state(), tmp)
        os.replace(tmp, path)
        return path

    def load_state(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.heads.load_state_dict(state["heads"])
        self.optimizer.load_state_dict(state["optimizer"])
        for g in self.optimizer.param_groups:  # a checkpoint from another device keeps this one's kernel
            g["fused"] = True if self.device.type == "cuda" else None
        # torch keeps Adam's step counters where they were saved unless the *saved* groups were fused;
        # the fused CUDA kernel needs them as float32 on the parameters' device
        for st in self.optimizer.state.values():
            if torch.is_tensor(st.get("step")):
                st["step"] = st["step"].to(self.device, torch.float32)
        self.step = int(state["step"])
        self.samples_seen = int(state.get("samples_seen", self.step * self.cfg.batch_size))
        self.history = list(state.get("history", []))
        self.best = state.get("best")
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])

    @classmethod
    def from_checkpoint(cls, path: str | Path, out: str | Path | None = None, **overrides: Any) -> Trainer:
        """Resume: the checkpoint's config, with `overrides` (e.g. steps, device, workers, threads)."""
        state = torch.load(path, map_location="cpu", weights_only=False)
        cfg = TrainConfig.from_dict(state["config"])
        for k, v in overrides.items():
            if v is not None:
                setattr(cfg.tasks if k == "ramp_steps" else cfg, k, v)
        trainer = cls(cfg, out)
        trainer.load_state(state)
        return trainer

    # ----- export ---------------------------------------------------------------------------------
    def export(self, out: str | Path) -> Path:
        """Write the model directory (weights, tokenizer, processor, prompts, TRAINING.md)."""
        model = copy.deepcopy(self.model).cpu().float()
        model.eval()
        path = save_model_dir(out, model, self.tokenizer, self.spec, training_md=training_markdown(self))
        (Path(out) / "training_state.json").write_text(
            json.dumps(
                {
                    "step": self.step,
                    "samples": self.samples_seen,
                    "seed": self.cfg.seed,
                    "world_version": self.cfg.tasks.world,
                    "last_eval": self.history[-1] if self.history else None,
                },
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )
        return path

    # ----- the loop ---------------------------------------------------------------------------------
    def _log(self, record: dict[str, Any]) -> None:
        if self.out is None:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / LOG_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def run(self, progress: bool = True, on_eval: Callable[[dict[str, Any]], None] | None = None) -> None:
        """Train from the current step to cfg.steps, logging, evaluating and checkpointing."""
        from tqdm import tqdm

        cfg = self.cfg
        if self.step >= cfg.steps:
            return
        data = _BatchDataset(cfg, self.step)
        loader = torch.utils.data.DataLoader(
            data,
            batch_size=None,
            shuffle=False,
            num_workers=cfg.workers,
            collate_fn=_identity,
            worker_init_fn=_worker_init if cfg.workers > 0 else None,
            prefetch_factor=4 if cfg.workers > 0 else None,
            persistent_workers=False,
            pin_memory=self.device.type == "cuda",
        )
        last_ckpt = time.monotonic()
        planner = _BudgetPlanner(cfg, self.step) if cfg.minutes > 0 else None
        window: list[StepRecord] = []
        t_window = time.perf_counter()
        # host time waiting for the loader vs launching steps: says whether data or the step limits speed
        wait = busy = 0.0
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not progress, dynamic_ncols=True, unit="step")
        try:
            it = iter(loader)
            while True:
                t0 = time.perf_counter()
                batch = next(it, None)
                t1 = time.perf_counter()
                if batch is None:
                    break
                if batch.step != self.step:
                    raise RuntimeError(f"data stream out of step: batch {batch.step} at step {self.step}")
                window.append(self.launch_step(batch))
                wait += t1 - t0
                busy += time.perf_counter() - t1
                bar.update(1)
                if planner is not None and planner.replan(self.step):
                    bar.total = cfg.steps
                    bar.refresh()
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    stats = summarize_steps(window)
                    dt = time.perf_counter() - t_window
                    rec = {
                        "step": self.step,
                        "samples": self.samples_seen,
                        "samples_per_s": round(len(window) * cfg.batch_size / max(dt, 1e-9), 2)
                        if self.step > cfg.vision_steps
                        else 0.0,
                        "images_per_s": round(stats.pop("images") * len(window) / max(dt, 1e-9), 1),
                        "lr_factor": round(_lr_factor(self.step - 1, cfg), 4),
                        "hard_share": round(cfg.tasks.hard_share(self.step - cfg.vision_steps), 3),
                        "data_wait_ms": round(1000 * wait / len(window), 1),
                        "step_host_ms": round(1000 * busy / len(window), 1),
                    }
                    rec.update({k: round(v, 4) for k, v in stats.items()})
                    self._log(rec)
                    bar.set_postfix(loss=rec["loss"], lm=rec["lm"], fimg=rec["fimg"], sps=rec["samples_per_s"])
                    window, t_window, wait, busy = [], time.perf_counter(), 0.0, 0.0
                    if not all(math.isfinite(rec[k]) for k in ("loss", "lm")):
                        raise FloatingPointError(f"non-finite loss at step {self.step}: {rec}")
                if cfg.eval_every > 0 and (self.step % cfg.eval_every == 0 or self.step == cfg.steps):
                    res = self.evaluate()
                    self.history.append(res)
                    self._log({"eval": res})
                    if on_eval:
                        on_eval(res)
                    bar.write(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in res.items()}))
                    # best by held-out ROC AUC: threshold-free, so a model answering "no" to everything
                    # (accuracy 0.6 on this set) does not count as good
                    if self.best is None or res["match_auc"] > self.best.get("match_auc", -1.0):
                        self.best = {"step": self.step, "match_auc": res["match_auc"], "match_acc": res["match_acc"]}
                        if self.out is not None:
                            self.save_checkpoint(self.out / CHECKPOINT_BEST)
                if self.out is not None and (
                    time.monotonic() - last_ckpt >= cfg.checkpoint_minutes * 60 or self.step == cfg.steps
                ):
                    self.save_checkpoint(self.out / CHECKPOINT_LATEST)
                    last_ckpt = time.monotonic()
                if self.step >= cfg.steps:
                    break
        finally:
            bar.close()
            t_window = 0


def measure_model_dir(model: str, concepts: int = 20, describe: int = 48, seed: int = 999) -> dict[str, Any]:
    """Quality of an exported model through the engine, on held-out instances (fresh seeds).

    Description: the keyword answer to a reference view holds the right colour / shape / pattern /
    mark. Recognition: each concept is introduced from one reference view with each selection
    ("ego" = attention top-K_c, "uniform", "random", "all", and "keywords" = Ego memory but keyword
    text in context), then asked about 2 scenes holding it, 2 holding a near-duplicate instead (hard)
    and 1 holding neither (easy). Returns accuracies (threshold 0.5) and ROC AUCs. A model trained on
    world v2 (`model_world.model_world`) is measured on v2 instances: its hard negatives are then
    mostly look-alikes.
    """
    from PIL import Image

    from ego_ros.core.engine import EgoEngine
    from ego_ros.core.introduce import IntroduceOptions

    from .attributes import held_out_instances, near_duplicates, sample_near_duplicate, sample_signature
    from .model_world import model_world
    from .scenes import query_scene, reference_scene

    engine = EgoEngine.load(model)
    backend, runner = engine.backend, engine.runner
    world = model_world(model)
    held = held_out_instances()

    def held_out_instance(rng: np.random.Generator):
        inst = held[int(rng.integers(len(held)))]
        return inst if world == "v1" else inst.with_signature(sample_signature(rng, held_out=True))

    out: dict[str, Any] = {"model": model, "world": world}
    hits: dict[str, list[bool]] = {"colour": [], "shape": [], "pattern": [], "mark": []}
    for i in range(describe):
        rng = np.random.default_rng([seed, 0, i])
        inst = held_out_instance(rng)
        img = Image.fromarray(reference_scene(inst, rng, IMAGE_SIZE, distractor_held_out=None).image)
        (vt,) = backend.encode_images([img])
        with torch.inference_mode():
            ids = runner.generate(view_sequence(backend, vt, backend.prompts.keywords), 12)
        words = [w.lower() for w in split_keywords(backend.decode(ids), backend.prompts.keyword_separator)]
        truth = inst.keywords
        hits["colour"].append(truth[0] in words)
        hits["shape"].append(truth[1] in words)
        hits["pattern"].append(truth[2] in words)
        hits["mark"].append(truth[3] in words and truth[4] in words)
    out.update({f"describe_{k}": float(np.mean(v)) for k, v in hits.items()})
    settings = {
        "ego": ("attention", "memory"),
        "uniform": ("uniform", "memory"),
        "random": ("random", "memory"),
        "all": ("all", "memory"),
        "keywords": ("attention", "keywords"),
    }
    probs: dict[str, dict[str, list[float]]] = {k: {"pos": [], "hard": [], "easy": []} for k in settings}
    k_c = []
    for c in range(concepts):
        rng = np.random.default_rng([seed, 1, c])
        inst = held_out_instance(rng)
        dup = sample_near_duplicate(inst, rng)
        ref = reference_scene(inst, rng, IMAGE_SIZE, distractor_held_out=None)
        queries = []
        for _ in range(2):
            queries.append(("pos", query_scene(rng, IMAGE_SIZE, include=[inst], distractor_held_out=None)))
            queries.append(
                ("hard", query_scene(rng, IMAGE_SIZE, include=[dup], exclude=[inst], distractor_held_out=None))
            )
        queries.append(
            ("easy", query_scene(rng, IMAGE_SIZE, exclude=[inst, *near_duplicates(inst)], distractor_held_out=None))
        )
        for key, (selection, mode) in settings.items():
            engine.set_context(mode)
            mem = engine.introduce(
                "concept",
                [Image.fromarray(ref.image)],
                options=IntroduceOptions(selection=selection),
                replace_existing=True,
            )
            if key == "ego":
                k_c.append(mem.views[0].k_c)
            for kind, q in queries:
                probs[key][kind].append(engine.recognize(Image.fromarray(q.image), ["concept"])[0].probability)
            engine.remove("concept")
    out["mean_k_c"] = float(np.mean(k_c)) if k_c else float("nan")
    for key, r in probs.items():
        pos, hard, easy = (np.asarray(r[k]) for k in ("pos", "hard", "easy"))
        neg = np.concatenate([hard, easy])
        out[key] = {
            "acc": float((np.sum(pos >= 0.5) + np.sum(neg < 0.5)) / max(1, len(pos) + len(neg))),
            "auc": auc(list(pos), list(neg)),
            "auc_pos_vs_hard": auc(list(pos), list(hard)),
            "hard_rejected": float(np.mean(hard < 0.5)) if len(hard) else float("nan"),
            "mean_p_pos": float(np.mean(pos)) if len(pos) else float("nan"),
            "mean_p_hard": float(np.mean(hard)) if len(hard) else float("nan"),
        }
    return out


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
    "init": "--init",
}


def reproduce_flags(cfg: TrainConfig) -> str:
    """The `ego-ros toy train` flags that give `cfg` (seed, steps and every setting off its default)."""
    default = TrainConfig(tiny=cfg.tiny)
    parts = [f"--seed {cfg.seed}", f"--steps {cfg.steps}"]
    for name, flag in _FLAGS.items():
        if name not in ("seed", "steps") and getattr(cfg, name) != getattr(default, name):
            parts.append(f"{flag} {getattr(cfg, name)}")
    if cfg.tasks.ramp_steps != default.tasks.ramp_steps:
        parts.append(f"--ramp-steps {cfg.tasks.ramp_steps}")
    if cfg.tasks.world != default.tasks.world:
        parts.append(f"--world {cfg.tasks.world}")
    if cfg.tiny:
        parts.append("--tiny")
    return " ".join(parts)


def training_markdown(trainer: Trainer) -> str:
    """TRAINING.md of an exported model: how it was trained and what it reached."""
    cfg = trainer.cfg
    params = count_parameters(trainer.model)
    last = trainer.history[-1] if trainer.history else {}
    weights = cfg.tasks.weights
    total = sum(weights.values())
    mix = "\n".join(f"| {k} | {v / total:.0%} |" for k, v in weights.items())
    forms = cfg.tasks.memory_forms
    ftotal = sum(forms.values())
    form_mix = ", ".join(f"{k} {v / ftotal:.0%}" for k, v in forms.items())
    lm_params = params["language_model"] + params["lm_head"]
    nan = float("nan")
    curve = "\n".join(
        f"| {h['step']} | {h['samples']} | {h['match_acc']:.3f} | {h['match_auc']:.3f} | "
        f"{h.get('match_acc_hard', float('nan')):.3f} | {h.get('describe_exact', float('nan')):.3f} |"
        for h in trainer.history[-12:]
    )
    return f"""# The embedded toy model

A tiny LLaVA-family model (`LlavaForConditionalGeneration`) trained from scratch by
`ego-ros toy train` on the synthetic toy world (`ego_ros.toy`), so that the Ego engine runs and can
be measured without pretrained weights. The same schedule in one run:
`ego-ros toy train {reproduce_flags(cfg)} --out runs/toy --export DIR` (add `--device cuda`;
GPU kernels are not bit-reproducible, and a run resumed with other settings differs).

## Architecture ({params["total"] / 1e6:.2f} M parameters)
- SigLIP vision tower: {trainer.spec.vision_layers} layers, hidden {trainer.spec.vision_hidden}, patch
  {trainer.spec.patch_size} on {trainer.spec.image_size}x{trainer.spec.image_size} = {trainer.spec.n_visual_tokens}
  visual tokens ({params["vision"] / 1e6:.2f} M). The projector sees the last encoder layer's output (the
  standard LLaVA path, identical in every transformers version; see `ego_ros.toy.model_config`).
- LLaVA projector Linear-GELU-Linear {trainer.spec.vision_hidden} -> {trainer.spec.text_hidden}
  ({params["projector"] / 1e6:.2f} M).
- Llama language model: {trainer.spec.text_layers} layers, hidden {trainer.spec.text_hidden},
  {trainer.spec.text_heads} heads ({lm_params / 1e6:.2f} M with embeddings and head).
- Tokenizer: whole words of the world and prompts plus byte fallback ({len(trainer.tokenizer)} pieces);
  any concept name tokenizes without an unknown token. Chat template: chatml-like.
- Image processor: SigLIP, resize to 64x64 without crop (a 640x480 frame is squeezed).

## Training mix (share of samples)
| task | share |
|---|---|
{mix}

- match: the engine's recognition prompt ("is {{name}} here?" -> yes/no) with 1-3 concepts in context;
  memory views: {form_mix}; the whole context as keyword text in {cfg.tasks.keywords_context_p:.0%} of
  contexts, memory plus keyword text in {cfg.tasks.memory_keywords_p:.0%}; 1-3 views per concept;
  {cfg.tasks.paraphrase_p:.0%} of the questions in the benchmarks' phrasings ("Is {{name}} in this image?",
  "Can you see {{name}} in this photo?", ...). Negatives easy or hard (a near-duplicate: same shape and colour,
  other mark or pattern); the hard share of negatives ramps 0 -> {cfg.tasks.hard_max} over the first
  {cfg.tasks.ramp_steps} steps.
- describe: "describe the main object." -> "colour, shape, pattern, mark-colour-mark, position".
- area: "how much of the image is the main object?" -> percentage of the image (K_c of paper 3.3).
- attribute: colour / shape / pattern / mark position of the main object, "is there a red star?".
- count: "how many objects?"; caption: "describe the image." -> objects left to right, concepts in the
  context called by name; concept_qa: "What colour is {{a}}?", "Which is bigger in this image, {{a}} or
  {{b}}?", "Is {{a}} to the left of {{b}}?" and the Yo'LLaVA A/B form (answer "A"/"B"); choose: "which is
  here, {{a}} or {{b}}?" -> name.
- Only training instances (held-out instances are evaluation only); names are random strings, never
  an export's concept names; memories are never selected by the model (crops, full scenes, object-mask
  token subsets with or without jitter, random token subsets, keyword text).
- {cfg.tasks.big_render_p:.0%} of images are rendered larger (mostly 4:3) and resized to 64x64 like a camera frame.
- Dense vision supervision (training-only heads, not exported): per-patch shape/colour/pattern/mark
  classification on the projector outputs (weight {cfg.dense_weight}) and a supervised contrastive loss on
  mask-pooled object features across the batch (weight {cfg.contrastive_weight}, temperature {cfg.temperature}).
  Each step also adds vision-only images for these two losses: for {cfg.contrast_instances} training
  instances a reference view and a cluttered query, and the same for a near-duplicate of each.
- Vision-first curriculum: the first {cfg.vision_steps} steps train only the vision tower, projector and
  heads on these two losses ({cfg.vision_instances * 4} images per step, several times more images per
  second than the full mix); the language model, its warm-up and the hard-negative ramp start afterwards.
- AdamW, lr {cfg.lr_vision} (vision tower, projector, heads) and {cfg.lr_lm} (language model), batch
  {cfg.batch_size}, warm-up {cfg.warmup} steps, cosine decay over the last {cfg.decay_frac:.0%} of steps,
  gradient clip {cfg.grad_clip}; bf16 autocast on CUDA only.

## This export
Step {trainer.step}, {trainer.samples_seen} samples. Latest evaluation (held-out instances, {cfg.eval_match}
recognition questions: 40 % positive, 40 % hard negative, 20 % easy; memory = full reference view,
object-mask subset or keywords; {cfg.eval_describe} descriptions):
match accuracy {last.get("match_acc", float("nan")):.3f}, ROC AUC {last.get("match_auc", float("nan")):.3f},
description exact {last.get("describe_exact", nan):.3f} (colour {last.get("describe_colour", nan):.2f},
shape {last.get("describe_shape", float("nan")):.2f}, pattern {last.get("describe_pattern", float("nan")):.2f},
mark {last.get("describe_mark", float("nan")):.2f}).

| step | samples | match acc | match AUC | hard rejected | describe exact |
|---|---|---|---|---|---|
{curve}
"""
