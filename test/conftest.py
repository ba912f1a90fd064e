"""Shared fixtures: tiny randomly initialised models of every supported family, built offline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

# One thread: tests run beside ROS node processes on 2 cores, and OpenMP spinning under
# oversubscription slows small models by an order of magnitude.
torch.set_num_threads(1)

FAMILIES = ["llava", "qwen2_5_vl", "internvl", "qwen3_vl", "qwen2_vl", "gemma3", "llava_next", "llava_onevision",
            "idefics3", "smolvlm"]
IMAGE_PX = {"llava": 32, "qwen2_5_vl": 112, "internvl": 64, "qwen3_vl": 128, "qwen2_vl": 112, "gemma3": 64,
            "llava_next": 32, "llava_onevision": 32, "idefics3": 64, "smolvlm": 64}


def make_backend(family: str, seed: int = 0, **kwargs):
    from ego_ros.core.backends.families import BACKENDS
    from ego_ros.core.random_models import build_random_model

    rm = build_random_model(family, seed=seed, image_px=IMAGE_PX[family], **kwargs)
    return BACKENDS[family](rm.model, rm.tokenizer, rm.image_processor, name=f"random:{family}")


def native_decoder(backend, seq, **kwargs):
    """The decoder stack over the whole of `seq` run the way the model's own forward runs it: the reference
    for the engine's passes (which build their own masks, caches and packings).

    Gemma 3's forward makes its masks (bidirectional soft-token blocks, sliding windows) from token type
    ids, so it runs through the model's multimodal forward with token types marking the image placeholder
    ids; every other family's decoder stack takes the embeddings and positions directly (Qwen3-VL with the
    DeepStack features of its visual rows)."""
    from ego_ros.core.sequence import Runner, sequence_deepstack, sequence_embeds, sequence_positions

    pos, _ = sequence_positions(backend, seq)
    pos = Runner._batch_positions(pos).to(backend.device)
    emb = sequence_embeds(backend, seq)[None]
    if backend.bidirectional_visual:
        ids = torch.tensor([seq.ids], device=backend.device)
        return backend.model.model(inputs_embeds=emb, position_ids=pos,
                                   token_type_ids=(ids == backend.placeholder_id).long(), **kwargs)
    deep = sequence_deepstack(backend, seq)
    if deep is not None:
        kwargs.update(visual_pos_masks=deep.mask[None], deepstack_visual_embeds=list(deep.feats.unbind(0)))
    return backend.language_model(inputs_embeds=emb, position_ids=pos, **kwargs)


@pytest.fixture(scope="session")
def backends():
    """One tiny backend per family, built once per test session (read-only use)."""
    return {f: make_backend(f) for f in FAMILIES}


@pytest.fixture(params=FAMILIES)
def backend(request, backends):
    return backends[request.param]


@pytest.fixture(scope="session")
def llava(backends):
    return backends["llava"]


def random_image(seed: int, size: tuple[int, int] = (64, 64)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


@pytest.fixture
def images():
    return [random_image(i) for i in range(6)]
