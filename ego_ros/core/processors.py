"""The model's own multimodal processor (tokenizer + image processor + the image token expansion).

The engine never runs it on frames: it is loaded once so that the backend's encoding of a probe image
can be checked against what the model's authors' code produces (`Backend.check_processor`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

_log = logging.getLogger(__name__)


def image_only(cls: type) -> type:
    """`cls` without its video processor.

    Multimodal processors that also take videos (Qwen2-VL family, InternVL) refuse to be built, even
    with `video_processor=None`, when torchvision is missing (their video processors need it, and
    transformers looks the class up while checking arguments). The image token expansion, the only part
    the probe uses, needs no video processor, so this subclass drops the attribute and keeps the class's
    own code for everything else. The class keeps its name, so a saved processor loads as the original.
    """
    def get_attributes(sub: type) -> list[str]:
        return [a for a in super(variant, sub).get_attributes() if a != "video_processor"]

    variant = type(cls.__name__, (cls,), {"get_attributes": classmethod(get_attributes),
                                          "__module__": cls.__module__, "__qualname__": cls.__qualname__})
    return variant


def build_processor(class_name: str, **kwargs: Any) -> Any:
    """Construct transformers' processor `class_name` from its parts (image-only when videos need
    torchvision, see `image_only`)."""
    import transformers

    cls = getattr(transformers, class_name)
    try:
        return cls(**kwargs)
    except (ImportError, AttributeError):
        return image_only(cls)(**kwargs)


def _processor_class_name(source: str, model_type: str) -> str | None:
    path = Path(source) / "processor_config.json"
    if path.is_file():
        try:
            name = json.loads(path.read_text()).get("processor_class")
        except (OSError, ValueError):
            name = None
        if name:
            return str(name)
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

    return PROCESSOR_MAPPING_NAMES.get(model_type)


def load_processor(source: str, model_type: str, trust_remote_code: bool = False,
                   local_files_only: bool = False) -> tuple[Any | None, str]:
    """The processor saved with a model (directory or Hub id), or None and the reason it cannot be had."""
    import transformers

    kwargs = dict(trust_remote_code=trust_remote_code, local_files_only=local_files_only)
    failures = (ImportError, OSError, ValueError, TypeError, KeyError, AttributeError)
    try:
        return transformers.AutoProcessor.from_pretrained(source, **kwargs), ""
    except failures as exc:
        # a processor that also takes videos fails here without torchvision (ImportError or ValueError)
        first = f"{type(exc).__name__}: {str(exc).strip()[:200]}"
    name = _processor_class_name(source, model_type)
    cls = getattr(transformers, name, None) if name else None
    if cls is None:
        return None, f"its processor cannot be loaded ({first})"
    try:
        return image_only(cls).from_pretrained(source, **kwargs), ""
    except failures as exc:
        return None, f"its processor {name} cannot be loaded ({first}; without videos: {type(exc).__name__}: {exc})"
