"""Trainer of the toy model: language modelling on engine-format sequences plus dense vision supervision.

Each step takes a packed batch (`ego_ros.toy.batches`: the data depend only on (seed, step), so a run
is reproducible and resumes exactly), encodes every image of the batch once with the vision tower and
projector, places the projector outputs in each sample's token sequence, laid out by the engine's own
`compose.query_sequence` (the same layout the engine uses at inference), and trains on the answer
tokens. Two training-only losses on the projector outputs (`ego_ros.toy.losses`) supervise the vision
tower densely.

Training starts with a vision-first phase (`TrainConfig.vision_steps`): only the vision tower,
projector and heads learn, on many images per step and no text, which on CPU teaches the attributes
several times faster per second than the full mix; then every task trains together.

The pieces around the loop live in their own modules: `train_config` (settings), `schedule`
(optimizer, learning rates, wall-clock budget), `batches` (data), `losses`, `step_stats` (logged
statistics), `checkpoints` (save / resume / `--init`), `train_eval` (held-out evaluation),
`model_export` (the model directory the engine loads) and `measure` (an exported model through the
engine).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ego_ros.core.backends.families import LlavaBackend
from ego_ros.core.compose import view_sequence
from ego_ros.core.sequence import Runner, sequence_embeds

from .batches import (
    PackedBatch,
    PackedGroup,
    VisionTargets,
    batch_at,
    batch_loader,
    image_tokens,
    sample_sequence,
    sequence_packer,
)
from .checkpoints import (
    CHECKPOINT_BEST,
    CHECKPOINT_LATEST,
    checkpoint_state,
    load_weights,
    read_checkpoint,
    restore_state,
    write_checkpoint,
)
from .losses import Heads, contrastive_loss, dense_loss
from .measure import measure_model_dir
from .model_config import PROMPT_OVERRIDES, build_image_processor, build_model, toy_prompts
from .model_export import export_model_dir, training_markdown
from .schedule import BudgetPlanner, build_optimizer, set_learning_rates
from .step_stats import StepRecord, summarize_steps, window_record
from .tasks import ImageData, Sample
from .tokenizer import build_tokenizer
from .train_config import TrainConfig, reproduce_flags
from .train_eval import auc, evaluate_heldout, heldout_sets

# The names below moved to the modules above in the split of this file; they stay importable from here
# for the tests and for code outside the repository written against the old layout.
__all__ = [
    "CHECKPOINT_BEST", "CHECKPOINT_LATEST", "LOG_FILE", "PackedBatch", "StepRecord", "TrainConfig", "Trainer",
    "VisionTargets", "auc", "batch_at", "measure_model_dir", "reproduce_flags", "sequence_packer",
    "summarize_steps", "training_markdown",
]  # fmt: skip
_BudgetPlanner = BudgetPlanner  # its name before the split (test_toy_training uses it)

LOG_FILE = "train_log.jsonl"


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
        self.optimizer = build_optimizer(self.model, self.heads, cfg, self.device)
        self._trained = list(self.model.parameters()) + list(self.heads.parameters())
        self.step = 0
        self.samples_seen = 0
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self._eval_sets: tuple[list[Sample], list] | None = None

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
        # The projector's own (N, 64, D) output, caught by a hook: `get_image_features` hands it back as a
        # list of per-image views, and stacking those again costs an operator per image (about 370 a step
        # at batch 128) and a copy of the batch's features.
        projected: list[torch.Tensor] = []
        hook = self.model.model.multi_modal_projector.register_forward_hook(lambda m, i, o: projected.append(o))
        try:
            out = self.model.model.get_image_features(
                pixel_values=px,
                vision_feature_layer=cfg.vision_feature_layer,
                vision_feature_select_strategy=cfg.vision_feature_select_strategy,
            )
        finally:
            hook.remove()
        feats = out.pooler_output if hasattr(out, "pooler_output") else out
        if len(projected) == 1 and projected[0].shape == (len(feats), *feats[0].shape):
            return projected[0]
        return torch.stack(list(feats))  # a projector output that is not the features themselves

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

    def _lm(self, embeds: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the language model on right-padded sequences; returns hidden states (B, L, D) and lengths."""
        lengths = torch.tensor([e.shape[0] for e in embeds])
        lmax = int(lengths.max())
        d = embeds[0].shape[-1]
        x = embeds[0].new_zeros(len(embeds), lmax, d)
        for i, e in enumerate(embeds):
            x[i, : e.shape[0]] = e
        return self._right_padded_hidden(x), lengths

    def _right_padded_hidden(self, embeds: torch.Tensor) -> torch.Tensor:
        """Hidden states (B, L, D) of the language model on right-padded input embeddings (B, L, D).

        No attention mask: attention is causal and every row's pads come after its own tokens, so no
        position that is read (answers and last tokens lie inside each row's length) ever sees a pad.
        Without a mask transformers builds no 4-D mask, whose padding checks read values back from the GPU
        twice a pass (each read stalls the host; its packed-sequence check on the position ids still reads
        once), and SDPA takes its causal kernel. On the CPU, four training steps with and without the mask
        gave bit-identical parameters."""
        pos = torch.arange(embeds.shape[1], device=embeds.device)[None, :].expand(embeds.shape[0], -1)
        out = self.model.model.language_model(inputs_embeds=embeds, position_ids=pos, use_cache=False)
        return out.last_hidden_state

    # ----- training ----------------------------------------------------------------------------------

    def _packed_hidden(self, group: PackedGroup, feats: torch.Tensor) -> torch.Tensor:
        """Hidden states (b, L, D) of a packed group: one embedding lookup, one scatter of visual rows."""
        dev = self.device
        ids = group.ids.to(dev, non_blocking=True)
        emb = self.backend.embed_ids(ids)
        flat = feats.reshape(-1, feats.shape[-1])
        vals = flat[group.vis_src.to(dev, non_blocking=True)].to(emb.dtype)
        emb = emb.index_put((group.vis_row.to(dev, non_blocking=True), group.vis_pos.to(dev, non_blocking=True)), vals)
        return self._right_padded_hidden(emb)

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
        set_learning_rates(self.optimizer, self.step, cfg)
        vision = batch.vision
        n = batch.n_samples
        with self._autocast():
            feats = self.encode(vision.pixels)
            per_sample = self.sample_losses(batch, feats)
            lm_loss = per_sample.mean() if n else feats.new_zeros((), dtype=torch.float32)
            dense, dense_acc = dense_loss(self.heads, feats, vision.labels)
            contrast, contrast_acc = contrastive_loss(self.heads, feats, vision, cfg.temperature)
            loss = lm_loss + cfg.dense_weight * dense + cfg.contrastive_weight * contrast
            extra_scalars = {}
            if cfg.raw_contrast_weight > 0:
                raw, raw_acc = contrastive_loss(self.heads, feats, vision, cfg.temperature, through_head=False)
                loss = loss + cfg.raw_contrast_weight * raw
                extra_scalars = {"contrast_raw": raw.detach(), "contrast_raw_acc": raw_acc}
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
        scalars.update(extra_scalars)
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
        """The keyword description the model generates for each image (the engine's keywords prompt)."""
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
        """Held-out evaluation at the current step (`train_eval.evaluate_heldout`)."""
        if self._eval_sets is None:
            self._eval_sets = heldout_sets(self.cfg)
        return evaluate_heldout(self, *self._eval_sets)

    # ----- checkpoints (`ego_ros.toy.checkpoints`) -----------------------------------------------------
    def state(self) -> dict[str, Any]:
        return checkpoint_state(self)

    def save_checkpoint(self, path: str | Path) -> Path:
        return write_checkpoint(self.state(), path)

    def load_state(self, state: dict[str, Any]) -> None:
        restore_state(self, state)

    @classmethod
    def from_checkpoint(cls, path: str | Path, out: str | Path | None = None, **overrides: Any) -> Trainer:
        """Resume: the checkpoint's config, with `overrides` (e.g. steps, device, workers, threads)."""
        cfg, state = read_checkpoint(path, **overrides)
        trainer = cls(cfg, out)
        trainer.load_state(state)
        return trainer

    def export(self, out: str | Path) -> Path:
        """Write the model directory (`model_export.export_model_dir`)."""
        return export_model_dir(self, out)

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
        loader = batch_loader(cfg, self.step, pin_memory=self.device.type == "cuda")
        last_ckpt = time.monotonic()
        planner = BudgetPlanner(cfg, self.step) if cfg.minutes > 0 else None
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
                    rec = window_record(window, cfg, self.step, self.samples_seen, t_window, wait, busy)
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
