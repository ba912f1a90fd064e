"""Reader of the video QA layout (``videoqa:PATH``), defined by this project.

A JSON file (or a folder holding ``videoqa.json``)::

    {"concepts": [{"name": "Kona", "images": ["refs/kona/0.png"]}    # or "reference_dir": "refs/kona"
                  , ...],
     "items": [{"id": "q1", "frames": ["clips/c1/0001.jpg", ...]      # or "frames_dir": "clips/c1"
                , "question": "What is <sks> doing?", "answer": "B",
                "options": {"A": "...", "B": "..."},                   # optional: open question if absent
                "concepts": ["Kona"]}, ...]}

Paths are relative to the JSON file. Task: video QA.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .checks import check_unique, note_short_views
from .files import choose_views, list_images, load_json, resolve_file
from .naming import ConceptResolver, resolve_placeholders
from .records import Concept, Dataset, DatasetError, VideoItem
from .vqa import parse_options, qa_answer


def read_videoqa(path: Path, views: int = 1) -> Dataset:
    path = Path(path)
    qa_file = path if path.is_file() else path / "videoqa.json"
    base = qa_file.parent
    data = load_json(qa_file)
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("concepts"), list)
        or not isinstance(data.get("items"), list)
    ):
        raise DatasetError(qa_file, "an object with 'concepts' and 'items' lists")
    notes: list[str] = []
    concepts: list[Concept] = []
    for i, c in enumerate(data["concepts"]):
        if not isinstance(c, dict) or not isinstance(c.get("name"), str) or not c["name"].strip():
            raise DatasetError(qa_file, f"concepts[{i}]: an object with a non-empty 'name'")
        images = _video_paths(c, "images", "reference_dir", base, qa_file, f"concepts[{i}]")
        concepts.append(
            Concept(
                c["name"].strip(),
                str(c.get("display_name", c["name"])).strip(),
                c["name"].strip(),
                choose_views(images, views),
                len(images),
                c.get("category"),
            )
        )
    if not concepts:
        raise DatasetError(qa_file, "at least one concept")
    check_unique(concepts, qa_file)
    note_short_views(concepts, views, notes)
    resolver = ConceptResolver(concepts)
    by_name = {c.name: c for c in concepts}
    items: list[VideoItem] = []
    for i, e in enumerate(data["items"]):
        where = f"items[{i}]"
        if not isinstance(e, dict) or not isinstance(e.get("question"), str):
            raise DatasetError(qa_file, f"{where}: an object with a 'question' string")
        frames = _video_paths(e, "frames", "frames_dir", base, qa_file, where)
        refs = e.get("concepts")
        if isinstance(refs, str):
            refs = [refs]
        if not isinstance(refs, list) or not refs:
            raise DatasetError(qa_file, f"{where}: a non-empty 'concepts' list")
        names = [resolver.one(str(r)) for r in refs]
        if not all(names):
            raise DatasetError(qa_file, f"{where}: concepts {refs!r} that 'concepts' defines")
        group = tuple(n for n in names if n)
        options = parse_options(e.get("options"), qa_file, where)
        answer = qa_answer(e, options, qa_file, where)
        question = resolve_placeholders(e["question"], [by_name[n] for n in group])
        items.append(VideoItem(str(e.get("id", i)), tuple(frames), question, answer, group, options, e["question"]))
    if not items:
        raise DatasetError(qa_file, "at least one item")
    return Dataset("videoqa", base, views, concepts, videos=items, notes=notes)


def _video_paths(
    entry: dict[str, Any], list_key: str, dir_key: str, base: Path, qa_file: Path, where: str
) -> list[Path]:
    if isinstance(entry.get(list_key), list) and entry[list_key]:
        paths = []
        for raw in entry[list_key]:
            found = resolve_file(str(raw), [base])
            if found is None:
                raise DatasetError(qa_file, f"{where}: an existing file for {raw!r} (relative to {base})")
            paths.append(found)
        return paths
    if isinstance(entry.get(dir_key), str):
        folder = base / entry[dir_key]
        images = list_images(folder)
        if not images:
            raise DatasetError(qa_file, f"{where}: images in {dir_key} {folder}")
        return images
    raise DatasetError(qa_file, f"{where}: a non-empty '{list_key}' list or a '{dir_key}' folder")
