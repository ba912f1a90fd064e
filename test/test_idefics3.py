"""The Idefics3 / SmolVLM backend against transformers' own processor and model.

The reference is `Idefics3Processor` for both families: SmolVLM's processor writes the very same image
strings (transformers 5.24, `processing_smolvlm.get_image_prompt_string`, checked on its own below) but
cannot be built here (it needs num2words and a torchvision video processor), and the two models are the
same modules.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import make_backend, random_image
from PIL import Image
from transformers import Idefics3ImageProcessorPil, Idefics3Processor

from ego_ros.cli import main
from ego_ros.core.backends.idefics3 import Idefics3Backend, SmolVLMBackend
from ego_ros.core.compose import ContextEntry, context_parts, query_sequence, view_sequence
from ego_ros.core.engine import EgoEngine, EngineConfig
from ego_ros.core.introduce import IntroduceOptions
from ego_ros.core.prompts import Slot, fill
from ego_ros.core.random_models import build_random_model
from ego_ros.core.sequence import Runner, VisualBlock

IDEFICS = ["idefics3", "smolvlm"]
QUESTION = "Is the mug here?"
#: a camera frame, a tall strip, a 1080p frame (the processor first upscales or downscales the longest edge)
SIZES = [(80, 60), (30, 200), (1920, 1080)]


@pytest.fixture(params=IDEFICS)
def idefics(request, backends):
    return backends[request.param]


@pytest.fixture(scope="module", params=IDEFICS)
def own_tiles(request):
    """A backend tiling exactly as its processor's own settings do (longest edge 4 tiles: up to 16)."""
    return _tiled(request.param, 16)


def _tiled(family: str, max_tiles: int):
    backend = make_backend(family)
    backend.set_max_tiles(max_tiles)
    return backend


def _processor(backend, count: int = 16) -> Idefics3Processor:
    return Idefics3Processor(image_processor=backend.image_processor, tokenizer=backend.tokenizer,
                             image_seq_len=count)


def _processor_text(backend, entries, n_images: int, question: str) -> str:
    """The engine's chat-formatted query (as `query_sequence` composes it) with `<image>` written where
    each visual slot (memory or image) is: the text a user of the processor would give it."""
    p = backend.prompts
    parts = backend.chat(fill(p.query, context=context_parts(backend, entries, "memory"),
                              images=[Slot("image", "", i) for i in range(n_images)], question=question))
    return "".join("<image>" if isinstance(part, Slot) else part for part in parts)


def _split_kwargs(backend, image) -> dict:
    """The processor call that tiles `image` as the backend does: its own settings, the longest edge the
    backend's `max_tiles` leads to, or no splitting."""
    longest, _ = backend.arrangement(image, backend.max_tiles)
    if not longest:
        return {}
    if longest == backend.image_processor.size["longest_edge"]:
        return {"do_image_splitting": True}
    return {"do_image_splitting": True, "size": {"longest_edge": longest}}


