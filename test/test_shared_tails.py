"""Shared prefix, image and packed question tails give the probabilities of one full sequence per question.

The oracle runs every question's complete `query_sequence` through the language model on its own, with
no cache and no sharing of any kind: the unshared computation the shared path must reproduce.
"""

from __future__ import annotations

import pytest
import torch
from conftest import FAMILIES, native_decoder, random_image

from ego_ros.core.compose import (
    ContextEntry,
    frame_queries,
    query_context,
    query_sequence,
    question_sequence,
    recognition_queries,
)
from ego_ros.core.engine import EgoEngine, EngineConfig
from ego_ros.core.introduce import IntroduceOptions
from ego_ros.core.sequence import Runner, VisualBlock
from ego_ros.core.tails import packed_tail_mask, shared_last_logits

FAST_INTRO = IntroduceOptions(max_new_tokens=4, area_max_new_tokens=3)


def _unshared_logits(backend, seq) -> torch.Tensor:
    """Next-token logits after `seq` from one plain forward pass over the whole sequence, masked the way
    the model's own forward masks it."""
    hidden = native_decoder(backend, seq).last_hidden_state[0, -1]
    return backend.lm_head(hidden).float()


def _oracle(engine: EgoEngine, image, names: list[str]) -> list[float]:
    vt = engine.backend.encode_images([image])[0]
    entries = engine._entries(names)
    logits = [_unshared_logits(engine.backend, query_sequence(
        engine.backend, entries, [vt], engine.backend.prompts.recognition.format(name=n), engine.config.context))
        for n in names]
    return engine._probabilities(torch.stack(logits))


def _entries(backend):
    """Three concepts with memories of different sizes; the second has two views."""
    vts = backend.encode_images([random_image(s) for s in (10, 11, 12, 13)])
    return [ContextEntry("kona", memory=[VisualBlock.subset(vts[0], torch.arange(0, vts[0].count, 2))]),
            ContextEntry("the blue mug", memory=[VisualBlock.subset(vts[1], torch.arange(3)),
                                                 VisualBlock.subset(vts[2], torch.arange(1, vts[2].count, 3))]),
            ContextEntry("x", memory=[VisualBlock.full(vts[3])])]


@pytest.fixture(scope="module")
def engines(backends):
    """Per family: an engine with three concepts (the second introduced from two views)."""
    out = {}
    for family, backend in backends.items():
        engine = EgoEngine(backend, config=EngineConfig(introduce=FAST_INTRO))
        engine.introduce("kona", [random_image(100)])
        engine.introduce("mug", [random_image(101), random_image(102, (80, 48))])
        engine.introduce("bike", [random_image(103, (48, 72))])
        out[family] = engine
    return out


@pytest.fixture(params=FAMILIES)
def engine(request, engines):
    eng = engines[request.param]
    eng.config = EngineConfig(introduce=FAST_INTRO)
    eng._prefixes.clear()
    return eng


@torch.no_grad()
@pytest.mark.parametrize("cached", [True, False])
def test_packed_tails_give_the_logits_of_one_full_sequence_per_question(backend, cached):
    entries = _entries(backend)
    vt = backend.encode_images([random_image(20, (72, 56))])[0]
    questions = [backend.prompts.recognition.format(name=e.name) for e in entries] + ["Is it?"]
    queries = recognition_queries(backend, query_context(backend, entries, 1), [vt], questions)
    runner = Runner(backend)
    prefix = runner.encode_prefix(queries.shared, queries.context_end, key=("t",)) if cached else None
    shared = shared_last_logits(runner, queries, prefix)
    oracle = torch.stack([_unshared_logits(backend, query_sequence(backend, entries, [vt], q)) for q in questions])
    torch.testing.assert_close(shared, oracle, atol=1e-4, rtol=1e-4)


