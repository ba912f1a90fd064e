"""InternVL tiled like its own processor (GotOcr2 crop_to_patches): tiles + thumbnail, framing, exactness."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import make_backend, random_image
from test_engine_equivalence import _eager_attentions
from test_preprocess import _assert_close_pixels, _smooth_image
from transformers import GotOcr2ImageProcessorPil, InternVLProcessor, processing_utils

from ego_ros.core import preprocess
from ego_ros.core.compose import ContextEntry, query_sequence, view_sequence
from ego_ros.core.engine import EgoEngine, EngineConfig
from ego_ros.core.introduce import describe_with_attention
from ego_ros.core.sequence import Runner, Sequence, VisualBlock

TOKENS_PER_TILE = 16  # the tiny model: 64 px tiles, 8 px patches, 2x2 pixel shuffle


@pytest.fixture(scope="module")
def internvl():
    """The tiny InternVL, preprocessing with its image processor: the exactness tests below compare with
    the processor's pixels exactly (the tensor path's own bound is test_preprocess's)."""
    b = make_backend("internvl")
    b.preprocess = "pil"
    return b


@pytest.fixture
def processor(internvl, monkeypatch):
    """transformers' InternVLProcessor over the backend's tokenizer and a tiling copy of its image processor.

    Its constructor insists on a video processor, which needs torchvision (not installed, and not used
    for images): the class check is switched off for the construction only."""
    monkeypatch.setattr(processing_utils.ProcessorMixin, "check_argument_for_proper_class", lambda *a: None)
    tok = copy.copy(internvl.tokenizer)
    for attr, token in [("start_image_token", "<img>"), ("end_image_token", "</img>"),
                        ("context_image_token", "<IMG_CONTEXT>")]:
        setattr(tok, attr, token)
        setattr(tok, attr + "_id", tok.convert_tokens_to_ids(token))
    tok.video_token = "<video>"
    proc = copy.deepcopy(internvl.image_processor)
    proc.crop_to_patches = True
    return InternVLProcessor(image_processor=proc, tokenizer=tok, image_seq_length=TOKENS_PER_TILE)


def _processor_inputs(processor, images, max_tiles: int):
    text = "".join("<IMG_CONTEXT>" for _ in images)
    return processor(images=images, text=[text], return_tensors="pt", max_patches=max_tiles)


@pytest.mark.parametrize("size,max_tiles,tiles", [
    ((1024, 768), 12, 13), ((640, 480), 6, 7), ((64, 64), 6, 1), ((4000, 1000), 6, 5), ((300, 900), 3, 4)])
def test_an_image_is_cut_into_the_tiles_the_processor_makes(internvl, processor, size, max_tiles, tiles):
    img = random_image(1, size)
    want = _processor_inputs(processor, [img], max_tiles)["pixel_values"]
    assert want.shape[0] == tiles
    got = internvl.pixel_inputs([img], method="pil", max_tiles=max_tiles)["pixel_values"]
    torch.testing.assert_close(got.float(), want.float(), atol=0, rtol=0)
    internvl.set_max_tiles(max_tiles)
    try:
        vt = internvl.encode_images([img])[0]
    finally:
        internvl.set_max_tiles(6)
    assert vt.count == tiles * TOKENS_PER_TILE
    kinds = [g.kind for g in vt.layout.grids]
    assert kinds == (["single"] if tiles == 1 else ["tile"] * (tiles - 1) + ["thumbnail"])


def test_the_framing_of_a_tiled_image_is_the_processors_prompt(internvl, processor):
    img = random_image(2, (1024, 768))
    internvl.set_max_tiles(12)
    try:
        vt = internvl.encode_images([img])[0]
    finally:
        internvl.set_max_tiles(6)
    seq = view_sequence(internvl, vt, "what is it?")
    start, end = seq.frames["image::0"]
    want = _processor_inputs(processor, [img], 12)["input_ids"][0].tolist()
    assert seq.ids[start:end] == want
    assert len(want) == 2 + 13 * TOKENS_PER_TILE


def test_max_tiles_one_is_the_single_tile_of_before(internvl):
    img = random_image(3, (640, 480))
    internvl.set_max_tiles(1)
    try:
        vt = internvl.encode_images([img])[0]
        pv = internvl.pixel_inputs([img])["pixel_values"]
    finally:
        internvl.set_max_tiles(6)
    assert vt.layout.is_single and (vt.rows, vt.cols, vt.count) == (4, 4, 16) and pv.shape[0] == 1


def test_a_reference_pixel_budget_bounds_its_tiles(internvl):
    img = random_image(4, (1024, 768))
    vt = internvl.encode_images([img], max_pixels=3 * 64 * 64)[0]
    assert len(vt.layout.tiles()) <= 3 and vt.count <= 4 * TOKENS_PER_TILE


