"""Specification of bounded memories: a large reference frame gives a memory of bounded size.

Qwen-family processors resize to a pixel budget (Qwen2.5-VL's published limit is 12,845,056 pixels):
without a bound a 1920x1080 reference becomes 2,691 visual tokens and a 539-token memory. References
are encoded at most at `IntroduceOptions.reference_max_pixels` (default 448 x 448): at most 256 visual
tokens and K = 52 on Qwen2.5-VL, 196 and 40 on Qwen3-VL. Fixed-size families are unaffected.
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import make_backend, random_image
from transformers import Qwen2VLImageProcessorPil

from ego_ros.core import preprocess
from ego_ros.core.engine import EgoEngine, EngineConfig
from ego_ros.core.introduce import IntroduceOptions

FULL_HD = (1920, 1080)
#: few generated tokens: the bound concerns the visual tokens, not the description
QUICK = dict(max_new_tokens=2, area_max_new_tokens=2)


def _qwen_engine(family: str, processor) -> EgoEngine:
    backend = make_backend(family)
    backend.image_processor = processor
    return EgoEngine(backend, config=EngineConfig(introduce=IntroduceOptions(**QUICK)))


def _published_qwen2_5_vl() -> Qwen2VLImageProcessorPil:
    return Qwen2VLImageProcessorPil(min_pixels=3136, max_pixels=12845056)


def test_without_a_bound_a_full_hd_reference_would_give_a_539_token_memory():
    # the figure the bound exists for, from the processor's own resize rule (no model run needed)
    h, w = preprocess.patch_grid(_published_qwen2_5_vl(), FULL_HD[1], FULL_HD[0])
    tokens = (h // 28) * (w // 28)
    assert tokens == 2691
    assert math.ceil(0.2 * tokens) == 539


@pytest.mark.parametrize("family,processor,max_visual", [
    ("qwen2_5_vl", _published_qwen2_5_vl(), 256),
    ("qwen3_vl", Qwen2VLImageProcessorPil(size={"shortest_edge": 65536, "longest_edge": 16777216}, patch_size=16,
                                          merge_size=2, image_mean=[0.5] * 3, image_std=[0.5] * 3), 196),
])
def test_a_full_hd_reference_gives_a_memory_within_the_bound(family, processor, max_visual):
    engine = _qwen_engine(family, processor)
    memory = engine.introduce("kona", [random_image(1, FULL_HD)])
    (view,) = memory.views
    rows, cols = view.grid
    assert rows * cols <= max_visual
    assert view.k_c <= math.ceil(0.2 * max_visual)
    assert cols > rows  # the aspect ratio is kept, only the pixel budget shrinks


def test_the_bound_can_be_lifted_to_the_processors_own_budget():
    engine = _qwen_engine("qwen2_5_vl", _published_qwen2_5_vl())
    img = random_image(2, (640, 480))  # 391 visual tokens at the processor's own budget
    bounded = engine.introduce("a", [img]).views[0]
    unbounded = engine.introduce("b", [img], options=IntroduceOptions(reference_max_pixels=None, **QUICK)).views[0]
    assert bounded.grid[0] * bounded.grid[1] <= 256
    assert unbounded.grid == (17, 23)


def test_the_bound_applies_to_the_tensor_and_the_pil_preprocessing_alike():
    backend = make_backend("qwen2_5_vl")
    backend.image_processor = _published_qwen2_5_vl()
    img = random_image(3, FULL_HD)
    grids = [backend.pixel_inputs([img], method=m, max_pixels=448 * 448)["image_grid_thw"].tolist()
             for m in ("tensor", "pil")]
    assert grids[0] == grids[1] == [[1, 24, 42]]


# InternVL is no longer fixed-size: it tiles, and a pixel budget bounds its tiles
# (test_internvl_tiles.py::test_a_reference_pixel_budget_bounds_its_tiles).
@pytest.mark.parametrize("family", ["llava"])
def test_fixed_size_families_ignore_the_pixel_budget(backends, family):
    b = backends[family]
    img = random_image(4, FULL_HD)
    with torch.inference_mode():
        (free,), (capped,) = b.encode_images([img]), b.encode_images([img], max_pixels=64)
    torch.testing.assert_close(free.embeds, capped.embeds, atol=0, rtol=0)


def test_the_toy_sized_memory_is_unchanged_by_the_default_bound(llava):
    # 32 px tiny LLaVA: 16 visual tokens, K = ceil(0.2 * 16) = 4 with or without the bound
    engine = EgoEngine(llava, config=EngineConfig(introduce=IntroduceOptions(dynamic_k=False, **QUICK)))
    default = engine.introduce("a", [random_image(5, FULL_HD)]).views[0]
    lifted = engine.introduce("b", [random_image(5, FULL_HD)],
                              options=IntroduceOptions(dynamic_k=False, reference_max_pixels=None, **QUICK)).views[0]
    assert default.k_c == lifted.k_c == 4
    assert default.indices.tolist() == lifted.indices.tolist()


def test_a_pixel_bound_below_one_is_rejected():
    with pytest.raises(ValueError, match="reference_max_pixels"):
        IntroduceOptions(reference_max_pixels=0).validate()
