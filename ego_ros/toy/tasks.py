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
  look-alike that differs only in its identity glyph); the hard share of the negatives ramps from 0
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
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image

from .attributes import (
    ATTRIBUTES,
    COLOURS,
    DEFAULT_WORLD,
    NEAR_DUPLICATE_KINDS,
    PATTERNS,
    SHAPES,
    Instance,
    ab_options,
    check_world,
    held_out_instances,
    instance_from_uid,
    near_duplicates,
    sample_instance,
    sample_near_duplicate,
    sample_signature,
)
from .model_config import PROMPT_OVERRIDES
from .render import Scene, pool_fractions, render
from .scenes import query_scene, random_scene, reference_scene

IMAGE_SIZE = 64
PATCH = 8
GRID = IMAGE_SIZE // PATCH
N_TOKENS = GRID * GRID

#: Classes of each per-patch label head (background = 0).
LABEL_CLASSES: dict[str, int] = {
    "shape": len(SHAPES) + 1,
    "colour": len(COLOURS) + 1,
    "pattern": len(PATTERNS) + 1,
    "mark": 8 + 1,
}

#: Question templates of the extra toy tasks (besides the engine prompts in ego_prompts.json).
QUESTIONS: dict[str, str] = {
    "colour": "what colour is the main object?",
    "shape": "what shape is the main object?",
    "pattern": "what pattern is the main object?",
    "mark": "where is the mark of the main object?",
    "present": "is there a {colour} {shape}?",
    "count": "how many objects?",
    "choose": "which is here, {a} or {b}?",
    "concept_colour": "What colour is {a}?",
    "concept_pattern": "What pattern does {a} have?",
    "concept_shape": "What shape is {a}?",
    "bigger": "Which is bigger in this image, {a} or {b}?",
    "left": "Is {a} to the left of {b}?",
    "ab": "Question: {question}\nOptions:\nA. {a}\nB. {b}\nPlease give a single character from the options above.",
}
#: Other phrasings of the recognition question (the benchmarks' styles), answered yes / no like it.
RECOGNITION_PARAPHRASES: tuple[str, ...] = (
    "Is {name} in this image?",
    "Is {name} in this image? Answer with a single word or phrase.",
    "Can you see {name} in this photo?",
    "is {name} in this image? answer yes or no.",
)
#: The A/B questions of the Yo'LLaVA-style export ({a} is the concept's name).
AB_QUESTIONS: tuple[tuple[str, str], ...] = (
    ("colour", "What is the main colour of {a}?"),
    ("pattern", "What pattern does {a} have?"),
    ("shape", "What shape is {a}?"),
    ("mark_colour", "What colour is the small mark on {a}?"),
)

MEMORY_FORMS: tuple[str, ...] = ("full", "mask", "jitter", "random", "crop", "crop_mask")


@dataclass
class TaskConfig:
    """Mix of tasks and the curriculum. Probabilities need not sum to one (they are normalised)."""

    weights: dict[str, float] = field(
        default_factory=lambda: {
            "match": 0.46,
            "describe": 0.12,
            "area": 0.06,
            "attribute": 0.07,
            "count": 0.04,
            "caption": 0.08,
            "concept_qa": 0.10,
            "choose": 0.07,
        }
    )
    #: memory form of a context entry (see MEMORY_FORMS); "keywords" switches the whole context to text
    memory_forms: dict[str, float] = field(
        default_factory=lambda: {
            "full": 0.1,
            "mask": 0.3,
            "jitter": 0.3,
            "random": 0.18,
            "crop": 0.04,
            "crop_mask": 0.08,
        }
    )
    keywords_context_p: float = 0.1
    #: contexts with memory and keyword text together (the engine's "memory+keywords" mode)
    memory_keywords_p: float = 0.04
    #: recognition questions asked in other words than the engine's prompt (benchmark phrasings)
    paraphrase_p: float = 0.15
    #: share of negatives that are hard (a near-duplicate instead of the concept), reached after ramp_steps
    hard_max: float = 0.65
    ramp_steps: int = 12000
    #: share of images rendered at a larger (often 4:3) size and resized to 64x64 like a camera frame
    big_render_p: float = 0.2
    #: the toy world the samples come from (`attributes.WORLDS`): in "v2" instances carry identity
    #: glyphs and most hard negatives are look-alikes that differ only in the glyph
    world: str = DEFAULT_WORLD

    def __post_init__(self) -> None:
        check_world(self.world)

    def hard_share(self, step: int) -> float:
        return self.hard_max * min(1.0, max(0.0, step / max(1, self.ramp_steps)))


