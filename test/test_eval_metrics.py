"""Metrics of the evaluation protocol against hand-computed cases."""

import math

import pytest

from ego_ros.eval.metrics import (
    Decision,
    accuracy_metrics,
    caption_recall,
    confusion_matrix,
    f1,
    group_decisions,
    precision,
    recall,
    recognition_metrics,
    roc_auc,
    timing_summary,
)

# Three concepts, four test images: a1, a2 show A; b1 shows B; c1 shows C.
# A is said present on a1 only (P 1, R 1/2), B on b1 and c1 (P 1/2, R 1), C nowhere (P 0 by convention, R 0).
SAMPLES = [("a1", ("A",)), ("a2", ("A",)), ("b1", ("B",)), ("c1", ("C",))]
GROUPS = [("A",), ("B",), ("C",)]
SAID = {("a1", "A"), ("b1", "B"), ("c1", "B")}


def single_concept_decisions() -> list[Decision]:
    preds = {(img, c): ((img, c) in SAID, 0.9 if (img, c) in SAID else 0.1) for img, _ in SAMPLES for (c,) in GROUPS}
    return group_decisions(SAMPLES, GROUPS, preds)


def test_per_concept_precision_recall_f1_match_hand_computation():
    per = recognition_metrics(single_concept_decisions())["per_group"]
    assert (per["A"]["tp"], per["A"]["fp"], per["A"]["fn"], per["A"]["tn"]) == (1, 0, 1, 2)
    assert (per["A"]["precision"], per["A"]["recall"]) == (1.0, 0.5)
    assert per["A"]["f1"] == pytest.approx(2 / 3)
    assert (per["B"]["precision"], per["B"]["recall"]) == (0.5, 1.0)
    assert per["B"]["f1"] == pytest.approx(2 / 3)


def test_never_predicted_concept_has_zero_precision_and_zero_f1():
    c = recognition_metrics(single_concept_decisions())["per_group"]["C"]
    assert (c["tp"], c["fp"], c["fn"]) == (0, 0, 1)
    assert c["precision"] == 0.0 and c["recall"] == 0.0 and c["f1"] == 0.0


def test_both_f1_conventions_are_reported_and_differ():
    m = recognition_metrics(single_concept_decisions())
    # mean P = (1 + 1/2 + 0)/3 = 1/2, mean R = (1/2 + 1 + 0)/3 = 1/2
    assert m["precision"] == pytest.approx(0.5) and m["recall"] == pytest.approx(0.5)
    assert m["f1_of_means"] == pytest.approx(0.5)
    # mean of per-concept F1 = (2/3 + 2/3 + 0)/3 = 4/9
    assert m["mean_f1"] == pytest.approx(4 / 9)


def test_accuracy_counts_every_image_concept_decision():
    m = recognition_metrics(single_concept_decisions())
    # 12 decisions; wrong: A on a2, B on c1, C on c1
    assert m["num_decisions"] == 12 and m["num_images"] == 4
    assert m["accuracy"] == pytest.approx(9 / 12)


def test_group_without_positives_is_excluded_from_averages():
    samples = [("a1", ("A",)), ("b1", ("B",))]
    groups = [("A",), ("B",), ("D",)]
    preds = {(i, c): (c == s[0], None) for i, s in samples for (c,) in groups}
    m = recognition_metrics(group_decisions(samples, groups, preds))
    assert m["excluded"] == ["D"]
    assert m["num_groups"] == 2
    assert m["precision"] == 1.0 and m["recall"] == 1.0
    assert m["per_group"]["D"]["recall"] is None and m["per_group"]["D"]["f1"] is None


