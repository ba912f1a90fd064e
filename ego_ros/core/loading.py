"""Loading models into backends: a local directory, a Hub id, the embedded toy model, or a random model."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from .backends.base import Backend
from .backends.families import BACKENDS
from .errors import ModelLoadError
from .processors import load_processor
from .prompts import load_prompts

_log = logging.getLogger(__name__)

#: Where the embedded toy model's weights live inside the package.
TOY_MODEL_DIR = Path(__file__).resolve().parent.parent / "toy" / "model"

_MODEL_CLASSES = {
    "llava": "LlavaForConditionalGeneration",
    "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
    "internvl": "InternVLForConditionalGeneration",
    "qwen3_vl": "Qwen3VLForConditionalGeneration",
    "qwen2_vl": "Qwen2VLForConditionalGeneration",
    "gemma3": "Gemma3ForConditionalGeneration",
    "llava_next": "LlavaNextForConditionalGeneration",
    "llava_onevision": "LlavaOnevisionForConditionalGeneration",
    "idefics3": "Idefics3ForConditionalGeneration",
    "smolvlm": "SmolVLMForConditionalGeneration",
}


def resolve_device(device: str) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ModelLoadError(f"invalid device {device!r}: use 'cpu' or 'cuda:N'") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelLoadError(f"device {device!r} requested but CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ModelLoadError(f"device {device!r} does not exist ({torch.cuda.device_count()} CUDA devices)")
    elif dev.type != "cpu":
        raise ModelLoadError(f"unsupported device {device!r}: use 'cpu' or 'cuda:N'")
    return dev


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if dtype not in table:
        raise ModelLoadError(f"unknown dtype {dtype!r}; expected auto, float32, bfloat16 or float16")
    return table[dtype]


def model_directory(model: str) -> Path | None:
    """The local directory a model name refers to, if any ("toy" is the embedded model)."""
    if model == "toy":
        return TOY_MODEL_DIR
    p = Path(model).expanduser()
    return p if p.is_dir() else None


def _image_processor(source: str, trust_remote_code: bool, local_files_only: bool) -> Any:
    import transformers

    try:
        return transformers.AutoImageProcessor.from_pretrained(
            source, trust_remote_code=trust_remote_code, local_files_only=local_files_only)
    except ImportError:
        # Older transformers (5.17) route AutoImageProcessor through torchvision even for a processor saved
        # as the PIL variant; the PIL class itself needs no torchvision.
        config, _ = transformers.ImageProcessingMixin.get_image_processor_dict(
            source, local_files_only=local_files_only)
        name = config.get("image_processor_type", "")
        for candidate in (name, name + "Pil"):
            cls = getattr(transformers, candidate, None) if candidate.endswith("Pil") else None
            if cls is not None:
                return cls.from_pretrained(source, local_files_only=local_files_only)
        raise


@contextlib.contextmanager
def quiet_loading(what: str) -> Iterator[None]:
    """No "Loading weights" progress bar from transformers while loading (a node's log gets one line per
    configure otherwise), unless this module logs at debug level; the previous setting is restored."""
    from transformers.utils import logging as hf_logging

    _log.debug("loading weights of %s", what)
    was_enabled = hf_logging.is_progress_bar_enabled()
    if was_enabled and not _log.isEnabledFor(logging.DEBUG):
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def load_backend(model: str, device: str = "cpu", dtype: str = "auto", trust_remote_code: bool = False,
                 local_files_only: bool = False) -> Backend:
    """Load `model` into its backend: a directory, a Hub id, "toy" (the embedded model), or
    "random:<family>[:<size>[:<image px>]]" (randomly initialised, e.g. random:qwen2_5_vl:qwen2_5_vl_7b:448)."""
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    if model.startswith("random:"):
        from .random_models import SIZES, build_random_model

        _, family, *rest = model.split(":")
        if family not in BACKENDS:
            raise ModelLoadError(f"unknown family {family!r} in {model!r}; expected one of {sorted(BACKENDS)}")
        size = rest[0] if rest else "tiny"
        if size not in SIZES:
            raise ModelLoadError(f"unknown size {size!r} in {model!r}; expected one of {sorted(SIZES)}")
        px = int(rest[1]) if len(rest) > 1 else None
        rm = build_random_model(family, size=size, dtype=dt, device=str(dev), image_px=px)
        backend = BACKENDS[family](rm.model, rm.tokenizer, rm.image_processor, name=model)
        probe_processor(backend, rm.processor, "the family has no processor here")
        return backend
    directory = model_directory(model)
    if model == "toy" and not (TOY_MODEL_DIR / "config.json").is_file():
        raise ModelLoadError(f"the embedded toy model is missing ({TOY_MODEL_DIR}); train it with "
                             "`ego-ros toy train` or reinstall the package")
    source = str(directory) if directory is not None else model
    import transformers

    try:
        config = transformers.AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code,
                                                         local_files_only=local_files_only)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load model {model!r}: {exc}") from exc
    family = config.model_type
    if family not in BACKENDS:
        raise ModelLoadError(f"model {model!r} is a {family!r} model; supported families: {sorted(BACKENDS)}")
    cls = getattr(transformers, _MODEL_CLASSES[family])
    try:
        with quiet_loading(model):
            net = cls.from_pretrained(source, dtype=dt, trust_remote_code=trust_remote_code,
                                      local_files_only=local_files_only).to(dev)
        tokenizer = transformers.AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code,
                                                               local_files_only=local_files_only)
        image_processor = _image_processor(source, trust_remote_code, local_files_only)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load model {model!r}: {exc}") from exc
    prompts = load_prompts(directory)
    try:
        backend = BACKENDS[family](net, tokenizer, image_processor, prompts=prompts, name=model)
    except ValueError as exc:  # the backend refuses what it cannot run exactly (a missing frame token, ...)
        raise ModelLoadError(f"cannot use model {model!r}: {exc}") from exc
    processor, why = load_processor(source, family, trust_remote_code, local_files_only)
    probe_processor(backend, processor, why)
    return backend


def probe_processor(backend: Backend, processor: Any, why_none: str = "") -> None:
    """The load-time probe check: refuse (ModelLoadError) a backend whose encoding of a probe image
    disagrees with the model's own processor; skip it, with a warning naming why, when the model has no
    usable processor.

    Why a skip and not a refusal: the backend runs on the tokenizer and image processor alone, which many
    exported checkpoints ship without a processor_config.json (LLaVA's processor then does not know its
    patch size and cannot expand an image token at all). Such a checkpoint still gets the family's static
    checks (`Backend.unsupported_reason`), and the outcome is kept in `backend.probe_status`.
    """
    if processor is None:
        backend.probe_status = f"skipped: {why_none or 'no processor'}"
        _log.warning("model %s: no probe check against its own processor (%s)", backend.name, why_none)
        return
    try:
        checked = backend.check_processor(processor)
    except RuntimeError as exc:
        backend.probe_status = f"skipped: {exc}"
        _log.warning("model %s: no probe check against its own processor (%s)", backend.name, exc)
        return
    except ModelLoadError as exc:
        raise ModelLoadError(f"model {backend.name!r} refused: {exc}") from exc
    backend.probe_status = f"passed: {checked}"
    _log.info("model %s: probe check against %s passed (%s)", backend.name, type(processor).__name__, checked)
