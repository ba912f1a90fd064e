"""Specification of training's minimal pairs (`TaskConfig.twin_weight`): a look-alike negative and its
positive twin in the same batch, so that the answer turns on the signature alone; off by default, which
leaves the data stream as it was."""

from __future__ import annotations

import hashlib

import numpy as np

from ego_ros.toy import tasks
from ego_ros.toy.recognition_samples import twin_pair

RAMPED = 400  # a curriculum step past the ramp of `_cfg`
#: sha256 of `make_batch(0, 400, 8)` on world v2 with ramp 200, computed on main (527b5ec) before twins
V2_BATCH_SHA256 = "3ecc3dc930d3e87de15be36953eb89118a9da9eb3e462155cebfe83dd2666a04"


def _cfg(**kw) -> tasks.TaskConfig:
    return tasks.TaskConfig(world="v2", ramp_steps=200, **kw)


def _same_context(a: tasks.Sample, b: tasks.Sample) -> bool:
    return (
        a.question == b.question
        and all(
            x.name == y.name
            and x.keywords == y.keywords
            and len(x.views) == len(y.views)
            and all(
                u[0] == v[0] and (u[1] is None) == (v[1] is None) and (u[1] is None or np.array_equal(u[1], v[1]))
                for u, v in zip(x.views, y.views)
            )
            for x, y in zip(a.entries, b.entries)
        )
        and len(a.entries) == len(b.entries)
    )


def _pairs(n: int, step: int = RAMPED) -> list[list[tasks.Sample]]:
    return [twin_pair(np.random.default_rng([7, i]), _cfg(), step) for i in range(n)]


def test_a_twin_pair_is_a_lookalike_negative_then_its_positive_twin():
    pairs = [p for p in _pairs(12) if len(p) == 2]
    assert len(pairs) >= 8
    for negative, twin in pairs:
        assert (negative.kind, negative.answer, twin.kind, twin.answer) == ("lookalike", "no", "pos", "yes")


def test_the_two_members_of_a_pair_differ_in_one_query_object_only():
    for negative, twin in (p for p in _pairs(6) if len(p) == 2):
        assert _same_context(negative, twin)
        (q,) = negative.query
        changed = np.nonzero(twin.images[q].obj_inst != negative.images[q].obj_inst)[0]
        assert len(changed) == 1
        a = tasks.instance_of(int(negative.images[q].obj_inst[changed[0]]))
        b = tasks.instance_of(int(twin.images[q].obj_inst[changed[0]]))
        assert a.differing_attributes(b) == ("signature",)
        others = [i for i in range(len(negative.images)) if i != q]
        assert all(np.array_equal(twin.images[i].pixels, negative.images[i].pixels) for i in others)


def test_before_the_ramp_a_twin_draw_is_an_ordinary_match_sample():
    drawn = _pairs(20, step=0)
    assert all(len(p) == 1 and p[0].task == "match" and p[0].kind in ("pos", "easy") for p in drawn)


def test_batches_with_twin_weight_hold_adjacent_pairs_and_keep_their_size():
    batch = tasks.make_batch(0, RAMPED, 24, _cfg(twin_weight=1.0))
    assert len(batch) == 24
    pairs = sum(
        1 for a, b in zip(batch, batch[1:]) if a.kind == "lookalike" and b.kind == "pos" and _same_context(a, b)
    )
    assert pairs >= 3


def test_a_zero_twin_weight_leaves_the_v2_batches_as_they_were_before_twins_existed():
    h = hashlib.sha256()
    for s in tasks.make_batch(0, RAMPED, 8, _cfg(twin_weight=0.0)):
        for im in s.images:
            h.update(im.pixels.tobytes())
        h.update(s.question.encode())
        h.update(s.answer.encode())
    assert h.hexdigest() == V2_BATCH_SHA256
