r"""Training samples of the toy model: generic pretraining tasks drawn on the fly from the toy world.

Every sample is plain data (images with per-patch labels, context entries that say which tokens of
which image form a concept memory, a question and its answer). The trainer turns it into exactly the
token sequence the engine uses at inference (`ego_ros.core.compose.query_sequence`), so the layouts
of training and inference cannot drift apart.

Only training instances appear (`attributes.training_instances`); held-out instances are used by the
held-out evaluation only. Concept names are random strings (`random_name`), never a name of the
benchmark exports. Memories are never selected by the model itself: they are crops, whole reference
scenes, object-mask token subsets (with or without jitter), random token subsets or keyword text.

Tasks (weights in `TaskConfig.weights`):

* ``match``: context of 1-3 concepts, each "{name}: <memory>" (memory views as above, 1-3 views),
  a query scene and the engine's recognition question "is {name} here?" -> yes / no. Negatives are
  easy (the concept is absent) or hard (a near-duplicate is there instead; in world v2 mostly a
  look-alike that differs only in its identity signature); the hard share of the negatives ramps from 0
  to `hard_max` over `ramp_steps` (curriculum). Contexts may hold a near-duplicate of the asked
  concept too.
* ``describe``: "describe the main object." -> "red, star, striped, black-mark, top".
* ``area``: "how much of the image is the main object?" -> the percentage of the image it covers.
* ``attribute``: the main object's colour / shape / pattern / mark position, or "is there a red star?".
* ``count``: "how many objects?" -> a number.
* ``caption``: "describe the image." -> the objects left to right ("red star, blue circle."); with a
  context, the concepts present are called by their names instead.
* ``concept_qa``: questions about named concepts in the export's forms ("What colour is kona?",
  "Which is bigger in this image, kona or milo?", "Is kona to the left of milo?") and the Yo'LLaVA A/B
  form with options ("Question: ...\nOptions:\nA. Red\nB. Blue\nPlease give a single character from
  the options above." -> "A").
* ``choose``: two concepts in context, one of them in the query: "which is here, kona or milo?" -> name.

Modules: `task_config` (`TaskConfig`), `image_data` (`ImageData`, crops, render sizes), `sample_texts`
(question templates, names), `sample_builder` (`Sample`, memory views), one module per family of
sample kinds (`recognition_samples`: match, choose; `image_samples`: describe, area, attribute, count,
caption; `concept_samples`: concept_qa), and this one: the mixture (`make_batch`), the vision-only
contrast images and the fixed held-out evaluation sets. The names of those modules are re-exported
here, so ``from ego_ros.toy.tasks import ...`` keeps working.
"""

from __future__ import annotations

import numpy as np

from .attributes import (
    DEFAULT_WORLD,
    Instance,
    WorldError,
    check_world,
    held_out_instances,
    instance_from_uid,
    lookalikes,
    sample_instance,
    sample_signature,
    signature_space,
)
from .concept_samples import concept_qa_sample
from .image_data import GRID, IMAGE_SIZE, LABEL_CLASSES, N_TOKENS, PATCH, ImageData, crop_scene, image_data, render_size
from .image_samples import area_sample, attribute_sample, caption_sample, count_sample, describe_sample
from .recognition_samples import choose_sample, draw_match, match_sample, positive_twin, twin_pair
from .sample_builder import EntryData, Sample, train_near_duplicate
from .sample_texts import (
    AB_QUESTIONS,
    QUESTIONS,
    RECOGNITION_PARAPHRASES,
    describe_answer,
    distinct_names,
    keywords_of,
    random_name,
)
from .scenes import query_scene, reference_scene
from .task_config import MEMORY_FORMS, TaskConfig

__all__ = [
    "AB_QUESTIONS",
    "GENERATORS",
    "GRID",
    "IMAGE_SIZE",
    "LABEL_CLASSES",
    "MEMORY_FORMS",
    "N_TOKENS",
    "PATCH",
    "QUESTIONS",
    "RECOGNITION_PARAPHRASES",
    "EntryData",
    "ImageData",
    "Sample",
    "TaskConfig",
    "area_sample",
    "attribute_sample",
    "caption_sample",
    "choose_sample",
    "concept_qa_sample",
    "contrast_images",
    "count_sample",
    "crop_scene",
    "describe_answer",
    "describe_sample",
    "distinct_names",
    "heldout_describe_set",
    "heldout_match_set",
    "lookalike_keep_probability",
    "image_data",
    "instance_of",
    "keywords_of",
    "make_batch",
    "match_sample",
    "twin_pair",
    "query_scene",
    "random_name",
    "reference_scene",
    "render_size",
    "sample_instance",
    "sample_rng",
]

