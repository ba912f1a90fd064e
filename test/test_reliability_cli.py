"""Fault injection, command line: absurd requests exit 2 at once; the store is shared safely with a node."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import unicodedata

import pytest
from conftest import random_image

from ego_ros.cli import main
from ego_ros.core.loading import load_backend
from ego_ros.core.store import ConceptStore

MODEL = ["--model", "random:llava"]


@pytest.fixture
def picture(tmp_path):
    path = tmp_path / "p.png"
    random_image(0).save(path)
    return str(path)


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("n", ["0", "4097", "4294967295"])
@pytest.mark.parametrize("command", ["ask", "caption"])
def test_absurd_max_new_tokens_exits_2_before_loading_a_model(tmp_path, picture, capsys, command, n):
    question = ["-q", "what is it?"] if command == "ask" else []
    t0 = time.monotonic()
    code, out, err = _run(capsys, command, *MODEL, "--store", str(tmp_path / "s"), picture, *question,
                          "--max-new-tokens", n)
    assert code == 2 and out == "" and "1..4096" in err and len(err.strip().splitlines()) == 1
    assert time.monotonic() - t0 < 5.0
    assert not (tmp_path / "s").exists(), "refused before the engine (and its store) was opened"


def test_the_reported_command_returns_at_once(tmp_path, picture):
    """The issue's reproduction: this ran until killed."""
    proc = subprocess.run([sys.executable, "-m", "ego_ros.cli", "ask", *MODEL, "--store", str(tmp_path / "s"),
                           picture, "-q", "what is it?", "--max-new-tokens", "4294967295"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "outside the allowed range 1..4096" in proc.stderr


def test_oversized_question_exits_2(tmp_path, picture, capsys):
    code, _, err = _run(capsys, "ask", *MODEL, "--store", str(tmp_path / "s"), picture, "-q", "x" * 100_000)
    assert code == 2 and "characters long" in err


@pytest.fixture
def held_store(tmp_path, picture, capsys):
    """A store with one concept, then held by a writer (as a running node holds it)."""
    store = tmp_path / "store"
    assert _run(capsys, "introduce", *MODEL, "--store", str(store), "--name", "kona", picture)[0] == 0
    fingerprint = load_backend("random:llava").fingerprint()
    with ConceptStore.open(store, fingerprint) as writer:
        yield str(store)
    assert writer.names() == ["kona"]


def test_reading_commands_work_beside_a_writer(held_store, picture, capsys):
    code, out, _ = _run(capsys, "recognize", *MODEL, "--store", held_store, picture)
    assert code == 0 and set(json.loads(out)["probabilities"]) == {"kona"}
    code, out, _ = _run(capsys, "concepts", *MODEL, "--store", held_store, "list")
    assert code == 0 and [c["name"] for c in json.loads(out)["concepts"]] == ["kona"]


@pytest.mark.parametrize("argv", [["introduce", "--name", "milo", "PIC"], ["concepts", "remove", "kona"]])
def test_writing_commands_are_refused_naming_the_holder(held_store, picture, capsys, argv):
    argv = [picture if a == "PIC" else a for a in argv]
    code, out, err = _run(capsys, *argv[:1], *MODEL, "--store", held_store, *argv[1:])
    assert code == 2 and "in use by process" in err and out == ""


def test_concepts_list_shows_unavailable_concepts_and_remove_deletes_them(tmp_path, picture, capsys):
    store = tmp_path / "store"
    _run(capsys, "introduce", *MODEL, "--store", str(store), "--name", "kona", picture)
    for f in (store / "concepts").iterdir():
        f.write_bytes(b"damaged")
    code, out, _ = _run(capsys, "concepts", *MODEL, "--store", str(store), "list")
    listing = json.loads(out)
    assert code == 0 and listing["concepts"] == [] and "checksum" in listing["unavailable"]["kona"]
    assert _run(capsys, "concepts", *MODEL, "--store", str(store), "remove", "kona")[0] == 0
    assert json.loads(_run(capsys, "concepts", *MODEL, "--store", str(store), "list")[1])["unavailable"] == {}


def test_decomposed_spelling_removes_the_stored_concept(tmp_path, picture, capsys):
    store = str(tmp_path / "store")
    _run(capsys, "introduce", *MODEL, "--store", store, "--name", "café", picture)
    code, _, err = _run(capsys, "concepts", *MODEL, "--store", store, "remove", unicodedata.normalize("NFD", "café"))
    assert code == 0, err
    assert json.loads(_run(capsys, "concepts", *MODEL, "--store", store, "list")[1])["concepts"] == []
