"""Concept introduction: keyword rows, importance, K_c and token selection (paper 3.1-3.3)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import random_image

from ego_ros.core.introduce import (
    IntroduceOptions,
    KeywordAttention,
    budget,
    introduce_views,
    keyword_token_rows,
    memory_size,
    select_tokens,
)
from ego_ros.core.sequence import Runner


def test_budget_is_a_fraction_of_the_visual_tokens_by_default():
    assert budget(256, IntroduceOptions()) == 52  # ceil(0.2 * 256)
    assert budget(256, IntroduceOptions(max_tokens=10)) == 10
    assert budget(5, IntroduceOptions(max_tokens=10)) == 5


@pytest.mark.parametrize("alpha,expected", [(10.0, 26), (50.0, 52), (0.0, 1), (0.1, 1), (None, 52)])
def test_dynamic_memory_size_follows_the_area_estimate(alpha, expected):
    assert memory_size(256, alpha, IntroduceOptions()) == expected


def test_fixed_k_ignores_the_area_estimate():
    assert memory_size(256, 5.0, IntroduceOptions(dynamic_k=False)) == 52


def test_attention_selection_keeps_the_top_tokens_in_original_order():
    imp = torch.tensor([0.1, 0.9, 0.2, 0.8, 0.05, 0.7])
    assert select_tokens(imp, 3, "attention").tolist() == [1, 3, 5]


def test_uniform_random_all_and_mask_selections():
    imp = torch.zeros(10)
    assert select_tokens(imp, 3, "uniform").tolist() == [0, 4, 9]  # linspace 0, 4.5, 9 rounded half to even
    r1, r2 = select_tokens(imp, 4, "random", seed=1), select_tokens(imp, 4, "random", seed=1)
    assert r1.tolist() == r2.tolist() and r1.tolist() == sorted(r1.tolist()) and len(set(r1.tolist())) == 4
    assert select_tokens(imp, 4, "all").tolist() == list(range(10))
    frac = np.array([0, 0, 1, 1, 0.6, 0, 0, 0, 0, 0.9])
    assert select_tokens(imp, 3, "mask", mask_fraction=frac).tolist() == [2, 3, 9]


def test_importance_is_the_mean_over_layers_heads_and_keyword_rows():
    # layer -> (heads, rows, tokens)
    l0 = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]], [[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])
    l1 = torch.tensor([[[0.0, 1.0], [0.0, 1.0], [5.0, 5.0]], [[0.0, 1.0], [0.0, 1.0], [5.0, 5.0]]])
    ka = KeywordAttention(token_ids=[1, 2, 3], keyword_rows=[0, 1], per_layer={0: l0, 1: l1})
    torch.testing.assert_close(ka.importance(), torch.tensor([0.25, 0.75]))
    torch.testing.assert_close(ka.importance([0]), torch.tensor([0.5, 0.5]))


def test_keyword_rows_skip_punctuation_stopwords_and_special_tokens(llava):
    tok = llava.tokenizer
    ids = tok("red mug, with a handle.", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    rows = keyword_token_rows(llava, ids)
    kept = "".join(tok.decode([ids[j]]) for j in rows)
    assert "red" in kept and "mug" in kept and "handle" in kept
    assert "," not in kept and "." not in kept and " with" not in kept and " a " not in kept + " "
    assert len(ids) - 1 not in rows


@torch.no_grad()
def test_each_view_yields_a_memory_with_its_own_selection(backend):
    views = introduce_views(backend, Runner(backend), [random_image(1), random_image(2, (90, 60))], None,
                            IntroduceOptions(max_new_tokens=5, dynamic_k=False, max_tokens=4))
    assert len(views) == 2
    for v in views:
        assert v.k_c == v.embeds.shape[0] == v.indices.shape[0] == min(4, v.num_visual_tokens)
        assert v.indices.tolist() == sorted(v.indices.tolist())
        assert v.importance.shape == (v.num_visual_tokens,)
        top = torch.topk(v.importance, v.k_c).indices.sort().values
        assert v.indices.tolist() == top.tolist()
        assert v.token_boxes().shape == (v.k_c, 4)


@torch.no_grad()
def test_selected_embeddings_are_the_projector_outputs_of_those_tokens(llava):
    img = random_image(3)
    vt = llava.encode_images([img])[0]
    (view,) = introduce_views(llava, Runner(llava), [img], None, IntroduceOptions(max_new_tokens=4))
    torch.testing.assert_close(view.embeds, vt.embeds[view.indices])


def test_options_are_validated():
    with pytest.raises(ValueError, match="selection"):
        IntroduceOptions(selection="best").validate()
    with pytest.raises(ValueError, match="max_fraction"):
        IntroduceOptions(max_fraction=0).validate()
    with pytest.raises(ValueError, match="mask"):
        IntroduceOptions(selection="mask").validate()
