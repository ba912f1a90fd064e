"""The registry of model families: config `model_type` -> backend class (one module per family)."""

from __future__ import annotations

from .base import Backend
from .idefics3 import Idefics3Backend, SmolVLMBackend
from .internvl import InternVLBackend
from .llava import LlavaBackend
from .qwen import Qwen3VLBackend, Qwen25VLBackend

__all__ = ["BACKENDS", "Idefics3Backend", "InternVLBackend", "LlavaBackend", "Qwen25VLBackend", "Qwen3VLBackend",
           "SmolVLMBackend"]

BACKENDS: dict[str, type[Backend]] = {
    "llava": LlavaBackend,
    "qwen2_5_vl": Qwen25VLBackend,
    "internvl": InternVLBackend,
    "qwen3_vl": Qwen3VLBackend,
    "idefics3": Idefics3Backend,
    "smolvlm": SmolVLMBackend,
}
