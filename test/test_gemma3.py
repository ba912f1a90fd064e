"""What sets Gemma 3 apart, specified against the model's own processor and forward.

Gemma 3 frames each image with blank lines and begin/end tokens, lets an image's soft tokens attend to
each other in both directions, and limits most layers to a sliding window. The engine's exactness
properties (test_engine_equivalence, test_shared_tails, test_prefix_cache, ...) cover the family through
FAMILIES; these tests pin the framing to Gemma3Processor and show that each mask rule is needed.
"""

from __future__ import annotations

import pytest
import torch
from conftest import FAMILIES, random_image
from transformers import AutoProcessor, Gemma3ImageProcessorPil, Gemma3Processor

from ego_ros.core import masks
from ego_ros.core.backends.base import Backend
from ego_ros.core.backends.gemma3 import Gemma3Backend
from ego_ros.core.compose import ContextEntry, query_sequence
from ego_ros.core.errors import ModelLoadError
from ego_ros.core.prompts import Slot
from ego_ros.core.random_models import build_random_model
from ego_ros.core.sequence import Runner, VisualBlock, build_sequence


@pytest.fixture(scope="module")
def gemma(backends):
    return backends["gemma3"]


def test_an_image_is_framed_and_tokenised_as_gemma3_processor_does_it(gemma):
    processor = Gemma3Processor(image_processor=gemma.image_processor, tokenizer=gemma.tokenizer,
                                image_seq_length=gemma.model.config.mm_tokens_per_image)
    img = random_image(1, (90, 50))
    vt = gemma.encode_images([img])[0]
    # a text ending in a newline before the image: the processor's blank line merges with it into one token
    parts = ["Look:\n", Slot("image"), "\nIs it here?"]
    rendered = "".join(p if isinstance(p, str) else "<start_of_image>" for p in Backend.chat(gemma, parts))
    theirs = processor(text=rendered, images=[img], return_tensors="pt")
    ours = build_sequence(gemma, gemma.chat(parts), lambda slot: VisualBlock.full(vt))
    assert theirs["input_ids"][0].tolist() == ours.ids
    assert gemma.tokenize("\n\n\n") != gemma.tokenize("\n") + gemma.tokenize("\n\n")  # the merge is real
    native = gemma.native_inputs(ours.ids, [img], method="pil")
    assert torch.equal(native["token_type_ids"].cpu(), theirs["token_type_ids"])
    torch.testing.assert_close(native["pixel_values"].cpu(), theirs["pixel_values"], atol=0, rtol=0)


def _memory_query(backend):
    img = random_image(3, (80, 60))
    vt = backend.encode_images([img])[0]
    seq = query_sequence(backend, [ContextEntry("kona", memory=[VisualBlock.full(vt)])], [], "Is the mug here?")
    native = backend.model(**backend.native_inputs(seq.ids, [img])).logits[0, -1].float()
    return seq, native


@torch.no_grad()
def test_a_memory_with_causal_soft_tokens_would_not_give_the_native_logits(gemma, monkeypatch):
    seq, native = _memory_query(gemma)
    torch.testing.assert_close(Runner(gemma).last_logits([seq])[0], native, atol=1e-4, rtol=1e-4)
    monkeypatch.setattr(gemma, "bidirectional_visual", False)
    assert (Runner(gemma).last_logits([seq])[0] - native).abs().max() > 1e-3


@torch.no_grad()
def test_a_memory_query_longer_than_the_window_needs_the_window(gemma, monkeypatch):
    seq, native = _memory_query(gemma)
    assert len(seq) > 3 * gemma.sliding_window
    monkeypatch.setattr(Gemma3Backend, "sliding_window", property(lambda self: None))
    assert (Runner(gemma).last_logits([seq])[0] - native).abs().max() > 1e-3


def test_only_gemma3_has_the_engine_build_its_masks(backends):
    # every other family keeps the masks it had (none, padding, or the engine's 4-D ones) untouched
    assert [f for f in FAMILIES if masks.needed(backends[f])] == ["gemma3"]


def test_pan_and_scan_is_switched_off_so_a_wide_frame_is_one_view():
    rm = build_random_model("gemma3", image_px=64)
    rm.image_processor = Gemma3ImageProcessorPil(size={"height": 64, "width": 64}, do_pan_and_scan=True,
                                                 pan_and_scan_min_crop_size=16)
    backend = Gemma3Backend(rm.model, rm.tokenizer, rm.image_processor)
    wide = random_image(2, (400, 100))
    assert backend.pixel_inputs([wide], method="pil")["pixel_values"].shape[0] == 1
    assert backend.encode_images([wide])[0].count == rm.model.config.mm_tokens_per_image


def test_an_all_bidirectional_gemma3_is_refused_with_a_reason():
    rm = build_random_model("gemma3")
    rm.model.config.text_config.use_bidirectional_attention = True
    with pytest.raises(ModelLoadError, match="use_bidirectional_attention"):
        Gemma3Backend(rm.model, rm.tokenizer, rm.image_processor)


def test_a_saved_gemma3_directory_gives_autoprocessor_the_models_soft_token_count(tmp_path):
    rm = build_random_model("gemma3", image_px=64)
    rm.save(tmp_path)
    processor = AutoProcessor.from_pretrained(tmp_path)
    out = processor(text="Look<start_of_image>", images=[random_image(4, (640, 360))], return_tensors="pt")
    assert int((out["input_ids"] == rm.model.config.image_token_id).sum()) == rm.model.config.mm_tokens_per_image
