"""Exactness of the engine's model plumbing against transformers' own reference paths."""

from __future__ import annotations

import pytest
import torch
from conftest import native_decoder, random_image

from ego_ros.core import attention
from ego_ros.core.compose import ContextEntry, query_sequence, view_sequence
from ego_ros.core.introduce import describe_with_attention
from ego_ros.core.prompts import Slot
from ego_ros.core.sequence import (
    Runner,
    Sequence,
    VisualBlock,
    sequence_embeds,
    sequence_positions,
)


def _eager_attentions(backend, seq: Sequence):
    backend.model.set_attn_implementation({"text_config": "eager"})
    try:
        out = native_decoder(backend, seq, output_attentions=True)
    finally:
        backend.model.set_attn_implementation({"text_config": attention.ATTN_IMPLEMENTATION})
    return out.attentions


@torch.no_grad()
def test_captured_keyword_attention_equals_eager_attention_per_layer_and_head(backend):
    vt = backend.encode_images([random_image(1, (70, 90))])[0]
    runner = Runner(backend)
    ka, seq = describe_with_attention(backend, runner, vt, None, max_new_tokens=6, min_new_tokens=6,
                                      keep_heads=True)
    full = Sequence(ids=seq.ids + ka.token_ids, blocks=seq.blocks, spans=seq.spans)
    ref = _eager_attentions(backend, full)
    # the image's token columns (framing tokens between tiles and structural rows such as LLaVA-NeXT's
    # newlines are no tokens of it)
    cols = seq.columns["image::0"]
    n = len(seq)
    assert len(ka.per_layer) == backend.num_layers
    for layer, att in enumerate(ref):
        expected_rows = att[0, :, n:n + len(ka.token_ids)][..., cols]
        assert ka.per_layer[layer].shape == expected_rows.shape
        torch.testing.assert_close(ka.per_layer[layer], expected_rows.float(), atol=1e-5, rtol=0)
        torch.testing.assert_close(ka.prompt_row[layer], att[0, :, n - 1][..., cols].float(), atol=1e-5, rtol=0)


@torch.no_grad()
def test_capture_on_chosen_layers_records_only_those_layers(llava):
    vt = llava.encode_images([random_image(2)])[0]
    ka, _ = describe_with_attention(llava, Runner(llava), vt, [1], max_new_tokens=3, min_new_tokens=3)
    assert set(ka.per_layer) == {1}
    assert ka.per_layer[1].shape[0] == 1  # heads averaged on the fly


@torch.no_grad()
def test_memory_of_all_image_tokens_gives_the_native_image_logits(backend):
    img = random_image(3, (80, 60))
    vt = backend.encode_images([img])[0]
    question = "Is the mug here?"
    native_seq = view_sequence(backend, vt, question)
    native = backend.model(**backend.native_inputs(native_seq.ids, [img])).logits[0, -1].float()
    # The same image stored as a concept memory (all tokens) and injected where the image would be.
    memory = VisualBlock.subset(vt, torch.arange(vt.count))
    seq = query_sequence(backend, [ContextEntry("kona", memory=[memory])], [], question, mode="memory")
    # the memory occupies exactly the rows the image does (framing and structural rows included)
    assert seq.ids.count(backend.placeholder_id) == native_seq.ids.count(backend.placeholder_id)
    # Compare against the native model fed the memory slot's ids with the image's pixels in that place.
    native_mem = backend.model(**backend.native_inputs(seq.ids, [img])).logits[0, -1].float()
    mine = Runner(backend).last_logits([seq])[0]
    torch.testing.assert_close(mine, native_mem, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(native, native_mem)  # different prompts: the comparison is not vacuous


@torch.no_grad()
def test_qwen_memory_with_one_dimensional_positions_would_not_match(backends):
    qwen = backends["qwen2_5_vl"]
    img = random_image(4, (112, 112))
    vt = qwen.encode_images([img])[0]
    seq = query_sequence(qwen, [ContextEntry("kona", memory=[VisualBlock.full(vt)])], [], "Is it here?")
    pos3d, _ = sequence_positions(qwen, seq)
    emb = sequence_embeds(qwen, seq)
    runner = Runner(qwen)
    from transformers import DynamicCache

    right = runner._forward(emb[None], Runner._batch_positions(pos3d), DynamicCache())
    flat = torch.arange(len(seq))
    wrong = runner._forward(emb[None], flat[None].expand(3, 1, -1), DynamicCache())
    native = qwen.model(**qwen.native_inputs(seq.ids, [img])).logits[0, -1].float()
    torch.testing.assert_close(right[0], native, atol=1e-4, rtol=1e-4)
    assert (wrong[0] - native).abs().max() > 1e-3


def test_a_qwen_model_with_sliding_window_layers_is_refused():
    from ego_ros.core.backends.qwen import Qwen2VLBackend
    from ego_ros.core.errors import ModelLoadError
    from ego_ros.core.random_models import build_random_model

    rm = build_random_model("qwen2_vl")
    text = rm.model.config.text_config
    text.sliding_window, text.layer_types = 16, ["sliding_attention"] * text.num_hidden_layers
    with pytest.raises(ModelLoadError, match="sliding-window"):
        Qwen2VLBackend(rm.model, rm.tokenizer, rm.image_processor)


def test_chat_templates_that_take_typed_content_parts_work(backends):
    from conftest import make_backend

    backend = make_backend("llava")
    backend.tokenizer.chat_template = (
        "{% for message in messages %}{{ message['role'].upper() }}: {% for c in message['content'] %}"
        "{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}\n{% endfor %}"
        "{% if add_generation_prompt %}ASSISTANT:{% endif %}")
    parts = backend.chat(["Look ", Slot("image"), " here"])
    assert parts == ["USER: Look ", Slot("image"), " hereASSISTANT:"]  # (jinja trims the newline after a block)
