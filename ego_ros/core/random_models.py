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
    "qwen2_vl": ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"],
    "qwen2_5_vl": ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"],
    "qwen3_vl": ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"],
    "internvl": ["<img>", "</img>", "<IMG_CONTEXT>", "<video>"],
    "gemma3": ["<start_of_image>", "<end_of_image>", "<image_soft_token>"],
    "llava_next": ["<image>"],
    "llava_onevision": ["<image>", "<video>"],
    # Idefics3 / SmolVLM: the image frame, the global-image tag, one tag per tile of a split image (the
    # processor knows up to 6 x 6 tiles) and the end of a turn, all single added tokens as in the published
    # tokenizers.
    "idefics3": ["<fake_token_around_image>", "<image>", "<global-img>", "<end_of_utterance>"]
    + [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)],
}
FAMILY_SPECIALS["smolvlm"] = FAMILY_SPECIALS["idefics3"]
COMMON_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

#: Idefics3 / SmolVLM turns: "<|im_start|>User: ...<end_of_utterance>\nAssistant:" (the published
#: template's form for text content), ending a turn with their own end-of-utterance token.
IDEFICS3_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}: {{ message['content'] }}"
    "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
)
#: Gemma 3's chat turns, as its published template renders them: a BOS first, `user` / `model` roles,
#: text content trimmed.
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "<start_of_turn>{{ role }}\n"
    "{% if message['content'] is string %}{{ message['content'] | trim }}{% else %}"
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}<start_of_image>"
    "{% elif item['type'] == 'text' %}{{ item['text'] | trim }}{% endif %}{% endfor %}{% endif %}"
    "<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


@dataclass(frozen=True)
class ChatFormat:
    """A family's own chat tokens: the special tokens every prompt uses, end/pad/begin tokens, template."""

    specials: tuple[str, ...]
    eos: str
    pad: str
    bos: str | None
    template: str
    #: text the tokenizer learns besides the shared corpus
    corpus: tuple[str, ...] = ()


CHATML = ChatFormat(tuple(COMMON_SPECIALS), eos="<|im_end|>", pad="<|endoftext|>", bos=None,
                    template=CHATML_TEMPLATE)
_IDEFICS3 = ChatFormat(tuple(COMMON_SPECIALS), eos="<end_of_utterance>", pad="<|endoftext|>", bos=None,
                       template=IDEFICS3_TEMPLATE,
                       # Idefics3's split-image prompt has "\n\n" before the global image, one token in the
                       # published tokenizers, so the tiny one merges it too
                       corpus=("rows\n\nof\n\ntiles\n\n",) * 4)
CHAT_FORMATS: dict[str, ChatFormat] = {
    "idefics3": _IDEFICS3,
    "smolvlm": _IDEFICS3,
    "gemma3": ChatFormat(("<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>"), eos="<end_of_turn>",
                         pad="<pad>", bos="<bos>", template=GEMMA_TEMPLATE,
                         # Gemma's vocabulary holds runs of newlines as single tokens; so does the tiny one
                         corpus=("a\nb\n\nc\n\n\n",) * 8),
}


def chat_format(family: str) -> ChatFormat:
    return CHAT_FORMATS.get(family, CHATML)


def build_tokenizer(family: str, vocab_size: int = 512, corpus: list[str] | None = None) -> PreTrainedTokenizerFast:
    """Train a small byte-level BPE tokenizer with the family's special tokens and chat template
    (chatml unless the family has its own, `CHAT_FORMATS`)."""
    fmt = chat_format(family)
    specials = list(fmt.specials) + FAMILY_SPECIALS[family]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus or _CORPUS + list(fmt.corpus), trainer=trainer)
    # The family's processor reads these named tokens (and their ids) from the tokenizer; named special
    # tokens are saved with it, as in the published checkpoints (Gemma 3: boi/eoi frame an image and the
    # soft token stands per row; InternVL: its image start, end and context tokens).
    named = {}
    if family == "gemma3":
        named = {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"}
    elif family == "internvl":
        named = {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>",
                 "video_token": "<video>"}
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=fmt.eos,
        pad_token=fmt.pad,
        bos_token=fmt.bos,
        additional_special_tokens=FAMILY_SPECIALS[family],
        **({"extra_special_tokens": named} if named else {}),
    )
    fast.chat_template = fmt.template
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
    #: the family's multimodal processor (tokenizer + image processor + image token expansion), as a
    #: published checkpoint ships it; None for a family without one here
    processor: Any = None

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        self.image_processor.save_pretrained(path)
        if self.processor is not None:
            self.processor.save_pretrained(path)
        return path


