"""Specification of tensor image preprocessing (ego_ros.core.preprocess) against the image processors.

Tolerance, measured on this machine (Pillow 13, transformers 5.2x) over the sizes below and both
random-noise and smooth images: the tensor path differs from the PIL processor by at most two grey
levels at a few pixels (max abs 0.030 in normalised units with CLIP's std, 0.0157 with SigLIP's), mean
abs at most 1.5e-4. The tests allow two grey levels at the processor's smallest std and a mean of 5e-4.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import FAMILIES, make_backend, random_image
from PIL import Image
from transformers import (
    CLIPImageProcessorPil,
    Gemma3ImageProcessorPil,
    GotOcr2ImageProcessorPil,
    LlavaNextImageProcessorPil,
    LlavaOnevisionImageProcessorPil,
    Qwen2VLImageProcessorPil,
    SiglipImageProcessorPil,
)

from ego_ros.core import preprocess
from ego_ros.core.engine import EgoEngine, EngineConfig
from ego_ros.core.loading import TOY_MODEL_DIR
from ego_ros.core.profile import Profiler

CPU = torch.device("cpu")
#: (width, height): square, non-square, upscaling, downscaling, a camera frame, a 1080p frame
SIZES = [(64, 64), (80, 48), (30, 33), (300, 200), (640, 480), (1920, 1080)]
MEAN_TOLERANCE = 5e-4
#: Families whose processors resample with Lanczos: their backend reproduces it exactly with its own tensor
#: path (ego_ros.core.resample, checked in test_idefics3.py) but keeps Pillow by default on the CPU.
PIL_ONLY = {"idefics3", "smolvlm"}


def _tolerance(processor) -> float:
    """Two grey levels in normalised units (1e-5 more for float rounding)."""
    return 2.0 / 255.0 / min(processor.image_std) + 1e-5


def _smooth_image(size: tuple[int, int], seed: int) -> Image.Image:
    """A camera-like image: smooth colour fields with some pixel noise (noise alone is the other case)."""
    rng = np.random.default_rng(seed)
    w, h = size
    base = Image.fromarray(rng.integers(0, 255, (max(2, h // 16), max(2, w // 16), 3), dtype=np.uint8))
    arr = np.asarray(base.resize((w, h), Image.BICUBIC)).astype(np.int16) + rng.integers(-20, 20, (h, w, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _published_processors() -> dict[str, object]:
    """Processors with the published models' settings (LLaVA-1.5, SigLIP-384, InternVL3, Qwen2.5-VL, Qwen3-VL,
    Gemma 3)."""
    return {
        "clip336_crop": CLIPImageProcessorPil(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336}),
        "siglip384": SiglipImageProcessorPil(size={"height": 384, "width": 384}),
        "internvl448": GotOcr2ImageProcessorPil(size={"height": 448, "width": 448}, crop_to_patches=False),
        "qwen2_5_vl": Qwen2VLImageProcessorPil(min_pixels=3136, max_pixels=12845056),
        "qwen3_vl": Qwen2VLImageProcessorPil(size={"shortest_edge": 65536, "longest_edge": 16777216}, patch_size=16,
                                             merge_size=2, image_mean=[0.5] * 3, image_std=[0.5] * 3),
        "gemma3_896": Gemma3ImageProcessorPil(size={"height": 896, "width": 896}, image_mean=[0.5] * 3,
                                              image_std=[0.5] * 3, do_pan_and_scan=False),
    }


def _tensor_pixels(processor, images) -> dict[str, torch.Tensor]:
    if preprocess.processor_kind(processor) == "Qwen2VLImageProcessor":
        pv, thw = preprocess.patch_pixels(images, processor, CPU, torch.float32)
        return {"pixel_values": pv, "image_grid_thw": thw}
    return {"pixel_values": preprocess.square_pixels(images, processor, CPU, torch.float32)}


def _assert_close_pixels(got: torch.Tensor, want: torch.Tensor, processor) -> None:
    assert got.shape == want.shape
    diff = (got.float() - want.float()).abs()
    assert float(diff.max()) <= _tolerance(processor)
    assert float(diff.mean()) <= MEAN_TOLERANCE


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_tensor_pixels_match_the_image_processor_on_every_backend(backends, size):
    for family in [f for f in FAMILIES if f not in PIL_ONLY]:
        b = backends[family]
        assert b.preprocessing_method() == "tensor", family
        img = random_image(7, size)
        got, want = b.pixel_inputs([img], method="tensor"), b.pixel_inputs([img], method="pil")
        assert set(got) == set(want)
        _assert_close_pixels(got["pixel_values"], want["pixel_values"], b.image_processor)
        if "image_grid_thw" in want:
            assert got["image_grid_thw"].tolist() == want["image_grid_thw"].tolist()


@pytest.mark.parametrize("name", list(_published_processors()))
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_tensor_pixels_match_published_processor_settings(name, size):
    proc = _published_processors()[name]
    assert preprocess.unsupported(proc) is None
    for img in (random_image(3, size), _smooth_image(size, 4)):
        want = proc(images=[img], return_tensors="pt")
        got = _tensor_pixels(proc, [img])
        _assert_close_pixels(got["pixel_values"], want["pixel_values"], proc)
        if "image_grid_thw" in want:
            assert got["image_grid_thw"].tolist() == want["image_grid_thw"].tolist()


@pytest.mark.parametrize("target", [(64, 64), (448, 448), (476, 644), (97, 103), (384, 300)],
                         ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("mode,pil_filter", [("bicubic", Image.BICUBIC), ("bilinear", Image.BILINEAR)])
def test_the_float_resize_used_on_gpus_matches_pil_within_two_grey_levels(target, mode, pil_filter):
    # CUDA has no uint8 resize: there the float32 passes run; they are checked here on the CPU.
    img = _smooth_image((640, 480), 5)
    h, w = target
    want = torch.from_numpy(np.array(img.resize((w, h), pil_filter))).permute(2, 0, 1).float()
    got = preprocess.resize(preprocess.upload(img, CPU).float(), h, w, mode)
    diff = (got - want).abs()
    assert float(diff.max()) <= 2.0
    assert float(diff.mean()) <= 0.05


#: (source, target) as (width, height): portrait and landscape frames, both axes up or down, and each mix
GEOMETRIES = [((480, 1280), (448, 448)), ((480, 640), (448, 448)), ((640, 480), (448, 448)),
              ((1280, 480), (448, 448)), ((100, 60), (300, 200)), ((60, 100), (200, 300)),
              ((300, 80), (120, 160)), ((80, 300), (160, 120)), ((1920, 1080), (476, 644))]


@pytest.mark.parametrize("src,dst", GEOMETRIES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("mode,pil_filter", [("bicubic", Image.BICUBIC), ("bilinear", Image.BILINEAR)])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32], ids=["uint8", "float"])
def test_the_resize_matches_pil_within_two_grey_levels_in_any_geometry(src, dst, mode, pil_filter, dtype):
    for img in (random_image(8, src), _smooth_image(src, 9)):
        want = torch.from_numpy(np.array(img.resize(dst, pil_filter))).permute(2, 0, 1).float()
        got = preprocess.resize(preprocess.upload(img, CPU).to(dtype), dst[1], dst[0], mode)
        diff = (got - want).abs()
        assert float(diff.max()) <= 2.0
        assert float(diff.mean()) <= 0.05


@pytest.mark.parametrize("src,dst", GEOMETRIES + [((7, 5), (64, 64)), ((700, 3), (11, 2))],
                         ids=lambda s: f"{s[0]}x{s[1]}")
def test_the_nearest_resize_picks_pils_pixels(src, dst):
    img = random_image(10, src)
    want = torch.from_numpy(np.array(img.resize(dst, Image.NEAREST))).permute(2, 0, 1).float()
    assert torch.equal(preprocess.resize(preprocess.upload(img, CPU), dst[1], dst[0], "nearest-exact"), want)


def test_a_frame_of_the_working_size_is_not_resampled():
    proc = SiglipImageProcessorPil(size={"height": 64, "width": 64})
    img = random_image(1, (64, 64))
    torch.testing.assert_close(_tensor_pixels(proc, [img])["pixel_values"],
                               proc(images=[img], return_tensors="pt")["pixel_values"], atol=1e-6, rtol=0)


def test_a_numpy_frame_gives_the_same_pixels_as_its_pil_image():
    proc = SiglipImageProcessorPil(size={"height": 64, "width": 64})
    img = random_image(2, (640, 480))
    torch.testing.assert_close(preprocess.square_pixels([np.asarray(img)], proc, CPU, torch.float32),
                               preprocess.square_pixels([img], proc, CPU, torch.float32))


def test_a_filter_without_a_tensor_equivalent_falls_back_to_the_processor():
    b = make_backend("llava")
    b.image_processor = SiglipImageProcessorPil(size={"height": 32, "width": 32}, resample=Image.LANCZOS)
    assert "resampling filter" in preprocess.unsupported(b.image_processor)
    assert b.preprocessing_method() == "pil"
    img = random_image(3, (80, 60))
    want = b.image_processor(images=[img], return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(b.pixel_inputs([img])["pixel_values"], want, atol=0, rtol=0)


def test_internvl_multi_tile_cropping_is_left_to_the_processor():
    proc = GotOcr2ImageProcessorPil(size={"height": 448, "width": 448}, crop_to_patches=True)
    assert "multi-tile" in preprocess.unsupported(proc)


def test_gemma3_pan_and_scan_is_left_to_the_processor():
    proc = Gemma3ImageProcessorPil(size={"height": 896, "width": 896}, do_pan_and_scan=True)
    assert "pan-and-scan" in preprocess.unsupported(proc)


def test_an_unknown_processor_class_is_left_to_the_processor():
    class OtherProcessor(SiglipImageProcessorPil):
        pass

    assert "not covered" in preprocess.unsupported(OtherProcessor())


def test_the_engine_config_chooses_the_preprocessing_and_rejects_unknown_methods():
    b = make_backend("llava")
    assert EgoEngine(b).backend.preprocessing_method() == "tensor"
    assert EgoEngine(b, config=EngineConfig(preprocess="pil")).backend.preprocessing_method() == "pil"
    with pytest.raises(ValueError, match="preprocess"):
        EngineConfig(preprocess="opencv").validate()


def test_encoding_an_image_is_profiled_as_preprocess_then_vision(backend):
    with Profiler() as prof, torch.inference_mode():
        backend.encode_images([random_image(4, (80, 60))])
    assert {"preprocess", "vision"} <= set(prof.seconds)


@pytest.mark.skipif(not (TOY_MODEL_DIR / "model.safetensors").is_file(), reason="no committed toy weights")
def test_toy_recognition_probabilities_barely_move_between_tensor_and_pil_preprocessing():
    """Camera frames (640x480 squeezed to 64x64) and 128 px reference views: measured max |dP| 6e-4 over
    these eight frames; the bound is 5e-3."""
    from ego_ros.ros.demo_concepts import reference_views
    from ego_ros.ros.demo_scenario import DEMO_INSTANCE
    from ego_ros.toy.attributes import Instance
    from ego_ros.toy.video import VideoStream

    engine = EgoEngine.load("toy")
    stream = VideoStream(3, size=(640, 480), fps=30.0, include=[Instance.from_key(DEMO_INSTANCE)], include_p=0.8)
    frames = [stream.next_frame().image for _ in range(40)][::5]
    probs = {}
    for method in ("pil", "tensor"):
        engine.backend.preprocess = method
        engine.introduce("kona", reference_views(), replace_existing=True)
        probs[method] = np.array([engine.recognize(f)[0].probability for f in frames])
    assert np.abs(probs["tensor"] - probs["pil"]).max() <= 5e-3
    assert probs["pil"].max() - probs["pil"].min() > 0.1  # the frames differ: the comparison is not vacuous


#: LLaVA-NeXT (llava-v1.6, 336 px CLIP crops) and LLaVA-OneVision (384 px SigLIP crops, 6 x 6 pinpoints)
_ANYRES_PUBLISHED = {
    "llava_next_336": lambda: LlavaNextImageProcessorPil(
        size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336},
        image_grid_pinpoints=[[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]),
    "llava_onevision_384": lambda: LlavaOnevisionImageProcessorPil(),
}


@pytest.mark.parametrize("name", list(_ANYRES_PUBLISHED))
@pytest.mark.parametrize("size", [(300, 200), (640, 480), (1920, 1080)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_anyres_tensor_pixels_match_published_processor_settings(name, size):
    proc = _ANYRES_PUBLISHED[name]()
    assert preprocess.unsupported(proc) is None
    side = 336 if name == "llava_next_336" else 384
    pinpoints = [list(p) for p in proc.image_grid_pinpoints]
    for img in (random_image(3, size), _smooth_image(size, 4)):
        want = proc(images=[img], return_tensors="pt")
        got, sizes = preprocess.anyres_pixels([img], proc, CPU, torch.float32, pinpoints, side)
        _assert_close_pixels(got, want["pixel_values"], proc)
        assert sizes.tolist() == want["image_sizes"].tolist()
