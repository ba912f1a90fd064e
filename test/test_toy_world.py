"""Specification of the toy world: instances, split, rendering, masks, labels and samplers."""

from __future__ import annotations

import json
from dataclasses import replace

import cv2
import numpy as np
import pytest

from ego_ros.toy import world
from ego_ros.toy.world import (
    BackgroundSpec,
    Instance,
    ObjectSpec,
    SceneSpec,
    WorldError,
)

PLAIN_BG = BackgroundSpec(colour_a=(120, 120, 120), colour_b=(120, 120, 120))


def _scene_arrays_equal(a: world.Scene, b: world.Scene) -> bool:
    return (
        np.array_equal(a.image, b.image)
        and np.array_equal(a.masks, b.masks)
        and np.array_equal(a.labels.object, b.labels.object)
        and np.array_equal(a.labels.part, b.labels.part)
        and a.spec == b.spec
    )


def _query(seed: int, size: int = 64, world_version: str | None = None) -> world.Scene:
    """A held-out query scene of the default world, or of `world_version` when given."""
    rng = np.random.default_rng(seed)
    version = world_version or world.DEFAULT_WORLD
    inst = world.sample_instance(rng, held_out=True, world=version)
    return world.query_scene(rng, size, include=[inst], n_objects=(3, 4), near_duplicate_p=0.5, world=version)


# -- determinism -----------------------------------------------------------------------------------
def test_same_seed_gives_identical_pixels_masks_and_labels():
    assert _scene_arrays_equal(_query(7), _query(7))
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    inst = Instance.from_names("star", "red", "striped", "black-top")
    assert _scene_arrays_equal(world.reference_scene(inst, rng_a), world.reference_scene(inst, rng_b))


def test_different_seeds_give_different_scenes():
    a, b = _query(1), _query(2)
    assert a.spec != b.spec
    assert not np.array_equal(a.image, b.image)


def test_rendering_a_spec_twice_gives_identical_results_without_touching_global_rng():
    spec = _query(5).spec
    np.random.seed(0)
    before = np.random.random()
    np.random.seed(0)
    first = world.render(spec, 64)
    second = world.render(spec, 64)
    assert np.random.random() == before
    assert _scene_arrays_equal(first, second)


# -- masks -----------------------------------------------------------------------------------------
def test_masks_are_disjoint_and_match_the_object_label_map():
    for seed in range(10):
        scene = _query(seed)
        assert scene.masks.dtype == bool and scene.masks.shape == (len(scene.spec.objects), 64, 64)
        assert scene.masks.sum(0).max() <= 1
        for k in range(len(scene.spec.objects)):
            assert np.array_equal(scene.masks[k], scene.labels.object == k + 1)


@pytest.mark.parametrize("version", tuple(world.WORLDS))
def test_mask_pixels_carry_exactly_the_object_colours_when_noise_and_lighting_are_off(version):
    for seed in range(8):
        scene = world.render(world.without_noise(_query(seed, world_version=version).spec), 64)
        for k, obj in enumerate(scene.spec.objects):
            colours = {tuple(c) for c in world.pixel_colours(obj.instance, obj.tint).values()}
            pixels = {tuple(int(v) for v in p) for p in scene.image[scene.masks[k]]}
            assert pixels and pixels <= colours


def test_removing_an_object_changes_only_its_visible_pixels():
    for seed in range(8):
        scene = _query(seed)
        for k in range(len(scene.spec.objects)):
            objects = scene.spec.objects[:k] + scene.spec.objects[k + 1 :]
            without = world.render(replace(scene.spec, objects=objects, main=None), 64)
            changed = np.any(scene.image != without.image, axis=2)
            assert not np.any(changed & ~scene.masks[k])
            if scene.masks[k].any():  # colours may coincide on a rare pixel, never on most of them
                assert changed[scene.masks[k]].mean() > 0.9