@dataclass
class ImageData:
    """One 64x64 image with its per-patch supervision."""

    pixels: np.ndarray  # uint8 (64, 64, 3)
    labels: np.ndarray  # int64 (4, G, G): shape, colour, pattern, mark class per patch (0 = background)
    obj_frac: np.ndarray  # float32 (n, G, G): share of each patch covered by each object
    obj_inst: np.ndarray  # int64 (n,): instance uid of each object (`Instance.uid`; the index in v1)
    obj_ok: np.ndarray  # bool (n,): object recognisable (mark visible, mostly visible): a contrastive anchor


@dataclass
class EntryData:
    name: str
    views: list[tuple[int, np.ndarray | None]]  # (image index, token indices; None = all tokens)
    keywords: list[str]


@dataclass
class Sample:
    task: str
    images: list[ImageData]
    entries: list[EntryData]
    mode: str  # context mode of compose.query_sequence
    query: list[int]  # image indices of the query image(s)
    question: str
    answer: str
    kind: str = ""  # match: "pos" / "hard" / "lookalike" / "near_duplicate" / "easy"


# ------------------------------------------------------------------------------------------------
# Images
# ------------------------------------------------------------------------------------------------
_BIG_SIZES: tuple[tuple[int, int], ...] = ((160, 120), (128, 96), (96, 96), (320, 240), (128, 128), (640, 480))
_BIG_P = np.array([0.3, 0.25, 0.15, 0.15, 0.12, 0.03])


def render_size(rng: np.random.Generator, cfg: TaskConfig) -> tuple[int, int]:
    if rng.random() < cfg.big_render_p:
        return _BIG_SIZES[int(rng.choice(len(_BIG_SIZES), p=_BIG_P))]
    return (IMAGE_SIZE, IMAGE_SIZE)


def _attribute_luts(instances: tuple[Instance, ...]) -> np.ndarray:
    lut = np.zeros((4, len(instances) + 1), dtype=np.int64)
    for k, inst in enumerate(instances):
        for a, attr in enumerate(ATTRIBUTES):
            lut[a, k + 1] = getattr(inst, attr) + 1
    return lut


def _labelled(pixels: np.ndarray, obj: np.ndarray, instances: tuple[Instance, ...], ok: np.ndarray) -> ImageData:
    """ImageData of 64x64 `pixels` with object map `obj` (0 = background, k + 1 = object k)."""
    n = len(instances)
    frac = pool_fractions(obj, PATCH, n + 1)  # (n + 1, G, G), background first
    lut = _attribute_luts(instances)
    labels = np.empty((4, GRID, GRID), dtype=np.int64)
    for a, attr in enumerate(ATTRIBUTES):
        # Majority attribute value per patch, from the object shares: a patch half covered by two red
        # objects is red. Shares are multiples of 1/64, so these sums are exact and ties break to the
        # lower label as in `pool_labels` of the attribute map.
        share = np.zeros((LABEL_CLASSES[attr], GRID, GRID), dtype=np.float32)
        np.add.at(share, lut[a], frac)
        labels[a] = share.argmax(0)
    inst = np.array([i.uid for i in instances], dtype=np.int64)
    return ImageData(pixels=np.ascontiguousarray(pixels), labels=labels, obj_frac=frac[1:], obj_inst=inst, obj_ok=ok)


