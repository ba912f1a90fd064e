"""Randomly initialised models: tiny ones for tests, published sizes for the GPU latency benchmark."""

from __future__ import annotations

import pytest
import torch

from ego_ros.core.loading import load_backend
from ego_ros.core.random_models import build_random_model


@pytest.mark.parametrize("family,size,px,billions", [("qwen2_5_vl", "qwen2_5_vl_7b", 448, 8.29),
                                                     ("internvl", "internvl3_14b", 448, 15.12),
                                                     ("qwen2_vl", "qwen2_vl_2b", 448, 2.209),
                                                     ("gemma3", "gemma3_4b", None, 4.300)])
def test_published_size_configs_have_the_published_parameter_counts(family, size, px, billions):
    # Built on the meta device: no memory, no initialisation, just the architecture. Gemma 3's tower is
    # built at its published 896 px (its position table, hence its parameter count, depends on the size).
    rm = build_random_model(family, size=size, device="meta", dtype=torch.bfloat16, image_px=px)
    n = sum(p.numel() for p in rm.model.parameters())
    assert n / 1e9 == pytest.approx(billions, abs=0.01 if billions > 5 else 0.001)
    assert next(rm.model.parameters()).dtype == torch.bfloat16


def test_random_model_names_load_through_the_backend_registry():
    backend = load_backend("random:internvl:tiny:32")
    assert backend.family == "internvl" and backend.name == "random:internvl:tiny:32"


def test_unknown_random_sizes_are_refused():
    from ego_ros.core.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="unknown size"):
        load_backend("random:llava:huge")
