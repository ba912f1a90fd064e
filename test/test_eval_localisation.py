"""The eval harness's `localisation` task: toy exports' exact masks, the scoring against them, and a run of
the task end to end on the embedded toy model (table and heatmap figure in the report)."""

import json

import numpy as np
import pytest

from ego_ros.eval.cache import CACHE_FILE, ResultCache
from ego_ros.eval.datasets import load_dataset, parse_dataset_spec
from ego_ros.eval.localisation import iou, localisation_metrics, mask_box, work_items
from ego_ros.eval.runner import run_eval
from ego_ros.toy.export import export
from ego_ros.toy.render import render, scene_spec_from_dict


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy") / "yollava-data"
    export(root, "yollava", 3, seed=0, views=2, test_per_concept=2, negatives=1)
    return root


@pytest.fixture(scope="module")
def toy(toy_root):
    return load_dataset(parse_dataset_spec(f"yollava:{toy_root}"), views=1)


def test_a_toy_export_offers_localisation_after_recognition(toy):
    assert toy.tasks[:2] == ("recognition", "localisation")


def test_data_without_a_toy_manifest_offers_no_localisation(toy_root, tmp_path):
    import shutil

    plain = tmp_path / "plain"
    shutil.copytree(toy_root, plain, ignore=shutil.ignore_patterns("toy_manifest.json"))
    ds = load_dataset(parse_dataset_spec(f"yollava:{plain}"), views=1)
    assert "localisation" not in ds.tasks and ds.masks is None


def test_the_masks_are_the_rendered_scenes_visible_pixels_of_each_named_object(toy, toy_root):
    manifest = json.loads((toy_root / "toy_manifest.json").read_text())
    sample = toy.recognition[0]
    rec = manifest["images"][toy.relpath(sample.image)]
    scene = render(scene_spec_from_dict(rec["spec"]), size=64)
    masks = toy.masks.masks(sample.image)
    assert set(masks) == set(sample.concepts)
    k = next(i for i, o in enumerate(rec["objects"]) if o["concept"] == sample.concepts[0])
    assert np.array_equal(masks[sample.concepts[0]], scene.masks[k])


def _cache_with(tmp_path, items, toy, place):
    """A cache holding, for each item, the location `place(mask)` gives (box, point) on a 8x8 grid."""
    cache = ResultCache(tmp_path / CACHE_FILE)
    for w in items:
        mask = toy.masks.masks(w.record.image).get(w.concept)
        if mask is None:  # hidden in its scene: not scored, so not looked up
            continue
        box, point = place(mask)
        cache.put(w.key, task=w.task, image=w.image, concept=w.concept, method="ego", settings="s", seconds=0.1,
                  result={"present": True, "probability": 0.9, "box": list(box), "point": list(point),
                          "score": 0.5, "map": "product", "heatmap": np.zeros((8, 8)).tolist(),
                          "extent": [0, 0, 64, 64], "image_size": [64, 64]})
    return cache


def test_a_point_on_the_mask_and_the_masks_own_box_score_full_marks(toy, tmp_path):
    items = work_items(toy, None, 0, "ego", "s")

    def exact(mask):
        ys, xs = np.nonzero(mask)
        return mask_box(mask), (xs[0] + 0.5, ys[0] + 0.5)

    m = localisation_metrics(items, _cache_with(tmp_path, items, toy, exact), toy.masks)
    assert m["cases"] + m["hidden"] == len(items) == len(toy.recognition) and m["cases"] > 0
    assert m["pointing"] == 1.0 and m["iou_mean"] == 1.0 and m["iou_ge_0.5"] == 1.0
    assert sum(v["cases"] for v in m["by_size"].values()) == m["cases"]
    assert m["baselines"]["centre"]["cases"] == m["cases"] and 0 <= m["baselines"]["random-token"]["pointing"] <= 1


def test_a_point_off_the_mask_misses_and_a_shifted_box_scores_its_overlap(toy, tmp_path):
    items = work_items(toy, None, 0, "ego", "s")

    def shifted(mask):
        x0, y0, x1, y1 = mask_box(mask)
        ys, xs = np.nonzero(~mask)
        return (x0 + (x1 - x0) / 2, y0, x1 + (x1 - x0) / 2, y1), (xs[0] + 0.5, ys[0] + 0.5)

    m = localisation_metrics(items, _cache_with(tmp_path, items, toy, shifted), toy.masks)
    assert m["pointing"] == 0.0
    assert m["iou_mean"] == pytest.approx(1 / 3)  # half the box overlaps: (w/2) / (w + w/2)


def test_iou_of_disjoint_and_nested_boxes():
    assert iou((0, 0, 2, 2), (3, 3, 4, 4)) == 0.0
    assert iou((0, 0, 4, 4), (0, 0, 2, 2)) == pytest.approx(0.25)


@pytest.mark.slow
def test_a_run_on_the_toy_model_reports_localisation_with_a_heatmap_figure_and_resumes_from_the_cache(
        toy_root, tmp_path):
    out = tmp_path / "run"
    spec = f"yollava:{toy_root}"
    first = run_eval(spec, "toy", "ego", 1, out, tasks=["recognition", "localisation"], progress=False)
    loc = first["metrics"]["localisation"]
    assert loc["cases"] + loc["hidden"] == first["dataset"]["counts"]["localisation"] == 6
    assert loc["map"] == "product" and 0.0 <= loc["pointing"] <= 1.0 and len(loc["examples"]) >= 1
    assert set(loc["baselines"]) == {"centre", "random-token"}
    report = (out / "report.md").read_text()
    assert "## Localisation" in report and "baseline: centre" in report
    assert (out / first["plots"]["localisation"]).is_file()
    again = run_eval(spec, "toy", "ego", 1, out, tasks=["recognition", "localisation"], progress=False)
    assert again["metrics"]["localisation"] == loc