@pytest.mark.parametrize("max_tiles", [1, 6, 16])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@torch.no_grad()
def test_an_image_is_tiled_framed_and_answered_as_the_processor_and_model_do(size, max_tiles):
    for family in IDEFICS:
        backend = _tiled(family, max_tiles)
        img = random_image(3, size)
        vt = backend.encode_images([img])[0]
        assert len(vt.layout.tiles()) <= max_tiles and vt.layout.is_single == (max_tiles == 1)
        seq = view_sequence(backend, vt, QUESTION)
        native = _processor(backend)(text=_processor_text(backend, [], 1, QUESTION), images=[img],
                                     return_tensors="pt", **_split_kwargs(backend, img))
        assert native["input_ids"][0].tolist() == seq.ids
        want = backend.model(**native).logits[0, -1].float()
        torch.testing.assert_close(Runner(backend).last_logits([seq])[0], want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@torch.no_grad()
def test_smolvlm_frames_an_image_as_its_own_processor_code_writes_it(size):
    # SmolVLMProcessor cannot be built here; its module's prompt function (what it calls per image) can
    from transformers.models.smolvlm.processing_smolvlm import get_image_prompt_string

    backend = make_backend("smolvlm")
    img = random_image(3, size)
    vt = backend.encode_images([img])[0]
    _, (rows, cols) = backend.arrangement(img, backend.max_tiles)
    prompt = get_image_prompt_string(rows, cols, 16, fake_token_around_image="<fake_token_around_image>",
                                     image_token="<image>", global_image_token="<global-img>")
    text = _processor_text(backend, [], 1, QUESTION).replace("<image>", prompt)
    ids = backend.tokenizer(text, add_special_tokens=False)["input_ids"]
    seq = view_sequence(backend, vt, QUESTION)
    assert ids == seq.ids
    native = backend.model(input_ids=torch.tensor([ids]), **backend.pixel_inputs([img])).logits[0, -1].float()
    torch.testing.assert_close(Runner(backend).last_logits([seq])[0], native, atol=1e-4, rtol=1e-4)


def test_the_processors_own_settings_are_used_when_max_tiles_allows_them(own_tiles):
    img = random_image(1, (640, 480))
    assert _split_kwargs(own_tiles, img) == {"do_image_splitting": True}
    _, (rows, cols) = own_tiles.arrangement(img, own_tiles.max_tiles)
    processor_says = own_tiles.image_processor.get_number_of_image_patches(
        480, 640, {"do_image_splitting": True})
    assert processor_says == (rows * cols + 1, rows, cols) == (13, 3, 4)


@torch.no_grad()
def test_a_memory_of_all_tokens_in_context_equals_the_processors_image_in_its_place(own_tiles):
    ref, frame = random_image(5, (120, 90)), random_image(6, (64, 48))
    ref_vt, frame_vt = own_tiles.encode_images([ref, frame])
    assert ref_vt.layout.tiles() and frame_vt.layout.tiles()
    entries = [ContextEntry("kona", memory=[VisualBlock.full(ref_vt)])]
    seq = query_sequence(own_tiles, entries, [frame_vt], QUESTION)
    native = _processor(own_tiles)(text=_processor_text(own_tiles, entries, 1, QUESTION), images=[ref, frame],
                                   return_tensors="pt", do_image_splitting=True)
    assert native["input_ids"][0].tolist() == seq.ids
    want = own_tiles.model(**native).logits[0, -1].float()
    torch.testing.assert_close(Runner(own_tiles).last_logits([seq])[0], want, atol=1e-4, rtol=1e-4)


def test_a_subset_memory_frames_only_the_grids_it_keeps_with_their_tags(idefics):
    vt = idefics.encode_images([random_image(2, (80, 60))])[0]  # 2 x 2 tiles of 16 tokens + the global image
    kinds = [(g.kind, g.tile) for g in vt.layout.grids]
    assert kinds == [("tile", (0, 0)), ("tile", (0, 1)), ("tile", (1, 0)), ("tile", (1, 1)), ("thumbnail", (0, 0))]
    keep = torch.tensor([17, 18, 66, 70])  # two tokens of tile (0, 1), two of the global image
    seq = query_sequence(idefics, [ContextEntry("kona", memory=[VisualBlock.subset(vt, keep)])], [], QUESTION,
                         mode="memory")
    tok = idefics.tokenizer.convert_tokens_to_ids
    fake, image = tok("<fake_token_around_image>"), idefics.placeholder_id
    expected = ([fake, tok("<row_1_col_2>"), image, image] + idefics.tokenize("\n\n")
                + [fake, tok("<global-img>"), image, image, fake])
    a, b = seq.frames["memory:kona:0"]
    assert seq.ids[a:b] == expected
    assert len(idefics.tokenize("\n\n")) == 1  # the tiny tokenizer merges it, as the published ones do
    assert seq.columns["memory:kona:0"].tolist() == [a + 2, a + 3, b - 3, b - 2]
    # tiles of two rows and no global image: the row newline between them, one closing the last row
    seq = query_sequence(idefics, [ContextEntry("kona", memory=[VisualBlock.subset(vt, torch.tensor([5, 60]))])],
                         [], QUESTION, mode="memory")
    a, b = seq.frames["memory:kona:0"]
    newline = idefics.tokenize("\n")
    assert seq.ids[a:b] == ([fake, tok("<row_1_col_1>"), image] + newline + [fake, tok("<row_2_col_2>"), image]
                            + newline)


def test_tiles_cover_their_part_of_the_image_and_assemble_into_one_map(idefics):
    vt = idefics.encode_images([random_image(2, (300, 100))])[0]  # longest edge 3 tiles: 1 x 3
    tiles = vt.layout.tiles()
    assert [t.tile for t in tiles] == [(0, 0), (0, 1), (0, 2)]
    assert [t.box for t in tiles] == [(0.0, 0.0, 100.0, 100.0), (100.0, 0.0, 200.0, 100.0),
                                      (200.0, 0.0, 300.0, 100.0)]
    assert vt.layout.grids[-1].kind == "thumbnail" and vt.layout.grids[-1].box == (0.0, 0.0, 300.0, 100.0)
    assert (vt.rows, vt.cols) == (4, 12) and vt.box == (0.0, 0.0, 300.0, 100.0)


def test_reference_views_tile_within_their_pixel_budget(idefics):
    assert idefics.tile_budget(None) == idefics.max_tiles == 6
    assert idefics.tile_budget(3 * 64 * 64) == 3
    assert idefics.tile_budget(100) == 1  # smaller than one tile: one tile, never none
    vt = idefics.encode_images([random_image(1, (640, 480))], max_pixels=64 * 64)[0]
    assert vt.layout.is_single


def test_the_engine_option_max_tiles_bounds_the_tiles_of_every_frame():
    engine = EgoEngine(make_backend("smolvlm"), config=EngineConfig(max_tiles=2))
    assert len(engine.backend.encode_images([random_image(1, (640, 320))])[0].layout.tiles()) == 2  # 1 x 2
    # a 4:3 frame has no split into at most 2 tiles (its smallest is 2 x 2): it is not split
    assert engine.backend.encode_images([random_image(1, (640, 480))])[0].layout.is_single
    engine = EgoEngine(make_backend("smolvlm"), config=EngineConfig(max_tiles=1))
    assert engine.backend.encode_images([random_image(1, (640, 480))])[0].layout.is_single


def test_max_tiles_must_be_a_whole_number_of_at_least_one(idefics):
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="max_tiles"):
            Idefics3Backend(idefics.model, idefics.tokenizer, idefics.image_processor, max_tiles=bad)


