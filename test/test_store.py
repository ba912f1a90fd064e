"""The concept store: persistence, atomicity, model fingerprints, names and corrupt files."""

from __future__ import annotations

import json
import os

import pytest
import torch

from ego_ros.core import store as store_mod
from ego_ros.core.errors import (
    DuplicateConceptError,
    InvalidConceptNameError,
    ModelMismatchError,
    StoreCorruptError,
    UnknownConceptError,
)
from ego_ros.core.memory import ConceptMemory, MemoryView, validate_name
from ego_ros.core.store import ConceptStore, memory_from_bytes, memory_to_bytes

FP = "f" * 32


def memory(name: str = "kona", fp: str = FP, k: int = 3, dim: int = 8, seed: int = 0) -> ConceptMemory:
    g = torch.Generator().manual_seed(seed)
    view = MemoryView(embeds=torch.randn(k, dim, generator=g), indices=torch.tensor([1, 4, 7][:k]), grid=(3, 3),
                      box=(0.0, 0.0, 60.0, 60.0), image_size=(60, 60), keywords=["brown", "dog"],
                      description="brown, dog", alpha=30.0, k_c=k, importance=torch.rand(9, generator=g),
                      area_answer="30")
    return ConceptMemory(name=name, views=[view], fingerprint=fp, model="tiny", notes="ours")


def test_memory_round_trips_through_bytes_exactly():
    m = memory()
    m.views[0].embeds = m.views[0].embeds.to(torch.bfloat16)
    back = memory_from_bytes(memory_to_bytes(m))
    assert back.name == m.name and back.keywords == m.keywords and back.alpha == m.alpha
    assert back.views[0].embeds.dtype == torch.bfloat16
    assert torch.equal(back.views[0].embeds, m.views[0].embeds)
    assert torch.equal(back.views[0].indices, m.views[0].indices)
    assert back.views[0].grid == (3, 3) and back.views[0].box == (0.0, 0.0, 60.0, 60.0)


def test_store_persists_concepts_across_reopen(tmp_path):
    s = ConceptStore.open(tmp_path, FP)
    s.add(memory("kona"))
    s.add(memory("Anna's mug", seed=1))
    reopened = ConceptStore.open(tmp_path, FP, read_only=True)
    assert reopened.names() == ["kona", "Anna's mug"]
    assert torch.equal(reopened.get("kona").views[0].embeds, s.get("kona").views[0].embeds)


def test_remove_and_rename_persist(tmp_path):
    s = ConceptStore.open(tmp_path, FP)
    s.add(memory("kona"))
    s.add(memory("milo", seed=2))
    s.remove("milo")
    s.rename("kona", "Kona the dog")
    reopened = ConceptStore.open(tmp_path, FP, read_only=True)
    assert reopened.names() == ["Kona the dog"]
    assert reopened.get("Kona the dog").name == "Kona the dog"
    assert len(list((tmp_path / "concepts").iterdir())) == 1  # old files are gone


def test_duplicate_name_is_refused_unless_replacing(tmp_path):
    s = ConceptStore.open(tmp_path, FP)
    s.add(memory("kona"))
    with pytest.raises(DuplicateConceptError, match="already exists"):
        s.add(memory("kona", seed=3))
    s.add(memory("kona", seed=3), replace=True)
    reopened = ConceptStore.open(tmp_path, FP, read_only=True)
    assert torch.equal(reopened.get("kona").views[0].embeds, memory(seed=3).views[0].embeds)


def test_unknown_concept_error_names_the_known_ones(tmp_path):
    s = ConceptStore.open(tmp_path, FP)
    s.add(memory("kona"))
    with pytest.raises(UnknownConceptError, match="unknown concept 'rex' \\(known: kona\\)"):
        s.get("rex")
    with pytest.raises(UnknownConceptError):
        s.remove("rex")
    with pytest.raises(UnknownConceptError):
        s.rename("rex", "max")


def test_rename_onto_an_existing_name_is_refused(tmp_path):
    s = ConceptStore.open(tmp_path, FP)
    s.add(memory("kona"))
    s.add(memory("milo"))
    with pytest.raises(DuplicateConceptError):
        s.rename("kona", "milo")


