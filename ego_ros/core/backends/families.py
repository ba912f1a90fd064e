"""The registry of model families: config `model_type` -> backend class (one module per family)."""

from __future__ import annotations

from .base import Backend
from .gemma3 import Gemma3Backend
from .idefics3 import Idefics3Backend, SmolVLMBackend
from .internvl import InternVLBackend
from .llava import LlavaBackend
from .llava_next import LlavaNextBackend, LlavaOnevisionBackend
from .qwen import Qwen2VLBackend, Qwen3VLBackend, Qwen25VLBackend

__all__ = ["BACKENDS", "Gemma3Backend", "Idefics3Backend", "InternVLBackend", "LlavaBackend", "LlavaNextBackend",
           "LlavaOnevisionBackend", "Qwen2VLBackend", "Qwen25VLBackend", "Qwen3VLBackend", "SmolVLMBackend"]

BACKENDS: dict[str, type[Backend]] = {
    "llava": LlavaBackend,
    "qwen2_5_vl": Qwen25VLBackend,
    "internvl": InternVLBackend,
    "qwen3_vl": Qwen3VLBackend,
    "qwen2_vl": Qwen2VLBackend,
    "gemma3": Gemma3Backend,
    "llava_next": LlavaNextBackend,
    "llava_onevision": LlavaOnevisionBackend,
    "idefics3": Idefics3Backend,
    "smolvlm": SmolVLMBackend,
}
