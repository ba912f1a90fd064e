"""Specification of the toy benchmark exports (Yo'LLaVA and This-is-my multi-concept layouts) and CLI."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from ego_ros.toy import cli, world
from ego_ros.toy.export import QA_VOCABULARY, ExportError, choose_concepts, concept_pairs, export

TINY = {"size": 32, "views": 2, "test_per_concept": 3, "negatives": 2}


@pytest.fixture(scope="module")
def yollava(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("yollava")
    return out, export(out, "yollava", 3, seed=5, **TINY)


@pytest.fixture(scope="module")
def multi(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("multi")
    return out, export(out, "thisismy-multi", 4, seed=5, **TINY)


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def _read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


# -- concepts --------------------------------------------------------------------------------------
def test_concepts_are_distinct_held_out_instances_in_near_duplicate_sibling_groups():
    concepts = choose_concepts(7, seed=1)
    assert len({c.name for c in concepts}) == 7 and len({c.instance for c in concepts}) == 7
    assert all(c.instance.is_held_out for c in concepts)
    assert sorted(len(c.siblings) for c in concepts) == [1, 1, 1, 1, 2, 2, 2]  # pairs and one triple
    by_name = {c.name: c for c in concepts}
    for c in concepts:
        assert all(by_name[s].group == c.group for s in c.siblings)
        first = next(x for x in concepts if x.group == c.group)
        if first is not c:
            assert c.instance in world.near_duplicates(first.instance)
    assert all(n == n.lower() and n.replace("-", "").isalpha() for n in by_name)


def test_concept_choice_is_deterministic_by_seed():
    assert choose_concepts(6, seed=3) == choose_concepts(6, seed=3)
    assert choose_concepts(6, seed=3) != choose_concepts(6, seed=4)


def test_pairs_join_sibling_groups_so_sibling_pairs_are_hard_negatives():
    concepts = choose_concepts(4, seed=2)
    pairs = concept_pairs(concepts)
    assert len(pairs) == 2
    (a, b), (a2, b2) = pairs
    assert a.group == a2.group and b.group == b2.group and a.group != b.group
    assert a2.name in a.siblings and b2.name in b.siblings


# -- yollava layout --------------------------------------------------------------------------------
def test_yollava_export_has_the_published_file_tree(yollava):
    out, manifest = yollava
    names = list(manifest["concepts"])
    expected = {"yollava-visual-qa.json", "toy_manifest.json"}
    for c in names:
        expected |= {f"train/{c}/{v}.png" for v in range(2)}
        expected |= {f"train/{c}/negative_example/{j}.png" for j in range(2)}
        expected |= {f"train/{c}/negative_example/scores.json"}
        expected |= {f"test/{c}/{t}.png" for t in range(3)}
    assert _files(out) == expected
    assert _read_rgb(out / f"test/{names[0]}/0.png").shape == (32, 32, 3)


def test_yollava_visual_qa_has_the_published_shape_and_true_answers(yollava):
    out, manifest = yollava
    qa = json.loads((out / "yollava-visual-qa.json").read_text())
    assert set(qa) == set(manifest["concepts"])
    for concept, entries in qa.items():
        attrs = manifest["concepts"][concept]["attributes"]
        truths = {*attrs.values(), attrs["mark"].split("-")[0]}
        assert len(entries) == 3
        for path, item in entries.items():
            assert path.startswith(f"./test/{concept}/") and (out / path).is_file()
            assert set(item) == {"question", "options", "correct_answer"}
            assert "<sks>" in item["question"]
            assert set(item["options"]) == {"A", "B"} and item["correct_answer"] in ("A", "B")
            right = item["options"][item["correct_answer"]].lower()
            wrong = item["options"]["B" if item["correct_answer"] == "A" else "A"].lower()
            assert right in truths and wrong not in truths


def test_yollava_negative_examples_are_scored_look_alikes_without_the_concept(yollava):
    out, manifest = yollava
    for concept in manifest["concepts"]:
        scores = json.loads((out / f"train/{concept}/negative_example/scores.json").read_text())
        assert set(scores) == {"0.png", "1.png"}
        assert all(0 <= s <= 1 for s in scores.values())
        for j in range(2):
            record = manifest["images"][f"train/{concept}/negative_example/{j}.png"]
            assert record["role"] == "negative" and concept not in record["concepts"]


def test_yollava_images_hold_their_own_concept_only_and_siblings_give_hard_negatives(yollava):
    _, manifest = yollava
    concepts = manifest["concepts"]
    for rel, record in manifest["images"].items():
        if record["role"] in ("reference", "test"):
            concept = rel.split("/")[1]
            assert record["concepts"] == [concept]
            (obj,) = [o for o in record["objects"] if o["concept"] == concept]
            assert obj["mark_visible"] and obj["visible_fraction"] >= 0.5
    for name, info in concepts.items():
        near = {d.key for d in world.near_duplicates(world.Instance.from_key(info["instance"]))}
        hard = [
            r
            for rel, r in manifest["images"].items()
            if rel.startswith("test/") and name not in r["concepts"] and near & {o["instance"] for o in r["objects"]}
        ]
        assert hard, f"no test image shows a near-duplicate of {name} without it"


def test_manifest_specs_re_render_the_exported_pixels(yollava):
    out, manifest = yollava
    for rel in list(manifest["images"])[::4]:
        spec = world.scene_spec_from_dict(manifest["images"][rel]["spec"])
        assert np.array_equal(world.render(spec, 32).image, _read_rgb(out / rel))


def test_exports_are_byte_identical_for_the_same_arguments(tmp_path, yollava):
    out, _ = yollava
    again = tmp_path / "again"
    export(again, "yollava", 3, seed=5, **TINY)
    assert _files(again) == _files(out)
    for rel in _files(out):
        assert (again / rel).read_bytes() == (out / rel).read_bytes(), rel


def test_another_seed_exports_other_concepts(tmp_path, yollava):
    _, manifest = yollava
    other = export(tmp_path / "other", "yollava", 3, seed=6, **TINY)
    assert other["concepts"] != manifest["concepts"]


def test_question_and_answer_words_are_covered_by_the_published_vocabularies(yollava, multi):
    known = set(world.WORLD_VOCABULARY) | set(QA_VOCABULARY)
    texts = []
    for out, manifest in (yollava, multi):
        known |= set(manifest["concepts"])
        qa_file = out / "yollava-visual-qa.json"
        if qa_file.is_file():
            for entries in json.loads(qa_file.read_text()).values():
                texts += [e["question"] for e in entries.values()]
                texts += [o for e in entries.values() for o in e["options"].values()]
        for path in (out / "Multi-concept" / "VQA").glob("*.json"):
            texts += [e["question"] + " " + e["answer"] for e in json.loads(path.read_text())]
    assert texts
    words = {w for t in texts for w in re.split(r"[^a-z0-9<>-]+", t.lower()) if w}
    assert words <= known


# -- this-is-my multi-concept layout ---------------------------------------------------------------
def test_multi_export_has_the_published_file_tree(multi):
    out, manifest = multi
    pairs = manifest["pairs"]
    assert len(pairs) == 2
    expected = {"toy_manifest.json"}
    for c in manifest["concepts"]:
        expected |= {f"Multi-concept/train/{c}/{v}.png" for v in range(2)}
    for p in pairs:
        expected |= {f"Multi-concept/test/{p}/{t}.png" for t in range(3)}
        expected.add(f"Multi-concept/VQA/{p}.json")
    assert _files(out) == expected


def test_multi_test_images_hold_both_concepts_of_their_pair(multi):
    _, manifest = multi
    for rel, record in manifest["images"].items():
        if record["role"] == "test":
            a, b = rel.split("/")[2].split("_and_")
            assert record["concepts"] == sorted([a, b])
            for o in record["objects"]:
                if o["concept"]:
                    assert o["mark_visible"]


def test_multi_vqa_lists_open_questions_about_the_pair(multi):
    out, manifest = multi
    for pair in manifest["pairs"]:
        a, b = pair.split("_and_")
        entries = json.loads((out / f"Multi-concept/VQA/{pair}.json").read_text())
        assert len(entries) == 3
        for e in entries:
            assert set(e) == {"image", "question", "answer", "concepts"}
            assert e["concepts"] == [a, b]
            assert (out / "Multi-concept" / e["image"]).is_file()
            assert a in e["question"] or b in e["question"]
            assert e["answer"]
        colour_q = [e for e in entries if e["question"].startswith("What colour is")]
        for e in colour_q:
            assert e["answer"] == manifest["concepts"][a]["attributes"]["colour"]


# -- arguments and output directory ----------------------------------------------------------------
def test_bad_arguments_raise_clear_export_errors(tmp_path):
    with pytest.raises(ExportError, match="unknown layout"):
        export(tmp_path / "a", "coco", 3)
    too_many = 2 * len(world.held_out_instances()) + 2  # more pairs than held-out attribute combinations
    with pytest.raises(ExportError, match="ask for fewer concepts"):
        export(tmp_path / "b", "yollava", too_many)
    with pytest.raises(ExportError, match="--concepts"):
        export(tmp_path / "c", "yollava", 1)
    with pytest.raises(ExportError, match="--views"):
        export(tmp_path / "d", "yollava", 2, views=0)
    with pytest.raises(ExportError, match="--seed"):
        export(tmp_path / "e", "yollava", 2, seed=-1)
    assert not any((tmp_path / d).exists() for d in "abcde")  # nothing written on bad arguments


def test_non_empty_output_needs_overwrite_and_overwrite_needs_a_previous_export(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="not empty"):
        export(foreign, "yollava", 2, **TINY)
    with pytest.raises(ExportError, match="not a toy export"):
        export(foreign, "yollava", 2, overwrite=True, **TINY)
    assert (foreign / "notes.txt").read_text() == "mine"

    out = tmp_path / "export"
    export(out, "thisismy-multi", 2, seed=1, **TINY)
    export(out, "yollava", 2, seed=1, overwrite=True, **TINY)
    assert not (out / "Multi-concept").exists() and (out / "yollava-visual-qa.json").is_file()


# -- CLI -------------------------------------------------------------------------------------------
def _parser(extra=()) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ego-ros")
    cli.register(parser.add_subparsers(dest="command", required=True), extra=extra)
    return parser


def test_cli_export_writes_a_benchmark(tmp_path, capsys):
    args = _parser().parse_args(
        ["toy", "export", "--layout", "yollava", "--concepts", "2", "--seed", "3", "--out", str(tmp_path / "o"),
         "--size", "32", "--views", "1", "--test-per-concept", "1", "--negatives", "0", "--quiet"]
    )  # fmt: skip
    assert args.func(args) == 0
    assert (tmp_path / "o/toy_manifest.json").is_file()
    assert "2 concepts" in capsys.readouterr().out


def test_cli_reports_bad_requests_with_exit_code_2(tmp_path, capsys):
    args = _parser().parse_args(
        ["toy", "export", "--layout", "yollava", "--concepts", "999", "--out", str(tmp_path / "o"), "--quiet"]
    )
    assert args.func(args) == 2
    assert "ask for fewer concepts" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _parser().parse_args(["toy", "export", "--layout", "coco", "--concepts", "2", "--out", "x"])


def test_other_modules_can_add_commands_to_the_toy_group():
    def register_train(commands):
        p = commands.add_parser("train")
        p.set_defaults(func=lambda args: 0)

    args = _parser(extra=[register_train]).parse_args(["toy", "train"])
    assert args.toy_command == "train" and args.func(args) == 0


def test_mask_folder_holds_calibration_pairs_with_the_main_objects_exact_mask(tmp_path: Path):
    from ego_ros.core.calibration import folder_pairs
    from ego_ros.toy.export import export_mask_folder

    assert export_mask_folder(tmp_path, 3, seed=5) == 3
    pairs = folder_pairs(tmp_path)
    assert len(pairs) == 3
    image = cv2.imread(str(pairs[0][0]))
    mask = cv2.imread(str(pairs[0][1]), cv2.IMREAD_GRAYSCALE)
    assert image.shape == (64, 64, 3) and mask.shape == (64, 64)
    assert set(np.unique(mask)) <= {0, 255} and 0 < (mask > 0).mean() < 0.5


def test_a_small_object_export_draws_its_test_objects_at_the_sizes_asked_for(tmp_path):
    manifest = export(tmp_path, "yollava", 2, seed=1, query_object_size=(0.08, 0.1), **TINY)
    tests = [r for r in manifest["images"].values() if r["role"] == "test"]
    refs = [r for r in manifest["images"].values() if r["role"] == "reference"]
    sizes = [o["size"] for r in tests for o in r["spec"]["objects"]]
    assert sizes and all(0.08 <= s <= 0.1 for s in sizes)
    assert manifest["arguments"]["query_object_size"] == [0.08, 0.1]
    assert max(o["size"] for r in refs for o in r["spec"]["objects"][:1]) > 0.1  # references keep their size


def test_a_query_object_size_outside_the_image_is_refused(tmp_path):
    with pytest.raises(ExportError, match="query object size"):
        export(tmp_path, "yollava", 2, seed=1, query_object_size=(0.2, 1.5), **TINY)