def test_store_of_another_model_is_refused(tmp_path):
    ConceptStore.open(tmp_path, FP).add(memory("kona"))
    with pytest.raises(ModelMismatchError, match="cannot be used with another"):
        ConceptStore.open(tmp_path, "0" * 32)


def test_memory_of_another_model_is_refused(tmp_path):
    s = ConceptStore.open(tmp_path, FP)
    with pytest.raises(ModelMismatchError, match="another model"):
        s.add(memory("kona", fp="0" * 32))
    assert s.names() == []


def test_crash_while_writing_the_index_leaves_the_previous_store_loadable(tmp_path, monkeypatch):
    s = ConceptStore.open(tmp_path, FP)
    s.add(memory("kona"))
    real_replace = os.replace

    def crash_on_index(src, dst):
        if str(dst).endswith(store_mod.INDEX_FILE):
            raise OSError("simulated power loss")
        return real_replace(src, dst)

    monkeypatch.setattr(store_mod.os, "replace", crash_on_index)
    with pytest.raises(OSError, match="simulated"):
        s.add(memory("milo", seed=5))
    with pytest.raises(OSError, match="simulated"):
        s.remove("kona")
    monkeypatch.undo()
    reopened = ConceptStore.open(tmp_path, FP, read_only=True)
    assert reopened.names() == ["kona"]
    assert not [p for p in tmp_path.rglob("*.tmp")], "temporary files are cleaned up"
    assert len(list((tmp_path / "concepts").iterdir())) == 1, "the half-added concept's file is removed"


def test_crash_while_writing_a_concept_file_changes_nothing(tmp_path, monkeypatch):
    s = ConceptStore.open(tmp_path, FP)
    s.add(memory("kona"))
    before = (tmp_path / store_mod.INDEX_FILE).read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(store_mod.os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        s.add(memory("milo"))
    monkeypatch.undo()
    assert (tmp_path / store_mod.INDEX_FILE).read_bytes() == before
    assert ConceptStore.open(tmp_path, FP, read_only=True).names() == ["kona"]
    assert s.names() == ["kona"]


def test_corrupt_index_is_a_clear_error(tmp_path):
    (tmp_path / store_mod.INDEX_FILE).write_text("{not json")
    with pytest.raises(StoreCorruptError, match="unreadable concept store index"):
        ConceptStore.open(tmp_path, FP, read_only=True)


def test_corrupt_concept_file_is_reported_and_kept(tmp_path):
    s = ConceptStore.open(tmp_path, FP)
    s.add(memory("kona"))
    s.add(memory("milo", seed=1))
    index = json.loads((tmp_path / store_mod.INDEX_FILE).read_text())
    damaged = tmp_path / "concepts" / index["concepts"]["milo"]["file"]
    damaged.write_bytes(damaged.read_bytes()[:50])
    with pytest.raises(StoreCorruptError, match="checksum mismatch"):
        ConceptStore.open(tmp_path, FP, read_only=True)
    lenient = ConceptStore.open(tmp_path, FP, strict=False, read_only=True)
    assert lenient.names() == ["kona"]
    assert "milo" in lenient.problems and "checksum" in lenient.problems["milo"]
    assert damaged.exists(), "a damaged file is never deleted"


def test_truncated_memory_bytes_raise_store_corrupt():
    data = memory_to_bytes(memory())
    with pytest.raises(StoreCorruptError, match="not a valid concept memory"):
        memory_from_bytes(data[: len(data) // 2], "x.safetensors")


@pytest.mark.parametrize("name", ["", "   ", " kona", "a/b", "a\\b", "..", "bell\x07", "zero\u200bwidth", "x" * 65])
def test_invalid_names_are_refused(name):
    with pytest.raises(InvalidConceptNameError):
        validate_name(name)


@pytest.mark.parametrize("name", ["kona", "Anna's mug", "猫のタマ", "x" * 64, "Café"])
def test_unicode_names_are_accepted(name):
    assert validate_name(name) == name


def test_names_are_nfc_normalised():
    assert validate_name("Cafe\u0301") == "Café"


def test_rename_keeps_the_concept_order(tmp_path):
    s = ConceptStore.open(tmp_path, FP)
    for n in ("a", "b", "c"):
        s.add(memory(n))
    s.rename("a", "z")
    assert s.names() == ["z", "b", "c"]
    assert ConceptStore.open(tmp_path, FP, read_only=True).names() == ["z", "b", "c"]
