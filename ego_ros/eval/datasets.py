"""Readers for the personalization benchmarks in their published layouts.

Every reader returns a :class:`Dataset` of plain dataclasses; nothing here loads pixels or a model.
The same readers serve the real datasets and the project's toy-world exports, so they accept
``.png``, ``.jpg``, ``.jpeg`` and ``.webp`` images and the VQA JSON shape variants listed in
:func:`read_qa_entries`.

Layouts (``KIND:PATH``; PATH may also be the folder one level above the one named here):

``yollava``
    ``train/<concept>/<n>.png`` (``train/<concept>/negative_example/`` is ignored),
    ``test/<concept>/<n>.png`` and, optionally, ``yollava-visual-qa.json`` next to ``train/`` or one
    level up. Concept name = folder name. Tasks: recognition, A/B VQA.
``myvlm``
    ``<concept>/*.jpg`` (optionally under ``data/``), captions in ``<concept>/captions.json`` or a
    top-level ``captions.json``. There is no official split, so a fixed one is used: images sorted in
    natural order, the first ``min(5, n - 1)`` form the reference pool (``--views V`` takes the first V
    of the pool) and the rest is the test set, whatever V is. Concept name = folder name with ``_``
    read as a space. Tasks: recognition, captioning.
``thisismy``
    ``Single-concept/{train,test}/<concept folder>`` (``test/`` may hold ``Positive/``,
    ``Negative (Hard)/`` ... split folders: only ``Positive/`` is read, the paper's protocol using the
    other concepts' images as negatives) and A/B VQA in any ``*.json`` of ``Single-concept/``.
    Tasks: recognition, A/B VQA.
``thisismy-multi``
    ``Multi-concept/train/<concept folder>``, ``Multi-concept/test/<A>_and_<B>/`` and
    ``Multi-concept/VQA/*.json``. Tasks: recognition of pairs, VQA (open or A/B), captioning.
``rap``
    ``database.json`` (``{"concept_dict": {"<c>": {"name", "image", "info", "category"}},
    "path_to_concept": {...}}``) plus the test images, either ``test.json`` (RAP's evaluation format,
    ``{"<image path>": ["<concept>", ...]}``, or a list of ``{"image", "concepts"}``) or ``test/<A>_and_<B>/``
    folders. Only the concepts that the test set names are used (the published databases hold more).
``videoqa``
    A JSON file (or a folder holding ``videoqa.json``), defined by this project::

        {"concepts": [{"name": "Kona", "images": ["refs/kona/0.png"]}    # or "reference_dir": "refs/kona"
                      , ...],
         "items": [{"id": "q1", "frames": ["clips/c1/0001.jpg", ...]      # or "frames_dir": "clips/c1"
                    , "question": "What is <sks> doing?", "answer": "B",
                    "options": {"A": "...", "B": "..."},                   # optional: open question if absent
                    "concepts": ["Kona"]}, ...]}

    Paths are relative to the JSON file. Tasks: video QA.

Display names of This-is-my folder labels (``"Zaks dog kona-dog"``): the text after the last ``-`` is
the category and is dropped; a first word that is capitalised and ends in a single ``s`` in a label
of two or more words is read as a possessive (``Zaks`` -> ``Zak's``). So ``"Zaks dog kona-dog"`` ->
``"Zak's dog kona"``, ``"Sherry-woman"`` -> ``"Sherry"``. A ``display_names.json`` file
(``{"<folder label>": "<display name>"}``) in the dataset folder overrides the rule for any label.
For This-is-my the display name is the concept's name (what the model is told and what captions
must contain).

Question placeholders: ``<sks>`` and the bare word ``sks`` (the Yo'LLaVA file uses both) become the
concept's name for single-concept questions, and ``<label>`` tokens naming a concept become its name.
VQA entries whose image file does not exist are skipped and counted in :attr:`Dataset.notes`
(the published files reference a few absent images); a file with no usable entry is an error.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from .localisation import ToyMasks, load_toy_masks
from .negatives import load_negative_kinds

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
KINDS = ("yollava", "myvlm", "thisismy", "thisismy-multi", "rap", "videoqa")
#: Size of MyVLM's fixed reference pool (the paper's largest setting is 5 views).
MYVLM_REFERENCE_POOL = 5
DISPLAY_NAMES_FILE = "display_names.json"
_POSITIVE_SPLIT = "positive"
_SPLIT_FOLDERS = {"positive", "negative", "negative (hard)", "negative (other)", "fake"}


class DatasetError(ValueError):
    """A dataset file or folder is missing or malformed; names the path and what was expected."""

    def __init__(self, path: str | Path, expected: str) -> None:
        self.path = Path(path)
        self.expected = expected
        super().__init__(f"{self.path}: {expected}")


# --------------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Concept:
    """A personal concept: the name the engine stores it under and its reference views."""

    name: str
    display_name: str
    label: str
    reference_images: tuple[Path, ...]
    available_views: int
    category: str | None = None


@dataclass(frozen=True)
class TestSample:
    """A query image and the concepts present in it (one for single-concept, the pair for multi)."""

    image: Path
    concepts: tuple[str, ...]

    @property
    def group(self) -> str:
        return group_name(self.concepts)


@dataclass(frozen=True)
class VQAItem:
    """A question about concepts in an image; ``answer`` is a letter when ``options`` are given."""

    image: Path
    question: str
    answer: str
    concepts: tuple[str, ...]
    options: tuple[tuple[str, str], ...] = ()
    raw_question: str = ""

    @property
    def is_multiple_choice(self) -> bool:
        return bool(self.options)

    @property
    def options_dict(self) -> dict[str, str]:
        return dict(self.options)


@dataclass(frozen=True)
class CaptionItem:
    """An image to caption; the caption must name every concept in ``concepts``."""

    image: Path
    concepts: tuple[str, ...]
    references: tuple[str, ...] = ()


@dataclass(frozen=True)
class VideoItem:
    """A question about a clip, given as frame files in temporal order."""

    id: str
    frames: tuple[Path, ...]
    question: str
    answer: str
    concepts: tuple[str, ...]
    options: tuple[tuple[str, str], ...] = ()
    raw_question: str = ""

    @property
    def is_multiple_choice(self) -> bool:
        return bool(self.options)

    @property
    def options_dict(self) -> dict[str, str]:
        return dict(self.options)


@dataclass
class Dataset:
    """One benchmark read from disk, with ``views`` reference images chosen per concept."""

    kind: str
    root: Path
    views: int
    concepts: list[Concept]
    recognition: list[TestSample] = field(default_factory=list)
    vqa: list[VQAItem] = field(default_factory=list)
    captions: list[CaptionItem] = field(default_factory=list)
    videos: list[VideoItem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: {concept: {other concept: negative kind}} from a toy export's manifest (`ego_ros.eval.negatives`)
    negative_kinds: dict[str, dict[str, str]] = field(default_factory=dict)
    #: exact object masks of a toy export's test images (`ego_ros.eval.localisation`), None for other data
    masks: ToyMasks | None = None

    @property
    def multi_concept(self) -> bool:
        return any(len(s.concepts) > 1 for s in self.recognition) or any(len(c.concepts) > 1 for c in self.captions)

    @property
    def tasks(self) -> tuple[str, ...]:
        """The tasks this dataset provides, in the order the runner performs them."""
        present = {
            "recognition": self.recognition,
            "localisation": self.recognition if self.masks is not None else [],
            "vqa": self.vqa,
            "captioning": self.captions,
            "video_qa": self.videos,
        }
        return tuple(name for name, items in present.items() if items)

    def concept(self, name: str) -> Concept:
        for c in self.concepts:
            if c.name == name:
                return c
        raise KeyError(name)

    def groups(self) -> list[tuple[str, ...]]:
        """Recognition groups: the concepts for single-concept data, the pairs for multi-concept data."""
        if not self.multi_concept:
            return [(c.name,) for c in self.concepts]
        seen: dict[tuple[str, ...], None] = {}
        for s in self.recognition:
            seen.setdefault(s.concepts, None)
        for c in self.captions:
            seen.setdefault(c.concepts, None)
        return list(seen)

    def relpath(self, path: Path) -> str:
        """``path`` relative to the dataset root (POSIX form) when inside it, else absolute."""
        try:
            return path.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return path.resolve().as_posix()


def group_name(concepts: Sequence[str]) -> str:
    """Display key of a concept group: ``"A + B"`` for pairs, the name itself for one concept."""
    return " + ".join(concepts)


@dataclass(frozen=True)
class DatasetSpec:
    kind: str
    path: Path

    def __str__(self) -> str:
        return f"{self.kind}:{self.path}"


def parse_dataset_spec(spec: str | DatasetSpec) -> DatasetSpec:
    """Parse ``KIND:PATH`` (``yollava:/data/yollava``); raises DatasetError on an unknown kind."""
    if isinstance(spec, DatasetSpec):
        return spec
    if not isinstance(spec, str) or ":" not in spec:
        raise DatasetError(str(spec), f"a dataset given as KIND:PATH with KIND one of {', '.join(KINDS)}")
    kind, _, path = spec.partition(":")
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise DatasetError(path or spec, f"an unknown dataset kind {kind!r}; expected one of {', '.join(KINDS)}")
    if not path.strip():
        raise DatasetError(spec, "a path after the colon in KIND:PATH")
    return DatasetSpec(kind, Path(path.strip()).expanduser())


def load_dataset(spec: str | DatasetSpec, views: int = 1) -> Dataset:
    """Read the dataset named by ``spec`` choosing the first ``views`` reference images per concept."""
    parsed = parse_dataset_spec(spec)
    if not isinstance(views, int) or isinstance(views, bool) or views < 1:
        raise ValueError(f"views must be a positive integer, got {views!r}")
    readers = {
        "yollava": read_yollava,
        "myvlm": read_myvlm,
        "thisismy": read_thisismy,
        "thisismy-multi": read_thisismy_multi,
        "rap": read_rap,
        "videoqa": read_videoqa,
    }
    return readers[parsed.kind](parsed.path, views=views)


# ------------------------------------------------------------------------------------------ file helpers


def _natural_key(path: Path) -> list[Any]:
    # "10.png" must follow "9.png": the published sets number their views.
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder`` in natural order (sub-folders are not searched)."""
    if not folder.is_dir():
        return []
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    return sorted(files, key=_natural_key)


