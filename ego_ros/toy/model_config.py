"""Architecture, image processor and prompts of the toy model, and writing a model directory.

The toy model is a plain transformers `LlavaForConditionalGeneration`: a 4-layer SigLIP vision tower
(hidden 128, 8-pixel patches on 64x64 images = 64 visual tokens), LLaVA's Linear-GELU-Linear projector
(128 -> 256) and a 4-layer Llama language model (hidden 256, 4 heads). It loads through the engine's
standard LLaVA backend; nothing here is needed at inference time except to build or export it.

Which vision features the projector sees: LLaVA feeds the projector
``vision_tower(...).hidden_states[vision_feature_layer]``; with ``vision_feature_layer=-1`` and the
"full" select strategy that is SigLIP's last encoder layer output, the residual stream *before* the
tower's ``post_layernorm`` (SigLIP's output capturing keeps the pre-norm state there). The toy notes
asked for a LayerNorm before the projector (a run at learning rate 1e-3 collapsed without one).
transformers 5.23 can give it inside the standard architecture (``tie_last_hidden_states=True`` in the
vision config makes ``hidden_states[-1]`` the post-LayerNorm output), but 5.17, the oldest version this
package supports and the one on the GPU machines, ignores that setting: the same weights would then
compute other features. So the toy model uses the version-independent standard path (pre-norm
features, ``tie_last_hidden_states=False`` set explicitly) and guards against collapse in training
instead: learning rates 2e-4 / 5e-4, dense per-patch supervision of the projector outputs (through
LayerNorm-ed training heads) and a logged measure of how much features vary between images.
`projector_input_is_last_layer` pins this behaviour.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import LlavaConfig, LlavaForConditionalGeneration, PreTrainedTokenizerFast, SiglipVisionConfig

from ego_ros.core.prompts import PROMPTS_FILE, PromptSet
from ego_ros.core.random_models import build_family_processor

from .tokenizer import EOT, IMAGE, PAD

#: The toy model's prompts (ego_prompts.json): short texts inside its vocabulary, the ones it is trained on.
PROMPT_OVERRIDES: dict[str, Any] = {
    "keywords": "describe the main object.",
    "area": "how much of the image is the main object?",
    "context_header": "known:\n",
    "memory_entry": "{name}: {memory}\n",
    "keywords_entry": "{name}: {keywords}\n",
    "memory_keywords_entry": "{name}: {memory} {keywords}\n",
    "reference_entry": "{name}: {memory}\n",
    "context_footer": "",
    "query": "{context}{images}\n{question}",
    "recognition": "is {name} here?",
    "caption": "describe the image.",
    "video_frames_header": "frames:\n",
    "yes": ["yes"],
    "no": ["no"],
    "keyword_separator": ",",
}


def toy_prompts() -> PromptSet:
    """The PromptSet the engine uses with the toy model (defaults overridden by PROMPT_OVERRIDES)."""
    return PromptSet().with_overrides(PROMPT_OVERRIDES)


@dataclass(frozen=True)
class ToyModelSpec:
    """Sizes of the toy model. `tiny()` is a smaller variant for fast tests."""

    image_size: int = 64
    patch_size: int = 8
    vision_hidden: int = 128
    vision_layers: int = 4
    vision_heads: int = 4
    vision_intermediate: int = 512
    text_hidden: int = 256
    text_layers: int = 4
    text_heads: int = 4
    text_kv_heads: int = 4
    text_intermediate: int = 512
    max_positions: int = 2048

    @classmethod
    def tiny(cls) -> ToyModelSpec:
        return cls(
            vision_hidden=32,
            vision_layers=1,
            vision_heads=2,
            vision_intermediate=64,
            text_hidden=64,
            text_layers=2,
            text_heads=2,
            text_kv_heads=2,
            text_intermediate=128,
        )

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def n_visual_tokens(self) -> int:
        return self.grid**2

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def build_config(tokenizer: PreTrainedTokenizerFast, spec: ToyModelSpec) -> LlavaConfig:
    if spec.image_size % spec.patch_size:
        raise ValueError(f"patch size {spec.patch_size} must divide the image size {spec.image_size}")
    vision = SiglipVisionConfig(
        hidden_size=spec.vision_hidden,
        intermediate_size=spec.vision_intermediate,
        num_hidden_layers=spec.vision_layers,
        num_attention_heads=spec.vision_heads,
        image_size=spec.image_size,
        patch_size=spec.patch_size,
        vision_use_head=False,
    )
    # hidden_states[-1] stays the pre-post_layernorm state in every transformers version (see module doc).
    vision.tie_last_hidden_states = False
    eos = tokenizer.convert_tokens_to_ids(EOT)
    pad = tokenizer.convert_tokens_to_ids(PAD)
    text = dict(
        model_type="llama",
        vocab_size=len(tokenizer),
        hidden_size=spec.text_hidden,
        intermediate_size=spec.text_intermediate,
        num_hidden_layers=spec.text_layers,
        num_attention_heads=spec.text_heads,
        num_key_value_heads=spec.text_kv_heads,
        max_position_embeddings=spec.max_positions,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=eos,
        pad_token_id=pad,
    )
    return LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE),
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        image_seq_length=spec.n_visual_tokens,
        projector_hidden_act="gelu",
        tie_word_embeddings=False,
    )


def build_model(
    tokenizer: PreTrainedTokenizerFast, spec: ToyModelSpec | None = None, seed: int = 0
) -> LlavaForConditionalGeneration:
    """A freshly initialised toy model (deterministic by seed)."""
    spec = spec or ToyModelSpec()
    cfg = build_config(tokenizer, spec)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlavaForConditionalGeneration(cfg)
    model.generation_config.eos_token_id = cfg.text_config.eos_token_id
    model.generation_config.pad_token_id = cfg.text_config.pad_token_id
    return model


def build_image_processor(spec: ToyModelSpec | None = None):
    """SigLIP processor that resizes any image to image_size x image_size (no crop): a 640x480 camera
    frame is simply squeezed to 64x64, as in training (see tasks: some scenes are rendered larger)."""
    from transformers import SiglipImageProcessorPil

    spec = spec or ToyModelSpec()
    return SiglipImageProcessorPil(size={"height": spec.image_size, "width": spec.image_size})


def projector_input_is_last_layer(model: LlavaForConditionalGeneration) -> bool:
    """True when LLaVA feeds the projector the last encoder layer's output (before post_layernorm)."""
    cfg = model.config
    size = cfg.vision_config.image_size
    px = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    px = px.to(next(model.parameters()).dtype)
    tower = model.model.vision_tower
    with torch.no_grad():
        x = tower.embeddings(px)
        for layer in tower.encoder.layers:
            x = layer(x, None)
            x = x[0] if isinstance(x, tuple) else x
        want = model.model.multi_modal_projector(x)
        feats = model.model.get_image_features(
            pixel_values=px,
            vision_feature_layer=cfg.vision_feature_layer,
            vision_feature_select_strategy=cfg.vision_feature_select_strategy,
        )
        feats = feats.pooler_output if hasattr(feats, "pooler_output") else feats
    return bool(torch.allclose(torch.stack(list(feats)), want, atol=1e-5))