def test_shared_part_and_tails_rebuild_each_questions_full_sequence(backend):
    entries = _entries(backend)
    vt = backend.encode_images([random_image(21)])[0]
    questions = ["Is kona here?", "Is the blue mug here?", "Is x here?"]
    queries = recognition_queries(backend, query_context(backend, entries, 1), [vt], questions)
    for q, tail in zip(questions, queries.tails):
        full = query_sequence(backend, entries, [vt], q)
        assert queries.shared.ids + tail.ids == full.ids
        image_end = full.spans["image::0"][1]
        assert not tail.blocks and 0 < len(tail) < len(full) - image_end  # the question's own tokens only
    assert queries.context_end == full.image_start


@pytest.mark.parametrize("images, video", [(1, False), (2, True), (0, False)])
def test_question_sequence_from_a_reused_context_equals_the_query_sequence(backend, images, video):
    entries = _entries(backend)
    vts = backend.encode_images([random_image(24 + i) for i in range(images)]) if images else []
    context = query_context(backend, entries, images, video=video)
    for question in ("Describe kona.", "What is x doing?"):
        got = question_sequence(backend, context, vts, question)
        full = query_sequence(backend, entries, vts, question, video=video)
        assert got.ids == full.ids
        assert got.image_start == full.image_start
        assert got.spans == full.spans
        assert [(s, b.embeds.data_ptr()) for s, b in got.blocks] == [(s, b.embeds.data_ptr()) for s, b in full.blocks]
    if images:
        assert len(context.head) == full.image_start  # the head is the whole static context


def test_packed_mask_with_shared_rows_makes_them_causal_and_seen_by_every_tail():
    mask = packed_tail_mask(1, [1, 2], torch.device("cpu"), shared=2)[0, 0]
    expected = torch.tensor([
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 1, 0, 0],
        [1, 1, 1, 0, 1, 0],
        [1, 1, 1, 0, 1, 1],
    ], dtype=torch.bool)
    assert torch.equal(mask, expected)


def test_packed_mask_lets_each_tail_see_the_shared_part_and_causally_itself():
    mask = packed_tail_mask(2, [2, 1, 3], torch.device("cpu"))[0, 0]
    expected = torch.tensor([
        [1, 1, 1, 0, 0, 0, 0, 0],
        [1, 1, 1, 1, 0, 0, 0, 0],
        [1, 1, 0, 0, 1, 0, 0, 0],
        [1, 1, 0, 0, 0, 1, 0, 0],
        [1, 1, 0, 0, 0, 1, 1, 0],
        [1, 1, 0, 0, 0, 1, 1, 1],
    ], dtype=torch.bool)
    assert torch.equal(mask, expected)


def _cache_of(kwargs):
    """The KV cache a decoder forward received (`cache` since transformers 5.24, `past_key_values` before)."""
    return kwargs["cache"] if "cache" in kwargs else kwargs["past_key_values"]


def _forward_calls(backend, fn):
    """(batch, rows) of the fed embeddings and the cached length, per pass of the language model in fn()."""
    calls = []
    hook = backend.language_model.register_forward_pre_hook(
        lambda _m, _a, kw: calls.append((tuple(kw["inputs_embeds"].shape[:2]), _cache_of(kw).get_seq_length())),
        with_kwargs=True)
    try:
        fn()
    finally:
        hook.remove()
    return calls


def _recognition_queries(backend):
    """One frame's recognition queries for every test concept, as the engine composes them."""
    entries = _entries(backend)
    vt = backend.encode_images([random_image(22)])[0]
    return recognition_queries(backend, query_context(backend, entries, 1), [vt],
                               [f"Is {e.name} here?" for e in entries])


@torch.no_grad()
def test_image_and_all_questions_run_in_one_row_over_one_cache_copy(backends):
    backend = backends["qwen2_5_vl"]
    queries = _recognition_queries(backend)
    runner = Runner(backend)
    prefix = runner.encode_prefix(queries.shared, queries.context_end, key=("t",))
    calls = _forward_calls(backend, lambda: shared_last_logits(runner, queries, prefix))
    tails = sum(len(t) for t in queries.tails)
    assert calls == [((1, len(queries.shared) - prefix.length + tails), prefix.length)]