def _subdirs(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=_natural_key)


def _load_json(path: Path) -> Any:
    if not path.is_file():
        raise DatasetError(path, "a JSON file (not found)")
    try:
        with path.open(encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise DatasetError(path, f"valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from exc
    except UnicodeDecodeError as exc:
        raise DatasetError(path, "a UTF-8 encoded JSON file") from exc


def _require_dir(path: Path, expected: str) -> Path:
    if not path.is_dir():
        raise DatasetError(path, expected)
    return path


def _find_root(path: Path, required: Sequence[str], nested: Sequence[str], expected: str) -> Path:
    """``path`` itself or one of its ``nested`` sub-folders, whichever holds all ``required`` folders."""
    if not path.exists():
        raise DatasetError(path, f"{expected} (path does not exist)")
    for cand in [path, *(path / n for n in nested)]:
        if all((cand / r).is_dir() for r in required):
            return cand
    raise DatasetError(path, expected)


def _choose_views(images: Sequence[Path], views: int) -> tuple[Path, ...]:
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


# ------------------------------------------------------------------------------------------ naming rules

_POSSESSIVE = re.compile(r"^[A-Z][A-Za-z]*[^sS']s$")


def split_category(label: str) -> tuple[str, str | None]:
    """``"Zaks dog kona-dog"`` -> (``"Zaks dog kona"``, ``"dog"``); labels without ``-`` have no category."""
    base, sep, cat = label.rpartition("-")
    if sep and base.strip() and cat.strip():
        return base.strip(), cat.strip()
    return label.strip(), None


def thisismy_display_name(label: str, overrides: dict[str, str] | None = None) -> tuple[str, str | None]:
    """Display name and category of a This-is-my folder label (rule in the module docstring)."""
    base, category = split_category(label)
    if overrides:
        for key in (label, base):
            if key in overrides:
                return overrides[key], category
    words = base.split()
    if len(words) >= 2 and _POSSESSIVE.match(words[0]) and len(words[0]) >= 3:
        words[0] = words[0][:-1] + "'s"
    return " ".join(words), category


def norm_key(text: str) -> str:
    """Loose key for matching concept references across files: case, apostrophes, ``_`` and ``<>`` ignored."""
    t = unicodedata.normalize("NFKC", text).strip()
    if t.startswith("<") and t.endswith(">"):
        t = t[1:-1]
    t = t.replace("\u2019", "'").replace("'", "").replace("_", " ").lower()
    return " ".join(t.split())


class ConceptResolver:
    """Maps the many spellings of a concept in dataset files (label, base label, name) to its name."""

    def __init__(self, concepts: Iterable[Concept]) -> None:
        self.names: list[str] = []
        table: dict[str, set[str]] = {}
        for c in concepts:
            self.names.append(c.name)
            for alias in {c.name, c.display_name, c.label, split_category(c.label)[0]}:
                table.setdefault(norm_key(alias), set()).add(c.name)
        # An alias shared by two concepts identifies neither.
        self._table = {k: next(iter(v)) for k, v in table.items() if len(v) == 1}

    def one(self, ref: str) -> str | None:
        return self._table.get(norm_key(ref))

    def group(self, ref: str) -> tuple[str, ...] | None:
        """Resolve a single concept or a pair written ``A_and_B``, ``A and B``, ``A_B`` or ``A+B``."""
        single = self.one(ref)
        if single is not None:
            return (single,)
        for sep in ("_and_", " and ", "+"):
            if sep in ref:
                parts = [self.one(p) for p in ref.split(sep)]
                if all(parts) and len(parts) > 1:
                    return tuple(p for p in parts if p)
        # "Casey_Caseys boosted board": the separator is one of possibly several underscores.
        for m in re.finditer("_", ref):
            left, right = self.one(ref[: m.start()]), self.one(ref[m.end() :])
            if left and right:
                return (left, right)
        return None


def resolve_placeholders(question: str, concepts: Sequence[Concept]) -> str:
    """Replace ``<sks>``/``sks`` (single concept) and ``<label>`` tokens with the concepts' names."""
    text = question
    if len(concepts) == 1:
        name = concepts[0].name
        text = re.sub(r"<sks>", lambda _m: name, text, flags=re.IGNORECASE)
        text = re.sub(r"(?<![\w<])sks(?![\w>])", lambda _m: name, text, flags=re.IGNORECASE)
    for c in concepts:
        for alias in {c.label, split_category(c.label)[0], c.name}:
            text = text.replace(f"<{alias}>", c.name)
    return text


# ------------------------------------------------------------------------------------------------ VQA


def _is_qa(value: Any) -> bool:
    return isinstance(value, dict) and "question" in value


def read_qa_entries(path: Path) -> list[tuple[str, str | None, dict[str, Any]]]:
    """Entries ``(image, group key or None, qa)`` of a VQA file in any of the accepted shapes.

    Accepted shapes (``qa`` is ``{"question", "answer" | "correct_answer", "options"?, "concepts"?}``):

    * nested by concept or pair: ``{"<concept>": {"<image>": qa}}`` (Yo'LLaVA, This-is-my);
    * flat: ``{"<image>": qa}`` (the Yo'LLaVA README's example);
    * a list: ``[{"image": ..., **qa}]`` (the toy-world export);
    * any of the above with a list of qa objects in place of one.
    """
    data = _load_json(path)
    entries: list[tuple[str, str | None, dict[str, Any]]] = []

    def as_list(value: Any, where: str) -> list[dict[str, Any]]:
        items = value if isinstance(value, list) else [value]
        for item in items:
            if not _is_qa(item):
                raise DatasetError(path, f"{where}: an object with a 'question' field")
        return items

    if isinstance(data, list):
        for i, e in enumerate(data):
            if not _is_qa(e) or not isinstance(e.get("image"), str):
                raise DatasetError(path, f"entry {i}: an object with 'image' and 'question' fields")
            entries.append((e["image"], None, e))
    elif isinstance(data, dict):
        for key, value in data.items():
            if _is_qa(value) or (isinstance(value, list) and value and all(_is_qa(v) for v in value)):
                for qa in as_list(value, f"entry {key!r}"):
                    entries.append((key, None, qa))
            elif isinstance(value, dict):
                for image, qa in value.items():
                    for item in as_list(qa, f"entry {key!r} / {image!r}"):
                        entries.append((image, key, item))
            else:
                raise DatasetError(path, f"entry {key!r}: a question object or a mapping image -> question")
    else:
        raise DatasetError(path, "a JSON object or list of question entries")
    return entries


def _parse_options(raw: Any, path: Path, where: str) -> tuple[tuple[str, str], ...]:
    if raw is None or raw == {} or raw == []:
        return ()
    if isinstance(raw, dict):
        opts = [(str(k).strip().upper(), str(v)) for k, v in raw.items()]
    elif isinstance(raw, list):
        opts = [(chr(ord("A") + i), str(v)) for i, v in enumerate(raw)]
    else:
        raise DatasetError(path, f'{where}: \'options\' as an object {{"A": ..., "B": ...}} or a list')
    if any(len(k) != 1 or not k.isalpha() for k, _ in opts) or len(opts) < 2:
        raise DatasetError(path, f"{where}: at least two options keyed by single letters")
    return tuple(sorted(opts))


def _qa_answer(qa: dict[str, Any], options: tuple[tuple[str, str], ...], path: Path, where: str) -> str:
    answer = qa.get("correct_answer", qa.get("answer"))
    if not isinstance(answer, str) or not answer.strip():
        raise DatasetError(path, f"{where}: a non-empty 'correct_answer' or 'answer' string")
    answer = answer.strip()
    if options:
        letter = answer.upper().strip("().: ")[:1]
        keys = {k for k, _ in options}
        if letter not in keys:
            raise DatasetError(path, f"{where}: an answer letter among {sorted(keys)}, got {answer!r}")
        return letter
    return answer


def _build_vqa(
    path: Path,
    bases: Sequence[Path],
    concepts: Sequence[Concept],
    notes: list[str],
    folder_group: Any = None,
) -> list[VQAItem]:
    """Turn a VQA file into items; ``folder_group(image) -> tuple | None`` infers concepts from the folder."""
    resolver = ConceptResolver(concepts)
    by_name = {c.name: c for c in concepts}
    items: list[VQAItem] = []
    missing = 0
    entries = read_qa_entries(path)
    for i, (raw_image, key, qa) in enumerate(entries):
        where = f"entry {i} ({raw_image})"
        image = resolve_file(raw_image, bases)
        if image is None:
            missing += 1
            continue
        group: tuple[str, ...] | None = None
        explicit = qa.get("concepts", qa.get("concept"))
        if explicit is not None:
            refs = [explicit] if isinstance(explicit, str) else list(explicit)
            resolved = [resolver.one(str(r)) for r in refs]
            if not refs or not all(resolved):
                raise DatasetError(path, f"{where}: concepts {refs!r} that the dataset defines")
            group = tuple(r for r in resolved if r)
        if group is None and key is not None:
            group = resolver.group(key)
        if group is None and folder_group is not None:
            group = folder_group(image)
        if group is None:
            raise DatasetError(path, f"{where}: a concept or pair key that the dataset defines, got {key!r}")
        options = _parse_options(qa.get("options"), path, where)
        answer = _qa_answer(qa, options, path, where)
        raw_question = str(qa["question"])
        question = resolve_placeholders(raw_question, [by_name[n] for n in group])
        items.append(VQAItem(image, question, answer, group, options, raw_question))
    if missing:
        notes.append(f"{path.name}: {missing} of {len(entries)} questions skipped (image file not found)")
    if entries and not items:
        raise DatasetError(path, f"questions whose images exist; none of the {len(entries)} images was found")
    return items


# --------------------------------------------------------------------------------------------- readers


def read_yollava(path: Path, views: int = 1) -> Dataset:
    root = _find_root(
        Path(path), ("train", "test"), ("yollava-data",), "the Yo'LLaVA layout: train/<concept>/ and test/<concept>/"
    )
    notes: list[str] = []
    concepts: list[Concept] = []
    for d in _subdirs(root / "train"):
        images = list_images(d)
        if not images:
            raise DatasetError(d, "at least one reference image (.png/.jpg/.jpeg/.webp)")
        refs = _choose_views(images, views)
        concepts.append(Concept(d.name, d.name, d.name, refs, len(images)))
    if not concepts:
        raise DatasetError(root / "train", "one sub-folder per concept (train/<concept>/<n>.png)")
    _note_short_views(concepts, views, notes)
    names = {c.name for c in concepts}
    samples: list[TestSample] = []
    for d in _subdirs(root / "test"):
        if d.name not in names:
            raise DatasetError(d, f"a test folder named after a train concept; {d.name!r} has no train/ folder")
        samples.extend(TestSample(p, (d.name,)) for p in list_images(d))
    if not samples:
        raise DatasetError(root / "test", "test images in test/<concept>/")
    _note_untested(concepts, samples, notes)
    vqa: list[VQAItem] = []
    qa_file = next(
        (b / "yollava-visual-qa.json" for b in (root, root.parent) if (b / "yollava-visual-qa.json").is_file()), None
    )
    if qa_file is not None:
        vqa = _build_vqa(qa_file, [qa_file.parent, root, root.parent], concepts, notes, _folder_group(concepts))
    else:
        notes.append("yollava-visual-qa.json not found: no VQA task")
    return Dataset(
        "yollava", root, views, concepts, recognition=samples, vqa=vqa, notes=notes,
        negative_kinds=load_negative_kinds(root), masks=load_toy_masks(root),
    )  # fmt: skip


def _folder_group(concepts: Sequence[Concept]) -> Any:
    resolver = ConceptResolver(concepts)

    def group(image: Path) -> tuple[str, ...] | None:
        return resolver.group(image.parent.name)

    return group


def _note_short_views(concepts: Sequence[Concept], views: int, notes: list[str]) -> None:
    short = [c.name for c in concepts if c.available_views < views]
    if short:
        notes.append(
            f"{len(short)} concept(s) have fewer than {views} reference views and use all they have: "
            + ", ".join(short)
        )


def _note_untested(concepts: Sequence[Concept], samples: Sequence[TestSample], notes: list[str]) -> None:
    tested = {n for s in samples for n in s.concepts}
    untested = [c.name for c in concepts if c.name not in tested]
    if untested:
        notes.append("concepts without test images (negatives only): " + ", ".join(untested))


def read_myvlm(path: Path, views: int = 1) -> Dataset:
    path = Path(path)
    if not path.is_dir():
        raise DatasetError(path, "the MyVLM layout: <concept>/*.jpg folders (path does not exist)")
    root = path / "data" if (path / "data").is_dir() and not list_images(path / "data") else path
    dirs = [d for d in _subdirs(root) if list_images(d)]
    if not dirs:
        raise DatasetError(root, "the MyVLM layout: one folder of images per concept (<concept>/*.jpg)")
    notes: list[str] = []
    concepts: list[Concept] = []
    samples: list[TestSample] = []
    captions: list[CaptionItem] = []
    top_captions = _load_json(root / "captions.json") if (root / "captions.json").is_file() else None
    for d in dirs:
        images = list_images(d)
        if len(images) < 2:
            raise DatasetError(d, "at least two images (one reference view and one test image)")
        pool = images[: min(MYVLM_REFERENCE_POOL, len(images) - 1)]
        name = " ".join(d.name.replace("_", " ").split())
        concepts.append(Concept(name, name, d.name, _choose_views(pool, views), len(pool)))
        refs = _myvlm_captions(d, root, top_captions)
        for img in images[len(pool) :]:
            samples.append(TestSample(img, (name,)))
            captions.append(CaptionItem(img, (name,), tuple(refs.get(img.name, ()))))
    _check_unique(concepts, root)
    _note_short_views(concepts, views, notes)
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
        add(_load_json(local), local)
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


def _check_unique(concepts: Sequence[Concept], where: Path) -> None:
    seen: dict[str, str] = {}
    for c in concepts:
        if c.name in seen:
            raise DatasetError(where, f"distinct concept names; {seen[c.name]!r} and {c.label!r} both give {c.name!r}")
        seen[c.name] = c.label


def _load_overrides(*folders: Path) -> dict[str, str]:
    for folder in folders:
        f = folder / DISPLAY_NAMES_FILE
        if f.is_file():
            data = _load_json(f)
            if not isinstance(data, dict) or not all(isinstance(v, str) and v.strip() for v in data.values()):
                raise DatasetError(f, "an object mapping folder labels to non-empty display names")
            return {str(k): v.strip() for k, v in data.items()}
    return {}


def _thisismy_concepts(train: Path, views: int, overrides: dict[str, str], notes: list[str]) -> list[Concept]:
    concepts: list[Concept] = []
    for d in _subdirs(train):
        images = list_images(d)
        if not images:
            raise DatasetError(d, "at least one reference image (.png/.jpg/.jpeg/.webp)")
        display, category = thisismy_display_name(d.name, overrides)
        concepts.append(Concept(display, display, d.name, _choose_views(images, views), len(images), category))
    if not concepts:
        raise DatasetError(train, "one sub-folder per concept (train/<concept folder>/)")
    _check_unique(concepts, train)
    _note_short_views(concepts, views, notes)
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
    split_dirs = {d.name.lower(): d for d in _subdirs(test) if d.name.lower() in _SPLIT_FOLDERS}
    if split_dirs:
        if _POSITIVE_SPLIT not in split_dirs:
            raise DatasetError(test, "a Positive/ folder among the test split folders")
        test = split_dirs[_POSITIVE_SPLIT]
        notes.append(f"test images read from {test.name}/ only (other concepts' images are the negatives)")
    samples: list[TestSample] = []
    for d in _subdirs(test):
        name = resolver.one(d.name)
        if name is None:
            raise DatasetError(d, "a test folder named like a train concept folder")
        samples.extend(TestSample(p, (name,)) for p in list_images(d))
    if not samples:
        raise DatasetError(test, "test images in test/<concept folder>/")
    _note_untested(concepts, samples, notes)
    vqa: list[VQAItem] = []
    qa_files = sorted(p for p in root.glob("*.json") if p.name != DISPLAY_NAMES_FILE)
    for f in qa_files:
        vqa.extend(_build_vqa(f, [f.parent, root, root.parent], concepts, notes, _folder_group(concepts)))
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
    for d in _subdirs(root / "test"):
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
        for f in sorted(vqa_dir.glob("*.json"), key=_natural_key):
            vqa.extend(_build_vqa(f, [f.parent, root, root.parent], concepts, notes, _folder_group(concepts)))
    if not vqa:
        notes.append("no VQA/*.json questions: no VQA task")
    return Dataset(
        "thisismy-multi", root, views, concepts, recognition=samples, vqa=vqa, captions=captions, notes=notes,
        negative_kinds=load_negative_kinds(root), masks=load_toy_masks(root),
    )  # fmt: skip


def read_rap(path: Path, views: int = 1) -> Dataset:
    path = Path(path)
    db_file = path if path.is_file() else path / "database.json"
    root = db_file.parent
    db = _load_json(db_file)
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
        Concept(name, name, key, _choose_views(images, views), len(images), cat)
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
    _check_unique(concepts, db_file)
    _note_short_views(concepts, views, notes)
    return Dataset("rap", root, views, concepts, recognition=samples, notes=notes)


def _rap_test(root: Path, resolver: ConceptResolver) -> list[TestSample]:
    test_json = root / "test.json"
    samples: list[TestSample] = []
    if test_json.is_file():
        data = _load_json(test_json)
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
    for d in _subdirs(test_dir):
        group = resolver.group(d.name)
        if group is None:
            raise DatasetError(d, "a folder named after database concepts (<A>_and_<B>)")
        samples.extend(TestSample(p, group) for p in list_images(d))
    if not samples:
        raise DatasetError(test_dir, "test images in test/<A>_and_<B>/")
    return samples


def read_videoqa(path: Path, views: int = 1) -> Dataset:
    path = Path(path)
    qa_file = path if path.is_file() else path / "videoqa.json"
    base = qa_file.parent
    data = _load_json(qa_file)
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
                _choose_views(images, views),
                len(images),
                c.get("category"),
            )
        )
    if not concepts:
        raise DatasetError(qa_file, "at least one concept")
    _check_unique(concepts, qa_file)
    _note_short_views(concepts, views, notes)
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
        options = _parse_options(e.get("options"), qa_file, where)
        answer = _qa_answer(e, options, qa_file, where)
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