def image_data(scene: Scene) -> ImageData:
    """Resize a rendered scene to the model's input like the image processor does, with its labels."""
    obj = scene.labels.object
    if scene.width != IMAGE_SIZE or scene.height != IMAGE_SIZE:
        pixels = np.asarray(Image.fromarray(scene.image).resize((IMAGE_SIZE, IMAGE_SIZE), Image.BICUBIC))
        obj = cv2.resize(obj, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_NEAREST)
    else:
        pixels = scene.image
    n = len(scene.spec.objects)
    ok = np.array([scene.is_recognisable(k, 0.5) for k in range(n)], dtype=bool)
    return _labelled(pixels, obj, scene.spec.instances, ok)


def crop_scene(scene: Scene, k: int, rng: np.random.Generator) -> ImageData:
    """A crop around object k (re-rendered at a higher resolution, so the crop is sharp), as 64x64."""
    scale = 4
    big = render(scene.spec, (scene.width * scale, scene.height * scale))
    box = big.bbox(k)
    if box is None:
        return image_data(scene)
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    side = max(x1 - x0, y1 - y0) * float(rng.uniform(1.1, 1.6))
    side = min(side, big.width, big.height)
    ax = int(round(min(max(cx - side / 2, 0), big.width - side)))
    ay = int(round(min(max(cy - side / 2, 0), big.height - side)))
    s = int(round(side))
    img = np.ascontiguousarray(big.image[ay : ay + s, ax : ax + s])
    obj = np.ascontiguousarray(big.labels.object[ay : ay + s, ax : ax + s])
    pixels = np.asarray(Image.fromarray(img).resize((IMAGE_SIZE, IMAGE_SIZE), Image.BICUBIC))
    obj = cv2.resize(obj, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_NEAREST)
    ok = np.zeros(len(scene.spec.objects), dtype=bool)
    ok[k] = True
    return _labelled(pixels, obj, scene.spec.instances, ok)


# ------------------------------------------------------------------------------------------------
# Names and texts
# ------------------------------------------------------------------------------------------------
_CONSONANTS = "bcdfghjklmnprstvwz"
_VOWELS = "aeiou"
_WORDS = ("mug", "cup", "toy", "bag", "hat", "ball", "box", "pen", "book", "shoe", "dog", "cat", "car", "lamp")
_UNICODE = ("é", "ü", "ñ", "ø", "å", "ç", "猫", "犬", "ß", "ł", "ö", "á", "ę", "ж", "λ", "ה")


def _reserved_names() -> set[str]:
    from .export import CONCEPT_NAMES
    from .tokenizer import vocabulary_words

    return {n.lower() for n in CONCEPT_NAMES} | {w.lower() for w in vocabulary_words()}


_RESERVED: set[str] | None = None


def random_name(rng: np.random.Generator) -> str:
    """A random concept name: mostly pronounceable lower-case strings, sometimes capitalised, two words,
    possessive ("Tavi's mug"), random letters or with non-ASCII letters. Never a name of the exports
    (`export.CONCEPT_NAMES`) and never a vocabulary word."""
    global _RESERVED
    if _RESERVED is None:
        _RESERVED = _reserved_names()
    while True:
        syll = int(rng.integers(1, 4))
        base = "".join(
            _CONSONANTS[int(rng.integers(len(_CONSONANTS)))] + _VOWELS[int(rng.integers(len(_VOWELS)))]
            for _ in range(syll)
        )
        if rng.random() < 0.3:
            base += _CONSONANTS[int(rng.integers(len(_CONSONANTS)))]
        style = rng.random()
        if style < 0.6:
            name = base
        elif style < 0.7:
            name = base.capitalize()
        elif style < 0.8:
            name = "".join(chr(int(rng.integers(97, 123))) for _ in range(int(rng.integers(2, 7))))
        elif style < 0.9:
            name = f"{base.capitalize()}'s {_WORDS[int(rng.integers(len(_WORDS)))]}"
        elif style < 0.95:
            name = f"{base} {_WORDS[int(rng.integers(len(_WORDS)))]}"
        else:
            pos = int(rng.integers(len(base) + 1))
            name = base[:pos] + _UNICODE[int(rng.integers(len(_UNICODE)))] + base[pos:]
        if name.lower() not in _RESERVED and len(name) >= 2:
            return name