@torch.no_grad()
def test_later_question_batches_start_from_the_shared_part(backends):
    backend = backends["llava"]
    queries = _recognition_queries(backend)
    calls = _forward_calls(backend, lambda: shared_last_logits(Runner(backend), queries, None, batch=2))
    first, second = (sum(len(t) for t in queries.tails[:2]), len(queries.tails[2]))
    assert calls == [((1, len(queries.shared) + first), 0), ((1, second), len(queries.shared))]


@torch.no_grad()
def test_question_batches_reuse_the_shared_part_and_keep_the_prefix_intact(backends):
    backend = backends["internvl"]
    entries = _entries(backend)
    vt = backend.encode_images([random_image(23)])[0]
    questions = [f"Is {e.name} here?" for e in entries]
    queries = recognition_queries(backend, query_context(backend, entries, 1), [vt], questions)
    runner = Runner(backend)
    prefix = runner.encode_prefix(queries.shared, queries.context_end, key=("t",))
    lengths = [k.shape[2] for k, _ in prefix.layers]
    whole = shared_last_logits(runner, queries, prefix)
    in_twos = shared_last_logits(runner, queries, prefix, batch=2)
    one_by_one = shared_last_logits(runner, queries, prefix, batch=1)
    torch.testing.assert_close(in_twos, whole, atol=1e-5, rtol=0)
    torch.testing.assert_close(one_by_one, whole, atol=1e-5, rtol=0)
    assert [k.shape[2] for k, _ in prefix.layers] == lengths


