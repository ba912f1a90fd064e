"""Refusing what the backends do not model: static checks of LLaVA towers and processors, and the
load-time probe check of every family against the model's own processor."""

from __future__ import annotations

import json
import logging

import pytest
import transformers
from conftest import FAMILIES, IMAGE_PX, random_image

from ego_ros.cli import main
from ego_ros.core.backends.families import BACKENDS
from ego_ros.core.backends.llava import LlavaBackend
from ego_ros.core.backends.qwen import Qwen25VLBackend
from ego_ros.core.errors import ModelLoadError
from ego_ros.core.loading import load_backend
from ego_ros.core.random_models import _text_config, build_family_processor, build_random_model, build_tokenizer

PIXTRAL_TOKENS = ["[IMG]", "[IMG_BREAK]", "[IMG_END]"]


def save_pixtral_llava(path):
    """A tiny LLaVA-type checkpoint with a Pixtral tower, saved the way transformers ships Pixtral-12B
    (model_type llava, PixtralImageProcessor, a PixtralProcessor config)."""
    tok = build_tokenizer("llava")
    tok.add_special_tokens({"additional_special_tokens": ["<image>", *PIXTRAL_TOKENS]})
    ids = {t: tok.convert_tokens_to_ids(t) for t in [*PIXTRAL_TOKENS, "<|im_end|>", "<|endoftext|>"]}
    vcfg = transformers.PixtralVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                            num_attention_heads=2, image_size=64, patch_size=8)
    tcfg = _text_config("llama", len(tok), 64, 2, 4, 2, 128, eos_token_id=ids["<|im_end|>"],
                        pad_token_id=ids["<|endoftext|>"])
    cfg = transformers.LlavaConfig(vision_config=vcfg, text_config=tcfg, image_token_index=ids["[IMG]"],
                                   vision_feature_layer=-1, vision_feature_select_strategy="full")
    transformers.LlavaForConditionalGeneration(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    transformers.PixtralImageProcessorPil(size={"longest_edge": 64}, patch_size=8).save_pretrained(path)
    # PixtralProcessor itself needs torchvision to be built; its saved config is plain JSON
    (path / "processor_config.json").write_text(json.dumps({
        "processor_class": "PixtralProcessor", "patch_size": 8, "spatial_merge_size": 1, "image_token": "[IMG]",
        "image_break_token": "[IMG_BREAK]", "image_end_token": "[IMG_END]"}))
    return path


def test_a_llava_directory_with_a_pixtral_tower_is_refused_by_introduce_with_the_reason(tmp_path, capsys):
    model = save_pixtral_llava(tmp_path / "pixtral")
    picture = tmp_path / "view.png"
    random_image(0, (640, 360)).save(picture)
    store = tmp_path / "store"
    code = main(["introduce", "--model", str(model), "--store", str(store), "--name", "kona", str(picture)])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert "Pixtral tower" in err and "[IMG_BREAK]" in err and "refused" in err
    assert not any(store.glob("**/*.safetensors"))


def _llava(vision: str = "siglip"):
    return build_random_model("llava", image_px=IMAGE_PX["llava"], vision=vision)


@pytest.mark.parametrize("vision,strategy", [("clip", "full"), ("siglip", "default")])
def test_a_feature_selection_that_leaves_no_square_grid_is_refused(vision, strategy):
    rm = _llava(vision)
    rm.model.config.vision_feature_select_strategy = strategy
    with pytest.raises(ModelLoadError, match="vision_feature_select_strategy"):
        LlavaBackend(rm.model, rm.tokenizer, rm.image_processor)


def test_a_clip_processor_resizing_by_aspect_without_a_crop_is_refused():
    rm = _llava("clip")
    proc = transformers.CLIPImageProcessorPil(size={"shortest_edge": 32}, do_center_crop=False)
    with pytest.raises(ModelLoadError, match="resizes by aspect ratio"):
        LlavaBackend(rm.model, rm.tokenizer, proc)


def test_a_processor_whose_size_differs_from_the_tower_is_refused():
    rm = _llava()
    proc = transformers.SiglipImageProcessorPil(size={"height": 48, "width": 48})
    with pytest.raises(ModelLoadError, match="makes 48x48 px images but the tower takes 32x32"):
        LlavaBackend(rm.model, rm.tokenizer, proc)


def test_a_processor_that_does_not_resize_is_refused():
    rm = _llava()
    proc = transformers.SiglipImageProcessorPil(size={"height": 32, "width": 32}, do_resize=False)
    with pytest.raises(ModelLoadError, match="does not resize"):
        LlavaBackend(rm.model, rm.tokenizer, proc)


def test_an_image_processor_of_another_kind_is_refused():
    rm = _llava()
    proc = transformers.LlavaImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    with pytest.raises(ModelLoadError, match="LlavaImageProcessor"):
        LlavaBackend(rm.model, rm.tokenizer, proc)


@pytest.mark.parametrize("vision", ["siglip", "clip"])
def test_a_tower_input_that_is_no_whole_number_of_patches_is_accepted_and_probed(vision):
    # 36 px of 8 px patches (4 x 4 tokens over 32 px), as SigLIP-384/14 in LLaVA-interleave (27 x 27 over 378)
    rm = build_random_model("llava", image_px=36, vision=vision)
    backend = LlavaBackend(rm.model, rm.tokenizer, rm.image_processor)
    backend.check_processor(rm.processor)
    vt = backend.encode_images([random_image(0, (72, 72))])[0]
    assert (vt.rows, vt.box) == (4, (0.0, 0.0, 64.0, 64.0))


#: SmolVLMProcessor cannot be built here (it needs num2words and a torchvision video processor, neither
#: installed); its framing is checked against SmolVLM's own prompt code in test_idefics3.py instead.
WITH_PROCESSOR = [f for f in FAMILIES if f != "smolvlm"]


@pytest.mark.parametrize("family", WITH_PROCESSOR)
def test_the_probe_check_passes_for_every_family(family):
    rm = build_random_model(family, image_px=IMAGE_PX[family])
    backend = BACKENDS[family](rm.model, rm.tokenizer, rm.image_processor)
    checked = backend.check_processor(rm.processor)
    assert "on a 640x360 probe image" in checked


@pytest.mark.parametrize("family,max_tiles", [
    ("internvl", 1), ("internvl", 6), ("llava_next", 1), ("llava_onevision", 2)])
def test_the_probe_check_asks_the_processor_for_the_backends_tiles(family, max_tiles):
    rm = build_random_model(family, image_px=IMAGE_PX[family])
    backend = BACKENDS[family](rm.model, rm.tokenizer, rm.image_processor, max_tiles=max_tiles)
    backend.check_processor(rm.processor)


@pytest.mark.parametrize("family", WITH_PROCESSOR)
def test_a_saved_directory_of_every_family_loads_with_its_probe_passed(family, tmp_path):
    build_random_model(family, image_px=IMAGE_PX[family]).save(tmp_path / family)
    backend = load_backend(str(tmp_path / family))
    assert backend.probe_status.startswith("passed: ")


def test_a_processor_that_disagrees_with_the_tower_is_caught_naming_both_counts(llava):
    # the model's processor thinks the tower cuts 4 px patches (64 tokens of a 32 px image); the tower cuts 8 px
    proc = build_family_processor("llava", llava.model, llava.tokenizer, llava.image_processor)
    proc.patch_size = 4
    with pytest.raises(ModelLoadError, match="makes 16 visual tokens .* makes 64"):
        llava.check_processor(proc)


class TransposedQwen(Qwen25VLBackend):
    """A deliberately broken backend: the right token count on a transposed grid."""

    def encode_images(self, images, max_pixels=None):
        out = super().encode_images(images, max_pixels)
        for vt in out:
            vt.rows, vt.cols = vt.cols, vt.rows
        return out


def test_a_backend_with_the_wrong_grid_is_caught():
    rm = build_random_model("qwen2_5_vl", image_px=IMAGE_PX["qwen2_5_vl"])
    backend = TransposedQwen(rm.model, rm.tokenizer, rm.image_processor)
    with pytest.raises(ModelLoadError, match="5x3 grid but the model's processor makes 3x5"):
        backend.check_processor(rm.processor)


def test_a_mismatch_at_load_refuses_the_model(tmp_path):
    rm = _llava()
    rm.processor.patch_size = 4
    rm.save(tmp_path / "m")
    with pytest.raises(ModelLoadError, match="refused: .*makes 16 visual tokens"):
        load_backend(str(tmp_path / "m"))


def test_a_directory_without_a_processor_config_loads_with_the_probe_skipped_and_a_warning(tmp_path, caplog):
    rm = _llava()
    rm.processor = None
    rm.save(tmp_path / "m")
    with caplog.at_level(logging.WARNING, logger="ego_ros.core.loading"):
        backend = load_backend(str(tmp_path / "m"))
    assert backend.probe_status.startswith("skipped: ")
    assert "no probe check" in caplog.text


def test_random_specs_are_probed_at_load_and_say_so_in_their_description():
    backend = load_backend("random:llava")
    assert backend.probe_status.startswith("passed: ")
    assert backend.describe()["probe"] == backend.probe_status


def test_the_embedded_toy_model_passes_its_probe():
    assert load_backend("toy").probe_status == "passed: 64 visual tokens, grid 8x8, on a 640x360 probe image"
