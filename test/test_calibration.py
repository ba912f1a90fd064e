"""Layer calibration (paper 3.4): overlap of top-K keyword-attention tokens with object masks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import random_image
from PIL import Image

from ego_ros.core.calibration import (
    Calibration,
    calibrate,
    coco_pairs,
    folder_pairs,
    layer_overlaps,
)
from ego_ros.core.errors import CalibrationError, ModelMismatchError
from ego_ros.core.introduce import describe_with_attention
from ego_ros.core.sequence import Runner


def _mask(h=64, w=64, box=(8, 8, 40, 40)):
    m = np.zeros((h, w), bool)
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] = True
    return m


@torch.no_grad()
def test_layer_overlap_is_the_share_of_top_k_tokens_on_the_mask(llava):
    img, mask = random_image(1), _mask()
    scores = layer_overlaps(llava, Runner(llava), img, mask, top_k=4, max_new_tokens=5)
    vt = llava.encode_images([img])[0]
    on = vt.mask_fraction(mask) >= 0.5
    ka, _ = describe_with_attention(llava, Runner(llava), vt, None, 5)
    for layer in range(llava.num_layers):
        top = torch.topk(ka.importance([layer]), 4).indices.numpy()
        assert scores[layer] == pytest.approx(on[top].mean())


def test_calibrate_keeps_the_best_layers_and_round_trips(tmp_path, llava):
    pairs = [(random_image(i), _mask()) for i in range(3)]
    cal = calibrate(llava, pairs, num_layers=2, max_new_tokens=4)
    assert len(cal.layers) == 2 and cal.samples == 3 and len(cal.layer_scores) == llava.num_layers
    best = sorted(range(llava.num_layers), key=lambda i: (-cal.layer_scores[i], i))[:2]
    assert cal.layers == sorted(best)
    path = cal.save(tmp_path / "cal.json")
    loaded = Calibration.load(path, fingerprint=llava.fingerprint(), num_layers=llava.num_layers)
    assert loaded.layers == cal.layers


def test_a_calibration_file_is_readable_by_everyone_unlike_concept_memories(tmp_path):
    cal = Calibration(layers=[0], layer_scores=[1.0], top_k=None, samples=1, fingerprint="x", model="m")
    assert cal.save(tmp_path / "cal.json").stat().st_mode & 0o777 == 0o644


def test_calibration_of_another_model_is_refused(tmp_path, llava):
    cal = Calibration(layers=[0], layer_scores=[1.0], top_k=None, samples=1, fingerprint="x", model="other")
    path = cal.save(tmp_path / "cal.json")
    with pytest.raises(ModelMismatchError):
        Calibration.load(path, fingerprint=llava.fingerprint())


def test_calibration_layers_must_exist_in_the_model(tmp_path):
    path = Calibration(layers=[7], layer_scores=[0.0], top_k=None, samples=1, fingerprint="x",
                       model="m").save(tmp_path / "c.json")
    with pytest.raises(CalibrationError, match="do not fit"):
        Calibration.load(path, num_layers=4)
    (tmp_path / "bad.json").write_text("[]")
    with pytest.raises(CalibrationError, match="not a valid calibration"):
        Calibration.load(tmp_path / "bad.json")


def test_empty_mask_and_mismatched_mask_are_clear_errors(llava):
    with pytest.raises(CalibrationError, match="covers no visual token"):
        calibrate(llava, [(random_image(1), np.zeros((64, 64), bool))])
    with pytest.raises(CalibrationError, match="does not match"):
        calibrate(llava, [(random_image(1), np.zeros((10, 10), bool))])
    with pytest.raises(CalibrationError, match="no calibration pairs"):
        calibrate(llava, [])


def test_a_calibration_file_written_before_self_calibration_loads_as_mask_based(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"layers": [1], "layer_scores": [0.1, 0.2], "top_k": None, "samples": 3,
                                "fingerprint": "x", "model": "m", "mask_threshold": 0.5, "created": 0.0}))
    cal = Calibration.load(path)
    assert cal.method == "masks" and cal.path == str(path)


def test_a_calibration_file_with_an_unknown_method_is_refused(tmp_path):
    path = Calibration(layers=[0], layer_scores=[1.0], top_k=None, samples=1, fingerprint="x", model="m",
                       method="guess").save(tmp_path / "c.json")
    with pytest.raises(CalibrationError, match="unknown calibration method"):
        Calibration.load(path)


def test_folder_pairs_match_images_and_masks_by_stem(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    random_image(1).save(tmp_path / "images" / "a.jpg")
    Image.fromarray(_mask().astype(np.uint8) * 255).save(tmp_path / "masks" / "a.png")
    assert folder_pairs(tmp_path) == [(tmp_path / "images" / "a.jpg", tmp_path / "masks" / "a.png")]
    random_image(2).save(tmp_path / "images" / "b.jpg")
    with pytest.raises(CalibrationError, match="no mask"):
        folder_pairs(tmp_path)


def test_coco_pairs_use_single_instance_images_and_rasterise_polygons(tmp_path):
    data = {
        "images": [{"id": 1, "file_name": "one.jpg", "height": 20, "width": 30},
                   {"id": 2, "file_name": "two.jpg", "height": 20, "width": 30}],
        "annotations": [
            {"image_id": 1, "segmentation": [[5, 5, 15, 5, 15, 15, 5, 15]], "iscrowd": 0, "category_id": 3},
            {"image_id": 2, "segmentation": [[0, 0, 4, 0, 4, 4]], "iscrowd": 0, "category_id": 1},
            {"image_id": 2, "segmentation": [[9, 9, 12, 9, 12, 12]], "iscrowd": 0, "category_id": 1},
        ],
    }
    ann = tmp_path / "instances.json"
    ann.write_text(json.dumps(data))
    pairs = coco_pairs(ann, tmp_path)
    assert len(pairs) == 1 and pairs[0][0] == tmp_path / "one.jpg"
    mask = pairs[0][1]
    assert mask.shape == (20, 30) and mask[10, 10] and not mask[2, 2] and mask.sum() == 121