@torch.no_grad()
def test_frames_packed_as_tails_give_the_logits_of_one_full_sequence_per_frame(backend):
    entries = _entries(backend)
    vts = backend.encode_images([random_image(30), random_image(31, (80, 50)), random_image(32)])
    queries = frame_queries(backend, query_context(backend, entries, 1), vts, "Is kona here?")
    runner = Runner(backend)
    prefix = runner.encode_prefix(queries.shared, queries.context_end, key=("t",))
    shared = shared_last_logits(runner, queries, prefix)
    oracle = torch.stack([_unshared_logits(backend, query_sequence(backend, entries, [vt], "Is kona here?"))
                          for vt in vts])
    torch.testing.assert_close(shared, oracle, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("cached", [True, False])
def test_engine_recognition_equals_the_unshared_computation(engine, cached):
    engine.config.prefix_cache = cached
    image = random_image(40, (64, 80))
    got = [r.probability for r in engine.recognize(image)]
    torch.testing.assert_close(torch.tensor(got), torch.tensor(_oracle(engine, image, ["kona", "mug", "bike"])),
                               atol=1e-4, rtol=0)
    assert bool(engine._prefixes) == cached


def test_engine_recognition_in_question_batches_equals_the_unshared_computation(engine):
    engine.config.question_batch = 2
    image = random_image(41)
    got = [r.probability for r in engine.recognize(image)]
    torch.testing.assert_close(torch.tensor(got), torch.tensor(_oracle(engine, image, ["kona", "mug", "bike"])),
                               atol=1e-4, rtol=0)


@pytest.mark.parametrize("cached", [True, False])
def test_recognize_frames_equals_the_unshared_computation(engine, cached):
    engine.config.prefix_cache = cached
    frames = [random_image(50), random_image(51, (72, 40)), random_image(52)]
    got = [r.probability for r in engine.recognize_frames(frames, "mug")]
    expected = [_oracle(engine, f, ["mug"])[0] for f in frames]
    torch.testing.assert_close(torch.tensor(got), torch.tensor(expected), atol=1e-4, rtol=0)


def test_recognize_batch_over_several_frames_equals_the_unshared_computation(engine):
    frames = [random_image(60), random_image(61, (56, 72))]
    got = engine.recognize_batch(frames)
    for frame, recs in zip(frames, got):
        torch.testing.assert_close(torch.tensor([r.probability for r in recs]),
                                   torch.tensor(_oracle(engine, frame, ["kona", "mug", "bike"])), atol=1e-4, rtol=0)


def test_similarity_filter_keeps_the_unshared_probabilities_of_the_kept_concepts(engine):
    engine.config.max_context_concepts = 2
    image = random_image(70)
    recs = engine.recognize(image)
    kept = [r.name for r in recs if r.considered]
    assert len(kept) == 2
    assert all(r.probability == 0.0 for r in recs if not r.considered)
    expected = _oracle(engine, image, kept)
    torch.testing.assert_close(torch.tensor([r.probability for r in recs if r.considered]), torch.tensor(expected),
                               atol=1e-4, rtol=0)


@torch.no_grad()
def test_answers_from_the_reused_context_are_the_greedy_tokens_of_the_full_sequence(engine):
    image = random_image(80)
    first = engine.ask(image, "What is mug doing?", max_new_tokens=6)
    second = engine.caption(image, max_new_tokens=6)  # the composition is reused from the first call
    vt = engine.backend.encode_images([image])[0]
    entries = engine._entries(["kona", "mug", "bike"])
    runner = Runner(engine.backend)
    for answer, question in ((first, "What is mug doing?"), (second, engine.backend.prompts.caption)):
        ids = runner.generate(query_sequence(engine.backend, entries, [vt], question), 6)
        assert answer.text == engine.backend.decode(ids).strip()


def test_one_concepts_question_equals_the_unshared_computation(engine):
    image = random_image(90)
    got = engine.recognize(image, ["mug"])[0].probability
    assert got == pytest.approx(_oracle(engine, image, ["mug"])[0], abs=1e-4)


@pytest.mark.parametrize("mode", ["keywords", "memory+keywords", "reference_images", "none"])
def test_every_context_mode_gives_the_unshared_probabilities(backends, mode):
    opts = IntroduceOptions(max_new_tokens=4, area_max_new_tokens=3, keep_reference=True)
    engine = EgoEngine(backends["qwen3_vl"], config=EngineConfig(introduce=opts, context=mode))
    engine.introduce("kona", [random_image(110)])
    engine.introduce("mug", [random_image(111), random_image(112)])
    image = random_image(113)
    got = [r.probability for r in engine.recognize(image)]
    torch.testing.assert_close(torch.tensor(got), torch.tensor(_oracle(engine, image, ["kona", "mug"])),
                               atol=1e-4, rtol=0)


@torch.no_grad()
@pytest.mark.parametrize("budget", [1, 2])
def test_similarity_filter_keeps_the_memories_with_the_best_mean_best_cosine(engine, budget):
    engine.config.max_context_concepts = budget
    vt = engine.backend.encode_images([random_image(120)])[0]
    q = torch.nn.functional.normalize(vt.embeds.float(), dim=-1)
    scores = {}
    for name in ("kona", "mug", "bike"):
        mem = torch.cat([v.embeds for v in engine.store.get(name).views]).float()
        scores[name] = float((torch.nn.functional.normalize(mem, dim=-1) @ q.T).max(dim=1).values.mean())
    expected = sorted(scores, key=lambda n: -scores[n])[:budget]
    assert sorted(engine._filter(["kona", "mug", "bike"], vt)) == sorted(expected)


@torch.no_grad()
def test_text_only_questions_cache_the_memories_and_answer_like_the_full_sequence(engine):
    first = engine.ask(None, "Which of kona and mug is older?", max_new_tokens=6)
    assert engine._prefixes, "the memory context of a text-only question should be cached"
    second = engine.ask(None, "Is bike red?", max_new_tokens=6)
    entries = engine._entries(["kona", "mug", "bike"])
    runner = Runner(engine.backend)
    for answer, question in ((first, "Which of kona and mug is older?"), (second, "Is bike red?")):
        ids = runner.generate(query_sequence(engine.backend, entries, [], question), 6)
        assert answer.text == engine.backend.decode(ids).strip()