def test_occluded_parts_are_excluded_from_the_lower_object_mask():
    below = ObjectSpec(Instance.from_names("square", "blue", "plain", "white-top"), 0.4, 0.5, 0.5)
    above = ObjectSpec(Instance.from_names("circle", "red", "plain", "black-top"), 0.6, 0.5, 0.5)
    scene = world.render(SceneSpec(background=PLAIN_BG, objects=(below, above)), 64)
    amodal = scene.amodal_masks()
    overlap = amodal[0] & amodal[1]
    assert overlap.sum() > 50
    assert not np.any(scene.masks[0] & overlap)
    assert np.array_equal(scene.masks[0], amodal[0] & ~amodal[1])
    assert np.array_equal(scene.masks[1], amodal[1])
    assert scene.visible_fraction(0) < 0.9 <= scene.visible_fraction(1)


def test_objects_crossing_the_border_are_cropped_and_lose_their_mark_when_it_leaves_the_frame():
    inst = Instance.from_names("circle", "green", "plain", "white-left")
    scene = world.render(SceneSpec(background=PLAIN_BG, objects=(ObjectSpec(inst, 0.0, 0.5, 0.5),)), 64)
    assert 0.3 < scene.visible_fraction(0) < 0.7
    assert not scene.mark_visible[0]
    assert scene.bbox(0)[0] == 0
    inside = world.render(SceneSpec(background=PLAIN_BG, objects=(ObjectSpec(inst, 0.5, 0.5, 0.5),)), 64)
    assert inside.mark_visible[0] and inside.visible_fraction(0) > 0.95


def test_mark_covered_by_another_object_is_not_visible():
    inst = Instance.from_names("square", "orange", "plain", "black-top")
    cover = ObjectSpec(Instance.from_names("circle", "blue", "plain", "white-top"), 0.5, 0.3, 0.2)
    scene = world.render(SceneSpec(background=PLAIN_BG, objects=(ObjectSpec(inst, 0.5, 0.5, 0.6), cover)), 64)
    assert not scene.mark_visible[0]
    assert not scene.is_recognisable(0)


# -- attributes and instances ----------------------------------------------------------------------
def test_world_has_at_least_eight_shapes_and_colours_and_five_patterns():
    assert len(world.SHAPES) >= 8 and len(world.COLOURS) >= 8 and len(world.PATTERNS) >= 5
    assert world.N_INSTANCES == len(world.SHAPES) * len(world.COLOURS) * len(world.PATTERNS) * len(world.MARKS)
    assert len(set(world.all_instances())) == world.N_INSTANCES


def test_every_shape_pattern_and_mark_position_draws_differently():
    def image(**names):
        base = {"shape": "square", "colour": "blue", "pattern": "plain", "mark": "white-top"}
        inst = Instance.from_names(**{**base, **names})
        return world.render(SceneSpec(background=PLAIN_BG, objects=(ObjectSpec(inst, 0.5, 0.5, 0.6),)), 64)

    for attr, values in (("shape", world.SHAPES), ("pattern", world.PATTERNS), ("mark", world.MARKS)):
        renders = [image(**{attr: v}).image.tobytes() for v in values]
        assert len(set(renders)) == len(values), attr


def test_marks_lie_inside_their_shape_and_show_at_64_pixels_for_medium_objects():
    for shape, anchors in world.MARK_ANCHORS.items():
        poly = world.SHAPE_POLYGONS[shape].astype(np.float32).reshape(-1, 1, 2)
        h = world.MARK_HALF + 0.03
        for ax, ay in anchors:
            for dx in (-h, h):
                for dy in (-h, h):
                    assert cv2.pointPolygonTest(poly, (float(ax + dx), float(ay + dy)), False) > 0, shape
        for m, mark in enumerate(world.MARKS):
            inst = Instance(world.SHAPES.index(shape), 0, 0, m)
            scene = world.render(SceneSpec(background=PLAIN_BG, objects=(ObjectSpec(inst, 0.5, 0.5, 0.31, 20),)), 64)
            assert (scene.labels.part == world.PART_MARK).sum() >= 4, (shape, mark)
            assert scene.mark_visible[0]