def test_a_processor_that_does_not_resize_is_refused_with_a_message():
    rm = build_random_model("smolvlm")
    rm.image_processor.do_resize = False
    with pytest.raises(ValueError, match="do_resize"):
        SmolVLMBackend(rm.model, rm.tokenizer, rm.image_processor)


def test_a_processor_whose_tiles_do_not_fit_the_tower_is_refused_when_built():
    rm = build_random_model("idefics3")
    rm.image_processor.max_image_size = {"longest_edge": 96}  # the tower takes 64 px tiles
    with pytest.raises(ValueError, match="do not fit the vision tower"):
        Idefics3Backend(rm.model, rm.tokenizer, rm.image_processor)


def test_a_model_whose_image_token_is_not_the_processors_is_refused_when_built():
    rm = build_random_model("smolvlm")
    rm.model.config.image_token_id = rm.tokenizer.convert_tokens_to_ids("<end_of_utterance>")
    with pytest.raises(ValueError, match="tokenizes differently"):
        SmolVLMBackend(rm.model, rm.tokenizer, rm.image_processor)


def test_tile_tags_and_frame_tokens_are_never_generated(idefics):
    tok = idefics.tokenizer.convert_tokens_to_ids
    assert {tok("<row_1_col_1>"), tok("<row_6_col_6>"), tok("<global-img>"), tok("<fake_token_around_image>"),
            idefics.placeholder_id} <= set(idefics.suppressed_ids)


@torch.no_grad()
def test_images_of_different_sizes_encoded_together_equal_each_alone(idefics):
    imgs = [random_image(7, (640, 480)), random_image(8, (50, 300))]
    together = idefics.encode_images(imgs)
    for img, vt in zip(imgs, together):
        torch.testing.assert_close(vt.embeds, idefics.encode_images([img])[0].embeds, atol=1e-5, rtol=0)
        assert vt.image_size == img.size


def test_connector_pixel_shuffle_sizes_follow_the_config(backends):
    # Idefics3 merges 2 x 2 patches of 8 px, SmolVLM 4 x 4 of 4 px: both give 4 x 4 tokens on a 64 px tile
    assert backends["idefics3"].model.config.scale_factor == 2
    assert backends["smolvlm"].model.config.scale_factor == 4
    for name in IDEFICS:
        cfg = backends[name].model.config
        side = cfg.vision_config.image_size // cfg.vision_config.patch_size // cfg.scale_factor
        vt = backends[name].encode_images([random_image(1)])[0]
        assert {(g.rows, g.cols) for g in vt.layout.grids} == {(side, side)}