def distinct_names(rng: np.random.Generator, n: int) -> list[str]:
    names: list[str] = []
    while len(names) < n:
        name = random_name(rng)
        if name not in names:
            names.append(name)
    return names


def keywords_of(inst: Instance) -> list[str]:
    return list(inst.keywords)


def describe_answer(inst: Instance, separator: str = PROMPT_OVERRIDES["keyword_separator"]) -> str:
    return f"{separator} ".join(inst.keywords)


def _left_to_right(scene: Scene, min_visible: float = 0.5) -> list[int]:
    xs = []
    for k in range(len(scene.spec.objects)):
        if scene.visible_pixels[k] == 0 or scene.visible_fraction(k) < min_visible:
            continue
        xs.append((float(np.nonzero(scene.masks[k])[1].mean()), k))
    return [k for _, k in sorted(xs)]


# ------------------------------------------------------------------------------------------------
# Samples
# ------------------------------------------------------------------------------------------------
class _Builder:
    """Collects the images of one sample and turns reference scenes into memory views."""

    def __init__(self, rng: np.random.Generator, cfg: TaskConfig) -> None:
        self.rng = rng
        self.cfg = cfg
        self.images: list[ImageData] = []

    def add(self, data: ImageData) -> int:
        self.images.append(data)
        return len(self.images) - 1

    def scene(self, scene: Scene) -> int:
        return self.add(image_data(scene))

    def memory_view(self, inst: Instance, form: str) -> tuple[int, np.ndarray | None]:
        rng = self.rng
        ref = reference_scene(inst, rng, render_size(rng, self.cfg))
        k = ref.spec.main
        if form in ("crop", "crop_mask"):
            idx = self.add(crop_scene(ref, k, rng))
            if form == "crop":
                return idx, None
            frac = self.images[idx].obj_frac[k].reshape(-1)
            keep = np.nonzero(frac >= 0.25)[0]
            return idx, keep if len(keep) >= 4 else np.argsort(-frac)[:16]
        idx = self.scene(ref)
        if form == "full":
            return idx, None
        frac = self.images[idx].obj_frac[k].reshape(-1)
        if form == "random":
            n = int(rng.integers(8, 25))
            return idx, np.sort(rng.choice(N_TOKENS, n, replace=False))
        on = int((frac >= 0.5).sum())
        kk = int(np.clip(round(max(on, 3) * rng.uniform(0.6, 1.4)), 3, 24))
        score = frac + (rng.normal(0, 0.35, N_TOKENS) if form == "jitter" else 0.0)
        return idx, np.sort(np.argsort(-score, kind="stable")[:kk])

    def entry(self, inst: Instance, name: str, views: int | None = None) -> EntryData:
        rng = self.rng
        forms = list(self.cfg.memory_forms)
        p = np.array([self.cfg.memory_forms[f] for f in forms])
        form = forms[int(rng.choice(len(forms), p=p / p.sum()))]
        if views is None:
            views = int(rng.choice([1, 2, 3], p=[0.8, 0.17, 0.03]))
        return EntryData(
            name=name, views=[self.memory_view(inst, form) for _ in range(views)], keywords=keywords_of(inst)
        )

    def context_mode(self) -> str:
        u = self.rng.random()
        if u < self.cfg.keywords_context_p:
            return "keywords"
        if u < self.cfg.keywords_context_p + self.cfg.memory_keywords_p:
            return "memory+keywords"
        return "memory"


def _other_instances(rng: np.random.Generator, n: int, avoid: set[Instance], world: str) -> list[Instance]:
    out: list[Instance] = []
    while len(out) < n:
        inst = sample_instance(rng, held_out=False, world=world)
        if inst not in avoid and inst not in out:
            out.append(inst)
    return out


def _train_near_duplicate(inst: Instance, rng: np.random.Generator, exclude=()) -> Instance | None:
    return sample_near_duplicate(inst, rng, held_out=False, exclude=exclude)


