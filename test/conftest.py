"""Shared fixtures: tiny randomly initialised models of every supported family, built offline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

# One thread: tests run beside ROS node processes on 2 cores, and OpenMP spinning under
# oversubscription slows small models by an order of magnitude.
torch.set_num_threads(1)

FAMILIES = ["llava", "qwen2_5_vl", "internvl", "qwen3_vl", "idefics3", "smolvlm"]
IMAGE_PX = {"llava": 32, "qwen2_5_vl": 112, "internvl": 64, "qwen3_vl": 128, "idefics3": 64, "smolvlm": 64}


def make_backend(family: str, seed: int = 0, **kwargs):
    from ego_ros.core.backends.families import BACKENDS
    from ego_ros.core.random_models import build_random_model

    rm = build_random_model(family, seed=seed, image_px=IMAGE_PX[family], **kwargs)
    return BACKENDS[family](rm.model, rm.tokenizer, rm.image_processor, name=f"random:{family}")


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