@pytest.mark.parametrize("size", SIZES + [(640, 480)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_tensor_pixels_equal_the_processors(idefics, size):
    img = random_image(4, size)
    got, want = idefics.pixel_inputs([img], method="tensor"), idefics.pixel_inputs([img], method="pil")
    assert set(got) == set(want) and got["pixel_values"].shape == want["pixel_values"].shape
    # Lanczos reproduced exactly: only the float rounding of rescale and normalise differs
    torch.testing.assert_close(got["pixel_values"], want["pixel_values"], atol=1e-6, rtol=0)
    assert torch.equal(got["pixel_attention_mask"], want["pixel_attention_mask"])


def test_tensor_pixels_equal_the_processor_with_idefics3_8b_settings():
    proc = Idefics3ImageProcessorPil(size={"longest_edge": 4 * 364}, max_image_size={"longest_edge": 364},
                                     do_image_splitting=False)
    rm = build_random_model("idefics3", image_px=364)
    backend = Idefics3Backend(rm.model, rm.tokenizer, proc)
    img = random_image(5, (300, 200))
    torch.testing.assert_close(backend.pixel_inputs([img], method="tensor")["pixel_values"],
                               backend.pixel_inputs([img], method="pil")["pixel_values"], atol=1e-6, rtol=0)


def test_the_cpu_keeps_the_processor_unless_the_tensor_path_is_asked_for(idefics):
    assert idefics.preprocessing_method() == "pil"  # Pillow's C beats torch's integer ops on the CPU
    assert idefics.preprocessing_method("tensor") == "tensor"
    assert idefics.preprocessing_method("pil") == "pil"
    with pytest.raises(ValueError, match="preprocessing"):
        idefics.preprocessing_method("opencv")


def test_a_filter_the_tensor_path_does_not_reproduce_keeps_the_processor():
    rm = build_random_model("idefics3")
    rm.image_processor.resample = Image.BOX
    backend = Idefics3Backend(rm.model, rm.tokenizer, rm.image_processor)
    assert backend.preprocessing_method("tensor") == "pil"


def test_the_connector_weights_are_part_of_the_fingerprint():
    a = build_random_model("smolvlm", seed=0)
    b = build_random_model("smolvlm", seed=0)
    with torch.no_grad():
        b.model.model.connector.modality_projection.proj.weight.mul_(1.5)
    fa = SmolVLMBackend(a.model, a.tokenizer, a.image_processor).fingerprint()
    fb = SmolVLMBackend(b.model, b.tokenizer, b.image_processor).fingerprint()
    assert fa != fb


def test_a_tokenizer_without_the_image_frame_tokens_is_refused_with_a_message():
    from ego_ros.core.random_models import build_tokenizer

    rm = build_random_model("idefics3")
    with pytest.raises(ValueError, match="<fake_token_around_image>"):
        Idefics3Backend(rm.model, build_tokenizer("llava"), rm.image_processor)


def test_loading_a_directory_whose_tokenizer_lacks_the_frame_tokens_fails_with_a_message(tmp_path):
    from ego_ros.core.errors import ModelLoadError
    from ego_ros.core.loading import load_backend
    from ego_ros.core.random_models import build_tokenizer

    rm = build_random_model("idefics3")
    rm.tokenizer = build_tokenizer("llava")
    rm.processor = None  # its own tokenizer would be saved over the swapped one
    rm.save(tmp_path)
    with pytest.raises(ModelLoadError, match="<fake_token_around_image>"):
        load_backend(str(tmp_path))


def test_engine_introduces_two_views_of_different_sizes_and_recognizes_a_large_frame(idefics):
    fast = IntroduceOptions(max_new_tokens=4, area_max_new_tokens=3)
    engine = EgoEngine(idefics, config=EngineConfig(introduce=fast))
    mem = engine.introduce("kona", [random_image(1, (80, 60)), random_image(2, (1280, 720))])
    # 2 x 2 tiles + the global image, 2 x 3 + 1: 16 tokens each
    assert [v.num_visual_tokens for v in mem.views] == [80, 112]
    assert all(0 < v.k_c <= v.num_visual_tokens for v in mem.views)
    (rec,) = engine.recognize(random_image(3, (1920, 1080)))
    assert rec.name == "kona" and 0.0 <= rec.probability <= 1.0


@pytest.mark.parametrize("family", IDEFICS)
def test_cli_introduces_and_recognizes_with_a_saved_model_directory(tmp_path, capsys, family):
    model_dir = build_random_model(family).save(tmp_path / "model")
    pictures = []
    for i, size in enumerate([(64, 64), (120, 80), (640, 480)]):
        pictures.append(str(tmp_path / f"{i}.png"))
        random_image(i, size).save(pictures[-1])
    store = str(tmp_path / "store")
    assert main(["introduce", "--model", str(model_dir), "--store", store, "--name", "kona", "--max-tiles", "4",
                 *pictures[:2]]) == 0
    intro = json.loads(capsys.readouterr().out)
    assert intro["name"] == "kona" and len(intro["k_c"]) == 2
    assert main(["recognize", "--model", str(model_dir), "--store", store, pictures[2]]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert set(rec["probabilities"]) == {"kona"} and 0.0 <= rec["probabilities"]["kona"] <= 1.0
