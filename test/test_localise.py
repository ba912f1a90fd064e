"""Localisation: maps over the visual-token grid, the box rule, pixel geometry of every backend's layout,
and the attention signal captured on the recognition pass itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import random_image
from transformers import DynamicCache

from ego_ros.core.attention import capturing
from ego_ros.core.backends.base import VisualTokens
from ego_ros.core.compose import query_context, query_sequence, recognition_queries
from ego_ros.core.engine import EgoEngine, EngineConfig
from ego_ros.core.introduce import IntroduceOptions
from ego_ros.core.localise import (
    MAPS,
    BoxRule,
    attention_rows,
    box_from_map,
    boxes_from_maps,
    combine,
    similarity_map,
)
from ego_ros.core.sequence import Runner, sequence_embeds, sequence_positions
from ego_ros.core.tails import shared_last_logits

FAST = IntroduceOptions(max_new_tokens=4, area_max_new_tokens=3)
#: the first rule: boxes of whole tokens at half the peak, the peak token's centre (the geometry tests' rule)
WHOLE_TOKENS = BoxRule(upsample=1, relative=0.5, reference="min", point="peak")


def grid_tokens(rows: int, cols: int, box: tuple[float, float, float, float], size: tuple[int, int]) -> VisualTokens:
    return VisualTokens(torch.zeros(rows * cols, 4), rows, cols, box, size)


#: (layout, token grid, region the grid tiles, image size): Qwen's merged patches over a non-square image,
#: InternVL's pixel-shuffled square grid stretched over a wide image, LLaVA's centre crop, a letterboxed
#: square (padding above and below the image lies outside it).
LAYOUTS = {
    "qwen-merged-non-square": (grid_tokens(4, 6, (0, 0, 96, 64), (96, 64)), (1, 2), (32, 16, 48, 32)),
    "internvl-stretched": (grid_tokens(4, 4, (0, 0, 128, 64), (128, 64)), (1, 2), (64, 16, 96, 32)),
    "llava-centre-crop": (grid_tokens(4, 4, (20, 0, 60, 40), (80, 40)), (0, 0), (20, 0, 30, 10)),
    "letterbox": (grid_tokens(4, 4, (0, -20, 80, 60), (80, 40)), (1, 1), (20, 0, 40, 20)),
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_single_hot_token_gives_its_region_as_box_and_its_centre_as_point(layout):
    vt, (r, c), expected = LAYOUTS[layout]
    heat = np.zeros((vt.rows, vt.cols))
    heat[r, c] = 1.0
    box, point, score = box_from_map(heat.ravel(), vt, WHOLE_TOKENS)
    assert box == pytest.approx(expected)
    assert point == pytest.approx(((expected[0] + expected[2]) / 2, (expected[1] + expected[3]) / 2))
    assert score == pytest.approx(1.0)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_default_rule_puts_a_single_hot_tokens_point_on_it_and_its_box_around_it(layout):
    vt, (r, c), (x0, y0, x1, y1) = LAYOUTS[layout]
    heat = np.zeros((vt.rows, vt.cols))
    heat[r, c] = 1.0
    box, point, _ = box_from_map(heat.ravel(), vt)
    tw, th = x1 - x0, y1 - y0  # one token
    assert x0 <= point[0] <= x1 and y0 <= point[1] <= y1
    assert box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]
    assert box[0] >= max(0, x0 - tw) and box[2] <= x1 + tw and box[1] >= max(0, y0 - th) and box[3] <= y1 + th


def test_a_box_reaching_into_letterbox_padding_is_clipped_to_the_image():
    vt = grid_tokens(4, 4, (0, -20, 80, 60), (80, 40))  # rows 0 and 3 lie in the padding
    heat = np.zeros((4, 4))
    heat[0:2, 1] = [0.8, 1.0]
    box, point, _ = box_from_map(heat.ravel(), vt, WHOLE_TOKENS)
    assert box == (20.0, 0.0, 40.0, 20.0)
    assert point == (30.0, 10.0)


def test_the_box_covers_the_peak_component_only():
    vt = grid_tokens(6, 6, (0, 0, 60, 60), (60, 60))
    heat = np.zeros((6, 6))
    heat[0:2, 0:2] = [[0.9, 0.6], [0.7, 1.0]]  # the peak's blob
    heat[4:6, 4:6] = 0.8  # a second blob above the threshold, not connected
    box, point, score = box_from_map(heat.ravel(), vt, WHOLE_TOKENS)
    assert box == (0.0, 0.0, 20.0, 20.0)
    assert point == (15.0, 15.0)
    assert score == pytest.approx(heat[:2, :2].sum() / heat.sum())


def test_tokens_below_half_the_peak_stay_out_of_the_box():
    vt = grid_tokens(1, 4, (0, 0, 40, 10), (40, 10))
    box, _, _ = box_from_map(np.array([0.0, 0.4, 1.0, 0.6]), vt, WHOLE_TOKENS)
    assert box == (20.0, 0.0, 40.0, 10.0)


def test_a_resampled_map_puts_the_box_edges_inside_the_neighbouring_tokens():
    vt = grid_tokens(1, 4, (0, 0, 64, 16), (64, 16))  # 16 px tokens, centres at 8, 24, 40, 56
    heat = np.array([0.0, 1.0, 0.0, 0.0])
    # Bilinear between token centres: the map is >= 0.25 of the peak within 12 px of the peak's centre (24).
    box, point, _ = box_from_map(heat, vt, BoxRule(upsample=8, relative=0.25))
    assert box[0] == pytest.approx(12.0) and box[2] == pytest.approx(36.0)
    assert point == (24.0, 8.0)  # the peak token's centre
    whole, _, _ = box_from_map(heat, vt, BoxRule(upsample=1, relative=0.25))
    assert whole == (16.0, 0.0, 32.0, 16.0)


def test_the_centroid_point_lies_between_two_equal_peaks():
    vt = grid_tokens(1, 4, (0, 0, 40, 10), (40, 10))
    heat = np.array([0.0, 1.0, 1.0, 0.0])
    _, peak, _ = box_from_map(heat, vt, BoxRule(point="peak"))
    _, centroid, _ = box_from_map(heat, vt, BoxRule(point="centroid"))
    assert peak == (15.0, 5.0) and centroid == pytest.approx((20.0, 5.0))


def test_a_median_reference_keeps_a_raised_background_out_of_the_box():
    vt = grid_tokens(1, 5, (0, 0, 50, 10), (50, 10))
    heat = np.array([0.0, 0.4, 0.4, 1.0, 0.4])
    over_min, _, _ = box_from_map(heat, vt, BoxRule(relative=0.2, reference="min"))
    over_median, _, _ = box_from_map(heat, vt, BoxRule(relative=0.2, reference="median"))
    assert over_min == (10.0, 0.0, 50.0, 10.0) and over_median == (30.0, 0.0, 40.0, 10.0)


@pytest.mark.parametrize(("field", "value"), [("upsample", 0), ("relative", 1.5), ("reference", "mean"),
                                              ("point", "middle")])
def test_a_box_rule_with_a_bad_field_is_refused(field, value):
    with pytest.raises(ValueError, match=field):
        BoxRule(**{field: value})


@pytest.mark.parametrize("rule", [BoxRule(), BoxRule(upsample=8, relative=0.3, reference="median", point="centroid")])
def test_maps_located_together_get_the_boxes_each_gets_alone(rule):
    vt = grid_tokens(4, 6, (0, -8, 96, 56), (96, 48))
    heats = np.random.default_rng(1).random((150, 24)) ** 4  # more maps than one OpenCV resize takes
    heats[3] = 0.2  # a flat map among them
    flat = [[*box, *point, score] for box, point, score in boxes_from_maps(heats, vt, rule)]
    alone = [[*box, *point, score] for box, point, score in (box_from_map(h, vt, rule) for h in heats)]
    assert np.asarray(flat) == pytest.approx(np.asarray(alone), abs=1e-9)  # one resize of many channels or one


def test_a_flat_map_scores_zero():
    vt = grid_tokens(3, 3, (0, 0, 30, 30), (30, 30))
    _, _, score = box_from_map(np.full(9, 0.3), vt)
    assert score == 0.0


def test_similarity_map_is_each_query_tokens_best_cosine_to_the_memory():
    query = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    memory = torch.tensor([[3.0, 0.0], [0.0, -1.0]])
    assert similarity_map(query, memory) == pytest.approx([1.0, 0.0, 2 ** -0.5], abs=1e-6)


def test_the_combined_map_peaks_where_both_maps_are_high():
    attention = np.array([1.0, 0.9, 0.0, 0.1])
    similarity = np.array([0.0, 0.8, 1.0, 0.2])
    assert int(np.argmax(combine(attention, similarity, "product"))) == 1
    assert int(np.argmax(combine(attention, similarity, "attention"))) == 0
    assert int(np.argmax(combine(attention, similarity, "similarity"))) == 2


def test_an_unknown_map_is_refused():
    with pytest.raises(ValueError, match="unknown localisation map"):
        combine(None, np.zeros(3), "saliency")


def test_the_attention_map_needs_the_capture():
    with pytest.raises(ValueError, match="not captured"):
        combine(None, np.zeros(3), "attention")


@pytest.fixture
def located(backend):
    engine = EgoEngine(backend, config=EngineConfig(introduce=FAST))
    engine.introduce("kona", [random_image(1), random_image(2)])
    engine.introduce("milo", [random_image(3)])
    return engine


def test_every_backend_locates_every_concept_inside_a_non_square_image(located):
    image = random_image(7, size=(96, 64))
    recs = located.recognize(image, locate="all")
    vt = located.backend.encode_images([image])[0]
    for r in recs:
        loc = r.location
        assert loc is not None and loc.heatmap.shape == (vt.rows, vt.cols)
        x0, y0, x1, y1 = loc.box
        assert 0 <= x0 < x1 <= 96 and 0 <= y0 < y1 <= 64
        assert x0 <= loc.point[0] <= x1 and y0 <= loc.point[1] <= y1
        assert 0.0 <= loc.score <= 1.0


def test_the_batched_similarity_of_several_concepts_equals_each_concepts_own(located):
    vt = located.backend.encode_images([random_image(11)])[0]
    batched = located._similarities(vt, ["kona", "milo"])
    for name in ("kona", "milo"):
        assert batched[name] == pytest.approx(similarity_map(vt.embeds, located._memory_tokens(name)), abs=1e-5)


def test_localisation_does_not_change_the_recognition_probabilities(located):
    image = random_image(8)
    plain = located.recognize(image)
    with_locations = located.recognize(image, locate="all")
    assert [r.probability for r in with_locations] == pytest.approx([r.probability for r in plain], abs=1e-5)
    assert all(r.location is None for r in plain)


def test_locate_present_locates_only_concepts_judged_present(located):
    located.config.threshold = 0.0  # every concept present
    assert all(r.location is not None for r in located.recognize(random_image(9), locate="present"))
    located.config.threshold = 1.0  # none
    assert all(r.location is None for r in located.recognize(random_image(9), locate="present"))


def test_locate_gives_every_map_on_request(located):
    for which in MAPS:
        rec = located.locate(random_image(10), "kona", map=which)
        assert rec.name == "kona" and rec.location.map == which


def test_a_wrong_locate_option_is_refused(located):
    with pytest.raises(ValueError, match="locate must be"):
        located.recognize(random_image(1), locate="everything")


def test_each_packed_question_attends_as_if_it_were_asked_alone(llava):
    """The captured attention of the second of two packed questions equals that of the same question in its
    own full sequence: the tail mask hides the first question from it and the columns are the image's."""
    engine = EgoEngine(llava, config=EngineConfig(introduce=FAST, prefix_cache=False))
    engine.introduce("kona", [random_image(1)])
    engine.introduce("milo", [random_image(2)])
    vt = llava.encode_images([random_image(5)])[0]
    entries = engine._entries(["kona", "milo"])
    questions = [llava.prompts.recognition.format(name=n) for n in ("kona", "milo")]
    layers = [0, 1]
    with torch.inference_mode():
        queries = recognition_queries(llava, query_context(llava, entries, 1), [vt], questions)
        start = next(s for s, blk in queries.shared.blocks if blk.embeds is vt.embeds)
        with capturing(layers, torch.arange(start, start + vt.count)) as cap:
            shared_last_logits(engine.runner, queries, capture=cap)
        packed = attention_rows(cap.records)[1]

        alone = query_sequence(llava, entries, [vt], questions[1])
        start = next(s for s, blk in alone.blocks if blk.embeds is vt.embeds)
        runner = Runner(llava)
        pos, _ = sequence_positions(llava, alone)
        with capturing(layers, torch.arange(start, start + vt.count)) as cap:
            cap.rows = torch.tensor([len(alone) - 1])
            runner._forward(sequence_embeds(llava, alone)[None], Runner._batch_positions(pos), DynamicCache())
        single = attention_rows(cap.records)[0]
    assert packed == pytest.approx(single, abs=1e-5)
    assert not np.allclose(packed, packed.mean())  # a real map, not a uniform one