def build_family_processor(family: str, model: Any, tokenizer: Any, image_processor: Any) -> Any:
    """The processor a checkpoint of `family` ships, built from its parts and the model's config."""
    from .processors import build_processor

    cfg = model.config
    parts = dict(image_processor=image_processor, tokenizer=tokenizer)
    if family in ("llava", "llava_next"):
        clip = cfg.vision_config.model_type == "clip_vision_model"
        name = "LlavaProcessor" if family == "llava" else "LlavaNextProcessor"
        return build_processor(name, patch_size=cfg.vision_config.patch_size,
                               vision_feature_select_strategy=cfg.vision_feature_select_strategy,
                               num_additional_image_tokens=1 if clip else 0, **parts)
    if family == "internvl":
        return build_processor("InternVLProcessor", image_seq_length=cfg.image_seq_length, **parts)
    if family == "llava_onevision":
        side = cfg.vision_config.image_size // cfg.vision_config.patch_size
        return build_processor("LlavaOnevisionProcessor", num_image_tokens=side * side,
                               vision_feature_select_strategy=cfg.vision_feature_select_strategy,
                               vision_aspect_ratio=cfg.vision_aspect_ratio, **parts)
    if family == "idefics3":
        vision = cfg.vision_config
        side = vision.image_size // vision.patch_size // cfg.scale_factor
        return build_processor("Idefics3Processor", image_seq_len=side * side, **parts)
    if family == "gemma3":
        # Gemma3Processor expands an image to 256 soft tokens unless told the model's count
        return build_processor("Gemma3Processor", image_seq_length=cfg.mm_tokens_per_image, **parts)
    names = {"qwen2_vl": "Qwen2VLProcessor", "qwen2_5_vl": "Qwen2_5_VLProcessor", "qwen3_vl": "Qwen3VLProcessor"}
    return build_processor(names[family], **parts) if family in names else None


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
    # Jetson-class published sizes: Qwen2-VL-2B-Instruct and Gemma-3-4B-it (config.json values; both tie
    # the LM head to the embeddings; Gemma 3: 256-wide heads, a 1024-token window on 5 of every 6 layers,
    # a 896 px SigLIP-so400m tower with 14 px patches pooled to 16 x 16 soft tokens; Gemma's RoPE scaling is
    # left at the default: it changes no shape and no timing).
    "qwen2_vl_2b": dict(hidden=1536, layers=28, heads=12, kv_heads=2, inter=8960, v_hidden=1280, v_layers=32,
                        v_heads=16, v_inter=5120, vocab=151936, tie=True),
    "gemma3_4b": dict(hidden=2560, layers=34, heads=8, kv_heads=4, inter=10240, v_hidden=1152, v_layers=27,
                      v_heads=16, v_inter=4304, vocab=262208, tie=True, head_dim=256, window=1024, global_every=6,
                      patch=14, tokens_per_side=16, px=896),
    # The embedded toy model's architecture (LLaVA only), with random weights: for tests of what is keyed
    # on the architecture alone (layer_defaults).
    "toy": dict(hidden=256, layers=4, heads=4, kv_heads=4, inter=512, v_hidden=128, v_layers=4, v_heads=4,
                v_inter=512, vocab=1017, image_px=64),
}


def anyres_pinpoints(side: int) -> list[list[int]]:
    """Small anyres grid pinpoints (height, width) of `side` px crops: 1x1 .. 2x2, 1x3 and 3x1."""
    return [[side * r, side * c] for r, c in [(1, 1), (1, 2), (2, 1), (2, 2), (1, 3), (3, 1)]]