def match_sample(
    rng: np.random.Generator,
    cfg: TaskConfig,
    step: int,
    held_out: bool = False,
    kind: str | None = None,
    form: str | None = None,
) -> Sample:
    """Recognition in the engine's format. held_out=True draws the concept from held-out instances (for
    evaluation only; distractors then come from any split). Kinds "lookalike" and "near_duplicate" (v2
    only) are hard negatives whose near-duplicate is a look-alike (same attributes, another glyph) or an
    other-mark / other-pattern sibling; plain "hard" draws either (look-alikes three times in four)."""
    b = _Builder(rng, cfg)
    if kind is None:
        if rng.random() < 0.5:
            kind = "pos"
        else:
            kind = "hard" if rng.random() < cfg.hard_share(step) else "easy"
    split = True if held_out else False
    if kind in ("lookalike", "near_duplicate") and cfg.world == "v1":
        raise ValueError(f"{kind} negatives are a world v2 kind; v1 hard negatives are near-duplicates")
    target = sample_instance(rng, held_out=split, world=cfg.world)
    dup_kinds = {"lookalike": ("signature",), "near_duplicate": NEAR_DUPLICATE_KINDS}.get(kind)
    dup = sample_near_duplicate(target, rng, dup_kinds, held_out=None if held_out else False)
    if kind in ("hard", "lookalike", "near_duplicate") and dup is None:
        kind = "easy"
    n_entries = 1 if held_out else int(rng.choice([1, 2, 3], p=[0.65, 0.28, 0.07]))
    others: list[Instance] = []
    if n_entries > 1:
        if dup is not None and rng.random() < 0.5 * cfg.hard_share(step) / max(cfg.hard_max, 1e-9):
            others.append(dup)
        others += _other_instances(rng, n_entries - 1 - len(others), {target, *others}, cfg.world)
    names = distinct_names(rng, n_entries)
    order = [target, *others]
    perm = rng.permutation(n_entries)
    instances = [order[i] for i in perm]
    asked = names[int(np.nonzero(perm == 0)[0][0])]
    mode = b.context_mode() if form is None else ("keywords" if form == "keywords" else "memory")
    entries = []
    for inst, name in zip(instances, names):
        if form is not None and form != "keywords":
            entries.append(EntryData(name, [b.memory_view(inst, form)], keywords_of(inst)))
        else:
            entries.append(b.entry(inst, name))
    include: list[Instance] = []
    exclude = {target}
    if kind == "pos":
        include = [target]
    elif kind in ("hard", "lookalike", "near_duplicate"):
        include = [dup]
    else:
        exclude |= set(near_duplicates(target))
    # Other concepts of the context are sometimes in the scene too (they are not the one asked about).
    for inst in others:
        if inst not in include and inst not in exclude and rng.random() < 0.3 and len(include) < 3:
            include.append(inst)
    dup_p = 0.0 if kind != "pos" or dup is None else 0.25 + 0.35 * cfg.hard_share(step) / max(cfg.hard_max, 1e-9)
    if dup is not None and dup not in include and len(include) < 3 and rng.random() < dup_p:
        include.append(dup)  # a look-alike next to the concept (a positive all the same)
    q = query_scene(
        rng,
        render_size(rng, cfg),
        world=cfg.world,
        include=include,
        exclude=exclude - set(include),
        distractor_held_out=None if held_out else False,
    )
    qi = b.scene(q)
    question = PROMPT_OVERRIDES["recognition"].format(name=asked)
    if not held_out and rng.random() < cfg.paraphrase_p:
        question = RECOGNITION_PARAPHRASES[int(rng.integers(len(RECOGNITION_PARAPHRASES)))].format(name=asked)
    return Sample("match", b.images, entries, mode, [qi], question, "yes" if kind == "pos" else "no", kind)


def _main_scene(rng: np.random.Generator, cfg: TaskConfig, need_mark: bool = True) -> Scene:
    """A scene with a main object: a reference scene, or a random one whose main object is recognisable."""
    size = render_size(rng, cfg)
    if rng.random() < 0.35:
        for _ in range(4):
            s = random_scene(rng, size, world=cfg.world)
            if s.spec.main is not None and (not need_mark or s.is_recognisable(s.spec.main, 0.7)):
                return s
    return reference_scene(sample_instance(rng, held_out=False, world=cfg.world), rng, size)


