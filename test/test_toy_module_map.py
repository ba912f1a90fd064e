"""Specification of the toy package's module map: `render` and `tasks` were split into small modules, and
every public name they held still imports from them, as the very object of its new home module."""

from __future__ import annotations

import importlib

import pytest

#: Public names of the former one-module `ego_ros.toy.render`, by the module that holds them now.
RENDER_NAMES: dict[str, tuple[str, ...]] = {
    "shapes": ("GLYPH_BOXES", "GLYPH_FILL", "MARK_ANCHORS", "MARK_HALF", "MARK_MIN_HALF_PX", "SHAPE_AREAS",
               "SHAPE_POLYGONS", "visible_glyph_cells"),
    "colours": ("RGB", "SHADE_DIRECTIONS", "SHADE_HUE_TURN", "SHADE_SATURATION", "glyph_rgb", "muted_rgb",
                "pattern_rgb", "pixel_colours", "shade_rgb"),
    "specs": ("BLOB_KINDS", "TEXTURES", "BackgroundSpec", "Blob", "Lighting", "ObjectSpec", "SceneSpec",
              "scene_spec_from_dict"),
    "labels": ("BACKGROUND_LABEL", "LABEL_CLASSES", "PART_BACKGROUND", "PART_BODY", "PART_GLYPH", "PART_MARK",
               "PART_PATTERN", "LabelMaps", "pool_fractions", "pool_labels"),
    "scene": ("Scene",),
}  # fmt: skip
#: Public names of the former one-module `ego_ros.toy.tasks`, by the module that holds them now.
TASKS_NAMES: dict[str, tuple[str, ...]] = {
    "task_config": ("MEMORY_FORMS", "TaskConfig"),
    "image_data": ("GRID", "IMAGE_SIZE", "LABEL_CLASSES", "N_TOKENS", "PATCH", "ImageData", "crop_scene",
                   "image_data", "render_size"),
    "sample_texts": ("AB_QUESTIONS", "QUESTIONS", "RECOGNITION_PARAPHRASES", "describe_answer", "distinct_names",
                     "keywords_of", "random_name"),
    "sample_builder": ("EntryData", "Sample"),
    "recognition_samples": ("choose_sample", "match_sample"),
    "image_samples": ("area_sample", "attribute_sample", "caption_sample", "count_sample", "describe_sample"),
    "concept_samples": ("concept_qa_sample",),
    "scenes": ("query_scene", "reference_scene"),
    "attributes": ("sample_instance",),
}  # fmt: skip


def _pairs(old: str, names: dict[str, tuple[str, ...]]) -> list[tuple[str, str, str]]:
    return [(old, home, name) for home, group in names.items() for name in group]


@pytest.mark.parametrize(("old", "home", "name"), _pairs("render", RENDER_NAMES) + _pairs("tasks", TASKS_NAMES))
def test_a_name_of_the_old_module_is_the_object_of_its_new_home(old, home, name):
    old_module = importlib.import_module(f"ego_ros.toy.{old}")
    home_module = importlib.import_module(f"ego_ros.toy.{home}")
    assert getattr(old_module, name) is getattr(home_module, name)


@pytest.mark.parametrize("old", ["render", "tasks"])
def test_the_old_module_declares_what_it_re_exports(old):
    module = importlib.import_module(f"ego_ros.toy.{old}")
    names = RENDER_NAMES if old == "render" else TASKS_NAMES
    assert {n for group in names.values() for n in group} <= set(module.__all__)


def test_the_mixture_draws_every_sample_kind_from_its_family_module():
    from ego_ros.toy import tasks

    assert {t: f.__module__.rsplit(".", 1)[1] for t, f in tasks.GENERATORS.items()} == {
        "match": "recognition_samples",
        "choose": "recognition_samples",
        "match_twin": "recognition_samples",
        "describe": "image_samples",
        "area": "image_samples",
        "attribute": "image_samples",
        "count": "image_samples",
        "caption": "image_samples",
        "concept_qa": "concept_samples",
    }
