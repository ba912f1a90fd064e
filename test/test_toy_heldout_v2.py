"""Specification of the trainer's v2 held-out recognition set: every hard negative is compared with a
positive twin, the same sample with the concept in the negative's place, so that positives and
look-alikes differ in the signature alone (docs/toy_model.md, "The held-out look-alike metric")."""

from __future__ import annotations

import numpy as np
import pytest

from ego_ros.toy import tasks
from ego_ros.toy.attributes import HELD_OUT_SIGNATURES, Instance, held_out_instances, lookalikes
from ego_ros.toy.image_data import PATCH, ImageData
from ego_ros.toy.recognition_samples import draw_match, positive_twin

N = 30  # six groups of five: six look-alike pairs, six near-duplicate pairs


@pytest.fixture(scope="module")
def heldout() -> list[tasks.Sample]:
    return tasks.heldout_match_set(N, world="v2")


def _concept(s: tasks.Sample) -> Instance:
    """The concept asked about: the held-out object of its reference view (the view's distractors come
    from the training split)."""
    ref = s.images[s.entries[0].views[0][0]]
    (concept,) = [i for i in map(tasks.instance_of, ref.obj_inst.tolist()) if i.is_held_out]
    return concept


def _swapped(twin: ImageData, negative: ImageData) -> int:
    """The one object in which two query images differ (their instance lists agree everywhere else)."""
    (k,) = np.nonzero(twin.obj_inst != negative.obj_inst)[0]
    return int(k)


def _same_context(twin: tasks.Sample, negative: tasks.Sample) -> bool:
    others = [i for i in range(len(negative.images)) if i not in negative.query]
    return (
        twin.question == negative.question
        and twin.mode == negative.mode
        and twin.query == negative.query
        and [(e.name, e.keywords) for e in twin.entries] == [(e.name, e.keywords) for e in negative.entries]
        and all(
            a[0] == b[0] and (a[1] is None) == (b[1] is None) and (a[1] is None or np.array_equal(a[1], b[1]))
            for x, y in zip(twin.entries, negative.entries)
            for a, b in zip(x.views, y.views)
        )
        and all(np.array_equal(twin.images[i].pixels, negative.images[i].pixels) for i in others)
    )


@pytest.mark.parametrize("kind", ["lookalike", "near_duplicate"])
def test_every_hard_negative_has_a_positive_twin_with_the_concept_in_its_place(heldout, kind):
    negatives = [(i, s) for i, s in enumerate(heldout) if s.kind == kind]
    assert len(negatives) == N // 5
    for i, negative in negatives:
        twin = heldout[negative.twin]
        assert twin.kind == "pos" and twin.answer == "yes" and twin.twin == i
        assert _same_context(twin, negative)
        q_twin, q_neg = twin.images[twin.query[0]], negative.images[negative.query[0]]
        k = _swapped(q_twin, q_neg)
        concept = _concept(negative)
        assert tasks.instance_of(int(q_twin.obj_inst[k])) == concept
        assert concept.negative_kind(tasks.instance_of(int(q_neg.obj_inst[k]))) == kind
        # same place, size and pose: every object covers the same share of every patch
        assert np.array_equal(q_twin.obj_frac, q_neg.obj_frac)


def test_a_lookalike_pair_differs_only_on_the_swapped_object_and_only_in_the_signature(heldout):
    for negative in (s for s in heldout if s.kind == "lookalike"):
        twin = heldout[negative.twin]
        q_twin, q_neg = twin.images[twin.query[0]], negative.images[negative.query[0]]
        k = _swapped(q_twin, q_neg)
        # every nameable attribute of every patch agrees (shape, colour, pattern, mark)
        assert np.array_equal(q_twin.labels, q_neg.labels)
        # background, lighting, noise and the other objects agree to the pixel: only patches the
        # swapped object touches may differ
        touched = np.kron(q_neg.obj_frac[k] > 0, np.ones((PATCH, PATCH), dtype=bool))
        differ = np.any(q_twin.pixels != q_neg.pixels, axis=-1)
        assert differ.any() and not (differ & ~touched).any()


def test_every_positive_of_the_v2_set_is_the_twin_of_a_hard_negative(heldout):
    positives = [s for s in heldout if s.kind == "pos"]
    assert len(positives) == 2 * N // 5
    assert all(heldout[s.twin].kind in ("lookalike", "near_duplicate") for s in positives)


def test_a_twin_cut_off_at_the_end_of_the_set_leaves_its_partner_unpaired():
    cut = tasks.heldout_match_set(6, world="v2")  # the sixth sample is the twin of the seventh
    assert cut[5].kind == "pos" and cut[5].twin is None
    assert cut[1].twin == 0 and cut[0].twin == 1


def test_either_member_of_a_lookalike_pair_is_as_likely_to_be_the_concept():
    # For each signature s of a category: the chance that a kept pair has s as its concept against the
    # chance that it has s as its look-alike (concept signature uniform, look-alike uniform among the
    # concept's look-alikes, the pair kept with `lookalike_keep_probability`).
    for category in held_out_instances()[:12]:
        concepts = [category.with_signature(s) for s in HELD_OUT_SIGNATURES]
        keep = {c: tasks.lookalike_keep_probability(c) for c in concepts}
        as_concept = np.array([keep[c] for c in concepts])
        as_lookalike = np.array(
            [sum(keep[c] / len(lookalikes(c)) for c in concepts if x in lookalikes(c)) for x in concepts]
        )
        np.testing.assert_allclose(as_concept / as_concept.sum(), as_lookalike / as_lookalike.sum())


def test_a_positive_twin_of_a_positive_is_refused():
    cfg = tasks.TaskConfig(world="v2", big_render_p=0.0)
    draw = draw_match(np.random.default_rng(3), cfg, cfg.ramp_steps, held_out=True, kind="pos", form="full")
    with pytest.raises(ValueError, match="needs a hard negative"):
        positive_twin(draw)
