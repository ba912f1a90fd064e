"""Self-calibration: layers ranked by the spatial coherence of their keyword attention, without masks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import random_image

from ego_ros.cli import main
from ego_ros.core.backends.base import VisualTokens
from ego_ros.core.calibration import Calibration
from ego_ros.core.errors import CalibrationError
from ego_ros.core.loading import TOY_MODEL_DIR, load_backend
from ego_ros.core.self_calibration import folder_images, morans_i, neighbour_pairs, self_calibrate
from ego_ros.toy.export import export_mask_folder


def _brute_force_morans_i(x: np.ndarray, rows: int, cols: int) -> float:
    n = rows * cols
    w = np.zeros((n, n))
    for a in range(n):
        for b in range(n):
            (ra, ca), (rb, cb) = divmod(a, cols), divmod(b, cols)
            w[a, b] = abs(ra - rb) + abs(ca - cb) == 1
    z = x - x.mean()
    return float(n / w.sum() * (z @ w @ z) / (z @ z))


def _grid_pairs(rows: int, cols: int, box=(0.0, 0.0, 64.0, 48.0)) -> np.ndarray:
    vt = VisualTokens(torch.zeros(rows * cols, 1), rows, cols, box, (64, 48))
    return neighbour_pairs(vt.token_boxes())


def test_grid_neighbours_are_the_four_neighbourhood_in_both_directions():
    pairs = {tuple(p) for p in _grid_pairs(3, 7, box=(0.0, 0.0, 64.0, 48.0))}
    expected = {(r * 7 + c, r2 * 7 + c2) for r in range(3) for c in range(7) for r2 in range(3) for c2 in range(7)
                if abs(r - r2) + abs(c - c2) == 1}
    assert pairs == expected


def test_tokens_of_another_size_are_not_neighbours():
    # a 2x2 grid beside the first column of tokens twice its size, as a thumbnail sits beside tiles
    small = VisualTokens(torch.zeros(4, 1), 2, 2, (0.0, 0.0, 32.0, 32.0), (64, 32)).token_boxes()
    large = np.array([[32.0, 0.0, 64.0, 32.0]])
    assert {tuple(p) for p in neighbour_pairs(np.concatenate([small, large]))} == {
        (0, 1), (1, 0), (2, 3), (3, 2), (0, 2), (2, 0), (1, 3), (3, 1)}


def test_morans_i_is_the_textbook_statistic_on_a_grid():
    maps = torch.rand(3, 5 * 7, generator=torch.Generator().manual_seed(0))
    got = morans_i(maps, _grid_pairs(5, 7))
    for m, value in zip(maps, got):
        assert value.item() == pytest.approx(_brute_force_morans_i(m.double().numpy(), 5, 7))


def test_one_blob_is_coherent_a_checkerboard_is_not_and_a_constant_map_scores_zero():
    blob = torch.zeros(8, 8)
    blob[2:5, 3:6] = 1.0
    checker = (torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2
    scores = morans_i(torch.stack([blob.reshape(-1), checker.reshape(-1).float(), torch.ones(64)]),
                      _grid_pairs(8, 8))
    assert scores[0] > 0.5 and scores[1] == pytest.approx(-1.0) and scores[2] == 0.0


@pytest.fixture(scope="module")
def toy_masks(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy_masks")
    export_mask_folder(out, count=8, seed=0)
    return out


@pytest.fixture(scope="module")
def toy():
    return load_backend("toy")


def test_self_calibration_on_the_toy_model_is_deterministic(toy, toy_masks):
    images = folder_images(toy_masks)
    first = self_calibrate(toy, images, num_layers=2, max_new_tokens=8)
    second = self_calibrate(toy, images, num_layers=2, max_new_tokens=8)
    assert first.layers == second.layers and first.layer_scores == second.layer_scores
    assert first.method == "self" and first.samples == 8 and len(first.layers) == 2
    ranked = sorted(range(4), key=lambda i: (-first.layer_scores[i], i))
    assert first.layers == sorted(ranked[:2])


@pytest.mark.slow
def test_self_calibration_on_64_toy_views_keeps_the_layers_the_mask_calibration_keeps(toy, tmp_path):
    export_mask_folder(tmp_path, count=64, seed=0)  # the views the shipped mask calibration was made from
    cal = self_calibrate(toy, folder_images(tmp_path), num_layers=2)
    shipped = Calibration.load(TOY_MODEL_DIR / "ego_calibration.json")
    assert cal.layers == shipped.layers == [0, 1]


def test_no_images_is_a_clear_error(toy, tmp_path):
    with pytest.raises(CalibrationError, match="no calibration images"):
        self_calibrate(toy, [])
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(CalibrationError, match="no images"):
        folder_images(tmp_path)


def test_folder_images_reads_images_or_the_folder_itself_and_skips_other_files(tmp_path):
    random_image(0).save(tmp_path / "b.png")
    random_image(1).save(tmp_path / "a.jpg")
    (tmp_path / "readme.txt").write_text("x")
    assert folder_images(tmp_path) == [tmp_path / "a.jpg", tmp_path / "b.png"]
    (tmp_path / "images").mkdir()
    random_image(2).save(tmp_path / "images" / "c.png")
    assert folder_images(tmp_path) == [tmp_path / "images" / "c.png"]


def test_calibrate_without_masks_self_calibrates_and_the_engine_says_so(toy_masks, tmp_path, capsys):
    images = tmp_path / "unlabeled"
    images.mkdir()
    for p in sorted((toy_masks / "images").iterdir())[:3]:
        (images / p.name).write_bytes(p.read_bytes())
    out = tmp_path / "self.json"
    assert main(["calibrate", "--model", "toy", "--images", str(images), "--num-layers", "2",
                 "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["method"] == "self" and printed["samples"] == 3 and "coherence" in printed["top_layers"][0]
    assert main(["introduce", "--model", "toy", "--calibration", str(out), "--store", str(tmp_path / "store"),
                 "--name", "kona", str(sorted(images.iterdir())[0])]) == 0
    captured = capsys.readouterr()
    assert f"self-calibrated (calibration file {out}" in captured.err
    assert json.loads(captured.out)["attention_layers"]["source"] == "self-calibration"


def test_calibrate_with_a_masks_folder_uses_the_masks(toy_masks, tmp_path, capsys):
    assert main(["calibrate", "--model", "toy", "--folder", str(toy_masks), "--limit", "2", "--num-layers", "1",
                 "--out", str(tmp_path / "c.json")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["method"] == "masks" and "overlap" in printed["top_layers"][0]


def test_self_calibration_refuses_coco_annotations(tmp_path, capsys):
    code = main(["calibrate", "--model", "toy", "--coco", "x.json", "--images", str(tmp_path), "--method", "self",
                 "--out", str(tmp_path / "c.json")])
    assert code == 2 and "--method self takes images without masks" in capsys.readouterr().err