# ------------------------------------------------------------------------------------- toy model, end to end
#: Floor of the share of present cases whose point lies on the concept's exact mask, over the fixed scenes
#: of the test below (4 held-out concepts, export seed 5, 4 test images each, the default map and rule).
#: Measured on the committed toy weights: 16 of 16 with the centroid rule (14 of 16 with the first rule,
#: whole tokens and the peak token's centre); the floor allows two misses. The benchmark's figures over
#: seeds 0 and 1 are in docs/toy_model.md.
LOCATE_POINTING_MIN = 0.875


@pytest.mark.slow
def test_the_toy_model_points_at_a_present_concept_in_most_scenes(tmp_path):
    import json

    from PIL import Image

    from ego_ros.toy.export import export
    from ego_ros.toy.render import render, scene_spec_from_dict

    export(tmp_path, "yollava", 4, seed=5, views=5, test_per_concept=4, negatives=0)
    manifest = json.loads((tmp_path / "toy_manifest.json").read_text())
    engine = EgoEngine.load("toy", request_timeout_s=0)
    for name in manifest["concepts"]:
        views = sorted(k for k, v in manifest["images"].items() if v["role"] == "reference" and v["concept"] == name)
        engine.introduce(name, [str(tmp_path / v) for v in views])
    hits = []
    for path, rec in manifest["images"].items():
        if rec["role"] != "test":
            continue
        masks = render(scene_spec_from_dict(rec["spec"])).masks
        for k, obj in enumerate(rec["objects"]):
            if obj["concept"] is not None and masks[k].any():
                x, y = engine.locate(Image.open(tmp_path / path), obj["concept"]).location.point
                hits.append(bool(masks[k][int(y), int(x)]))
    assert len(hits) >= 12
    assert sum(hits) / len(hits) >= LOCATE_POINTING_MIN, f"{sum(hits)}/{len(hits)} points on the mask"