@torch.no_grad()
@pytest.mark.parametrize("size", [(1024, 768), (300, 900), (4000, 1000)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_a_full_memory_of_a_tiled_image_gives_the_native_logits_of_the_processors_pixels(internvl, processor,
                                                                                         size):
    img = random_image(5, size)
    vt = internvl.encode_images([img])[0]
    assert len(vt.layout.grids) > 1
    memory = VisualBlock.subset(vt, torch.arange(vt.count))
    seq = query_sequence(internvl, [ContextEntry("kona", memory=[memory])], [], "Is kona here?", mode="memory")
    pixels = _processor_inputs(processor, [img], internvl.max_tiles)["pixel_values"]
    native = internvl.model(input_ids=torch.tensor([seq.ids]), pixel_values=pixels.to(internvl.dtype)).logits[0, -1]
    mine = Runner(internvl).last_logits([seq])[0]
    torch.testing.assert_close(mine, native.float(), atol=1e-4, rtol=1e-4)


@torch.no_grad()
def test_two_views_with_different_tile_counts_in_one_prompt_give_the_native_logits(internvl, processor):
    images = [random_image(6, (1024, 768)), random_image(7, (900, 300))]
    vts = internvl.encode_images(images)
    assert len(vts[0].layout.grids) != len(vts[1].layout.grids)
    memory = [VisualBlock.subset(vt, torch.arange(vt.count)) for vt in vts]
    seq = query_sequence(internvl, [ContextEntry("kona", memory=memory)], [], "Is kona here?", mode="memory")
    pixels = _processor_inputs(processor, images, internvl.max_tiles)["pixel_values"]
    native = internvl.model(input_ids=torch.tensor([seq.ids]), pixel_values=pixels.to(internvl.dtype)).logits[0, -1]
    torch.testing.assert_close(Runner(internvl).last_logits([seq])[0], native.float(), atol=1e-4, rtol=1e-4)


@torch.no_grad()
def test_captured_attention_over_a_tiled_image_equals_eager_attention(internvl):
    vt = internvl.encode_images([random_image(8, (900, 300))])[0]
    ka, seq = describe_with_attention(internvl, Runner(internvl), vt, None, max_new_tokens=4, min_new_tokens=4,
                                      keep_heads=True)
    ref = _eager_attentions(internvl, Sequence(ids=seq.ids + ka.token_ids, blocks=seq.blocks))
    cols = seq.columns["image::0"]
    assert cols.shape[0] == vt.count
    n = len(seq)
    for layer, att in enumerate(ref):
        torch.testing.assert_close(ka.per_layer[layer], att[0, :, n:n + 4][..., cols].float(), atol=1e-5, rtol=0)


@torch.no_grad()
def test_recognition_of_a_tiled_frame_is_the_same_with_and_without_prefix_cache(internvl):
    frame, refs = random_image(9, (1024, 768)), [random_image(10, (640, 480))]
    probs = []
    for cache in (True, False):
        engine = EgoEngine(internvl, config=EngineConfig(prefix_cache=cache))
        engine.introduce("kona", refs)
        probs.append([r.probability for r in engine.recognize(frame)])
        probs[-1] += [r.probability for r in engine.recognize(frame)]  # the second call reuses the prefix
    assert probs[0] == pytest.approx(probs[1], abs=1e-5)


def test_a_tiled_frame_is_located_in_input_image_pixels(internvl):
    engine = EgoEngine(internvl)
    engine.introduce("kona", [random_image(11, (200, 200))])
    rec = engine.locate(random_image(12, (1024, 768)), "kona")
    x0, y0, x1, y1 = rec.location.box
    assert 0 <= x0 < x1 <= 1024 and 0 <= y0 < y1 <= 768
    assert rec.location.heatmap.shape == (2 * 4, 3 * 4)  # 3 x 2 tiles of 4 x 4 tokens, assembled


def test_the_engine_option_sets_the_tile_budget_and_other_families_refuse_tiles(backends):
    internvl = make_backend("internvl")
    EgoEngine(internvl, config=EngineConfig(max_tiles=2))
    assert internvl.max_tiles == 2
    with pytest.raises(ValueError, match="does not tile"):
        EgoEngine(backends["llava"], config=EngineConfig(max_tiles=4))
    with pytest.raises(ValueError, match="max_tiles"):
        EngineConfig(max_tiles=0).validate()


@pytest.mark.parametrize("size", [(1024, 768), (640, 480), (1280, 480), (768, 1024), (480, 640), (480, 1280)],
                         ids=lambda s: f"{s[0]}x{s[1]}")
def test_tensor_tiles_match_the_published_processors_tiles(size):
    proc = GotOcr2ImageProcessorPil(size={"height": 448, "width": 448}, crop_to_patches=True)
    for img in (random_image(13, size), _smooth_image(size, 14)):
        want = proc(images=[img], return_tensors="pt", max_patches=12)
        got, arrangement = preprocess.tiled_pixels([img], proc, torch.device("cpu"), torch.float32, 12)
        rows, cols = arrangement[0]
        assert want["num_patches"].tolist() == [rows * cols + 1]
        _assert_close_pixels(got, want["pixel_values"], proc)
