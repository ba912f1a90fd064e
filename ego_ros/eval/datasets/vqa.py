"""VQA files in the accepted JSON shapes (see :func:`read_qa_entries`) turned into :class:`VQAItem` lists.

VQA entries whose image file does not exist are skipped and counted in :attr:`Dataset.notes`
(the published files reference a few absent images); a file with no usable entry is an error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .files import load_json, resolve_file
from .naming import ConceptResolver, resolve_placeholders
from .records import Concept, DatasetError, VQAItem


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
    data = load_json(path)
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


def parse_options(raw: Any, path: Path, where: str) -> tuple[tuple[str, str], ...]:
    """Options ``{"A": ..}`` or ``[..]`` (lettered in order) as sorted (letter, text) pairs; none -> ``()``."""
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


def qa_answer(qa: dict[str, Any], options: tuple[tuple[str, str], ...], path: Path, where: str) -> str:
    """The entry's answer: its option letter for a multiple-choice question, else the answer text."""
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


def build_vqa(
    path: Path,
    bases: Sequence[Path],
    concepts: Sequence[Concept],
    notes: list[str],
    folder_group: Callable[[Path], tuple[str, ...] | None] | None = None,
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
        options = parse_options(qa.get("options"), path, where)
        answer = qa_answer(qa, options, path, where)
        raw_question = str(qa["question"])
        question = resolve_placeholders(raw_question, [by_name[n] for n in group])
        items.append(VQAItem(image, question, answer, group, options, raw_question))
    if missing:
        notes.append(f"{path.name}: {missing} of {len(entries)} questions skipped (image file not found)")
    if entries and not items:
        raise DatasetError(path, f"questions whose images exist; none of the {len(entries)} images was found")
    return items


def concepts_from_folder(concepts: Sequence[Concept]) -> Callable[[Path], tuple[str, ...] | None]:
    """``image -> concepts`` read from the name of the image's folder (``test/<concept>/``, ``<A>_and_<B>/``)."""
    resolver = ConceptResolver(concepts)

    def group(image: Path) -> tuple[str, ...] | None:
        return resolver.group(image.parent.name)

    return group
