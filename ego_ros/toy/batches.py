"""The training data of each step, from samples to the tensors a step consumes.

`batch_at` draws a step's samples and vision-only images (they depend only on (seed, step), so a run
is reproducible and resumes exactly); `SequencePacker` lays them out with the engine's own sequence
builder as token ids plus a map of where projector outputs go (`PackedBatch`); `batch_loader` yields
the packed batches of a run in order, built in data-loader workers when there are any.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ego_ros.core.backends.base import VisualTokens
from ego_ros.core.backends.families import LlavaBackend
from ego_ros.core.compose import ContextEntry, query_sequence
from ego_ros.core.sequence import Sequence, VisualBlock

from .model_config import ToyModelSpec, build_image_processor, build_model, toy_prompts
from .tasks import IMAGE_SIZE, ImageData, Sample, contrast_images, make_batch
from .tokenizer import build_tokenizer
from .train_config import TrainConfig


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
    """The batch of one step as the trainer consumes it (what `batch_loader` yields)."""
    _, samples, extra = batch_at(cfg, step)
    return sequence_packer(cfg.spec).pack(step, samples, extra, cfg.lm_group)


class _BatchDataset(torch.utils.data.Dataset):
    """Batch k is the batch of step start + k; generated in DataLoader workers when there are any."""

    def __init__(self, cfg: TrainConfig, start: int) -> None:
        self.cfg, self.start = cfg, start

    def __len__(self) -> int:
        return max(0, self.cfg.steps - self.start)

    def __getitem__(self, k: int) -> PackedBatch:
        return packed_batch_at(self.cfg, self.start + k)


def _identity(x):
    # the batches come packed (no collation); a module-level function, unlike a lambda, pickles into
    # worker processes started by spawn
    return x


def _worker_init(_: int) -> None:
    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def batch_loader(cfg: TrainConfig, start: int, pin_memory: bool = False) -> torch.utils.data.DataLoader:
    """The packed batches of steps `start`, `start + 1`, ... up to `cfg.steps`, in order, built in
    `cfg.workers` worker processes (0: in this one). `pin_memory` pages them in for async copies to a GPU."""
    return torch.utils.data.DataLoader(
        _BatchDataset(cfg, start),
        batch_size=None,
        shuffle=False,
        num_workers=cfg.workers,
        collate_fn=_identity,
        worker_init_fn=_worker_init if cfg.workers > 0 else None,
        prefetch_factor=4 if cfg.workers > 0 else None,
        persistent_workers=False,
        pin_memory=pin_memory,
    )
