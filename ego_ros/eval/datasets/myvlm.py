"""Reader of the MyVLM layout (``myvlm:PATH``).

``<concept>/*.jpg`` (optionally under ``data/``), captions in ``<concept>/captions.json`` or a top-level
``captions.json``. There is no official split, so a fixed one is used: images sorted in natural order,
the first ``min(5, n - 1)`` form the reference pool (``--views V`` takes the first V of the pool) and the
rest is the test set, whatever V is. Concept name = folder name with ``_`` read as a space.
Tasks: recognition, captioning.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from .checks import check_unique, note_short_views
from .files import choose_views, list_images, load_json, subdirs
from .records import CaptionItem, Concept, Dataset, DatasetError, TestSample

#: Size of MyVLM's fixed reference pool (the paper's largest setting is 5 views).
MYVLM_REFERENCE_POOL = 5


def read_myvlm(path: Path, views: int = 1) -> Dataset:
    path = Path(path)
    if not path.is_dir():
        raise DatasetError(path, "the MyVLM layout: <concept>/*.jpg folders (path does not exist)")
    root = path / "data" if (path / "data").is_dir() and not list_images(path / "data") else path
    dirs = [d for d in subdirs(root) if list_images(d)]
    if not dirs:
        raise DatasetError(root, "the MyVLM layout: one folder of images per concept (<concept>/*.jpg)")
    notes: list[str] = []
    concepts: list[Concept] = []
    samples: list[TestSample] = []
    captions: list[CaptionItem] = []
    top_captions = load_json(root / "captions.json") if (root / "captions.json").is_file() else None
    for d in dirs:
        images = list_images(d)
        if len(images) < 2:
            raise DatasetError(d, "at least two images (one reference view and one test image)")
        pool = images[: min(MYVLM_REFERENCE_POOL, len(images) - 1)]
        name = " ".join(d.name.replace("_", " ").split())
        concepts.append(Concept(name, name, d.name, choose_views(pool, views), len(pool)))
        refs = _myvlm_captions(d, root, top_captions)
        for img in images[len(pool) :]:
            samples.append(TestSample(img, (name,)))
            captions.append(CaptionItem(img, (name,), tuple(refs.get(img.name, ()))))
    check_unique(concepts, root)
    note_short_views(concepts, views, notes)
    notes.append(
        f"MyVLM split: first min({MYVLM_REFERENCE_POOL}, n-1) images per concept are references, "
        "the rest are test images"
    )
    return Dataset("myvlm", root, views, concepts, recognition=samples, captions=captions, notes=notes)


def _myvlm_captions(folder: Path, root: Path, top: Any) -> dict[str, list[str]]:
    """Read the reference captions of a concept's images, keyed by file name (informative only)."""
    found: dict[str, list[str]] = {}

    def add(mapping: Any, source: Path) -> None:
        if not isinstance(mapping, dict):
            raise DatasetError(source, "an object mapping image paths to lists of captions")
        for key, value in mapping.items():
            caps = [value] if isinstance(value, str) else value
            if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
                raise DatasetError(source, f"entry {key!r}: a caption string or a list of caption strings")
            found[PurePosixPath(str(key).replace("\\", "/")).name] = caps

    local = folder / "captions.json"
    if local.is_file():
        add(load_json(local), local)
    elif isinstance(top, dict):
        nested = top.get(folder.name)
        if isinstance(nested, dict):
            add(nested, root / "captions.json")
        else:
            subset = {
                k: v for k, v in top.items() if PurePosixPath(str(k).replace("\\", "/")).parent.name == folder.name
            }
            if subset:
                add(subset, root / "captions.json")
    return found