def describe_sample(rng: np.random.Generator, cfg: TaskConfig, step: int) -> Sample:
    b = _Builder(rng, cfg)
    s = _main_scene(rng, cfg)
    i = b.scene(s)
    inst = s.spec.objects[s.spec.main].instance
    return Sample("describe", b.images, [], "none", [i], PROMPT_OVERRIDES["keywords"], describe_answer(inst))


def area_sample(rng: np.random.Generator, cfg: TaskConfig, step: int) -> Sample:
    b = _Builder(rng, cfg)
    s = _main_scene(rng, cfg, need_mark=False)
    i = b.scene(s)
    pct = int(round(100 * float(s.main_area_fraction or 0.0)))
    return Sample("area", b.images, [], "none", [i], PROMPT_OVERRIDES["area"], str(min(100, max(0, pct))))


def attribute_sample(rng: np.random.Generator, cfg: TaskConfig, step: int) -> Sample:
    b = _Builder(rng, cfg)
    which = ("colour", "shape", "pattern", "mark", "present")[int(rng.choice(5, p=[0.2, 0.25, 0.2, 0.15, 0.2]))]
    if which == "present":
        s = query_scene(rng, render_size(rng, cfg), world=cfg.world, n_objects=(1, 4))
        i = b.scene(s)
        seen = {
            (o.instance.colour_name, o.instance.shape_name)
            for k, o in enumerate(s.spec.objects)
            if s.visible_fraction(k) >= 0.5
        }
        if seen and rng.random() < 0.5:
            colour, shape = sorted(seen)[int(rng.integers(len(seen)))]
            answer = "yes"
        else:
            while True:
                colour = COLOURS[int(rng.integers(len(COLOURS)))]
                shape = SHAPES[int(rng.integers(len(SHAPES)))]
                if (colour, shape) not in seen:
                    break
            answer = (
                "no"
                if all(
                    (c, sh) != (colour, shape)
                    for c, sh in ((o.instance.colour_name, o.instance.shape_name) for o in s.spec.objects)
                )
                else "yes"
            )
        return Sample(
            "attribute", b.images, [], "none", [i], QUESTIONS["present"].format(colour=colour, shape=shape), answer
        )
    s = _main_scene(rng, cfg, need_mark=which == "mark")
    i = b.scene(s)
    inst = s.spec.objects[s.spec.main].instance
    answer = {
        "colour": inst.colour_name,
        "shape": inst.shape_name,
        "pattern": inst.pattern_name,
        "mark": inst.mark_position,
    }[which]
    return Sample("attribute", b.images, [], "none", [i], QUESTIONS[which], answer)


def count_sample(rng: np.random.Generator, cfg: TaskConfig, step: int) -> Sample:
    b = _Builder(rng, cfg)
    s = query_scene(rng, render_size(rng, cfg), world=cfg.world, n_objects=(1, 5), min_visible=0.5)
    i = b.scene(s)
    n = sum(1 for k in range(len(s.spec.objects)) if s.visible_fraction(k) >= 0.4)
    return Sample("count", b.images, [], "none", [i], QUESTIONS["count"], str(n))


