"""Export of a trained toy model: the model directory the engine loads, with its TRAINING.md (how it
was trained and what it reached) and training_state.json. The training-only heads stay behind."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import TYPE_CHECKING

from .model_config import count_parameters, save_model_dir
from .train_config import reproduce_flags

if TYPE_CHECKING:
    from .train import Trainer


def export_model_dir(trainer: Trainer, out: str | Path) -> Path:
    """Write the model directory (weights, tokenizer, processor, prompts, TRAINING.md)."""
    model = copy.deepcopy(trainer.model).cpu().float()
    model.eval()
    path = save_model_dir(out, model, trainer.tokenizer, trainer.spec, training_md=training_markdown(trainer))
    (Path(out) / "training_state.json").write_text(
        json.dumps(
            {
                "step": trainer.step,
                "samples": trainer.samples_seen,
                "seed": trainer.cfg.seed,
                "world_version": trainer.cfg.tasks.world,
                "last_eval": trainer.history[-1] if trainer.history else None,
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    return path


def training_markdown(trainer: Trainer) -> str:
    """TRAINING.md of an exported model: how it was trained and what it reached."""
    cfg = trainer.cfg
    params = count_parameters(trainer.model)
    last = trainer.history[-1] if trainer.history else {}
    raw_note = (
        f"; the same loss on the pooled features without the head, weight {cfg.raw_contrast_weight}"
        if cfg.raw_contrast_weight > 0
        else ""
    )
    weights = dict(cfg.tasks.weights)
    if cfg.tasks.twin_weight > 0:  # draws of a look-alike negative with its positive twin (two samples each)
        weights["match_twin (draws)"] = cfg.tasks.twin_weight
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
  mask-pooled object features across the batch (weight {cfg.contrastive_weight}, temperature
  {cfg.temperature}{raw_note}).
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
