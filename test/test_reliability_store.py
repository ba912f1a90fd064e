"""Fault injection, concept store: two writers, missing and damaged files, crash leftovers, names, paths."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import unicodedata

import pytest
from conftest import random_image
from test_store import FP, memory

from ego_ros.core import store as store_mod
from ego_ros.core.engine import EgoEngine, EngineConfig
from ego_ros.core.errors import (
    DuplicateConceptError,
    InvalidConceptNameError,
    StoreLockedError,
    StoreNotWritableError,
    UnknownConceptError,
)
from ego_ros.core.introduce import IntroduceOptions
from ego_ros.core.store import ConceptStore

NFC = "café"
NFD = unicodedata.normalize("NFD", NFC)


def concept_file(directory, name: str):
    index = json.loads((directory / store_mod.INDEX_FILE).read_text())
    return directory / store_mod.CONCEPTS_DIR / index["concepts"][name]["file"]


# ----- one writer ----------------------------------------------------------------------------------------
def test_second_writer_in_the_same_process_is_refused_naming_the_holder(tmp_path):
    with ConceptStore.open(tmp_path, FP):
        with pytest.raises(StoreLockedError, match=rf"process {os.getpid()} on host {socket.gethostname()}"):
            ConceptStore.open(tmp_path, FP)


def test_closing_the_store_releases_the_lock(tmp_path):
    first = ConceptStore.open(tmp_path, FP)
    first.add(memory("kona"))
    first.close()
    with pytest.raises(StoreNotWritableError, match="closed"):
        first.add(memory("milo"))
    assert ConceptStore.open(tmp_path, FP).names() == ["kona"]


HOLDER = textwrap.dedent("""
    import sys, time
    from ego_ros.core.store import ConceptStore
    store = ConceptStore.open(sys.argv[1], sys.argv[2])
    print("ready", flush=True)
    time.sleep(120)
""")


@pytest.fixture
def holder(tmp_path):
    """Another process holding the store in tmp_path/store as its writer."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "store"), FP], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_second_writer_in_another_process_is_refused_and_the_lock_of_a_dead_holder_is_taken_over(
        tmp_path, holder):
    directory = tmp_path / "store"
    with pytest.raises(StoreLockedError, match=rf"in use by process {holder.pid} on host"):
        ConceptStore.open(directory, FP)
    holder.kill()  # SIGKILL: no chance to release anything; the kernel drops the flock
    holder.wait()
    with ConceptStore.open(directory, FP) as store:
        store.add(memory("kona"))
    assert ConceptStore.open(directory, FP, read_only=True).names() == ["kona"]


def test_four_introductions_by_two_would_be_writers_are_all_kept(tmp_path):
    a = ConceptStore.open(tmp_path, FP)
    a.add(memory("a1"))
    with pytest.raises(StoreLockedError):
        ConceptStore.open(tmp_path, FP)
    a.add(memory("a2"))
    a.close()
    with ConceptStore.open(tmp_path, FP) as b:
        b.add(memory("b1"))
        b.add(memory("b2"))
    assert ConceptStore.open(tmp_path, FP, read_only=True).names() == ["a1", "a2", "b1", "b2"]


def test_read_only_store_opens_beside_a_writer_and_refuses_writes(tmp_path):
    with ConceptStore.open(tmp_path, FP) as writer:
        writer.add(memory("kona"))
        reader = ConceptStore.open(tmp_path, FP, read_only=True)
        assert reader.names() == ["kona"]
        with pytest.raises(StoreNotWritableError, match="read-only"):
            reader.add(memory("milo"))
        with pytest.raises(StoreNotWritableError):
            reader.remove("kona")
    assert ConceptStore.open(tmp_path, FP, read_only=True).names() == ["kona"]


def test_read_only_open_of_a_missing_directory_creates_nothing(tmp_path):
    assert ConceptStore.open(tmp_path / "absent", FP, read_only=True).names() == []
    assert not (tmp_path / "absent").exists()


def test_engine_load_refuses_a_held_store_before_loading_the_model(tmp_path, monkeypatch):
    import ego_ros.core.engine as engine_mod

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded although the store is held")

    monkeypatch.setattr(engine_mod, "load_backend", no_model)
    with ConceptStore.open(tmp_path, FP):
        with pytest.raises(StoreLockedError):
            EgoEngine.load("random:llava", store_dir=tmp_path)


# ----- unwritable directories ----------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["/proc/ego", "file"])
def test_unwritable_memory_dir_is_refused_at_open_with_the_path(tmp_path, where):
    if where == "file":
        (tmp_path / "file").write_text("not a directory")
        where = str(tmp_path / "file" / "store")
    with pytest.raises(StoreNotWritableError, match="cannot be created or written") as err:
        ConceptStore.open(where, FP)
    assert where in str(err.value)


