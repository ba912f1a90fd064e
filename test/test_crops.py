"""Engine-level tiling of query frames for fixed-size single-grid families (core/crops.py, opt-in)."""

from __future__ import annotations

import pytest
import torch
from conftest import random_image

from ego_ros.core.compose import view_sequence
from ego_ros.core.crops import crop_boxes, encode_cropped
from ego_ros.core.engine import EgoEngine, EngineConfig
from ego_ros.core.sequence import Runner


def test_a_square_frame_three_times_the_input_size_is_cut_into_nine_crops_covering_it():
    boxes = crop_boxes((192, 192), (64, 64), 9)
    assert len(boxes) == 9 and boxes[0] == (0, 0, 64, 64) and boxes[-1] == (128, 128, 192, 192)


def test_a_frame_that_fits_one_tile_is_not_cropped():
    assert crop_boxes((64, 64), (64, 64), 9) == []
    assert crop_boxes((640, 480), (64, 64), 1) == []


def test_a_cropped_frame_is_its_thumbnail_then_one_grid_per_crop_in_frame_pixels(llava):
    vt = encode_cropped(llava, [random_image(1, (96, 96))], 4)[0]
    kinds = [g.kind for g in vt.layout.grids]
    assert kinds == ["thumbnail"] + ["tile"] * 4
    assert vt.layout.grids[0].box == (0.0, 0.0, 96.0, 96.0)
    assert vt.layout.grids[4].box == (48.0, 48.0, 96.0, 96.0) and vt.layout.grids[4].tile == (1, 1)
    side = llava.encode_images([random_image(1, (96, 96))])[0].rows
    assert (vt.rows, vt.cols) == (2 * side, 2 * side) and vt.count == 5 * side * side


@torch.no_grad()
def test_a_cropped_frame_equals_the_model_given_thumbnail_and_crops_as_separate_images(llava):
    img = random_image(2, (96, 64))
    vt = encode_cropped(llava, [img], 6)[0]
    images = [img] + [img.crop(b) for b in crop_boxes(img.size, (32, 32), 6)]
    assert len(images) == len(vt.layout.grids) > 1
    seq = view_sequence(llava, vt, "Is the mug here?")
    native = llava.model(**llava.native_inputs(seq.ids, images)).logits[0, -1].float()
    torch.testing.assert_close(Runner(llava).last_logits([seq])[0], native, atol=1e-4, rtol=1e-4)


def test_the_engine_recognises_and_locates_on_cropped_frames_in_frame_pixels(llava):
    engine = EgoEngine(llava, config=EngineConfig(crop_tiles=4))
    engine.introduce("kona", [random_image(3, (64, 64))])
    assert engine.store.get("kona").views[0].layout.is_single  # references are not cropped
    rec = engine.locate(random_image(4, (128, 96)), "kona")
    x0, y0, x1, y1 = rec.location.box
    assert 0 <= x0 < x1 <= 128 and 0 <= y0 < y1 <= 96 and 0.0 <= rec.probability <= 1.0


@pytest.mark.parametrize("family,message", [("internvl", "tiles images itself"), ("qwen2_5_vl", "M-RoPE")])
def test_crop_tiles_is_refused_where_it_does_not_apply(backends, family, message):
    with pytest.raises(ValueError, match=message):
        EgoEngine(backends[family], config=EngineConfig(crop_tiles=4))


def test_a_crop_budget_below_one_is_refused():
    with pytest.raises(ValueError, match="crop_tiles"):
        EngineConfig(crop_tiles=0).validate()