def caption_sample(rng: np.random.Generator, cfg: TaskConfig, step: int) -> Sample:
    """Objects left to right; with a context, the concepts present are called by name."""
    b = _Builder(rng, cfg)
    entries: list[EntryData] = []
    named: dict[Instance, str] = {}
    include: list[Instance] = []
    exclude: set[Instance] = set()
    dup_p = 0.0
    if rng.random() < 0.6:
        n = int(rng.choice([1, 2], p=[0.7, 0.3]))
        insts = _other_instances(rng, n, set(), cfg.world)
        names = distinct_names(rng, n)
        entries = [b.entry(inst, name) for inst, name in zip(insts, names)]
        named = dict(zip(insts, names))
        for inst in insts:
            if rng.random() < 0.7:
                include.append(inst)
            else:
                exclude.add(inst)
        dup_p = 0.5 * cfg.hard_share(step) / max(cfg.hard_max, 1e-9)
    if include and rng.random() < dup_p:
        # a look-alike of a concept (described by colour and shape, not called by the concept's name)
        lookalike = _train_near_duplicate(include[0], rng, exclude=set(include) | exclude)
        if lookalike is not None:
            include.append(lookalike)
    s = query_scene(rng, render_size(rng, cfg), world=cfg.world, include=include, exclude=exclude, n_objects=(1, 4))
    i = b.scene(s)
    words = []
    for k in _left_to_right(s):
        inst = s.spec.objects[k].instance
        words.append(named.get(inst) or f"{inst.colour_name} {inst.shape_name}")
    answer = ", ".join(words) + "." if words else "nothing."
    mode = b.context_mode() if entries else "none"
    return Sample("caption", b.images, entries, mode, [i], PROMPT_OVERRIDES["caption"], answer)


def concept_qa_sample(rng: np.random.Generator, cfg: TaskConfig, step: int) -> Sample:
    b = _Builder(rng, cfg)
    kind = ("open", "ab", "bigger", "left")[int(rng.choice(4, p=[0.35, 0.35, 0.15, 0.15]))]
    n = 2 if kind in ("bigger", "left") else int(rng.choice([1, 2], p=[0.6, 0.4]))
    insts = _other_instances(rng, n, set(), cfg.world)
    names = distinct_names(rng, n)
    entries = [b.entry(inst, name) for inst, name in zip(insts, names)]
    present = insts if kind in ("bigger", "left") or rng.random() < 0.8 else []
    if kind in ("bigger", "left"):
        scene, answer = None, ""
        for _ in range(6):
            s = query_scene(rng, render_size(rng, cfg), world=cfg.world, include=insts, n_objects=(2, 4))
            ka, kb = (s.spec.instances.index(x) for x in insts)
            if kind == "bigger":
                pa, pb = s.visible_pixels[ka], s.visible_pixels[kb]
                if max(pa, pb) >= 1.2 * min(pa, pb):
                    scene, answer = s, names[0] if pa > pb else names[1]
                    break
            else:
                xa = float(np.nonzero(s.masks[ka])[1].mean())
                xb = float(np.nonzero(s.masks[kb])[1].mean())
                if abs(xa - xb) >= 0.1 * s.width:
                    scene, answer = s, "yes" if xa < xb else "no"
                    break
        if scene is None:  # no clear layout: ask about colour instead
            kind, scene = "open", s
        i = b.scene(scene)
        if kind == "bigger":
            return Sample(
                "concept_qa",
                b.images,
                entries,
                b.context_mode(),
                [i],
                QUESTIONS["bigger"].format(a=names[0], b=names[1]),
                answer,
            )
        if kind == "left":
            return Sample(
                "concept_qa",
                b.images,
                entries,
                b.context_mode(),
                [i],
                QUESTIONS["left"].format(a=names[0], b=names[1]),
                answer,
            )
    else:
        s = query_scene(rng, render_size(rng, cfg), world=cfg.world, include=present, n_objects=(1, 4))
        i = b.scene(s)
    j = int(rng.integers(n))
    inst, name = insts[j], names[j]
    if kind == "open":
        attr = ("colour", "pattern", "shape")[int(rng.integers(3))]
        answer = {"colour": inst.colour_name, "pattern": inst.pattern_name, "shape": inst.shape_name}[attr]
        return Sample(
            "concept_qa", b.images, entries, b.context_mode(), [i], QUESTIONS[f"concept_{attr}"].format(a=name), answer
        )
    attr, q = AB_QUESTIONS[int(rng.integers(len(AB_QUESTIONS)))]
    truth, other = ab_options(inst, attr, rng)
    first = bool(rng.random() < 0.5)
    a, bb = (truth, other) if first else (other, truth)
    question = QUESTIONS["ab"].format(question=q.format(a=name), a=a.capitalize(), b=bb.capitalize())
    return Sample("concept_qa", b.images, entries, b.context_mode(), [i], question, "A" if first else "B")


