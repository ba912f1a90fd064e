"""Export toy-world benchmarks in the published layouts of Yo'LLaVA and This-is-my (multi-concept).

Personal concepts are drawn only from held-out instances (see `ego_ros.toy.attributes`), in *sibling
groups*: each group is a held-out instance plus one held-out near-duplicate of it (same shape and
colour, another mark or pattern; the last group has three members when the number of concepts is
odd). Under the papers' protocol (every test image asked about every concept) the test images of a
concept's siblings are therefore hard negatives for it, while every file stays where the published
layout expects it. Distractor objects are any instances that are not concepts of the export; test
scenes sometimes hold a non-concept near-duplicate of their concept next to it. No image holds a
concept other than the ones its folder names.

``layout="yollava"`` (root = the published ``yollava-data`` folder)::

    train/<concept>/<n>.png                    reference views (n = 0 .. views-1)
    train/<concept>/negative_example/<n>.png   hard-negative material: reference-style views of
    train/<concept>/negative_example/scores.json   non-concept look-alikes; scores.json maps file name
                                               to similarity = share of the concept's 4 attributes the
                                               look-alike has (0.75 for a near-duplicate)
    test/<concept>/<n>.png                     the concept in query scenes (positives)
    yollava-visual-qa.json                     {concept: {"./test/<concept>/<n>.png": {"question",
                                               "options": {"A", "B"}, "correct_answer"}}}; image paths
                                               are relative to this file (the published file prefixes
                                               them with "./yollava-data/")

``layout="thisismy-multi"``::

    Multi-concept/train/<concept>/<n>.png      reference views
    Multi-concept/test/<A>_and_<B>/<n>.png     scenes holding both A and B
    Multi-concept/VQA/<A>_and_<B>.json         open-ended QA: a list of {"image": "test/<A>_and_<B>/<n>.png"
                                               (relative to Multi-concept/), "question", "answer",
                                               "concepts": [A, B]}

Pairs join the i-th members of consecutive sibling groups, so pair (A', B') of A's and B's siblings
is a hard negative for pair (A, B). Both layouts also write ``toy_manifest.json`` at the root: seed,
versions, arguments, each concept's instance, and for every image its role, the concepts it holds and
its full scene spec (`ego_ros.toy.specs.scene_spec_from_dict` re-renders it exactly).

``world="v2"`` (``ego-ros toy export --world v2``): concepts carry identity signatures (glyph and body
shade), and each sibling group is a held-out instance and a *look-alike* of it (every nameable attribute
the same, another held-out signature), so the sibling's test images are negatives that only pixels
reject. Every concept's manifest entry lists ``negative_kinds``: for each other concept, "lookalike"
(differs only in the signature), "near_duplicate" (same shape and colour, another mark or pattern) or
"other"; `ego_ros.eval` reads it and reports recognition per negative kind. Before writing, the exporter
checks that no concept carries a training signature (`check_signature_spaces`); `ego_ros.toy.attributes`
guarantees it by construction.

Same arguments give byte-identical files: every image comes from its own Generator seeded by
``(seed, role, concept, n)``, PNGs are written by OpenCV with fixed options, JSON with fixed key order.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ego_ros.core.errors import EgoError

from .attributes import (
    ATTRIBUTES,
    DEFAULT_WORLD,
    HELD_OUT_SIGNATURES,
    MARK_COLOURS,
    TRAIN_SIGNATURES,
    WORLDS,
    Instance,
    ab_options,
    check_world,
    held_out_instances,
    lookalikes,
    near_duplicates,
    sample_instance,
    signature_name,
)
from .scene import Scene
from .scenes import query_scene, reference_scene

EXPORT_VERSION = "1.0"
LAYOUTS: tuple[str, ...] = ("yollava", "thisismy-multi")
MANIFEST_NAME = "toy_manifest.json"
YOLLAVA_QA_NAME = "yollava-visual-qa.json"
#: Top-level entries an export creates; --overwrite removes only these.
EXPORT_ENTRIES: tuple[str, ...] = ("train", "test", YOLLAVA_QA_NAME, "Multi-concept", MANIFEST_NAME)

#: Readable, distinct, lowercase concept names (none is a word of the world's vocabulary).
CONCEPT_NAMES: tuple[str, ...] = (
    "kona", "milo", "luna", "bo", "pepper", "mochi", "biscuit", "ziggy", "nala", "otis",
    "poppy", "rocco", "suki", "tofu", "waffles", "yuki", "zara", "bruno", "coco", "daisy",
    "ellie", "finn", "ginger", "hazel", "iggy", "juno", "kiki", "lolo", "maple", "nemo",
    "olive", "peanut", "quincy", "rosie", "sable", "taco", "umi", "vito", "willow", "xena",
    "yoshi", "zeus", "apollo", "bean", "cleo", "dobby", "echo", "fig", "gizmo", "honey",
    "indy", "jasper", "koda", "lulu", "mango", "nori", "oreo", "pixel", "remy", "simba",
    "tiki", "udon", "velvet", "wally", "bambi", "chai", "dash", "ember", "fudge", "goose",
    "hugo", "jelly", "moose", "noodle", "ollie", "pip", "rusty", "scout", "teddy", "uno",
    "vesper", "wren", "zuzu", "archie", "benji", "chico", "dory", "elvis", "fritz", "gus",
    "harley", "izzy", "kai", "loki", "nico", "oscar", "percy", "rex", "sasha", "toby",
    "sunny", "pumpkin", "cookie", "buddy", "bella", "charlie", "lucy", "sadie", "zoe", "bingo",
    "muffin", "tango", "pickles", "sprout", "button", "clover", "dumpling", "frodo", "gnocchi", "kiwi",
)  # fmt: skip
assert len(set(CONCEPT_NAMES)) == len(CONCEPT_NAMES)

#: A/B question templates of the Yo'LLaVA VQA file: (attribute, question).
YOLLAVA_QUESTIONS: tuple[tuple[str, str], ...] = (
    ("colour", "What is the main colour of <sks>?"),
    ("pattern", "What pattern does <sks> have?"),
    ("shape", "What shape is <sks>?"),
    ("mark_colour", "What colour is the small mark on <sks>?"),
)
#: Open-ended question templates of the This-is-my multi-concept VQA files.
MULTI_QUESTIONS: tuple[str, ...] = (
    "What colour is {a}?",
    "What pattern does {b} have?",
    "Which is bigger in this image, {a} or {b}?",
    "Is {a} to the left of {b}?",
    "What shape is {b}?",
)


def _words(text: str) -> list[str]:
    return [w for w in re.split(r"[^a-z<>-]+", text.lower()) if w and w not in ("{a}", "{b}")]


#: Every word the export's questions and answers use (besides concept names and WORLD_VOCABULARY),
#: lower-cased, so a word-level tokenizer can cover them.
QA_VOCABULARY: tuple[str, ...] = tuple(
    sorted(
        {w for _, q in YOLLAVA_QUESTIONS for w in _words(q)}
        | {w for q in MULTI_QUESTIONS for w in _words(q.replace("{a}", "").replace("{b}", ""))}
        | {"yes", "no", "a", "b", *MARK_COLOURS}
    )
)


class ExportError(EgoError, ValueError):
    """Bad export arguments or an output directory that cannot be written."""


@dataclass(frozen=True)
class Concept:
    """A personal concept of an export: a held-out instance under a readable name."""

    name: str
    instance: Instance
    group: int
    #: Names and instances of the other members of the sibling group (its near-duplicates).
    siblings: tuple[str, ...]
    sibling_instances: tuple[Instance, ...]

    def to_dict(self, others: Sequence[Concept] = ()) -> dict[str, Any]:
        """Manifest entry; `others` (the export's other concepts) give ``negative_kinds``."""
        inst = self.instance
        out: dict[str, Any] = {
            "instance": inst.key,
            "index": inst.index,
            "attributes": inst.names,
            "keywords": list(inst.keywords),
            "held_out": inst.is_held_out,
            "group": self.group,
            "siblings": list(self.siblings),
            "sibling_differs_in": {
                s: list(inst.differing_attributes(o)) for s, o in zip(self.siblings, self.sibling_instances)
            },
        }
        if inst.signature is not None:
            out["signature"] = signature_name(inst.signature)
        if others:
            out["negative_kinds"] = {o.name: inst.negative_kind(o.instance) for o in others if o.name != self.name}
        return out


def _rng(seed: int, role: str, *parts: int) -> np.random.Generator:
    """An independent Generator per (seed, role, ...): changing one count never shifts other images."""
    return np.random.default_rng([seed, zlib.crc32(role.encode()), *parts])


def concept_names(n: int, seed: int) -> list[str]:
    """`n` distinct readable names, deterministic by seed; past the list, names get a numeric suffix."""
    order = _rng(seed, "names").permutation(len(CONCEPT_NAMES))
    base = [CONCEPT_NAMES[i] for i in order]
    return [base[i % len(base)] + ("" if i < len(base) else f"-{i // len(base) + 1}") for i in range(n)]


def choose_concepts(n: int, seed: int, world: str = DEFAULT_WORLD) -> list[Concept]:
    """`n` held-out concepts in sibling groups of two (three for the last group when n is odd). In v1 a
    sibling is a near-duplicate (other mark or pattern); in v2 a look-alike (another held-out signature)."""
    if n < 2:
        raise ExportError(f"an export needs at least 2 concepts (a concept and its near-duplicate), got {n}")
    check_world(world)
    rng = _rng(seed, "concepts")
    held = list(held_out_instances())
    n_groups = n // 2
    groups = _lookalike_groups(rng, held, n) if world == "v2" else _near_duplicate_groups(rng, held, n)
    if len(groups) < n_groups:
        sibling = "look-alike" if world == "v2" else "near-duplicate"
        raise ExportError(
            f"asked for {n} concepts, but seed {seed} finds only {2 * len(groups)} held-out concepts that "
            f"pair with a held-out {sibling} (from {len(held)} held-out attribute combinations); ask for fewer "
            "concepts"
        )
    names = concept_names(n, seed)
    concepts: list[Concept] = []
    k = 0
    for g, members in enumerate(groups):
        group_names = names[k : k + len(members)]
        k += len(members)
        for name, inst in zip(group_names, members):
            sib = [(s, o) for s, o in zip(group_names, members) if s != name]
            concepts.append(
                Concept(
                    name=name,
                    instance=inst,
                    group=g,
                    siblings=tuple(s for s, _ in sib),
                    sibling_instances=tuple(o for _, o in sib),
                )
            )
    return concepts


def _near_duplicate_groups(rng: np.random.Generator, held: list[Instance], n: int) -> list[list[Instance]]:
    """v1 sibling groups: a held-out instance and held-out near-duplicates of it."""
    n_groups = n // 2
    used: set[Instance] = set()
    groups: list[list[Instance]] = []
    for i in rng.permutation(len(held)):
        if len(groups) == n_groups:
            break
        a = held[int(i)]
        if a in used:
            continue
        want = 3 if (n % 2 and len(groups) == n_groups - 1) else 2
        cands = [d for d in near_duplicates(a) if d.is_held_out and d not in used]
        if len(cands) < want - 1:
            continue
        picks = [cands[int(j)] for j in rng.choice(len(cands), size=want - 1, replace=False)]
        groups.append([a, *picks])
        used.update(groups[-1])
    return groups


def _lookalike_groups(rng: np.random.Generator, held: list[Instance], n: int) -> list[list[Instance]]:
    """v2 sibling groups: a held-out instance with a held-out signature and look-alikes of it (pairwise
    look-alikes, so every two members differ in visible glyph cells and in shade). Every second group's
    anchor is, where one is free, a near-duplicate (other mark or pattern) of the previous group's
    anchor, so that the export holds all three negative kinds: look-alikes, near-duplicates and other concepts."""
    n_groups = n // 2
    groups: list[list[Instance]] = []
    used: set[Instance] = set()  # categories (attribute tuples) already taken
    order = [held[int(i)] for i in rng.permutation(len(held))]
    for a in order:
        if len(groups) == n_groups:
            break
        if len(groups) % 2:
            near = [d for d in near_duplicates(groups[-1][0].category) if d.is_held_out and d not in used]
            if near:
                a = near[int(rng.integers(len(near)))]
        if a in used:
            continue
        a = a.with_signature(HELD_OUT_SIGNATURES[int(rng.integers(len(HELD_OUT_SIGNATURES)))])
        want = 3 if (n % 2 and len(groups) == n_groups - 1) else 2
        cands = list(lookalikes(a))
        picks = [cands[int(j)] for j in rng.choice(len(cands), size=want - 1, replace=False)]
        if len(picks) == 2 and picks[1] not in lookalikes(picks[0]):
            continue
        groups.append([a, *picks])
        used.add(a.category)
    return groups


def _group_members(concepts: Sequence[Concept]) -> list[list[Concept]]:
    groups: dict[int, list[Concept]] = {}
    for c in concepts:
        groups.setdefault(c.group, []).append(c)
    return [groups[g] for g in sorted(groups)]


def concept_pairs(concepts: Sequence[Concept]) -> list[tuple[Concept, Concept]]:
    """Pairs for the multi-concept layout: i-th members of groups 2k and 2k+1 (an odd last group pairs
    with group 0; a single group pairs its own members)."""
    groups = _group_members(concepts)
    if len(groups) == 1:
        g = groups[0]
        return [(g[0], other) for other in g[1:]]
    pairs: list[tuple[Concept, Concept]] = []
    partners = [(groups[i], groups[i + 1]) for i in range(0, len(groups) - 1, 2)]
    if len(groups) % 2:
        partners.append((groups[-1], groups[0]))
    for ga, gb in partners:
        for i in range(max(len(ga), len(gb))):
            pairs.append((ga[i % len(ga)], gb[i % len(gb)]))
    return pairs


# ---------------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------------
def _prepare_out_dir(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ExportError(f"output path {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise ExportError(f"output directory {out} is not empty; pass --overwrite to replace a toy export")
        if not (out / MANIFEST_NAME).is_file():
            raise ExportError(f"refusing to overwrite {out}: it has no {MANIFEST_NAME}, so it is not a toy export")
        for entry in EXPORT_ENTRIES:
            path = out / entry
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _write_png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Run-length zlib strategy: the scenes' pixel noise defeats LZ matching, and this is ~6x faster than
    # the default at 448 px for smaller files.
    params = [cv2.IMWRITE_PNG_COMPRESSION, 6, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
    ok = cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ExportError(f"could not write {path}")


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _image_record(scene: Scene, role: str, by_instance: dict[Instance, str], **extra: Any) -> dict[str, Any]:
    objects = []
    for k, obj in enumerate(scene.spec.objects):
        objects.append(
            {
                "instance": obj.instance.key,
                "concept": by_instance.get(obj.instance),
                "visible_fraction": round(scene.visible_fraction(k), 4),
                "area_fraction": round(scene.area_fraction(k), 4),
                "mark_visible": bool(scene.mark_visible[k]),
                "bbox": scene.bbox(k),
            }
        )
    present = sorted(
        by_instance[o.instance]
        for k, o in enumerate(scene.spec.objects)
        if o.instance in by_instance and scene.visible_pixels[k] > 0
    )
    return {"role": role, "concepts": present, **extra, "objects": objects, "spec": scene.spec.to_dict()}


def check_signature_spaces(concepts: Sequence[Concept]) -> None:
    """Refuse an export in which a concept could have been trained on: a v2 concept must be held out and
    carry a held-out signature, never one of TRAIN_SIGNATURES (the spaces are disjoint by construction;
    this is the exporter's own check of that guarantee)."""
    for c in concepts:
        inst = c.instance
        if not inst.is_held_out:
            raise ExportError(f"concept {c.name} ({inst.key}) is a training instance")
        if inst.signature is None:
            continue
        if inst.signature in TRAIN_SIGNATURES or inst.signature not in HELD_OUT_SIGNATURES:
            raise ExportError(
                f"concept {c.name} ({inst.key}) carries signature {signature_name(inst.signature)} of the "
                "training signature space"
            )


def _validate(layout: str, n_concepts: int, size: int, views: int, test_per_concept: int, negatives: int) -> None:
    if layout not in LAYOUTS:
        raise ExportError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    checks = [
        ("concepts", n_concepts, 2, 10_000),
        ("size", size, 16, 2048),
        ("views", views, 1, 100),
        ("test-per-concept", test_per_concept, 1, 10_000),
        ("negatives", negatives, 0, 1000),
    ]
    for name, value, lo, hi in checks:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
            raise ExportError(f"--{name} must be an integer in [{lo}, {hi}], got {value!r}")


def export(
    out_dir: str | os.PathLike[str],
    layout: str,
    n_concepts: int,
    seed: int = 0,
    size: int = 64,
    views: int = 5,
    test_per_concept: int = 8,
    negatives: int = 4,
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
    world: str = DEFAULT_WORLD,
    query_object_size: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """Write a toy benchmark in `layout` of toy `world` under `out_dir` and return its manifest (also
    written). `query_object_size` (low, high), diameters as a fraction of the image side, replaces the
    test scenes' default object sizes (scenes.QUERY_SIZE): small objects for tiling studies."""
    _validate(layout, n_concepts, size, views, test_per_concept, negatives)
    if query_object_size is not None:
        lo, hi = (float(v) for v in query_object_size)
        if not 0.0 < lo <= hi <= 1.0:
            raise ExportError(f"query object size must satisfy 0 < low <= high <= 1, got {query_object_size!r}")
        query_object_size = (lo, hi)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ExportError(f"--seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    try:
        check_world(world)
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    concepts = choose_concepts(int(n_concepts), seed, world)
    check_signature_spaces(concepts)
    out = Path(out_dir)
    _prepare_out_dir(out, overwrite)
    manifest: dict[str, Any] = {
        "generator": "ego_ros.toy.export",
        "export_version": EXPORT_VERSION,
        "world_version": WORLDS[world],
        "world": world,
        "layout": layout,
        "seed": seed,
        "arguments": {
            "concepts": int(n_concepts),
            "size": size,
            "views": views,
            "test_per_concept": test_per_concept,
            "negatives": negatives,
            **({"query_object_size": list(query_object_size)} if query_object_size else {}),
        },
        "concepts": {c.name: c.to_dict(concepts) for c in concepts},
    }
    if layout == "yollava":
        _export_yollava(out, concepts, seed, size, views, test_per_concept, negatives, manifest, progress,
                        query_object_size)
    else:
        _export_multi(out, concepts, seed, size, views, test_per_concept, manifest, progress, query_object_size)
    _write_json(out / MANIFEST_NAME, manifest)
    return manifest


def _reference_views(
    root: Path, rel_root: str, concepts: Sequence[Concept], seed: int, size: int, views: int,
    images: dict[str, Any], by_instance: dict[Instance, str], progress: Callable[[str], None] | None,
) -> None:  # fmt: skip
    all_concepts = list(by_instance)
    for ci, c in enumerate(concepts):
        for v in range(views):
            scene = reference_scene(
                c.instance, _rng(seed, "reference", ci, v), size, distractor_held_out=None, exclude=all_concepts
            )
            rel = f"{rel_root}train/{c.name}/{v}.png"
            _write_png(root / rel, scene.image)
            images[rel] = _image_record(scene, "reference", by_instance, concept=c.name)
        if progress:
            progress(f"references of {c.name}")


def _query(c_instances: list[Instance], rng: np.random.Generator, size: int, all_concepts: list[Instance],
           object_size: tuple[float, float] | None = None) -> Scene:
    others = [i for i in all_concepts if i not in c_instances]
    n_lo = len(c_instances) if len(c_instances) > 1 else 1
    return query_scene(
        rng,
        size,
        include=c_instances,
        n_objects=(n_lo, len(c_instances) + 2),
        distractor_held_out=None,
        exclude=others,
        near_duplicate_p=0.3,
        **({"object_size": object_size} if object_size else {}),
    )


def _export_yollava(
    out: Path, concepts: list[Concept], seed: int, size: int, views: int, test_per_concept: int,
    negatives: int, manifest: dict[str, Any], progress: Callable[[str], None] | None,
    query_object_size: tuple[float, float] | None = None,
) -> None:  # fmt: skip
    by_instance = {c.instance: c.name for c in concepts}
    all_concepts = list(by_instance)
    images: dict[str, Any] = {}
    _reference_views(out, "", concepts, seed, size, views, images, by_instance, progress)
    qa: dict[str, dict[str, Any]] = {}
    for ci, c in enumerate(concepts):
        # Hard-negative material: non-concept look-alikes (near-duplicates first, then random instances).
        rng = _rng(seed, "negative", ci)
        lookalikes = [d for d in near_duplicates(c.instance) if d not in by_instance]
        picks = [lookalikes[int(i)] for i in rng.permutation(len(lookalikes))][:negatives]
        while len(picks) < negatives:
            inst = sample_instance(rng, held_out=None, world=c.instance.world)
            if inst not in by_instance and inst not in picks and inst != c.instance:
                picks.append(inst)
        scores: dict[str, float] = {}
        for j, inst in enumerate(picks):
            scene = reference_scene(inst, _rng(seed, "negative-view", ci, j), size, distractor_held_out=None,
                                    exclude=all_concepts)  # fmt: skip
            rel = f"train/{c.name}/negative_example/{j}.png"
            _write_png(out / rel, scene.image)
            shared = sum(getattr(inst, a) == getattr(c.instance, a) for a in ATTRIBUTES)
            if c.instance.signature is None:
                scores[f"{j}.png"] = shared / len(ATTRIBUTES)
            else:  # the signature counts as a fifth attribute: a look-alike scores 0.8
                shared += inst.signature == c.instance.signature
                scores[f"{j}.png"] = shared / (len(ATTRIBUTES) + 1)
            images[rel] = _image_record(scene, "negative", by_instance, negative_for=c.name)
        _write_json(out / f"train/{c.name}/negative_example/scores.json", scores)

        qa[c.name] = {}
        for t in range(test_per_concept):
            scene = _query([c.instance], _rng(seed, "test", ci, t), size, all_concepts, query_object_size)
            rel = f"test/{c.name}/{t}.png"
            _write_png(out / rel, scene.image)
            images[rel] = _image_record(scene, "test", by_instance, concept=c.name)
            qa[c.name][f"./{rel}"] = _yollava_question(c.instance, t, _rng(seed, "qa", ci, t))
        if progress:
            progress(f"negatives and tests of {c.name}")
    _write_json(out / YOLLAVA_QA_NAME, qa)
    manifest["images"] = images


def _yollava_question(inst: Instance, t: int, rng: np.random.Generator) -> dict[str, Any]:
    attr, question = YOLLAVA_QUESTIONS[t % len(YOLLAVA_QUESTIONS)]
    truth, other = ab_options(inst, attr, rng)
    truth_first = bool(rng.random() < 0.5)
    a, b = (truth, other) if truth_first else (other, truth)
    return {
        "question": question,
        "options": {"A": a.capitalize(), "B": b.capitalize()},
        "correct_answer": "A" if truth_first else "B",
    }


def _export_multi(
    out: Path, concepts: list[Concept], seed: int, size: int, views: int, test_per_concept: int,
    manifest: dict[str, Any], progress: Callable[[str], None] | None,
    query_object_size: tuple[float, float] | None = None,
) -> None:  # fmt: skip
    by_instance = {c.instance: c.name for c in concepts}
    all_concepts = list(by_instance)
    images: dict[str, Any] = {}
    root = out / "Multi-concept"
    _reference_views(out, "Multi-concept/", concepts, seed, size, views, images, by_instance, progress)
    pairs = concept_pairs(concepts)
    manifest["pairs"] = [f"{a.name}_and_{b.name}" for a, b in pairs]
    for pi, (a, b) in enumerate(pairs):
        folder = f"{a.name}_and_{b.name}"
        entries = []
        for t in range(test_per_concept):
            scene = _query([a.instance, b.instance], _rng(seed, "pair-test", pi, t), size, all_concepts,
                           query_object_size)
            rel = f"test/{folder}/{t}.png"
            _write_png(root / rel, scene.image)
            images[f"Multi-concept/{rel}"] = _image_record(scene, "test", by_instance, pair=folder)
            entries.append(_multi_question(scene, a, b, rel, t))
        _write_json(root / "VQA" / f"{folder}.json", entries)
        if progress:
            progress(f"tests of {folder}")
    manifest["images"] = images


def _multi_question(scene: Scene, a: Concept, b: Concept, rel: str, t: int) -> dict[str, Any]:
    ka = scene.spec.instances.index(a.instance)
    kb = scene.spec.instances.index(b.instance)
    n = len(MULTI_QUESTIONS)
    for step in range(n):
        which = (t + step) % n
        template = MULTI_QUESTIONS[which]
        if which == 0:
            answer = a.instance.colour_name
        elif which == 1:
            answer = b.instance.pattern_name
        elif which == 2:
            pa, pb = scene.visible_pixels[ka], scene.visible_pixels[kb]
            if max(pa, pb) < 1.2 * min(pa, pb):
                continue  # too close to call
            answer = a.name if pa > pb else b.name
        elif which == 3:
            xa = float(np.nonzero(scene.masks[ka])[1].mean())
            xb = float(np.nonzero(scene.masks[kb])[1].mean())
            if abs(xa - xb) < 0.1 * scene.width:
                continue
            answer = "yes" if xa < xb else "no"
        else:
            answer = b.instance.shape_name
        return {
            "image": rel,
            "question": template.format(a=a.name, b=b.name),
            "answer": answer,
            "concepts": [a.name, b.name],
        }
    raise AssertionError("the colour question always applies")  # pragma: no cover


def export_mask_folder(out: str | Path, count: int, seed: int = 0, size: int = 64, world: str = DEFAULT_WORLD) -> int:
    """Write `count` reference views of *training* instances of `world` with the main object's exact
    mask, as the ``images/`` + ``masks/`` folder that ``ego-ros calibrate --folder`` reads. Training
    instances only, so a calibration never sees the held-out concepts that the exported benchmarks
    evaluate."""
    if count < 1:
        raise ExportError(f"count must be at least 1, got {count}")
    try:
        check_world(world)
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        rng = _rng(seed, "masks", i)
        scene = reference_scene(sample_instance(rng, held_out=False, world=world), rng, size)
        _write_png(out / "images" / f"{i:05d}.png", scene.image)
        mask = scene.masks[scene.spec.main].astype(np.uint8) * 255
        if not cv2.imwrite(str(out / "masks" / f"{i:05d}.png"), mask):
            raise ExportError(f"could not write {out / 'masks' / f'{i:05d}.png'}")
    return count
