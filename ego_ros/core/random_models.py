"""Randomly initialised vision-language models built from configs, with a tokenizer made from scratch.

No pretrained weights can be downloaded on the machines this project is built on, yet every backend
must be exercised for real. These builders give real transformers models of each supported family:
tiny ones for the tests (well under a second to build) and ones with the published sizes of
Qwen2.5-VL-7B and InternVL3-14B for latency benchmarks (timing does not depend on weight values).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS = [
    "Describe the main subject of this image in a few keywords.",
    "What percentage of the image does the main subject cover? Answer with a number.",
    "Is this concept in this image? Answer with yes or no. Yes No yes no",
    "Known concepts: a red mug with a white handle, a brown dog on green grass, a person in a blue shirt.",
    "Describe this image. Name any known concept that appears in it.",
    "Question: What colour is the object? Options: A. red B. blue. Please give a single character.",
    "0 1 2 3 4 5 6 7 8 9 10 20 25 30 40 50 60 70 75 80 90 100 percent %",
    "the a an of in on with and is are this that it its small large round square striped dotted",
    "cat dog mug cup bottle chair table person man woman child toy car ball book phone shoe bag",
    "red green blue yellow white black orange purple pink grey brown",
]

FAMILY_SPECIALS: dict[str, list[str]] = {
    "llava": ["<image>"],
    "qwen2_5_vl": ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"],
    "qwen3_vl": ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"],
    "internvl": ["<img>", "</img>", "<IMG_CONTEXT>"],
}
COMMON_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def build_tokenizer(family: str, vocab_size: int = 512, corpus: list[str] | None = None) -> PreTrainedTokenizerFast:
    """Train a small byte-level BPE tokenizer with the family's special tokens and a chatml template."""
    specials = COMMON_SPECIALS + FAMILY_SPECIALS[family]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus or _CORPUS, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        additional_special_tokens=FAMILY_SPECIALS[family],
    )
    fast.chat_template = CHATML_TEMPLATE
    if family == "internvl":
        # InternVL's processor reads these attributes; kept for save/load compatibility.
        fast.start_image_token = "<img>"
        fast.end_image_token = "</img>"
        fast.context_image_token = "<IMG_CONTEXT>"
    return fast