def test_instance_names_keys_and_indices_round_trip():
    for inst in world.all_instances()[::37]:
        assert Instance.from_index(inst.index) == inst
        assert Instance.from_key(inst.key) == inst
        assert Instance.from_names(**inst.names) == inst


def test_keywords_name_colour_shape_pattern_and_mark_from_the_world_vocabulary():
    inst = Instance.from_names("star", "red", "striped", "black-top")
    assert inst.keyword_text == "red star striped black-mark top"
    vocab = set(world.WORLD_VOCABULARY)
    assert len(vocab) == len(world.WORLD_VOCABULARY)
    assert all(set(i.keywords) <= vocab for i in world.all_instances())
    assert {w for i in world.all_instances() for w in i.keywords} == vocab


def test_bad_attributes_and_specs_raise_world_error():
    with pytest.raises(WorldError, match="shape"):
        Instance(len(world.SHAPES), 0, 0, 0)
    with pytest.raises(WorldError, match="unknown colour"):
        Instance.from_names("star", "teal", "plain", "black-top")
    with pytest.raises(WorldError, match="angle"):
        ObjectSpec(Instance(0, 0, 0, 0), 0.5, 0.5, 0.3, angle=60)
    with pytest.raises(WorldError, match="image sides"):
        world.render(SceneSpec(background=PLAIN_BG), 2)
    with pytest.raises(WorldError, match="SceneSpec"):
        world.render("not a spec", 64)  # type: ignore[arg-type]


# -- split -----------------------------------------------------------------------------------------
def test_held_out_split_is_disjoint_complete_and_about_ten_percent():
    held, train = set(world.held_out_instances()), set(world.training_instances())
    assert not held & train
    assert held | train == set(world.all_instances())
    assert 0.08 < len(held) / world.N_INSTANCES < 0.12


def test_held_out_split_is_stable():
    # Pinned: the rule hashes attribute names, so these never change unless the world is renamed.
    assert len(world.held_out_instances()) == 317
    assert Instance.from_key("blue-square-dotted-white-bottom").is_held_out
    assert Instance.from_key("green-triangle-checkered-white-top").is_held_out
    assert not Instance.from_key("red-star-striped-black-top").is_held_out


def test_sample_instance_draws_only_from_the_requested_split():
    rng = np.random.default_rng(0)
    assert all(world.sample_instance(rng, held_out=True).is_held_out for _ in range(200))
    assert not any(world.sample_instance(rng, held_out=False).is_held_out for _ in range(200))


def test_near_duplicates_differ_in_exactly_one_intended_attribute():
    inst = Instance.from_names("heart", "pink", "dotted", "white-left")
    dups = world.near_duplicates(inst)
    assert len(dups) == (len(world.MARKS) - 1) + (len(world.PATTERNS) - 1)
    for d in dups:
        assert len(d.differing_attributes(inst)) == 1
        assert d.differing_attributes(inst)[0] in ("mark", "pattern")
        assert (d.shape, d.colour) == (inst.shape, inst.colour)
    only_marks = world.near_duplicates(inst, kinds=("mark",))
    assert all(d.differing_attributes(inst) == ("mark",) for d in only_marks)
    with pytest.raises(WorldError):
        world.near_duplicates(inst, kinds=("size",))


# -- labels ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", tuple(world.WORLDS))
def test_label_maps_hold_attribute_ids_plus_one_on_objects_and_background_elsewhere(version):
    scene = _query(11, world_version=version)
    background = scene.labels.object == 0
    for attr in world.ATTRIBUTES:
        label = scene.labels.attribute(attr)
        assert np.all(label[background] == world.BACKGROUND_LABEL)
        assert label.max() < world.LABEL_CLASSES[attr]
        for k, obj in enumerate(scene.spec.objects):
            assert np.all(label[scene.masks[k]] == getattr(obj.instance, attr) + 1)
    parts = {0, 1, 2, 3} | ({world.PART_GLYPH} if version == "v2" else set())
    assert set(np.unique(scene.labels.part)) <= parts
    assert np.array_equal(scene.labels.part == 0, background)


