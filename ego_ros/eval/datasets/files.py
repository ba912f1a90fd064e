"""Finding the files a dataset names: image listing in natural order, JSON loading, path resolution."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from .records import DatasetError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")


def natural_key(path: Path) -> list[Any]:
    # "10.png" must follow "9.png": the published sets number their views.
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder`` in natural order (sub-folders are not searched)."""
    if not folder.is_dir():
        return []
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    return sorted(files, key=natural_key)


def subdirs(folder: Path) -> list[Path]:
    """Sub-folders of ``folder`` in natural order, hidden ones (``.git``, ``.cache``) left out."""
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=natural_key)


def load_json(path: Path) -> Any:
    """The parsed file; a missing, malformed or non-UTF-8 file raises DatasetError naming it."""
    if not path.is_file():
        raise DatasetError(path, "a JSON file (not found)")
    try:
        with path.open(encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise DatasetError(path, f"valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from exc
    except UnicodeDecodeError as exc:
        raise DatasetError(path, "a UTF-8 encoded JSON file") from exc


def find_root(path: Path, required: Sequence[str], nested: Sequence[str], expected: str) -> Path:
    """``path`` itself or one of its ``nested`` sub-folders, whichever holds all ``required`` folders."""
    if not path.exists():
        raise DatasetError(path, f"{expected} (path does not exist)")
    for cand in [path, *(path / n for n in nested)]:
        if all((cand / r).is_dir() for r in required):
            return cand
    raise DatasetError(path, expected)


def choose_views(images: Sequence[Path], views: int) -> tuple[Path, ...]:
    """The first ``views`` reference images (all of them when there are fewer)."""
    return tuple(images[:views])


def resolve_file(raw: str, bases: Sequence[Path]) -> Path | None:
    """Find the file a JSON entry names: as given, or relative to a base, or by its trailing parts.

    Published files name images relative to the authors' checkout (``./yollava-data/test/bo/0.png``);
    trying the longest trailing sub-path that exists under each base finds them in any copy.
    """
    text = raw.replace("\\", "/").strip()
    while text.startswith("./"):
        text = text[2:]
    if not text:
        return None
    direct = Path(text)
    if direct.is_absolute() and direct.is_file():
        return direct
    parts = PurePosixPath(text).parts
    parts = tuple(p for p in parts if p not in ("/", ".."))
    for n in range(len(parts), 0, -1):
        for base in bases:
            cand = base.joinpath(*parts[-n:])
            if cand.is_file():
                return cand
    return None