def _construct(cls: Any, cfg: Any, dtype: torch.dtype, device: str) -> Any:
    """Instantiate directly on the target device in the target dtype: a 14B model built in float32 on
    the CPU first would need 56 GB of host memory and minutes of initialisation."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            return cls(cfg)
    finally:
        torch.set_default_dtype(previous)


@dataclass
class RandomModel:
    """A randomly initialised model with the tokenizer and image processor that go with it."""

    model: Any
    tokenizer: PreTrainedTokenizerFast
    image_processor: Any
    family: str

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        self.image_processor.save_pretrained(path)
        return path


def _text_config(kind: str, vocab: int, hidden: int, layers: int, heads: int, kv_heads: int,
                 inter: int, **extra: Any) -> dict[str, Any]:
    cfg = dict(
        model_type=kind,
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=32768,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        bos_token_id=None,
    )
    cfg.update(extra)
    return cfg


SIZES: dict[str, dict[str, Any]] = {
    # Tiny: for the tests.
    "tiny": dict(hidden=64, layers=3, heads=4, kv_heads=2, inter=128, v_hidden=32, v_layers=2, v_heads=2,
                 v_inter=64, vocab=None),
    # Published sizes (Qwen2.5-VL-7B-Instruct and InternVL3-14B config.json values) for GPU benchmarks.
    "qwen2_5_vl_7b": dict(hidden=3584, layers=28, heads=28, kv_heads=4, inter=18944, v_hidden=1280,
                          v_layers=32, v_heads=16, v_inter=3420, vocab=152064),
    "internvl3_14b": dict(hidden=5120, layers=48, heads=40, kv_heads=8, inter=13824, v_hidden=1024,
                          v_layers=24, v_heads=16, v_inter=4096, vocab=151674, image_px=448),
    # The embedded toy model's architecture (LLaVA only), with random weights: for tests of what is keyed
    # on the architecture alone (layer_defaults).
    "toy": dict(hidden=256, layers=4, heads=4, kv_heads=4, inter=512, v_hidden=128, v_layers=4, v_heads=4,
                v_inter=512, vocab=1017, image_px=64),
}


def build_random_model(family: str, size: str = "tiny", seed: int = 0, dtype: torch.dtype = torch.float32,
                       device: str = "cpu", image_px: int | None = None,
                       vision: str = "siglip") -> RandomModel:
    """Build a randomly initialised model of `family` ("llava", "qwen2_5_vl", "internvl").

    `vision` picks the LLaVA tower ("siglip" or "clip"). `image_px` is the square input size the image
    processor resizes to (tiny defaults keep the number of visual tokens small; a size whose published
    config fixes it, like InternVL3-14B's 448 px, defaults to that).
    """
    from transformers import (
        AutoConfig,
        InternVLConfig,
        InternVLForConditionalGeneration,
        LlavaConfig,
        LlavaForConditionalGeneration,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
    )
    from transformers import (
        CLIPImageProcessorPil as CLIPImageProcessor,
    )
    from transformers import (
        GotOcr2ImageProcessorPil as GotOcr2ImageProcessor,
    )
    from transformers import (
        Qwen2VLImageProcessorPil as Qwen2VLImageProcessor,
    )
    from transformers import (
        SiglipImageProcessorPil as SiglipImageProcessor,
    )

    s = SIZES[size]
    tok = build_tokenizer(family)
    vocab = s["vocab"] or max(len(tok), 64)
    torch.manual_seed(seed)
    ids = {t: tok.convert_tokens_to_ids(t) for t in COMMON_SPECIALS + FAMILY_SPECIALS[family]}
    eos, pad = ids["<|im_end|>"], ids["<|endoftext|>"]
    image_px = image_px or s.get("image_px")
    if family == "llava":
        px = image_px or 32
        patch = 8
        vis_kind = "siglip_vision_model" if vision == "siglip" else "clip_vision_model"
        vcfg = AutoConfig.for_model(vis_kind, hidden_size=s["v_hidden"], intermediate_size=s["v_inter"],
                                    num_hidden_layers=s["v_layers"], num_attention_heads=s["v_heads"],
                                    image_size=px, patch_size=patch)
        tcfg = _text_config("llama", vocab, s["hidden"], s["layers"], s["heads"], s["kv_heads"], s["inter"],
                            eos_token_id=eos, pad_token_id=pad)
        n_tokens = (px // patch) ** 2
        cfg = LlavaConfig(vision_config=vcfg, text_config=tcfg, image_token_index=ids["<image>"],
                          vision_feature_select_strategy="full" if vision == "siglip" else "default",
                          vision_feature_layer=-1, image_seq_length=n_tokens)
        model = _construct(LlavaForConditionalGeneration, cfg, dtype, device)
        if vision == "siglip":
            proc = SiglipImageProcessor(size={"height": px, "width": px})
        else:
            proc = CLIPImageProcessor(size={"shortest_edge": px}, crop_size={"height": px, "width": px})
    elif family == "qwen2_5_vl":
        px = image_px or 112
        head_dim = s["hidden"] // s["heads"]
        # mrope_section must sum to head_dim / 2; proportions as published (16, 24, 24 of 64).
        half = head_dim // 2
        t_sec = half // 4
        h_sec = (half - t_sec) // 2
        mrope = [t_sec, h_sec, half - t_sec - h_sec]
        tcfg = _text_config("qwen2_5_vl_text", vocab, s["hidden"], s["layers"], s["heads"], s["kv_heads"],
                            s["inter"], rope_parameters={"rope_type": "default", "rope_theta": 1000000.0,
                                                         "mrope_section": mrope},
                            eos_token_id=eos, pad_token_id=pad)
        vcfg = dict(depth=s["v_layers"], hidden_size=s["v_hidden"], intermediate_size=s["v_inter"],
                    num_heads=s["v_heads"], out_hidden_size=s["hidden"], patch_size=14, spatial_merge_size=2,
                    temporal_patch_size=2, window_size=112, fullatt_block_indexes=[s["v_layers"] - 1])
        cfg = Qwen2_5_VLConfig(text_config=tcfg, vision_config=vcfg, image_token_id=ids["<|image_pad|>"],
                               video_token_id=ids["<|video_pad|>"],
                               vision_start_token_id=ids["<|vision_start|>"],
                               vision_end_token_id=ids["<|vision_end|>"], eos_token_id=eos, pad_token_id=pad,
                               bos_token_id=None)
        model = _construct(Qwen2_5_VLForConditionalGeneration, cfg, dtype, device)
        proc = Qwen2VLImageProcessor(min_pixels=px * px, max_pixels=px * px)
    elif family == "internvl":
        px = image_px or 64
        patch = 14 if px % 14 == 0 else 8
        vcfg = dict(hidden_size=s["v_hidden"], intermediate_size=s["v_inter"], num_hidden_layers=s["v_layers"],
                    num_attention_heads=s["v_heads"], image_size=[px, px], patch_size=[patch, patch])
        tcfg = _text_config("qwen2", vocab, s["hidden"], s["layers"], s["heads"], s["kv_heads"], s["inter"],
                            eos_token_id=eos, pad_token_id=pad)
        n_tokens = (px // patch // 2) ** 2
        cfg = InternVLConfig(vision_config=vcfg, text_config=tcfg, image_token_id=ids["<IMG_CONTEXT>"],
                             image_seq_length=n_tokens, tie_word_embeddings=False)
        model = _construct(InternVLForConditionalGeneration, cfg, dtype, device)
        proc = GotOcr2ImageProcessor(size={"height": px, "width": px}, crop_to_patches=False)
    elif family == "qwen3_vl":
        from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

        px = image_px or 128
        head_dim = s["hidden"] // s["heads"]
        half = head_dim // 2
        t_sec = half // 4
        h_sec = (half - t_sec) // 2
        tcfg = _text_config("qwen3_vl_text", vocab, s["hidden"], s["layers"], s["heads"], s["kv_heads"],
                            s["inter"], head_dim=head_dim,
                            rope_parameters={"rope_type": "default", "rope_theta": 5000000.0,
                                             "mrope_section": [t_sec, h_sec, half - t_sec - h_sec],
                                             "mrope_interleaved": True},
                            eos_token_id=eos, pad_token_id=pad)
        tcfg.pop("model_type")
        vcfg = dict(depth=s["v_layers"], hidden_size=s["v_hidden"], intermediate_size=s["v_inter"],
                    num_heads=s["v_heads"], out_hidden_size=s["hidden"], patch_size=16, spatial_merge_size=2,
                    temporal_patch_size=2, num_position_embeddings=64,
                    deepstack_visual_indexes=list(range(min(2, s["v_layers"]))))
        cfg = Qwen3VLConfig(text_config=tcfg, vision_config=vcfg, image_token_id=ids["<|image_pad|>"],
                            video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                            vision_end_token_id=ids["<|vision_end|>"])
        model = _construct(Qwen3VLForConditionalGeneration, cfg, dtype, device)
        proc = Qwen2VLImageProcessor(min_pixels=px * px, max_pixels=px * px, patch_size=16, merge_size=2)
    else:
        raise ValueError(f"unknown model family {family!r}; expected llava, qwen2_5_vl, qwen3_vl or internvl")
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = pad
    model = model.eval()
    return RandomModel(model=model, tokenizer=tok, image_processor=proc, family=family)