GENERATORS = {
    "match": match_sample,
    "describe": describe_sample,
    "area": area_sample,
    "attribute": attribute_sample,
    "count": count_sample,
    "caption": caption_sample,
    "concept_qa": concept_qa_sample,
    "choose": choose_sample,
    "match_twin": twin_pair,  # two samples (`TaskConfig.twin_weight`)
}


def sample_rng(seed: int, step: int, index: int) -> np.random.Generator:
    """The generator of sample `index` of batch `step`: the data stream depends only on (seed, step)."""
    return np.random.default_rng([seed, step, index])


def make_batch(
    seed: int, step: int, batch_size: int, cfg: TaskConfig, curriculum_step: int | None = None
) -> list[Sample]:
    """The samples of batch `step` (random draws keyed by (seed, step, index)); the curriculum (hard
    negative share) follows `curriculum_step`, by default `step`. A ``match_twin`` draw gives two samples
    (a pair cut by the end of the batch keeps its negative)."""
    weights = dict(cfg.weights)
    if cfg.twin_weight > 0:
        weights["match_twin"] = cfg.twin_weight
    tasks = list(weights)
    p = np.array([weights[t] for t in tasks], dtype=np.float64)
    p /= p.sum()
    at = step if curriculum_step is None else curriculum_step
    out: list[Sample] = []
    index = 0
    while len(out) < batch_size:
        rng = sample_rng(seed, step, index)
        index += 1
        task = tasks[int(rng.choice(len(tasks), p=p))]
        drawn = GENERATORS[task](rng, cfg, at)
        out += drawn if isinstance(drawn, list) else [drawn]
    return out[:batch_size]


def contrast_images(seed: int, step: int, n_instances: int, cfg: TaskConfig) -> list[ImageData]:
    """Vision-only images for the dense and instance-contrastive losses: for each of `n_instances`
    training instances a reference view and a cluttered query holding it, and the same for one of its
    near-duplicates, so every instance meets its own look-alike in the batch (hard negative)."""
    out: list[ImageData] = []
    for k in range(n_instances):
        rng = np.random.default_rng([seed, step, 1_000_000 + k])
        inst = sample_instance(rng, held_out=False, world=cfg.world)
        dup = train_near_duplicate(inst, rng)
        for x, other in ((inst, dup), (dup, inst)):
            if x is None:
                continue
            out.append(image_data(reference_scene(x, rng, render_size(rng, cfg))))
            include = [x]
            if other is not None and x is inst and rng.random() < 0.5:
                include.append(other)  # both look-alikes in one scene
            exclude = {other} - set(include) if other is not None else set()
            query = query_scene(rng, render_size(rng, cfg), world=cfg.world, include=include, exclude=exclude)
            out.append(image_data(query))
    return out


#: Draws of a v2 held-out hard negative until one is kept: about one look-alike pair in four is thinned
#: out (`lookalike_keep_probability`) and a near-duplicate's twin fails when its other mark position is
#: hidden, so twenty leave no realistic chance of running out.
_TWIN_ATTEMPTS = 20


