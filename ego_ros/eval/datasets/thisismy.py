"""Readers of the This-is-my layouts (``thisismy:PATH`` and ``thisismy-multi:PATH``).

``thisismy``
    ``Single-concept/{train,test}/<concept folder>`` (``test/`` may hold ``Positive/``,
    ``Negative (Hard)/`` ... split folders: only ``Positive/`` is read, the paper's protocol using the
    other concepts' images as negatives) and A/B VQA in any ``*.json`` of ``Single-concept/``.
    Tasks: recognition, A/B VQA.
``thisismy-multi``
    ``Multi-concept/train/<concept folder>``, ``Multi-concept/test/<A>_and_<B>/`` and
    ``Multi-concept/VQA/*.json``. Tasks: recognition of pairs, VQA (open or A/B), captioning (plus
    negative kinds and localisation masks for a toy export, ``ego-ros toy export --layout thisismy-multi``).

PATH may be the ``Single-concept/`` (``Multi-concept/``) folder or the one holding it. Concept names are
the folder labels' display names (:func:`.naming.thisismy_display_name`), which a ``display_names.json``
in that folder or the one above overrides.
"""

from __future__ import annotations

from pathlib import Path

from ..localisation import load_toy_masks
from ..negatives import load_negative_kinds
from .checks import check_unique, note_short_views, note_untested
from .files import choose_views, list_images, load_json, natural_key, subdirs
from .naming import ConceptResolver, thisismy_display_name
from .records import CaptionItem, Concept, Dataset, DatasetError, TestSample, VQAItem
from .vqa import build_vqa, concepts_from_folder

DISPLAY_NAMES_FILE = "display_names.json"
_POSITIVE_SPLIT = "positive"
_SPLIT_FOLDERS = {"positive", "negative", "negative (hard)", "negative (other)", "fake"}


def _load_overrides(*folders: Path) -> dict[str, str]:
    for folder in folders:
        f = folder / DISPLAY_NAMES_FILE
        if f.is_file():
            data = load_json(f)
            if not isinstance(data, dict) or not all(isinstance(v, str) and v.strip() for v in data.values()):
                raise DatasetError(f, "an object mapping folder labels to non-empty display names")
            return {str(k): v.strip() for k, v in data.items()}
    return {}


def _thisismy_concepts(train: Path, views: int, overrides: dict[str, str], notes: list[str]) -> list[Concept]:
    concepts: list[Concept] = []
    for d in subdirs(train):
        images = list_images(d)
        if not images:
            raise DatasetError(d, "at least one reference image (.png/.jpg/.jpeg/.webp)")
        display, category = thisismy_display_name(d.name, overrides)
        concepts.append(Concept(display, display, d.name, choose_views(images, views), len(images), category))
    if not concepts:
        raise DatasetError(train, "one sub-folder per concept (train/<concept folder>/)")
    check_unique(concepts, train)
    note_short_views(concepts, views, notes)
    return concepts


def _thisismy_root(path: Path, part: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise DatasetError(path, f"the This-is-my layout with {part}/ (path does not exist)")
    for cand in (path / part, path):
        if (cand / "train").is_dir() and (cand / "test").is_dir():
            return cand
    raise DatasetError(path, f"the This-is-my layout: {part}/train/ and {part}/test/")


def read_thisismy(path: Path, views: int = 1) -> Dataset:
    root = _thisismy_root(path, "Single-concept")
    notes: list[str] = []
    overrides = _load_overrides(root, root.parent)
    concepts = _thisismy_concepts(root / "train", views, overrides, notes)
    resolver = ConceptResolver(concepts)
    test = root / "test"
    split_dirs = {d.name.lower(): d for d in subdirs(test) if d.name.lower() in _SPLIT_FOLDERS}
    if split_dirs:
        if _POSITIVE_SPLIT not in split_dirs:
            raise DatasetError(test, "a Positive/ folder among the test split folders")
        test = split_dirs[_POSITIVE_SPLIT]
        notes.append(f"test images read from {test.name}/ only (other concepts' images are the negatives)")
    samples: list[TestSample] = []
    for d in subdirs(test):
        name = resolver.one(d.name)
        if name is None:
            raise DatasetError(d, "a test folder named like a train concept folder")
        samples.extend(TestSample(p, (name,)) for p in list_images(d))
    if not samples:
        raise DatasetError(test, "test images in test/<concept folder>/")
    note_untested(concepts, samples, notes)
    vqa: list[VQAItem] = []
    qa_files = sorted(p for p in root.glob("*.json") if p.name != DISPLAY_NAMES_FILE)
    for f in qa_files:
        vqa.extend(build_vqa(f, [f.parent, root, root.parent], concepts, notes, concepts_from_folder(concepts)))
    if not qa_files:
        notes.append("no VQA *.json in Single-concept/: no VQA task")
    return Dataset("thisismy", root, views, concepts, recognition=samples, vqa=vqa, notes=notes)


def read_thisismy_multi(path: Path, views: int = 1) -> Dataset:
    root = _thisismy_root(path, "Multi-concept")
    notes: list[str] = []
    overrides = _load_overrides(root, root.parent)
    concepts = _thisismy_concepts(root / "train", views, overrides, notes)
    resolver = ConceptResolver(concepts)
    samples: list[TestSample] = []
    captions: list[CaptionItem] = []
    for d in subdirs(root / "test"):
        group = resolver.group(d.name)
        if group is None or len(group) < 2:
            raise DatasetError(d, "a pair folder named <A>_and_<B> after two train concept folders")
        for p in list_images(d):
            samples.append(TestSample(p, group))
            captions.append(CaptionItem(p, group))
    if not samples:
        raise DatasetError(root / "test", "test images in test/<A>_and_<B>/")
    vqa: list[VQAItem] = []
    vqa_dir = root / "VQA"
    if vqa_dir.is_dir():
        for f in sorted(vqa_dir.glob("*.json"), key=natural_key):
            vqa.extend(build_vqa(f, [f.parent, root, root.parent], concepts, notes, concepts_from_folder(concepts)))
    if not vqa:
        notes.append("no VQA/*.json questions: no VQA task")
    return Dataset(
        "thisismy-multi", root, views, concepts, recognition=samples, vqa=vqa, captions=captions, notes=notes,
        negative_kinds=load_negative_kinds(root), masks=load_toy_masks(root),
    )  # fmt: skip
