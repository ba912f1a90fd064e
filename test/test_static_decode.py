"""The static-cache greedy decoder gives the eager decoder's tokens and keyword attention, reusing its buffers.

On CPU the decode step runs eagerly over the static buffers: these tests cover the static-cache logic
(slots, masks, prefix copy, capture sinks, bucket reuse). CUDA graph capture and replay are not run here.
"""

from __future__ import annotations

import pytest
import torch
from conftest import random_image

from ego_ros.core.compose import ContextEntry, query_sequence, view_sequence
from ego_ros.core.engine import EgoEngine, EngineConfig
from ego_ros.core.introduce import IntroduceOptions, describe_with_attention
from ego_ros.core.sequence import Runner, VisualBlock
from ego_ros.core.static_decode import BUCKET, StaticDecoder, bucket_length


def _entries(backend):
    vts = backend.encode_images([random_image(s) for s in (10, 11)])
    return [ContextEntry("kona", memory=[VisualBlock.subset(vts[0], torch.arange(0, vts[0].count, 2))]),
            ContextEntry("mug", memory=[VisualBlock.subset(vts[1], torch.arange(5))])]


@torch.no_grad()
@pytest.mark.parametrize("cached", [True, False])
def test_static_decoding_gives_the_eager_greedy_tokens(backend, cached):
    entries = _entries(backend)
    vt = backend.encode_images([random_image(20, (72, 56))])[0]
    seq = query_sequence(backend, entries, [vt], "Describe kona.")
    eager, static = Runner(backend), Runner(backend, decoder="static")
    prefix = eager.encode_prefix(seq, seq.image_start, key=("t",)) if cached else None
    for max_new, min_new in ((10, 10), (10, 0), (1, 0)):
        expected = eager.generate(seq, max_new, prefix=prefix, min_new_tokens=min_new)
        assert static.generate(seq, max_new, prefix=prefix, min_new_tokens=min_new) == expected


@torch.no_grad()
def test_static_decoding_captures_the_eager_keyword_attention(backend):
    vt = backend.encode_images([random_image(21, (70, 90))])[0]
    probe = view_sequence(backend, vt, backend.prompts.keywords)
    end = probe.spans["image::0"][1] + len(backend.visual_frame()[1])
    results = []
    for runner in (Runner(backend), Runner(backend, decoder="static")):
        prefix = runner.encode_prefix(probe, end, key=("view",))
        ka, _ = describe_with_attention(backend, runner, vt, None, max_new_tokens=6, min_new_tokens=6,
                                        keep_heads=True, prefix=prefix)
        results.append(ka)
    eager, static = results
    assert static.token_ids == eager.token_ids
    assert set(static.per_layer) == set(eager.per_layer) == set(range(backend.num_layers))
    for layer in eager.per_layer:
        assert static.per_layer[layer].shape == eager.per_layer[layer].shape
        torch.testing.assert_close(static.per_layer[layer], eager.per_layer[layer], atol=1e-5, rtol=0)
        torch.testing.assert_close(static.prompt_row[layer], eager.prompt_row[layer], atol=1e-5, rtol=0)


@torch.no_grad()
def test_a_prompt_of_another_length_in_the_same_bucket_reuses_the_buffers(llava):
    runner = Runner(llava, decoder="static")
    vt = llava.encode_images([random_image(22)])[0]
    short = view_sequence(llava, vt, "Hi?")
    longer = view_sequence(llava, vt, "What is this, and where?")
    assert len(short) != len(longer) and bucket_length(len(short) + 9) == bucket_length(len(longer) + 9)
    runner.generate(short, 8)
    decoder: StaticDecoder = runner.static_decoder()
    (kv,) = decoder._caches.values()
    pointers = [k.data_ptr() for k, _ in kv.layers]
    runner.generate(longer, 8)
    assert list(decoder._caches.values()) == [kv]
    assert [k.data_ptr() for k, _ in kv.layers] == pointers
    assert len(decoder._steps) == 1  # one step layout per bucket (on CUDA: one graph)
    runner.generate(longer, BUCKET)  # beyond the bucket: a second, larger allocation
    assert sorted(decoder._caches) == [BUCKET, 2 * BUCKET]


@torch.no_grad()
def test_stale_rows_of_a_longer_earlier_call_do_not_leak_into_a_shorter_one(llava):
    runner, eager = Runner(llava, decoder="static"), Runner(llava)
    vt = llava.encode_images([random_image(23)])[0]
    long_seq = view_sequence(llava, vt, "Describe every part of this picture in detail, please.")
    short_seq = view_sequence(llava, vt, "Describe.")
    runner.generate(long_seq, 12, min_new_tokens=12)
    assert runner.generate(short_seq, 12, min_new_tokens=12) == eager.generate(short_seq, 12, min_new_tokens=12)


def test_auto_decoder_is_eager_on_cpu_and_unknown_decoders_are_refused(llava):
    assert not Runner(llava, decoder="auto").static_decoding
    assert Runner(llava, decoder="static").static_decoding
    with pytest.raises(ValueError, match="decoder"):
        Runner(llava, decoder="graph")
    with pytest.raises(ValueError, match="decoder"):
        EngineConfig(decoder="fast").validate()


def test_engine_with_the_static_decoder_introduces_and_answers_like_the_eager_one(backend):
    opts = IntroduceOptions(max_new_tokens=5, min_new_tokens=5, area_max_new_tokens=3)
    results = []
    for decoder in ("eager", "static"):
        engine = EgoEngine(backend, config=EngineConfig(decoder=decoder, introduce=opts))
        assert engine.runner.static_decoding == (decoder == "static")
        memory = engine.introduce("kona", [random_image(30), random_image(31, (80, 48))])
        answer = engine.ask(random_image(32), "Where is kona?", max_new_tokens=6)
        caption = engine.caption(random_image(33), max_new_tokens=6)
        results.append((memory, answer.text, caption.text))
    (m_eager, a_eager, c_eager), (m_static, a_static, c_static) = results
    assert (a_static, c_static) == (a_eager, c_eager)
    for ve, vs in zip(m_eager.views, m_static.views):
        assert vs.description == ve.description and vs.area_answer == ve.area_answer
        assert torch.equal(vs.indices, ve.indices)
        torch.testing.assert_close(vs.importance, ve.importance, atol=1e-5, rtol=0)


@torch.no_grad()
def test_a_failing_static_decoder_falls_back_to_eager_decoding(llava, monkeypatch):
    runner = Runner(llava, decoder="static")
    seq = view_sequence(llava, llava.encode_images([random_image(24)])[0], "Describe.")

    def broken(*args, **kwargs):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(StaticDecoder, "_generate", broken)
    assert runner.generate(seq, 6, min_new_tokens=6) == Runner(llava).generate(seq, 6, min_new_tokens=6)
    assert runner.decoder == "eager" and not runner.static_decoding