def choose_sample(rng: np.random.Generator, cfg: TaskConfig, step: int) -> Sample:
    """Two concepts (sometimes near-duplicates of each other), one in the query: which one is it?"""
    b = _Builder(rng, cfg)
    a = sample_instance(rng, held_out=False, world=cfg.world)
    other = None
    if rng.random() < cfg.hard_share(step) / max(cfg.hard_max, 1e-9) * 0.6:
        other = _train_near_duplicate(a, rng)
    if other is None:
        other = _other_instances(rng, 1, {a, *near_duplicates(a)}, cfg.world)[0]
    insts = [a, other]
    names = distinct_names(rng, 2)
    entries = [b.entry(inst, name) for inst, name in zip(insts, names)]
    j = int(rng.integers(2))
    s = query_scene(rng, render_size(rng, cfg), world=cfg.world, include=[insts[j]], exclude={insts[1 - j]})
    i = b.scene(s)
    return Sample(
        "choose", b.images, entries, b.context_mode(), [i], QUESTIONS["choose"].format(a=names[0], b=names[1]), names[j]
    )


GENERATORS = {
    "match": match_sample,
    "describe": describe_sample,
    "area": area_sample,
    "attribute": attribute_sample,
    "count": count_sample,
    "caption": caption_sample,
    "concept_qa": concept_qa_sample,
    "choose": choose_sample,
}


def sample_rng(seed: int, step: int, index: int) -> np.random.Generator:
    """The generator of sample `index` of batch `step`: the data stream depends only on (seed, step)."""
    return np.random.default_rng([seed, step, index])


def make_batch(
    seed: int, step: int, batch_size: int, cfg: TaskConfig, curriculum_step: int | None = None
) -> list[Sample]:
    """The samples of batch `step` (random draws keyed by (seed, step, index)); the curriculum (hard
    negative share) follows `curriculum_step`, by default `step`."""
    tasks = list(cfg.weights)
    p = np.array([cfg.weights[t] for t in tasks], dtype=np.float64)
    p /= p.sum()
    at = step if curriculum_step is None else curriculum_step
    out = []
    for i in range(batch_size):
        rng = sample_rng(seed, step, i)
        task = tasks[int(rng.choice(len(tasks), p=p))]
        out.append(GENERATORS[task](rng, cfg, at))
    return out


def contrast_images(seed: int, step: int, n_instances: int, cfg: TaskConfig) -> list[ImageData]:
    """Vision-only images for the dense and instance-contrastive losses: for each of `n_instances`
    training instances a reference view and a cluttered query holding it, and the same for one of its
    near-duplicates, so every instance meets its own look-alike in the batch (hard negative)."""
    out: list[ImageData] = []
    for k in range(n_instances):
        rng = np.random.default_rng([seed, step, 1_000_000 + k])
        inst = sample_instance(rng, held_out=False, world=cfg.world)
        dup = _train_near_duplicate(inst, rng)
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


def heldout_match_set(
    n: int,
    seed: int = 12345,
    forms: tuple[str, ...] = ("full", "mask", "keywords"),
    world: str = DEFAULT_WORLD,
) -> list[Sample]:
    """A fixed evaluation set of recognition samples on held-out instances: 40 % positive, 40 % hard
    negative, 20 % easy negative, the memory forms in turn (one view, one concept in context). In v2
    one of the two hard negatives of every five is a look-alike (kind "lookalike": its held-out glyph
    is the only difference), the other a mark / pattern near-duplicate (kind "near_duplicate")."""
    cfg = TaskConfig(big_render_p=0.0, world=world)
    kinds = ("pos", "pos", "hard", "hard", "easy")
    if world == "v2":
        kinds = ("pos", "pos", "lookalike", "near_duplicate", "easy")
    out = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        kind = kinds[i % 5]
        form = forms[(i // 5) % len(forms)]
        out.append(match_sample(rng, cfg, cfg.ramp_steps, held_out=True, kind=kind, form=form))
    return out


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
