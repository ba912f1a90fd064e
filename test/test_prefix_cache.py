"""The concept-memory prefix cache and batching change speed, never results."""

from __future__ import annotations

import torch
from conftest import random_image

from ego_ros.core.compose import ContextEntry, query_sequence
from ego_ros.core.engine import EgoEngine
from ego_ros.core.sequence import Runner, VisualBlock


def _entries(backend, seeds=(10, 11, 12)):
    vts = backend.encode_images([random_image(s) for s in seeds])
    return [ContextEntry(f"c{i}", memory=[VisualBlock.subset(vt, torch.arange(0, vt.count, 2))])
            for i, vt in enumerate(vts)]


@torch.no_grad()
def test_cached_prefix_gives_the_same_greedy_tokens_as_no_cache(backend):
    entries = _entries(backend)
    vt = backend.encode_images([random_image(20)])[0]
    seq = query_sequence(backend, entries, [vt], "Describe c1.")
    runner = Runner(backend)
    prefix = runner.encode_prefix(seq, seq.image_start, key=("t",))
    assert prefix.length == seq.image_start > 0
    cached = runner.generate(seq, 12, prefix=prefix, min_new_tokens=12)
    uncached = runner.generate(seq, 12, min_new_tokens=12)
    assert cached == uncached
    again = runner.generate(seq, 12, prefix=prefix, min_new_tokens=12)  # the snapshot is not consumed
    assert again == cached


@torch.no_grad()
def test_batched_frames_equal_per_frame_runs(backend):
    entries = _entries(backend)
    vts = backend.encode_images([random_image(30), random_image(31, (80, 50)), random_image(32)])
    runner = Runner(backend)
    seqs = [query_sequence(backend, entries, [vt], "Is c0 in this image?") for vt in vts]
    prefix = runner.encode_prefix(seqs[0], seqs[0].image_start, key=("t",))
    batched = runner.last_logits(seqs, prefix)
    single = torch.cat([runner.last_logits([s]) for s in seqs])
    torch.testing.assert_close(batched, single, atol=2e-4, rtol=1e-4)


@torch.no_grad()
def test_questions_of_different_lengths_batched_over_one_image_equal_single_runs(backend):
    entries = _entries(backend)
    vt = backend.encode_images([random_image(40)])[0]
    runner = Runner(backend)
    seqs = [query_sequence(backend, entries, [vt], q) for q in
            ("Is c0 in this image?", "Is the long named concept c2 in this image at all?", "c1?")]
    prefix = runner.encode_prefix(seqs[0], seqs[0].image_start, key=("t",))
    batched = runner.last_logits(seqs, prefix)
    single = torch.cat([runner.last_logits([s]) for s in seqs])
    torch.testing.assert_close(batched, single, atol=2e-4, rtol=1e-4)


def test_engine_recognition_is_the_same_with_and_without_prefix_cache(backends):
    engine = EgoEngine(backends["qwen2_5_vl"])
    for i in range(3):
        engine.introduce(f"thing{i}", [random_image(50 + i)])
    query = random_image(60)
    with_cache = [r.probability for r in engine.recognize(query)]
    assert engine._prefixes, "the recognition should have built a prefix cache"
    engine.config.prefix_cache = False
    without = [r.probability for r in engine.recognize(query)]
    assert len(with_cache) == 3
    torch.testing.assert_close(torch.tensor(with_cache), torch.tensor(without), atol=1e-5, rtol=0)


def test_recognize_frames_equals_recognize_per_frame(backends):
    engine = EgoEngine(backends["llava"])
    engine.introduce("kona", [random_image(70)])
    frames = [random_image(71), random_image(72), random_image(73)]
    batched = [r.probability for r in engine.recognize_frames(frames, "kona")]
    single = [engine.recognize(f, ["kona"])[0].probability for f in frames]
    torch.testing.assert_close(torch.tensor(batched), torch.tensor(single), atol=1e-5, rtol=0)
