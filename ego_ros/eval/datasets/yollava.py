"""Reader of the Yo'LLaVA layout (``yollava:PATH``), also written by ``ego-ros toy export --layout yollava``.

``train/<concept>/<n>.png`` (``train/<concept>/negative_example/`` is ignored), ``test/<concept>/<n>.png``
and, optionally, ``yollava-visual-qa.json`` next to ``train/`` or one level up; PATH may also be the
folder holding ``yollava-data/``. Concept name = folder name. Tasks: recognition, A/B VQA (plus
negative kinds and localisation masks for a toy export).
"""

from __future__ import annotations

from pathlib import Path

from ..localisation import load_toy_masks
from ..negatives import load_negative_kinds
from .checks import note_short_views, note_untested
from .files import choose_views, find_root, list_images, subdirs
from .records import Concept, Dataset, DatasetError, TestSample, VQAItem
from .vqa import build_vqa, concepts_from_folder


def read_yollava(path: Path, views: int = 1) -> Dataset:
    root = find_root(
        Path(path), ("train", "test"), ("yollava-data",), "the Yo'LLaVA layout: train/<concept>/ and test/<concept>/"
    )
    notes: list[str] = []
    concepts: list[Concept] = []
    for d in subdirs(root / "train"):
        images = list_images(d)
        if not images:
            raise DatasetError(d, "at least one reference image (.png/.jpg/.jpeg/.webp)")
        refs = choose_views(images, views)
        concepts.append(Concept(d.name, d.name, d.name, refs, len(images)))
    if not concepts:
        raise DatasetError(root / "train", "one sub-folder per concept (train/<concept>/<n>.png)")
    note_short_views(concepts, views, notes)
    names = {c.name for c in concepts}
    samples: list[TestSample] = []
    for d in subdirs(root / "test"):
        if d.name not in names:
            raise DatasetError(d, f"a test folder named after a train concept; {d.name!r} has no train/ folder")
        samples.extend(TestSample(p, (d.name,)) for p in list_images(d))
    if not samples:
        raise DatasetError(root / "test", "test images in test/<concept>/")
    note_untested(concepts, samples, notes)
    vqa: list[VQAItem] = []
    qa_file = next(
        (b / "yollava-visual-qa.json" for b in (root, root.parent) if (b / "yollava-visual-qa.json").is_file()), None
    )
    if qa_file is not None:
        vqa = build_vqa(qa_file, [qa_file.parent, root, root.parent], concepts, notes, concepts_from_folder(concepts))
    else:
        notes.append("yollava-visual-qa.json not found: no VQA task")
    return Dataset(
        "yollava", root, views, concepts, recognition=samples, vqa=vqa, notes=notes,
        negative_kinds=load_negative_kinds(root), masks=load_toy_masks(root),
    )  # fmt: skip