def heldout_match_set(
    n: int,
    seed: int = 12345,
    forms: tuple[str, ...] = ("full", "mask", "keywords"),
    world: str = DEFAULT_WORLD,
) -> list[Sample]:
    """A fixed evaluation set of recognition samples on held-out instances: 40 % positive, 40 % hard
    negative, 20 % easy negative, the memory forms in turn (one view, one concept in context).

    In v2, per five samples: a look-alike negative (kind "lookalike": its held-out signature is the only
    difference), an other-mark / pattern negative (kind "near_duplicate"), each preceded by its positive
    twin (`positive_twin`: the same sample with the concept in the negative's place; `Sample.twin` links
    the two), and an easy negative. Positives are only twins because the free positives of
    `match_sample` often show a near-duplicate next to the concept (as training does), and two objects
    of the concept's attributes raise P(yes) for a model that cannot see the signature: the committed
    v1 weights scored 0.74 positives against look-alikes on them (docs/toy_model.md, "The held-out
    look-alike metric"). Look-alike pairs are thinned so that either member is as likely to be the
    concept (`lookalike_keep_probability`): a model that reads the query alone scores 0.5."""
    cfg = TaskConfig(big_render_p=0.0, world=world)
    if check_world(world) == "v1":
        kinds = ("pos", "pos", "hard", "hard", "easy")
        return [
            match_sample(
                np.random.default_rng([seed, i]), cfg, cfg.ramp_steps, held_out=True, kind=kinds[i % 5],
                form=forms[(i // 5) % len(forms)],
            )
            for i in range(n)
        ]  # fmt: skip
    out: list[Sample] = []
    for group in range((n + 4) // 5):
        form = forms[group % len(forms)]
        for slot, kind in ((2, "lookalike"), (3, "near_duplicate")):
            twin, negative = _twinned_negative([seed, 5 * group + slot], cfg, kind, form)
            twin.twin, negative.twin = len(out) + 1, len(out)
            out += [twin, negative]
        rng = np.random.default_rng([seed, 5 * group + 4])
        out.append(match_sample(rng, cfg, cfg.ramp_steps, held_out=True, kind="easy", form=form))
    for s in out[n:]:  # a twin cut off at the end of the set leaves its partner without one
        if s.twin is not None and s.twin < n:
            out[s.twin].twin = None
    return out[:n]


def _twinned_negative(key: list[int], cfg: TaskConfig, kind: str, form: str) -> tuple[Sample, Sample]:
    """(positive twin, hard negative of `kind`), the negative drawn from seed `key` (then `key` + attempt
    until a draw is kept and its twin shows the concept recognisably)."""
    for attempt in range(_TWIN_ATTEMPTS):
        rng = np.random.default_rng(key if attempt == 0 else [*key, attempt])
        draw = draw_match(rng, cfg, cfg.ramp_steps, held_out=True, kind=kind, form=form)
        if draw.sample.kind != kind:  # no near-duplicate of that kind: match_sample fell back to easy
            continue
        if kind == "lookalike" and rng.random() >= lookalike_keep_probability(draw.concept):
            continue
        twin = positive_twin(draw)
        if twin is not None:
            return twin, draw.sample
    raise WorldError(f"no {kind} negative with a recognisable positive twin in {_TWIN_ATTEMPTS} draws of {key}")


def lookalike_keep_probability(concept: Instance) -> float:
    """The chance that the held-out set keeps a drawn (concept, look-alike) pair: the concept's number of
    look-alikes over the most that any signature of its attributes has. `match_sample` draws the
    concept's signature uniformly and then one of its look-alikes uniformly, so a pair comes up in
    proportion to 1 / (the concept's look-alike count); thinned like this every ordered pair is equally
    likely, the same pair the other way round included, and either member is as likely to be the
    concept. Without it the look-alike was the paler body in 54.5 % of world-2.1 pairs, and the v1
    weights, which answer yes more readily to the less pale body whatever the reference shows, scored
    0.575 on keywords-only pairs."""
    most = max(len(lookalikes(concept.with_signature(s))) for s in signature_space(concept.is_held_out))
    return len(lookalikes(concept)) / most


def heldout_describe_set(n: int, seed: int = 54321, world: str = DEFAULT_WORLD) -> list[tuple[ImageData, Instance]]:
    """Reference views of held-out instances with their truth (for description accuracy)."""
    held = held_out_instances()
    out = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        inst = held[int(rng.integers(len(held)))]
        if check_world(world) == "v2":
            inst = inst.with_signature(sample_signature(rng, held_out=True))
        out.append((image_data(reference_scene(inst, rng, IMAGE_SIZE, distractor_held_out=None)), inst))
    return out


def instance_of(uid: int) -> Instance:
    """The instance of an `ImageData.obj_inst` entry (its uid)."""
    return instance_from_uid(uid)