def test_pair_counts_as_recognised_only_when_all_members_are():
    # Pairs (X, Y) and (X, Z); i1 shows X+Y, i2 shows X+Z.
    samples = [("i1", ("X", "Y")), ("i2", ("X", "Z"))]
    groups = [("X", "Y"), ("X", "Z")]
    preds = {
        ("i1", "X"): (True, 0.9),
        ("i1", "Y"): (True, 0.8),
        ("i1", "Z"): (True, 0.7),
        ("i2", "X"): (True, 0.9),
        ("i2", "Y"): (True, 0.6),
        ("i2", "Z"): (False, 0.2),
    }
    decisions = group_decisions(samples, groups, preds)
    by = {(d.image, d.group): d for d in decisions}
    assert by[("i1", "X + Y")].truth and by[("i1", "X + Y")].predicted
    assert not by[("i1", "X + Z")].truth and by[("i1", "X + Z")].predicted  # X and Z both said present
    assert by[("i2", "X + Z")].truth and not by[("i2", "X + Z")].predicted  # Z missed: pair missed
    assert by[("i2", "X + Y")].predicted  # X and Y said present on the X+Z image
    assert by[("i2", "X + Z")].probability == pytest.approx(0.2)  # the weakest member
    per = recognition_metrics(decisions)["per_group"]
    assert (per["X + Y"]["tp"], per["X + Y"]["fp"], per["X + Y"]["fn"]) == (1, 1, 0)
    assert (per["X + Z"]["tp"], per["X + Z"]["fp"], per["X + Z"]["fn"]) == (0, 1, 1)


def test_missing_prediction_is_an_error_naming_image_and_concept():
    with pytest.raises(ValueError, match="'B'.*'a1'"):
        group_decisions([("a1", ("A",))], [("A",), ("B",)], {("a1", "A"): (True, 1.0)})


def test_auc_counts_ties_as_one_half():
    # pairs (pos, neg): (.9,.5)=1 (.9,.1)=1 (.5,.5)=1/2 (.5,.1)=1 -> 3.5 / 4
    assert roc_auc([True, True, False, False], [0.9, 0.5, 0.5, 0.1]) == pytest.approx(0.875)


def test_auc_of_constant_scores_is_one_half():
    assert roc_auc([True, False, True, False], [0.3, 0.3, 0.3, 0.3]) == pytest.approx(0.5)


def test_auc_of_perfectly_inverted_scores_is_zero():
    assert roc_auc([True, False], [0.1, 0.9]) == 0.0


def test_auc_is_none_with_one_class_or_missing_scores():
    assert roc_auc([True, True], [0.1, 0.2]) is None
    assert roc_auc([True, False], [0.1, None]) is None
    assert roc_auc([True, False], [0.1, math.nan]) is None


def test_recognition_auc_pools_all_decisions_and_averages_groups():
    m = recognition_metrics(single_concept_decisions())
    # Pooled: 4 positives (a1/A .9, b1/B .9, a2/A .1, c1/C .1) and 8 negatives (c1/B .9, seven at .1).
    # A positive at .9 beats 7 and ties 1: 7.5 (x2); a positive at .1 ties 7: 3.5 (x2) -> 22 / 32.
    assert m["auc"] == pytest.approx(22 / 32)
    assert m["per_group"]["C"]["auc"] == pytest.approx(0.5)


def test_scalar_helpers_zero_denominators():
    assert precision(0, 0) == 0.0
    assert recall(0, 0) is None
    assert f1(0.0, 0.0) == 0.0
    assert f1(1.0, 0.5) == pytest.approx(2 / 3)


def test_confusion_matrix_rows_are_fractions_of_the_true_groups_images():
    names = ["A", "B", "C"]
    matrix = confusion_matrix(single_concept_decisions(), names)
    assert matrix[0] == [0.5, 0.0, 0.0]  # a1 yes, a2 no for A; B and C never on A images
    assert matrix[1] == [0.0, 1.0, 0.0]
    assert matrix[2] == [0.0, 1.0, 0.0]  # c1 was taken for B


def test_caption_recall_averages_groups_and_reports_micro_recall():
    m = caption_recall([("g1", True), ("g1", False), ("g2", True)])
    assert m["per_group"]["g1"] == {"hits": 1, "total": 2, "recall": 0.5}
    assert m["recall"] == pytest.approx(0.75)
    assert m["micro_recall"] == pytest.approx(2 / 3)


def test_accuracy_keeps_unscored_answers_apart():
    m = accuracy_metrics([("a", True), ("a", False), ("b", True), ("b", None)])
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["macro_accuracy"] == pytest.approx(0.75)
    assert (m["scored"], m["unscored"], m["total"]) == (3, 1, 4)


def test_accuracy_is_none_when_nothing_was_scored():
    m = accuracy_metrics([("a", None)])
    assert m["accuracy"] is None and m["unscored"] == 1


def test_timing_summary():
    t = timing_summary([1.0, 3.0, 2.0])
    assert (t["count"], t["total"], t["mean"], t["median"], t["min"], t["max"]) == (3, 6.0, 2.0, 2.0, 1.0, 3.0)
    assert timing_summary([])["mean"] is None
