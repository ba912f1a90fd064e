"""The toy world in one import: attributes and instances, scene specs, the renderer and samplers.

Quick tour (all randomness comes from the numpy Generator you pass; nothing touches global RNG state)::

    import numpy as np
    from ego_ros.toy import world

    rng = np.random.default_rng(0)
    mine = world.sample_instance(rng, held_out=True)        # a personal instance, never trained on
    mine.keyword_text                                       # "red star striped black-mark top"
    twins = world.near_duplicates(mine)                     # hard negatives (other mark / pattern)
    glyphed = world.sample_instance(rng, held_out=True, world="v2")   # world v2: with an identity signature
    world.lookalikes(glyphed)                               # same words, other signature: only pixels differ
    ref = world.reference_scene(mine, rng, size=64)         # Scene: image, masks, labels, spec
    ref.main_area_fraction                                  # share of the image the main object covers
    query = world.query_scene(rng, 64, include=[mine], near_duplicate_p=0.5)
    big = world.render(query.spec, (640, 480))              # same scene for the demo camera
    world.pool_labels(query.labels.shape, 8, world.LABEL_CLASSES["shape"])   # 8x8 patch grid labels

Modules: `attributes` (instances, split, vocabulary), `shapes` (geometry), `colours`, `specs` (scene
specs), `render` (the renderer), `scene` (`Scene`), `labels` (label maps, pooling), `scenes` (samplers).
See their docstrings for the rules.
"""

from .attributes import (
    ATTRIBUTE_VALUES,
    ATTRIBUTES,
    COLOUR_RGB,
    COLOURS,
    DEFAULT_WORLD,
    HELD_OUT_INDICES,
    HELD_OUT_PER_MILLE,
    HELD_OUT_SIGNATURES,
    MARK_COLOUR_RGB,
    MARK_COLOURS,
    MARK_POSITIONS,
    MARKS,
    MAX_ROTATION_DEG,
    N_INSTANCES,
    NEAR_DUPLICATE_KINDS,
    PATTERNS,
    SHAPES,
    SIGNATURES,
    TRAIN_INDICES,
    TRAIN_SIGNATURES,
    WORLD_VERSION,
    WORLD_VOCABULARY,
    WORLDS,
    Instance,
    WorldError,
    all_instances,
    held_out_instances,
    lookalikes,
    near_duplicates,
    sample_instance,
    sample_near_duplicate,
    training_instances,
)
from .colours import pattern_rgb, pixel_colours
from .labels import (
    BACKGROUND_LABEL,
    LABEL_CLASSES,
    PART_BACKGROUND,
    PART_BODY,
    PART_GLYPH,
    PART_MARK,
    PART_PATTERN,
    LabelMaps,
    pool_fractions,
    pool_labels,
)
from .render import render
from .scene import Scene
from .scenes import (
    DISTRACTOR_SIZE,
    QUERY_SIZE,
    RANDOM_SIZE,
    REFERENCE_SIZE,
    query_scene,
    query_spec,
    random_scene,
    reference_scene,
    reference_spec,
    sample_background,
    sample_lighting,
    without_noise,
)
from .shapes import MARK_ANCHORS, MARK_HALF, SHAPE_POLYGONS
from .specs import TEXTURES, BackgroundSpec, Blob, Lighting, ObjectSpec, SceneSpec, scene_spec_from_dict

__all__ = [
    "ATTRIBUTES",
    "ATTRIBUTE_VALUES",
    "BACKGROUND_LABEL",
    "COLOURS",
    "COLOUR_RGB",
    "DEFAULT_WORLD",
    "DISTRACTOR_SIZE",
    "HELD_OUT_INDICES",
    "HELD_OUT_SIGNATURES",
    "HELD_OUT_PER_MILLE",
    "LABEL_CLASSES",
    "MARKS",
    "MARK_ANCHORS",
    "MARK_COLOURS",
    "MARK_COLOUR_RGB",
    "MARK_HALF",
    "MARK_POSITIONS",
    "MAX_ROTATION_DEG",
    "NEAR_DUPLICATE_KINDS",
    "N_INSTANCES",
    "PART_BACKGROUND",
    "PART_BODY",
    "PART_GLYPH",
    "PART_MARK",
    "PART_PATTERN",
    "PATTERNS",
    "QUERY_SIZE",
    "RANDOM_SIZE",
    "REFERENCE_SIZE",
    "SHAPES",
    "SHAPE_POLYGONS",
    "SIGNATURES",
    "TEXTURES",
    "TRAIN_INDICES",
    "TRAIN_SIGNATURES",
    "WORLDS",
    "WORLD_VERSION",
    "WORLD_VOCABULARY",
    "BackgroundSpec",
    "Blob",
    "Instance",
    "LabelMaps",
    "Lighting",
    "ObjectSpec",
    "Scene",
    "SceneSpec",
    "WorldError",
    "all_instances",
    "held_out_instances",
    "lookalikes",
    "near_duplicates",
    "pattern_rgb",
    "pixel_colours",
    "pool_fractions",
    "pool_labels",
    "query_scene",
    "query_spec",
    "random_scene",
    "reference_scene",
    "reference_spec",
    "render",
    "sample_background",
    "sample_instance",
    "sample_lighting",
    "sample_near_duplicate",
    "scene_spec_from_dict",
    "training_instances",
    "without_noise",
]