def test_pooling_gives_per_patch_majorities_and_fractions():
    labels = np.zeros((16, 16), dtype=np.uint8)
    labels[:8, :8] = 2
    labels[:3, 8:] = 1  # a minority in the top-right patch
    fractions = world.pool_fractions(labels, 8, 3)
    assert fractions.shape == (3, 2, 2)
    assert np.allclose(fractions.sum(0), 1)
    assert fractions[1, 0, 1] == pytest.approx(24 / 64)
    assert np.array_equal(world.pool_labels(labels, 8, 3), [[2, 0], [0, 0]])
    with pytest.raises(WorldError, match="divide"):
        world.pool_labels(labels, 5, 3)


# -- samplers --------------------------------------------------------------------------------------
def test_reference_scene_shows_the_instance_medium_large_and_recognisable():
    rng = np.random.default_rng(4)
    for _ in range(10):
        inst = world.sample_instance(rng, held_out=True)
        scene = world.reference_scene(inst, rng, 64)
        main = scene.spec.main
        assert scene.spec.objects[main].instance == inst
        assert scene.is_recognisable(main, 0.85)
        assert 2 <= len(scene.spec.objects) - 1 <= 3
        assert 0.02 < scene.main_area_fraction < 0.15
        others = [o.instance for k, o in enumerate(scene.spec.objects) if k != main]
        assert all(not o.is_held_out and o not in world.near_duplicates(inst) for o in others)
        assert all(o.size < scene.spec.objects[main].size for k, o in enumerate(scene.spec.objects) if k != main)


def test_query_scene_holds_included_instances_recognisably_and_never_excluded_ones():
    rng = np.random.default_rng(9)
    for _ in range(10):
        a, b = world.sample_instance(rng, held_out=True), world.sample_instance(rng, held_out=True)
        banned = world.near_duplicates(a)[:6]
        scene = world.query_scene(rng, 64, include=[a], exclude=[b, *banned], n_objects=(2, 4))
        ks = [k for k, o in enumerate(scene.spec.objects) if o.instance == a]
        assert len(ks) == 1 and scene.is_recognisable(ks[0])
        assert b not in scene.instances and not set(banned) & set(scene.instances)
        assert 2 <= len(scene.spec.objects) <= 4


def test_query_scene_can_place_a_near_duplicate_next_to_the_instance():
    rng = np.random.default_rng(2)
    inst = world.sample_instance(rng, held_out=True)
    scene = world.query_scene(rng, 64, include=[inst], n_objects=3, near_duplicate_p=1.0)
    assert set(scene.instances) & set(world.near_duplicates(inst))


def test_crowded_query_scenes_leave_out_distractors_that_find_no_place():
    rng = np.random.default_rng(0)
    inst = world.sample_instance(rng)
    scene = world.query_scene(rng, 32, include=[inst], n_objects=15, object_size=(0.7, 0.7))
    assert inst in scene.instances and len(scene.spec.objects) < 15
    assert all(np.isfinite(o.x) and np.isfinite(o.y) for o in scene.spec.objects)


def test_random_scenes_range_from_small_to_large_objects():
    rng = np.random.default_rng(0)
    sizes = [o.size for _ in range(60) for o in world.random_scene(rng, 32).spec.objects]
    assert min(sizes) < 0.18 and max(sizes) > 0.45


def test_spec_round_trips_through_json():
    spec = _query(3).spec
    back = world.scene_spec_from_dict(json.loads(json.dumps(spec.to_dict())))
    assert back == spec
    assert np.array_equal(world.render(back, 48).image, world.render(spec, 48).image)


def test_one_spec_renders_at_any_size_with_the_same_layout():
    spec = _query(6).spec
    small, large = world.render(spec, 64), world.render(spec, 256)
    wide = world.render(spec, (640, 480))
    assert wide.image.shape == (480, 640, 3) and wide.masks.shape[1:] == (480, 640)
    for k in range(len(spec.objects)):
        assert large.visible_fraction(k) == pytest.approx(small.visible_fraction(k), abs=0.08)
