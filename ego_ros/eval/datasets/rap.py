"""Reader of the RAP layout (``rap:PATH``).

``database.json`` (``{"concept_dict": {"<c>": {"name", "image", "info", "category"}},
"path_to_concept": {...}}``) plus the test images, either ``test.json`` (RAP's evaluation format,
``{"<image path>": ["<concept>", ...]}``, or a list of ``{"image", "concepts"}``) or ``test/<A>_and_<B>/``
folders. PATH is ``database.json`` or its folder. Only the concepts that the test set names are used
(the published databases hold more). Task: recognition.
"""

from __future__ import annotations

from pathlib import Path

from .checks import check_unique, note_short_views
from .files import choose_views, list_images, load_json, resolve_file, subdirs
from .naming import ConceptResolver
from .records import Concept, Dataset, DatasetError, TestSample


def read_rap(path: Path, views: int = 1) -> Dataset:
    path = Path(path)
    db_file = path if path.is_file() else path / "database.json"
    root = db_file.parent
    db = load_json(db_file)
    if not isinstance(db, dict) or not isinstance(db.get("concept_dict"), dict) or not db["concept_dict"]:
        raise DatasetError(db_file, "an object with a non-empty 'concept_dict' mapping")
    p2c = db.get("path_to_concept", {})
    if not isinstance(p2c, dict):
        raise DatasetError(db_file, "'path_to_concept' as an object mapping image paths to concept keys")
    bases = [root, root / "database"]
    entries: dict[str, tuple[str, list[Path], str | None]] = {}
    for key, entry in db["concept_dict"].items():
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("name"), str)
            or not isinstance(entry.get("image"), str)
        ):
            raise DatasetError(db_file, f"concept_dict[{key!r}]: an object with 'name' and 'image' strings")
        raws = [entry["image"]] + sorted(p for p, c in p2c.items() if c == key and p != entry["image"])
        images: list[Path] = []
        for raw in raws:
            found = resolve_file(raw, bases)
            if found is not None and found not in images:
                images.append(found)
        entries[key] = (entry["name"], images, entry.get("category"))
    all_concepts = [
        Concept(name, name, key, choose_views(images, views), len(images), cat)
        for key, (name, images, cat) in entries.items()
    ]
    resolver = ConceptResolver(all_concepts)
    samples = _rap_test(root, resolver)
    used = {n for s in samples for n in s.concepts}
    concepts = [c for c in all_concepts if c.name in used]
    notes: list[str] = []
    if len(concepts) < len(all_concepts):
        notes.append(f"{len(all_concepts) - len(concepts)} database concept(s) not named by the test set are not used")
    for c in concepts:
        if not c.reference_images:
            raise DatasetError(
                db_file, f"concept {c.label!r}: a reference image that exists (looked for {c.label}'s 'image')"
            )
    check_unique(concepts, db_file)
    note_short_views(concepts, views, notes)
    return Dataset("rap", root, views, concepts, recognition=samples, notes=notes)


def _rap_test(root: Path, resolver: ConceptResolver) -> list[TestSample]:
    test_json = root / "test.json"
    samples: list[TestSample] = []
    if test_json.is_file():
        data = load_json(test_json)
        if isinstance(data, dict):
            rows = list(data.items())
        elif isinstance(data, list) and all(isinstance(e, dict) for e in data):
            rows = [(e.get("image"), e.get("concepts")) for e in data]
        else:
            raise DatasetError(test_json, "an object image -> [concepts] or a list of {'image', 'concepts'}")
        missing = 0
        for i, (raw, refs) in enumerate(rows):
            if not isinstance(raw, str) or not isinstance(refs, list) or not refs:
                raise DatasetError(test_json, f"entry {i}: an image path with a non-empty list of concept names")
            names = [resolver.one(str(r)) for r in refs]
            if not all(names):
                raise DatasetError(test_json, f"entry {i}: concepts {refs!r} that database.json defines")
            image = resolve_file(raw, [root, root / "test"])
            if image is None:
                missing += 1
                continue
            samples.append(TestSample(image, tuple(n for n in names if n)))
        if rows and not samples:
            raise DatasetError(test_json, f"test images that exist; none of the {len(rows)} was found")
        return samples
    test_dir = root / "test"
    if not test_dir.is_dir():
        raise DatasetError(root, "test.json or a test/<A>_and_<B>/ folder next to database.json")
    for d in subdirs(test_dir):
        group = resolver.group(d.name)
        if group is None:
            raise DatasetError(d, "a folder named after database concepts (<A>_and_<B>)")
        samples.extend(TestSample(p, group) for p in list_images(d))
    if not samples:
        raise DatasetError(test_dir, "test images in test/<A>_and_<B>/")
    return samples
