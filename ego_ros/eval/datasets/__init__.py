"""Readers for the personalization benchmarks in their published layouts.

Every reader returns a :class:`Dataset` of plain dataclasses; nothing here loads pixels or a model.
The same readers serve the real datasets and the project's toy-world exports, so they accept
``.png``, ``.jpg``, ``.jpeg`` and ``.webp`` images and the VQA JSON shape variants listed in
:func:`read_qa_entries`. A dataset is named ``KIND:PATH`` and read with :func:`load_dataset`.

Modules: ``records`` (the dataclasses and :class:`DatasetError`), ``registry`` (kinds, specs,
``load_dataset``), one reader per layout, each documenting its layout -- ``yollava``, ``myvlm``,
``thisismy`` (``thisismy`` and ``thisismy-multi``), ``rap``, ``videoqa`` -- and what they share:
``files`` (listing, JSON, path resolution), ``naming`` (display names, concept references, question
placeholders), ``vqa`` (VQA files) and ``checks`` (name uniqueness, notes on short or untested concepts).
The names below are the package's public API; import them from here.
"""

from .files import IMAGE_EXTENSIONS, list_images, resolve_file
from .myvlm import MYVLM_REFERENCE_POOL, read_myvlm
from .naming import ConceptResolver, norm_key, resolve_placeholders, split_category, thisismy_display_name
from .rap import read_rap
from .records import CaptionItem, Concept, Dataset, DatasetError, TestSample, VideoItem, VQAItem, group_name
from .registry import KINDS, DatasetSpec, load_dataset, parse_dataset_spec
from .thisismy import DISPLAY_NAMES_FILE, read_thisismy, read_thisismy_multi
from .videoqa import read_videoqa
from .vqa import read_qa_entries
from .yollava import read_yollava

__all__ = [
    "DISPLAY_NAMES_FILE",
    "IMAGE_EXTENSIONS",
    "KINDS",
    "MYVLM_REFERENCE_POOL",
    "CaptionItem",
    "Concept",
    "ConceptResolver",
    "Dataset",
    "DatasetError",
    "DatasetSpec",
    "TestSample",
    "VQAItem",
    "VideoItem",
    "group_name",
    "list_images",
    "load_dataset",
    "norm_key",
    "parse_dataset_spec",
    "read_myvlm",
    "read_qa_entries",
    "read_rap",
    "read_thisismy",
    "read_thisismy_multi",
    "read_videoqa",
    "read_yollava",
    "resolve_file",
    "resolve_placeholders",
    "split_category",
    "thisismy_display_name",
]
