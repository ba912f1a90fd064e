"""`ego-ros introduce` / `recognize` on a model saved as a directory, as a user would run them: every family.

The tiny random model of each family is written with save_pretrained (model, tokenizer, image processor)
and loaded back from that directory by the CLI, so loading must find each family's classes and processor.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import FAMILIES, IMAGE_PX, random_image

from ego_ros.cli import main
from ego_ros.core.backends.families import BACKENDS
from ego_ros.core.loading import load_backend
from ego_ros.core.random_models import build_random_model

#: a very large, non-square camera frame
FULL_HD = (1920, 1080)


@pytest.fixture(scope="module", params=FAMILIES)
def saved(request, tmp_path_factory):
    """(family, the random model, the directory it was saved to)."""
    family = request.param
    path = tmp_path_factory.mktemp(f"saved_{family}")
    rm = build_random_model(family, image_px=IMAGE_PX[family])
    rm.save(path)
    return family, rm, path


def _cli(capsys, *argv) -> dict:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


@pytest.mark.slow
def test_introduce_from_two_views_then_recognise_a_full_hd_frame_with_a_saved_model(saved, tmp_path, capsys):
    _, _, path = saved
    views = []
    for i, size in enumerate([(64, 64), (90, 50)]):  # two views of different sizes and shapes
        views.append(str(tmp_path / f"view{i}.png"))
        random_image(i, size).save(views[-1])
    frame = str(tmp_path / "frame.png")
    random_image(9, FULL_HD).save(frame)
    store = str(tmp_path / "store")
    fast = ["--model", str(path), "--store", store]
    intro = _cli(capsys, "introduce", *fast, "--name", "kona", *views)
    assert intro["name"] == "kona" and len(intro["k_c"]) == 2 and all(k >= 1 for k in intro["k_c"])
    listed = _cli(capsys, "concepts", *fast, "list")
    assert [c["name"] for c in listed["concepts"]] == ["kona"]
    rec = _cli(capsys, "recognize", *fast, frame)
    assert set(rec["probabilities"]) == {"kona"}
    assert 0.0 <= rec["probabilities"]["kona"] <= 1.0


@torch.no_grad()
def test_a_saved_model_directory_loads_into_its_family_with_the_same_visual_tokens(saved):
    family, rm, path = saved
    backend = load_backend(str(path))
    assert backend.family == family
    original = BACKENDS[family](rm.model, rm.tokenizer, rm.image_processor)
    img = random_image(3, (80, 60))
    (got,), (want,) = backend.encode_images([img]), original.encode_images([img])
    assert (got.rows, got.cols) == (want.rows, want.cols)
    torch.testing.assert_close(got.embeds, want.embeds, atol=1e-5, rtol=1e-5)