def _anyres_model(family: str, s: dict[str, Any], vocab: int, ids: dict[str, int], dtype: torch.dtype,
                  device: str, px: int, vision: str, vision_aspect_ratio: str, patch: int = 8,
                  pinpoints: list[list[int]] | None = None) -> tuple[Any, Any]:
    """A tiny LLaVA-NeXT (CLIP tower unless `vision` says siglip) or LLaVA-OneVision (SigLIP) and its
    anyres image processor."""
    import transformers

    pinpoints = pinpoints or anyres_pinpoints(px)
    onevision = family == "llava_onevision"
    clip = not onevision and vision == "clip"
    vcfg = transformers.AutoConfig.for_model(
        "clip_vision_model" if clip else "siglip_vision_model", hidden_size=s["v_hidden"],
        intermediate_size=s["v_inter"], num_hidden_layers=s["v_layers"], num_attention_heads=s["v_heads"],
        image_size=px, patch_size=patch)
    tcfg = _text_config("qwen2" if onevision else "llama", vocab, s["hidden"], s["layers"], s["heads"],
                        s["kv_heads"], s["inter"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])
    common = dict(vision_config=vcfg, text_config=tcfg, image_token_index=ids["<image>"], vision_feature_layer=-1,
                  vision_feature_select_strategy="default" if clip else "full",
                  image_grid_pinpoints=pinpoints, tie_word_embeddings=False)
    if onevision:
        cfg = transformers.LlavaOnevisionConfig(video_token_index=ids["<video>"],
                                                vision_aspect_ratio=vision_aspect_ratio, **common)
        model = _construct(transformers.LlavaOnevisionForConditionalGeneration, cfg, dtype, device)
        proc = transformers.LlavaOnevisionImageProcessorPil(size={"height": px, "width": px},
                                                            image_grid_pinpoints=pinpoints)
    else:
        cfg = transformers.LlavaNextConfig(image_seq_length=(px // patch) ** 2, **common)
        model = _construct(transformers.LlavaNextForConditionalGeneration, cfg, dtype, device)
        proc = transformers.LlavaNextImageProcessorPil(size={"shortest_edge": px},
                                                       crop_size={"height": px, "width": px},
                                                       image_grid_pinpoints=pinpoints)
    return model, proc


def build_random_model(family: str, size: str = "tiny", seed: int = 0, dtype: torch.dtype = torch.float32,
                       device: str = "cpu", image_px: int | None = None,
                       vision: str = "siglip", vision_aspect_ratio: str = "anyres_max_9",
                       patch_px: int | None = None, pinpoints: list[list[int]] | None = None) -> RandomModel:
    """Build a randomly initialised model of `family` (a key of `FAMILY_SPECIALS`).

    `vision` picks the LLaVA tower ("siglip" or "clip"). `image_px` is the square input size the image
    processor resizes to (tiny defaults keep the number of visual tokens small); for the anyres families
    (LLaVA-NeXT, LLaVA-OneVision) it is the crop size, and the grid pinpoints are canvases of up to 2 x 2
    crops (plus 1 x 3 and 3 x 1) unless `pinpoints` are given; `patch_px` is their tower's patch size
    (8 unless given: published geometries such as 384 px crops of 14 px patches are tiny towers too).
    `vision_aspect_ratio` is LLaVA-OneVision's downsampling bound.
    A size whose published config fixes the image size (InternVL3-14B's 448 px) defaults to it.
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
    fmt = chat_format(family)
    ids = {t: tok.convert_tokens_to_ids(t) for t in list(fmt.specials) + FAMILY_SPECIALS[family]}
    eos, pad = ids[fmt.eos], ids[fmt.pad]
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
        mrope = _mrope_section(s["hidden"] // s["heads"])
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
    elif family == "qwen2_vl":
        model, proc = _qwen2_vl(s, vocab, ids, image_px or 112, dtype, device)
    elif family == "gemma3":
        model, proc = _gemma3(s, vocab, ids, image_px, dtype, device)
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
        tcfg = _text_config("qwen3_vl_text", vocab, s["hidden"], s["layers"], s["heads"], s["kv_heads"],
                            s["inter"], head_dim=head_dim,
                            rope_parameters={"rope_type": "default", "rope_theta": 5000000.0,
                                             "mrope_section": _mrope_section(head_dim),
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
    elif family in ("llava_next", "llava_onevision"):
        model, proc = _anyres_model(family, s, vocab, ids, dtype, device, image_px or 32, vision, vision_aspect_ratio,
                                    patch_px or 8, pinpoints)
    elif family in ("idefics3", "smolvlm"):
        model, proc = _idefics3_model(family, s, vocab, ids["<image>"], eos, pad, image_px, dtype, device)
    else:
        raise ValueError(f"unknown model family {family!r}; expected one of {sorted(FAMILY_SPECIALS)}")
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = pad
    model = model.eval()
    return RandomModel(model=model, tokenizer=tok, image_processor=proc, family=family,
                       processor=build_family_processor(family, model, tok, proc))


def _mrope_section(head_dim: int) -> list[int]:
    """An M-RoPE section (temporal, height, width) summing to head_dim / 2, in the published proportions
    (16, 24, 24 of 64)."""
    half = head_dim // 2
    t_sec = half // 4
    h_sec = (half - t_sec) // 2
    return [t_sec, h_sec, half - t_sec - h_sec]


def _qwen2_vl(s: dict[str, Any], vocab: int, ids: dict[str, int], px: int, dtype: torch.dtype, device: str):
    """Qwen2-VL: the Qwen2.5-VL layout with Qwen2-VL's tower (no window attention, `embed_dim` and an
    `mlp_ratio` where Qwen2.5-VL has hidden and intermediate sizes; its `hidden_size` is the LLM width)."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration
    from transformers import Qwen2VLImageProcessorPil as Qwen2VLImageProcessor

    eos, pad = ids["<|im_end|>"], ids["<|endoftext|>"]
    tcfg = _text_config("qwen2_vl_text", vocab, s["hidden"], s["layers"], s["heads"], s["kv_heads"], s["inter"],
                        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0,
                                         "mrope_section": _mrope_section(s["hidden"] // s["heads"])},
                        eos_token_id=eos, pad_token_id=pad)
    vcfg = dict(depth=s["v_layers"], embed_dim=s["v_hidden"], hidden_size=s["hidden"], num_heads=s["v_heads"],
                mlp_ratio=s["v_inter"] // s["v_hidden"], patch_size=14, spatial_merge_size=2, temporal_patch_size=2)
    cfg = Qwen2VLConfig(text_config=tcfg, vision_config=vcfg, image_token_id=ids["<|image_pad|>"],
                        video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                        vision_end_token_id=ids["<|vision_end|>"], eos_token_id=eos, pad_token_id=pad,
                        bos_token_id=None, tie_word_embeddings=s.get("tie", False))
    model = _construct(Qwen2VLForConditionalGeneration, cfg, dtype, device)
    return model, Qwen2VLImageProcessor(min_pixels=px * px, max_pixels=px * px)


#: Gemma 3 tiny: the sliding window of the local layers (shorter than every test prompt and than an
#: image's 16 soft tokens, so the window and the bidirectional image block are both exercised)
GEMMA_TINY_WINDOW = 12


def _gemma3(s: dict[str, Any], vocab: int, ids: dict[str, int], px: int | None, dtype: torch.dtype, device: str):
    """Gemma 3: a SigLIP tower whose patch grid the projector average-pools to a square of soft tokens, a
    Gemma 3 LLM with sliding-window and global layers (published pattern: 5 local, then 1 global). Tiny:
    8 x 8 patches pooled to 4 x 4 soft tokens, 2 local layers then 1 global."""
    from transformers import AutoConfig, Gemma3Config, Gemma3ForConditionalGeneration
    from transformers import Gemma3ImageProcessorPil as Gemma3ImageProcessor

    px = px or s.get("px", 64)
    tokens_per_side = s.get("tokens_per_side", 4)
    patch = s.get("patch") or px // (2 * tokens_per_side)
    if px % patch or (px // patch) % tokens_per_side:
        raise ValueError(f"Gemma 3 at {px} px: {patch} px patches do not pool to {tokens_per_side} soft tokens a side")
    vcfg = AutoConfig.for_model("siglip_vision_model", hidden_size=s["v_hidden"], intermediate_size=s["v_inter"],
                                num_hidden_layers=s["v_layers"], num_attention_heads=s["v_heads"], image_size=px,
                                patch_size=patch, vision_use_head=False)
    head_dim = s.get("head_dim", s["hidden"] // s["heads"])
    every = s.get("global_every", 3)
    layer_types = ["full_attention" if (i + 1) % every == 0 else "sliding_attention" for i in range(s["layers"])]
    tcfg = dict(model_type="gemma3_text", vocab_size=vocab, hidden_size=s["hidden"], intermediate_size=s["inter"],
                num_hidden_layers=s["layers"], num_attention_heads=s["heads"], num_key_value_heads=s["kv_heads"],
                head_dim=head_dim, query_pre_attn_scalar=head_dim, sliding_window=s.get("window", GEMMA_TINY_WINDOW),
                layer_types=layer_types, max_position_embeddings=32768, rms_norm_eps=1e-6,
                eos_token_id=ids["<end_of_turn>"], pad_token_id=ids["<pad>"], bos_token_id=ids["<bos>"])
    cfg = Gemma3Config(text_config=tcfg, vision_config=vcfg, mm_tokens_per_image=tokens_per_side ** 2,
                       boi_token_index=ids["<start_of_image>"], eoi_token_index=ids["<end_of_image>"],
                       image_token_index=ids["<image_soft_token>"], tie_word_embeddings=s.get("tie", True))
    model = _construct(Gemma3ForConditionalGeneration, cfg, dtype, device)
    return model, Gemma3ImageProcessor(size={"height": px, "width": px}, image_mean=[0.5] * 3, image_std=[0.5] * 3)


def _idefics3_model(family: str, s: dict[str, Any], vocab: int, image_token: int, eos: int, pad: int,
                    image_px: int | None, dtype: torch.dtype, device: str) -> tuple[Any, Any]:
    """An Idefics3 or SmolVLM model and its image processor (tiles of `image_px`, default 64 px).

    The connector merges scale x scale patches as published (Idefics3 2, SmolVLM 4); the patch size is the
    largest that leaves at least 4 x 4 tokens per tile. The processor splits large images into tiles as
    the published ones do (longest edge up to 4 tiles)."""
    import transformers

    px = image_px or 64
    scale = 2 if family == "idefics3" else 4
    patch = next((p for p in (16, 14, 8, 4, 2) if px % p == 0 and (px // p) % scale == 0 and px // p // scale >= 4),
                 None)
    if patch is None:
        raise ValueError(f"a {family} tile of {px} px has no patch size giving a whole {scale}x{scale} merge")
    prefix = "Idefics3" if family == "idefics3" else "SmolVLM"
    vcfg = dict(hidden_size=s["v_hidden"], intermediate_size=s["v_inter"], num_hidden_layers=s["v_layers"],
                num_attention_heads=s["v_heads"], image_size=px, patch_size=patch)
    tcfg = _text_config("llama", vocab, s["hidden"], s["layers"], s["heads"], s["kv_heads"], s["inter"],
                        eos_token_id=eos, pad_token_id=pad)
    cfg = getattr(transformers, f"{prefix}Config")(vision_config=vcfg, text_config=tcfg, image_token_id=image_token,
                                                   scale_factor=scale, tie_word_embeddings=False, pad_token_id=pad)
    model = _construct(getattr(transformers, f"{prefix}ForConditionalGeneration"), cfg, dtype, device)
    proc = getattr(transformers, f"{prefix}ImageProcessorPil")(size={"longest_edge": 4 * px},
                                                               max_image_size={"longest_edge": px})
    return model, proc
