"""LLaVA-NeXT and LLaVA-OneVision: anyres crops, the packed layout, max_tiles, and the CLI on saved models."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import IMAGE_PX, random_image

from ego_ros.cli import main
from ego_ros.core.backends.families import BACKENDS
from ego_ros.core.compose import ContextEntry, query_sequence, view_sequence
from ego_ros.core.errors import InvalidImageError, ModelLoadError
from ego_ros.core.random_models import anyres_pinpoints, build_random_model
from ego_ros.core.sequence import Runner, VisualBlock

ANYRES = ["llava_next", "llava_onevision"]


def _backend(family: str, max_tiles: int | None = None, image_px: int | None = None, **kwargs):
    rm = build_random_model(family, image_px=image_px or IMAGE_PX[family], **kwargs)
    return BACKENDS[family](rm.model, rm.tokenizer, rm.image_processor, max_tiles=max_tiles)


def _memory_matches_native(backend, img) -> None:
    """A memory of all of `img`'s tokens, injected where the image would be, gives the native logits."""
    vt = backend.encode_images([img])[0]
    memory = VisualBlock.subset(vt, torch.arange(vt.count))
    seq = query_sequence(backend, [ContextEntry("kona", memory=[memory])], [], "Is it here?", mode="memory")
    native = backend.model(**backend.native_inputs(seq.ids, [img])).logits[0, -1].float()
    torch.testing.assert_close(Runner(backend).last_logits([seq])[0], native, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("family", ANYRES)
def test_a_non_square_image_is_a_base_grid_plus_the_unpadded_high_res_grid(backends, family):
    vt = backends[family].encode_images([random_image(0, (640, 360))])[0]
    base, high = vt.layout.grids
    assert (base.kind, base.rows, base.cols, base.box) == ("base", 4, 4, (0.0, 0.0, 640.0, 360.0))
    # the 2 x 2 pinpoint (64 x 64 px) holds the image as 64 x 36 px: unpadding keeps 4 of the 8 rows
    assert (high.kind, high.rows, high.cols) == ("highres", 4, 8)
    assert high.box[0] == 0.0 and high.box[2] == 640.0 and 0 < high.box[1] < high.box[3] < 360
    assert vt.embeds.shape[0] == 16 + 32


@pytest.mark.parametrize("family", ANYRES)
def test_a_full_block_is_framed_with_a_newline_after_each_high_res_row(backends, family):
    backend = backends[family]
    vt = backend.encode_images([random_image(1, (640, 360))])[0]
    seq = view_sequence(backend, vt, "What is it?")
    structural = [b for _, b in seq.blocks if b.structural]
    assert len(structural) == vt.layout.grids[1].rows
    torch.testing.assert_close(structural[0].embeds[0], backend.newline.detach().to(backend.dtype))
    assert seq.columns["image::0"].numel() == vt.count


@pytest.mark.parametrize("family", ANYRES)
def test_a_subset_memory_holds_only_its_kept_tokens(backends, family):
    backend = backends[family]
    vt = backend.encode_images([random_image(2, (640, 360))])[0]
    memory = VisualBlock.subset(vt, torch.tensor([0, 5, 20, 40]))
    seq = query_sequence(backend, [ContextEntry("kona", memory=[memory])], [], "Is it here?", mode="memory")
    assert seq.ids.count(backend.placeholder_id) == 4
    assert not any(b.structural for _, b in seq.blocks)


@pytest.mark.parametrize("family", ANYRES)
@pytest.mark.parametrize("size", [(4000, 3000), (3000, 200)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_very_large_and_extreme_images_match_the_native_logits(backends, family, size):
    # 3000 x 200 unpads to no high-res row: the base grid alone, as the model packs it
    _memory_matches_native(backends[family], random_image(3, size))


@pytest.mark.parametrize("family", ANYRES)
def test_an_image_too_narrow_for_the_pinpoints_is_refused_with_the_reason(backends, family):
    with pytest.raises(InvalidImageError, match="90x1400 image is too narrow"):
        backends[family].encode_images([random_image(3, (90, 1400))])


def test_onevision_downsamples_a_high_res_grid_beyond_its_aspect_ratio_bound_as_the_model_does():
    backend = _backend("llava_onevision", vision_aspect_ratio="anyres_max_1")
    img = random_image(4, (64, 64))  # the 2 x 2 pinpoint: an 8 x 8 grid, twice the bound's side
    high = backend.encode_images([img])[0].layout.grids[1]
    assert (high.rows, high.cols) == (4, 4)
    _memory_matches_native(backend, img)


@pytest.mark.parametrize("family", ANYRES)
def test_two_views_of_different_sizes_take_different_pinpoints_and_both_match_native(backends, family):
    backend = backends[family]
    wide, tall = random_image(5, (300, 100)), random_image(6, (100, 300))
    a, b = (backend.encode_images([img])[0].layout.grids[1] for img in (wide, tall))
    assert (a.rows, a.cols) != (b.rows, b.cols)
    views = backend.encode_images([wide, tall])
    memories = [VisualBlock.subset(vt, torch.arange(vt.count)) for vt in views]
    seq = query_sequence(backend, [ContextEntry("kona", memory=memories)], [], "Is it here?", mode="memory")
    native = backend.model(**backend.native_inputs(seq.ids, [wide, tall])).logits[0, -1].float()
    torch.testing.assert_close(Runner(backend).last_logits([seq])[0], native, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("family", ANYRES)
def test_max_tiles_bounds_the_crops_and_equals_a_model_with_only_those_pinpoints(backends, family):
    img = random_image(7, (64, 64))
    assert backends[family].encode_images([img])[0].layout.grids[1].rows == 8  # the 2 x 2 pinpoint
    backend = _backend(family, max_tiles=2)
    assert all(h * w <= 2 * 32 * 32 for h, w in backend.pinpoints())
    high = backend.encode_images([img])[0].layout.grids[1]
    assert (high.rows, high.cols) == (4, 4)  # one crop: 1 x 2 would resolve the square no finer
    # the same weights with the pinpoints of at most 2 crops as their own config: the native path agrees
    backend.model.config.image_grid_pinpoints = backend.pinpoints()
    _memory_matches_native(backend, img)


@pytest.mark.parametrize("family", ANYRES)
def test_a_pixel_budget_tightens_the_crops_of_a_reference_view(backends, family):
    backend = backends[family]
    assert backend.pinpoints(max_pixels=32 * 32) == [[32, 32]]
    high = backend.encode_images([random_image(8, (64, 64))], max_pixels=32 * 32)[0].layout.grids[1]
    assert (high.rows, high.cols) == (4, 4)


def test_max_tiles_that_no_pinpoint_fits_is_refused(backends):
    with pytest.raises(ValueError, match="whole number"):
        backends["llava_next"].set_max_tiles(0)
    rm = build_random_model("llava_next", image_px=32)
    rm.model.config.image_grid_pinpoints = rm.image_processor.image_grid_pinpoints = [[64, 64]]
    with pytest.raises(ValueError, match="no grid pinpoint"):
        BACKENDS["llava_next"](rm.model, rm.tokenizer, rm.image_processor, max_tiles=2)


def test_a_feature_selection_that_leaves_no_square_crop_grid_is_refused():
    rm = build_random_model("llava_onevision", image_px=32)
    rm.model.config.vision_feature_select_strategy = "default"  # would drop a SigLIP patch, not a CLS token
    with pytest.raises(ModelLoadError, match="vision_feature_select_strategy"):
        BACKENDS["llava_onevision"](rm.model, rm.tokenizer, rm.image_processor)


def test_a_processor_with_other_pinpoints_than_the_model_is_refused():
    rm = build_random_model("llava_onevision", image_px=32)
    rm.image_processor.image_grid_pinpoints = anyres_pinpoints(32)[:2]
    with pytest.raises(ModelLoadError, match="image_grid_pinpoints differ"):
        BACKENDS["llava_onevision"](rm.model, rm.tokenizer, rm.image_processor)


@pytest.mark.slow
@pytest.mark.parametrize("family", ANYRES)
def test_introduce_and_recognize_on_a_saved_directory(family, tmp_path, capsys):
    model = build_random_model(family, image_px=IMAGE_PX[family]).save(tmp_path / family)
    views = []
    for i, size in enumerate([(640, 360), (200, 300)]):
        views.append(str(tmp_path / f"{i}.png"))
        random_image(i, size).save(views[-1])
    store = str(tmp_path / "store")
    code = main(["introduce", "--model", str(model), "--store", store, "--name", "kona", *views])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert len(json.loads(out)["k_c"]) == 2
    frame = tmp_path / "frame.png"
    random_image(9, (1280, 720)).save(frame)
    code = main(["recognize", "--model", str(model), "--store", store, str(frame)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert 0.0 <= json.loads(out)["probabilities"]["kona"] <= 1.0


@pytest.mark.parametrize("family", ANYRES)
def test_crops_that_are_no_whole_number_of_patches_are_modelled_like_siglip_384_14(family):
    # 36 px crops of 8 px patches: 4 x 4 tokens covering 32 px, as 384 px crops of 14 px patches give 27 x 27
    backend = _backend(family, image_px=36)
    img = random_image(10, (100, 60))
    base = backend.encode_images([img])[0].layout.grids[0]
    assert base.rows == 4 and base.box == pytest.approx((0.0, 0.0, 100 * 32 / 36, 60 * 32 / 36))
    _memory_matches_native(backend, img)
    rm = build_random_model(family, image_px=36)
    backend.check_processor(rm.processor)


#: the published crop geometry: LLaVA-v1.6 (CLIP-336/14, 24 x 24 per crop, its five pinpoints) and
#: LLaVA-OneVision (SigLIP-384/14, 27 x 27 per crop over 378 px, its processor's 36 pinpoints)
PUBLISHED = {"llava_next": dict(vision="clip", image_px=336, patch_px=14,
                                pinpoints=[[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]),
             "llava_onevision": dict(image_px=384, patch_px=14,
                                     pinpoints=[[384 * r, 384 * c] for r in range(1, 7) for c in range(1, 7)])}


@pytest.mark.slow
@pytest.mark.parametrize("family", ANYRES)
def test_the_published_crop_geometry_passes_its_probe_and_matches_the_native_logits(family):
    rm = build_random_model(family, **PUBLISHED[family])
    # every pinpoint allowed (OneVision's go up to 6 x 6 crops), as the model's own config has them
    backend = BACKENDS[family](rm.model, rm.tokenizer, rm.image_processor, max_tiles=36)
    checked = backend.check_processor(rm.processor)
    assert ("576" if family == "llava_next" else "729") not in checked  # more than one crop's tokens
    _memory_matches_native(backend, random_image(11, (1280, 720)))


@pytest.mark.slow
def test_a_very_large_image_on_onevisions_published_geometry_is_downsampled_as_the_model_does():
    rm = build_random_model("llava_onevision", **PUBLISHED["llava_onevision"])
    backend = BACKENDS["llava_onevision"](rm.model, rm.tokenizer, rm.image_processor, max_tiles=36)
    img = random_image(12, (3000, 3000))  # the 6 x 6 pinpoint: 162 x 162 cells, twice anyres_max_9's side
    high = backend.encode_images([img])[0].layout.grids[1]
    assert (high.rows, high.cols) == (81, 81)
    _memory_matches_native(backend, img)