def test_engine_load_refuses_an_unwritable_memory_dir_before_loading_the_model(monkeypatch):
    import ego_ros.core.engine as engine_mod

    monkeypatch.setattr(engine_mod, "load_backend", lambda *a, **k: pytest.fail("model loaded"))
    with pytest.raises(StoreNotWritableError, match="/proc/ego"):
        EgoEngine.load("random:llava", store_dir="/proc/ego")


# ----- missing and damaged files -------------------------------------------------------------------------
def test_concept_with_a_missing_file_is_unavailable_kept_by_writes_and_recovered(tmp_path):
    with ConceptStore.open(tmp_path, FP) as s:
        s.add(memory("kona"))
    path = concept_file(tmp_path, "kona")
    aside = tmp_path.parent / f"{tmp_path.name}-aside"
    shutil.move(path, aside)
    with ConceptStore.open(tmp_path, FP, strict=False) as s:
        assert s.names() == [] and "missing" in s.unavailable()["kona"]
        with pytest.raises(UnknownConceptError, match="unavailable"):
            s.get("kona")
        s.add(memory("milo", seed=1))  # a write while kona is unavailable must keep its index entry
    shutil.move(aside, path)
    with ConceptStore.open(tmp_path, FP) as s:
        assert s.names() == ["kona", "milo"] and s.unavailable() == {}


def test_concept_with_a_damaged_file_is_unavailable_and_recovered_when_repaired(tmp_path):
    with ConceptStore.open(tmp_path, FP) as s:
        s.add(memory("kona"))
    path = concept_file(tmp_path, "kona")
    good = path.read_bytes()
    path.write_bytes(good[:40])
    with ConceptStore.open(tmp_path, FP, strict=False) as s:
        assert "checksum" in s.unavailable()["kona"]
        s.add(memory("milo", seed=1))
        s.rename("milo", "max")
    assert path.exists(), "a damaged file is never deleted"
    path.write_bytes(good)
    assert ConceptStore.open(tmp_path, FP, read_only=True).names() == ["kona", "max"]


def test_unavailable_concept_can_be_removed(tmp_path):
    with ConceptStore.open(tmp_path, FP) as s:
        s.add(memory("kona"))
        s.add(memory("milo", seed=1))
    concept_file(tmp_path, "kona").unlink()
    with ConceptStore.open(tmp_path, FP, strict=False) as s:
        assert "kona" not in s and s.has_entry("kona") and not s.has_entry("rex")
        assert s.remove("kona") is None
        assert s.unavailable() == {}
    reopened = ConceptStore.open(tmp_path, FP, read_only=True)
    assert reopened.names() == ["milo"] and reopened.unavailable() == {}


def test_unavailable_concept_name_is_not_silently_reused(tmp_path):
    with ConceptStore.open(tmp_path, FP) as s:
        s.add(memory("kona"))
    concept_file(tmp_path, "kona").write_bytes(b"garbage")
    with ConceptStore.open(tmp_path, FP, strict=False) as s:
        with pytest.raises(DuplicateConceptError, match="unavailable"):
            s.add(memory("kona", seed=2))
        s.add(memory("milo"))
        with pytest.raises(DuplicateConceptError):
            s.rename("milo", "kona")
        s.add(memory("kona", seed=2), replace=True)
        assert "kona" in s and s.unavailable() == {}


def test_strict_open_still_refuses_a_store_with_an_unavailable_concept_and_releases_the_lock(tmp_path):
    with ConceptStore.open(tmp_path, FP) as s:
        s.add(memory("kona"))
    concept_file(tmp_path, "kona").unlink()
    with pytest.raises(store_mod.StoreCorruptError, match="missing"):
        ConceptStore.open(tmp_path, FP)
    ConceptStore.open(tmp_path, FP, strict=False).close()


# ----- crash leftovers -----------------------------------------------------------------------------------
def test_temporary_files_of_interrupted_writes_are_deleted_at_open(tmp_path):
    with ConceptStore.open(tmp_path, FP) as s:
        s.add(memory("kona"))
    leftovers = [tmp_path / ".store.json.abc123.tmp", tmp_path / "concepts" / ".x.safetensors.def456.tmp",
                 tmp_path / ".probe-1-deadbeef"]
    for p in leftovers:
        p.write_bytes(b"partial")
    with ConceptStore.open(tmp_path, FP) as s:
        assert s.names() == ["kona"]
    assert not any(p.exists() for p in leftovers)


def test_old_file_of_a_rename_killed_midway_is_deleted_at_open(tmp_path, monkeypatch):
    with ConceptStore.open(tmp_path, FP) as s:
        s.add(memory("kona"))
        old = concept_file(tmp_path, "kona")
        monkeypatch.setattr(ConceptStore, "_unlink", lambda self, fname: None)  # killed before the unlink
        s.rename("kona", "Kona")
        monkeypatch.undo()
    assert old.exists() and len(list((tmp_path / "concepts").iterdir())) == 2
    with ConceptStore.open(tmp_path, FP) as s:
        assert s.names() == ["Kona"]
    assert not old.exists() and len(list((tmp_path / "concepts").iterdir())) == 1