def count_parameters(model: torch.nn.Module) -> dict[str, int]:
    parts = {
        "vision": model.model.vision_tower,
        "projector": model.model.multi_modal_projector,
        "language_model": model.model.language_model,
        "lm_head": model.lm_head,
    }
    out = {k: sum(p.numel() for p in m.parameters()) for k, m in parts.items()}
    out["total"] = sum(p.numel() for p in model.parameters())
    return out


def save_model_dir(
    out: str | Path,
    model: LlavaForConditionalGeneration,
    tokenizer: PreTrainedTokenizerFast,
    spec: ToyModelSpec | None = None,
    training_md: str | None = None,
    extra_files: dict[str, str] | None = None,
) -> Path:
    """Write a model directory the engine loads with `EgoEngine.load(path)`: weights (safetensors),
    config, tokenizer, image processor, multimodal processor, ego_prompts.json and optionally TRAINING.md."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = model.to(torch.float32)
    model.save_pretrained(out, safe_serialization=True)
    # safetensors files come out owner-only; the package data must be readable by everyone
    for f in out.glob("*.safetensors"):
        f.chmod(0o644)
    tokenizer.save_pretrained(out)
    image_processor = build_image_processor(spec)
    image_processor.save_pretrained(out)
    # the multimodal processor too, so that loading checks the engine's image encoding against it
    build_family_processor("llava", model, tokenizer, image_processor).save_pretrained(out)
    (out / PROMPTS_FILE).write_text(json.dumps(PROMPT_OVERRIDES, indent=2) + "\n", encoding="utf-8")
    if training_md is not None:
        (out / "TRAINING.md").write_text(training_md, encoding="utf-8")
    for name, text in (extra_files or {}).items():
        (out / name).write_text(text, encoding="utf-8")
    return out
