"""Specification of toy exports of world v2: look-alike siblings, negative kinds in the manifest, the
exporter's signature-space check, and v1 exports left exactly as they were."""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
from pathlib import Path

import pytest

from ego_ros.toy import cli
from ego_ros.toy import export as export_module
from ego_ros.toy.attributes import HELD_OUT_SIGNATURES, TRAIN_SIGNATURES, Instance, lookalikes
from ego_ros.toy.export import ExportError, choose_concepts, export

TINY = {"size": 32, "views": 1, "test_per_concept": 2, "negatives": 2}
#: sha256 of the PNGs of two small v1 exports (both layouts), computed on main (905e6a1).
V1_EXPORT_PNGS_SHA256 = "2a566fad2584ec15e8b79a5c74c1285138d78fd495a97750b3ec230f44d73b5c"


@pytest.fixture(scope="module")
def yollava_v2(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("yollava_v2")
    return out, export(out, "yollava", 8, seed=0, world="v2", **TINY)


def test_v1_export_pixels_are_bit_identical_to_main():
    h = hashlib.sha256()
    for layout in ("yollava", "thisismy-multi"):
        d = Path(tempfile.mkdtemp())
        export(d, layout=layout, n_concepts=2, seed=3, views=2, test_per_concept=2, negatives=1, world="v1")
        for p in sorted(d.rglob("*")):
            if p.is_file() and p.suffix == ".png":
                h.update(str(p.relative_to(d)).encode())
                h.update(p.read_bytes())
    assert h.hexdigest() == V1_EXPORT_PNGS_SHA256


def test_v2_sibling_groups_are_lookalikes_with_held_out_glyphs():
    concepts = choose_concepts(12, seed=0, world="v2")
    assert len({c.instance for c in concepts}) == 12
    for c in concepts:
        assert c.instance.is_held_out and c.instance.signature in HELD_OUT_SIGNATURES
        for sib in c.sibling_instances:
            assert sib in lookalikes(c.instance) and sib.keywords == c.instance.keywords


def test_the_manifest_labels_every_negative_kind_and_holds_all_three(yollava_v2):
    _, manifest = yollava_v2
    assert manifest["world"] == "v2" and manifest["world_version"] == "2.1"
    names = set(manifest["concepts"])
    kinds = set()
    for name, entry in manifest["concepts"].items():
        assert set(entry["negative_kinds"]) == names - {name}
        inst = Instance.from_key(entry["instance"])
        for other, kind in entry["negative_kinds"].items():
            assert kind == inst.negative_kind(Instance.from_key(manifest["concepts"][other]["instance"]))
        assert all(entry["negative_kinds"][s] == "lookalike" for s in entry["siblings"])
        kinds |= set(entry["negative_kinds"].values())
    assert kinds == {"lookalike", "near_duplicate", "other"}


def test_v2_test_images_show_the_concept_with_its_glyph(yollava_v2):
    _, manifest = yollava_v2
    for record in manifest["images"].values():
        if record["role"] == "test":
            keys = [o["instance"] for o in record["objects"]]
            assert manifest["concepts"][record["concept"]]["instance"] in keys


def test_no_v2_concept_carries_a_training_signature(yollava_v2):
    _, manifest = yollava_v2
    for entry in manifest["concepts"].values():
        assert Instance.from_key(entry["instance"]).signature not in TRAIN_SIGNATURES


def test_the_exporter_refuses_concepts_whose_signature_is_in_the_training_space(tmp_path, monkeypatch):
    # pretend the spaces overlap: the exporter's own check must catch it before writing anything
    monkeypatch.setattr(export_module, "TRAIN_SIGNATURES", TRAIN_SIGNATURES + HELD_OUT_SIGNATURES)
    with pytest.raises(ExportError, match="training signature space"):
        export(tmp_path / "out", "yollava", 4, seed=0, world="v2", **TINY)
    assert not (tmp_path / "out").exists()


def test_v1_manifests_label_near_duplicate_and_other_negatives(tmp_path):
    manifest = export(tmp_path, "yollava", 4, seed=2, world="v1", **TINY)
    assert manifest["world"] == "v1"
    for entry in manifest["concepts"].values():
        assert "signature" not in entry
        assert all(entry["negative_kinds"][s] == "near_duplicate" for s in entry["siblings"])
        assert set(entry["negative_kinds"].values()) <= {"near_duplicate", "other"}


def test_v2_negative_examples_score_the_glyph_as_a_fifth_attribute(yollava_v2):
    root, manifest = yollava_v2
    name = next(iter(manifest["concepts"]))
    scores = json.loads((root / f"train/{name}/negative_example/scores.json").read_text())
    assert all(v in (0.0, 0.2, 0.4, 0.6, 0.8) for v in scores.values())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ego-ros")
    cli.register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_exports_world_v2_and_masks_of_v2_training_instances(tmp_path, capsys):
    args = _parser().parse_args(
        ["toy", "export", "--layout", "thisismy-multi", "--concepts", "4", "--views", "1", "--test-per-concept",
         "1", "--size", "32", "--world", "v2", "--out", str(tmp_path / "m"), "--quiet"]
    )  # fmt: skip
    assert args.func(args) == 0
    manifest = json.loads((tmp_path / "m" / "toy_manifest.json").read_text())
    assert manifest["world"] == "v2" and manifest["pairs"]
    args = _parser().parse_args(["toy", "masks", "--count", "2", "--world", "v2", "--out", str(tmp_path / "k")])
    assert args.func(args) == 0 and len(list((tmp_path / "k" / "masks").iterdir())) == 2
