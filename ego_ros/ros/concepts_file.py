"""The concepts file: concepts a node introduces at configure, read from YAML.

Format (a mapping from concept name to its reference images)::

    my_mug:                      # full form
      images: [mug_front.jpg, mug_side.jpg]
      notes: the blue mug from Anna
    kona: [kona1.png, kona2.png]   # a list of images
    anna: photos/anna.jpg          # a single image

Relative image paths are resolved against the folder that holds the YAML file. Reading the file
checks its shape and names only; the images are opened when the concept is introduced.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..core.errors import EgoError
from ..core.memory import validate_name


class ConceptsFileError(EgoError, ValueError):
    """The concepts file is missing, is not YAML, or does not have the documented shape."""


@dataclass
class ConceptSpec:
    name: str
    images: list[Path]
    notes: str = ""
    source: Path = field(default_factory=Path)


def load_concepts_file(path: str | Path) -> list[ConceptSpec]:
    """Parse a concepts file into concept specs (in file order); ConceptsFileError says what is wrong."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConceptsFileError(f"cannot read concepts file {path}: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConceptsFileError(f"concepts file {path} is not valid YAML: {exc}") from exc
    if data is None:
        return []
    if not isinstance(data, dict):
        raise ConceptsFileError(f"concepts file {path} must map concept names to images, "
                                f"got a {type(data).__name__}")
    base = path.parent
    specs = []
    for raw_name, entry in data.items():
        try:
            name = validate_name(str(raw_name) if isinstance(raw_name, (int, float)) else raw_name)
        except ValueError as exc:
            raise ConceptsFileError(f"concepts file {path}: {exc}") from exc
        notes = ""
        if isinstance(entry, dict):
            unknown = set(entry) - {"images", "notes"}
            if unknown:
                raise ConceptsFileError(f"concepts file {path}: concept {name!r} has unknown keys "
                                        f"{sorted(map(str, unknown))}; expected images and notes")
            notes = entry.get("notes") or ""
            if not isinstance(notes, str):
                raise ConceptsFileError(f"concepts file {path}: notes of {name!r} must be text")
            entry = entry.get("images")
        images = [entry] if isinstance(entry, str) else entry
        if not isinstance(images, list) or not images or not all(isinstance(i, str) and i.strip() for i in images):
            raise ConceptsFileError(f"concepts file {path}: concept {name!r} needs one or more image paths")
        resolved = [p if p.is_absolute() else base / p for p in (Path(i).expanduser() for i in images)]
        specs.append(ConceptSpec(name=name, images=resolved, notes=notes, source=path))
    return specs


__all__ = ["ConceptSpec", "ConceptsFileError", "load_concepts_file"]
