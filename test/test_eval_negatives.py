"""Specification of recognition by negative kind: the labels a toy export writes, read back by the
dataset readers, scored per kind by the runner and shown in the report."""

from __future__ import annotations

from pathlib import Path

import pytest

from ego_ros.eval.datasets import load_dataset
from ego_ros.eval.metrics import Decision
from ego_ros.eval.negatives import load_negative_kinds, negative_kind, negative_kind_breakdown
from ego_ros.eval.report import render_report
from ego_ros.toy.export import export

KINDS = {
    "a": {"a2": "lookalike", "b": "near_duplicate", "c": "other", "b2": "near_duplicate"},
    "a2": {"a": "lookalike", "b": "other", "c": "other", "b2": "other"},
    "b": {"b2": "lookalike", "a": "near_duplicate", "c": "other", "a2": "other"},
    "b2": {"b": "lookalike", "a": "near_duplicate", "a2": "other", "c": "other"},
}


def test_a_single_concept_negative_takes_the_hardest_relation_to_what_the_image_shows():
    assert negative_kind(("a",), ("a2",), KINDS) == "lookalike"
    assert negative_kind(("a",), ("c", "b"), KINDS) == "near_duplicate"
    assert negative_kind(("a",), ("c",), KINDS) == "other"
    assert negative_kind(("a",), ("zzz",), KINDS) is None
    assert negative_kind(("zzz",), ("a",), KINDS) is None


def test_a_pair_faces_a_lookalike_only_when_both_members_do():
    assert negative_kind(("a", "b"), ("a2", "b2"), KINDS) == "lookalike"
    assert negative_kind(("a", "b"), ("a2", "c"), KINDS) == "other"
    assert negative_kind(("a", "b"), ("a", "c"), KINDS) == "partial"


def test_the_breakdown_scores_all_positives_against_each_kind():
    d = [
        Decision("p1", "a", True, True, 0.9),
        Decision("p2", "a", True, False, 0.4),
        Decision("n1", "a", False, True, 0.6),  # look-alike above one positive
        Decision("n2", "a", False, False, 0.1),  # other
    ]
    kind = {"n1": "lookalike", "n2": "other"}
    out = negative_kind_breakdown(d, lambda x: kind[x.image])
    assert list(out) == ["lookalike", "other"]
    assert out["lookalike"] == {"negatives": 1, "auc": 0.5, "false_positive_rate": 1.0, "mean_probability": 0.6}
    assert out["other"]["auc"] == 1.0 and out["other"]["false_positive_rate"] == 0.0


def test_data_without_a_toy_manifest_has_no_labels(tmp_path: Path):
    assert load_negative_kinds(tmp_path) == {}
    (tmp_path / "toy_manifest.json").write_text("not json")
    assert load_negative_kinds(tmp_path) == {}


@pytest.fixture(scope="module")
def v2_exports(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("v2")
    tiny = {"size": 32, "views": 1, "test_per_concept": 2}
    export(root / "y", "yollava", 8, seed=0, world="v2", negatives=0, **tiny)
    export(root / "m", "thisismy-multi", 8, seed=0, world="v2", **tiny)
    return {"yollava": root / "y", "thisismy-multi": root / "m"}


def test_both_layouts_readers_load_the_exports_negative_kinds(v2_exports):
    y = load_dataset(f"yollava:{v2_exports['yollava']}")
    m = load_dataset(f"thisismy-multi:{v2_exports['thisismy-multi']}")
    for ds in (y, m):
        assert {c.name for c in ds.concepts} == set(ds.negative_kinds)
        kinds = {k for rel in ds.negative_kinds.values() for k in rel.values()}
        assert kinds == {"lookalike", "near_duplicate", "other"}


@pytest.mark.slow
def test_an_eval_run_on_a_v2_export_reports_recognition_per_negative_kind(v2_exports, tmp_path: Path):
    from ego_ros.eval.runner import run_eval

    res = run_eval(
        f"yollava:{v2_exports['yollava']}", "toy", "keywords", 1, tmp_path / "run", tasks=["recognition"],
        progress=False, recognition_context="each",
    )  # fmt: skip
    by_kind = res["metrics"]["recognition"]["by_negative_kind"]
    assert set(by_kind) == {"lookalike", "near_duplicate", "other"}
    # 8 concepts x 2 test images: each concept has one look-alike (2 images) and 2 or 0 near-duplicates
    assert by_kind["lookalike"]["negatives"] == 16
    assert sum(d["negatives"] for d in by_kind.values()) == 16 * 7
    assert "By negative kind" in render_report(res)