def test_concept_file_the_index_never_named_is_moved_to_orphans_not_deleted(tmp_path):
    with ConceptStore.open(tmp_path, FP) as s:
        s.add(memory("kona"))
    stray = tmp_path / "concepts" / "0123abcd.safetensors"  # written, then the process died before the index
    stray.write_bytes(store_mod.memory_to_bytes(memory("milo")))
    os.utime(stray, ns=(1, 1))  # file times play no part (a robot's clock may jump at boot)
    with ConceptStore.open(tmp_path, FP) as s:
        assert s.names() == ["kona"] and str(tmp_path / "orphans" / stray.name) in s.cleaned
    assert not stray.exists() and (tmp_path / "orphans" / stray.name).is_file()


def test_read_only_open_cleans_nothing(tmp_path):
    with ConceptStore.open(tmp_path, FP) as s:
        s.add(memory("kona"))
    tmp = tmp_path / ".store.json.abc.tmp"
    tmp.write_bytes(b"x")
    ConceptStore.open(tmp_path, FP, read_only=True)
    assert tmp.exists()


# ----- names ---------------------------------------------------------------------------------------------
def test_decomposed_spelling_finds_get_remove_and_rename_the_stored_name(tmp_path):
    with ConceptStore.open(tmp_path, FP) as s:
        s.add(memory(NFD))
        assert s.names() == [NFC]
        assert NFD in s and s.get(NFD).name == NFC
        s.rename(NFD, unicodedata.normalize("NFD", "crème"))
        assert s.names() == ["crème"]
        s.remove(unicodedata.normalize("NFD", "crème"))
        assert s.names() == []


@pytest.mark.parametrize("call", ["get", "remove", "rename_old", "rename_new"])
def test_nul_in_a_name_is_refused_on_every_path(tmp_path, call):
    s = ConceptStore(FP)
    s.add(memory("kona"))
    bad = "ko\x00na"
    with pytest.raises(InvalidConceptNameError):
        {"get": lambda: s.get(bad), "remove": lambda: s.remove(bad),
         "rename_old": lambda: s.rename(bad, "x"), "rename_new": lambda: s.rename("kona", bad)}[call]()
    assert bad not in s and s.names() == ["kona"]


def test_engine_concepts_lists_accept_the_decomposed_spelling(llava):
    engine = EgoEngine(llava, config=EngineConfig(introduce=IntroduceOptions(max_new_tokens=3,
                                                                             area_max_new_tokens=2)))
    engine.introduce(NFC, [random_image(1)])
    assert [r.name for r in engine.recognize(random_image(2), concepts=[NFD])] == [NFC]
    assert engine.ask(random_image(2), "where is it?", concepts=[NFD], max_new_tokens=2).concepts in ([], [NFC])
    assert engine.recognize_frames([random_image(2)], NFD)[0].name == NFC
    with pytest.raises(InvalidConceptNameError):
        engine.recognize(random_image(2), concepts=["a\x00"])
    engine.rename(NFD, "x")
    assert engine.store.names() == ["x"]


def test_failed_engine_load_leaves_no_new_store_directory(tmp_path):
    from ego_ros.core.errors import ModelLoadError

    with pytest.raises(ModelLoadError):
        EgoEngine.load("random:no_such_family", store_dir=tmp_path / "store")
    assert not (tmp_path / "store").exists()


KILLED_WRITER = textwrap.dedent("""
    import os, signal, sys
    from ego_ros.core.store import ConceptStore
    sys.path.insert(0, sys.argv[4])
    from test_store import memory
    store = ConceptStore.open(sys.argv[1], sys.argv[2])
    die = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
    if sys.argv[3] == "rename":  # killed after the new index landed, before the old file's unlink
        ConceptStore._unlink = die
        store.rename("kona", "Kona")
    else:  # killed after the new concept file was written, before the index naming it
        ConceptStore._write_index = die
        store.add(memory("milo", seed=1))
""")


@pytest.mark.parametrize("step", ["rename", "introduce"])
def test_writer_killed_midway_leaves_a_store_that_the_next_open_cleans(tmp_path, step):
    import pathlib

    with ConceptStore.open(tmp_path, FP) as s:
        s.add(memory("kona"))
    before = set((tmp_path / "concepts").iterdir())
    proc = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(tmp_path), FP, step,
                           str(pathlib.Path(__file__).parent)], timeout=120)
    assert proc.returncode == -9
    assert len(list((tmp_path / "concepts").iterdir())) == 2, "the kill left a file the index does not name"
    with ConceptStore.open(tmp_path, FP) as s:  # the dead writer's lock is taken over
        names = s.names()
    assert names == (["Kona"] if step == "rename" else ["kona"])
    left = set((tmp_path / "concepts").iterdir())
    assert len(left) == 1
    if step == "introduce":
        assert left == before and len(list((tmp_path / "orphans").iterdir())) == 1
