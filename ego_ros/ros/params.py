"""Parameters of the Ego node: one table with defaults, descriptors and validation.

The table is the single source of truth for the node, its README section and its tests. Values are
validated twice: at configure (covering values given on the command line or in a parameter file,
which rclpy applies before any callback exists) and on every later change, in the node's
on-set-parameters callback. Parameters whose change needs the model or the subscription to be
rebuilt are read-only: set them at start-up.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.memory import validate_name
from .image_conversion import DEFAULT_MAX_PIXELS

IMAGE_TRANSPORTS = ("raw", "compressed")
DTYPES = ("auto", "float32", "bfloat16", "float16")
STRING_ARRAY = "string_array"  # marker for parameters declared as typed string arrays


@dataclass(frozen=True)
class ParamSpec:
    """One node parameter: default, description, range and whether it is fixed after start-up."""

    name: str
    default: Any  # STRING_ARRAY parameters default to the empty list
    description: str
    read_only: bool = False
    float_range: tuple[float, float] | None = None
    int_range: tuple[int, int] | None = None
    constraints: str = ""


SPECS: tuple[ParamSpec, ...] = (
    ParamSpec("model", "toy", "Vision-language model: 'toy' (embedded), a local directory, a Hugging Face id, "
              "or random:<family> (untrained, for tests).", read_only=True),
    ParamSpec("device", "auto", "Torch device for the model: auto (cuda:0 when available, else cpu), cpu or cuda:N.",
              read_only=True, constraints="auto, cpu, cuda or cuda:N"),
    ParamSpec("dtype", "auto", "Model weights dtype (auto: bfloat16 on CUDA, float32 on CPU).", read_only=True,
              constraints="one of " + ", ".join(DTYPES)),
    ParamSpec("calibration_file", "", "Layer calibration JSON; empty uses the model's own calibration file if it has "
              "one, else the published or default layers.", read_only=True),
    ParamSpec("memory_dir", "", "Concept store directory; empty means ~/.ego_ros/stores/<model>. Concepts persist "
              "there across restarts.", read_only=True),
    ParamSpec("concepts_file", "", "YAML file of concepts introduced at configure (name: image path(s), or name: "
              "{images: [...], notes: ...}; relative paths are resolved against the file's folder). Concepts the "
              "store already holds are skipped.", read_only=True),
    ParamSpec("image_transport", "raw", "Camera input: raw subscribes to 'image' (sensor_msgs/Image), compressed to "
              "'image/compressed' (sensor_msgs/CompressedImage).", read_only=True,
              constraints="raw or compressed"),
    ParamSpec("autostart", False, "Configure and activate the node at start-up.", read_only=True),
    ParamSpec("max_tiles", 0, "Most tiles per image for model families that tile (InternVL, Idefics3, "
              "SmolVLM); 0 uses the family's default (6), 1 one tile (the paper's setting). Families that do "
              "not tile need 0 or 1.",
              read_only=True, int_range=(0, 64)),
    ParamSpec("frame_history", 8, "Camera frames kept for introduce_concept requests that use the latest frames.",
              read_only=True, int_range=(1, 64)),
    ParamSpec("max_tokens", 0, "K: most memory tokens kept per reference view; 0 uses max_fraction of the view's "
              "visual tokens.", int_range=(0, 16384)),
    ParamSpec("max_fraction", 0.2, "K as a fraction of a view's visual tokens (used when max_tokens is 0).",
              float_range=(0.0, 1.0), constraints="greater than 0"),
    ParamSpec("dynamic_k", True, "K_c from the model's own estimate of the area the concept covers (paper 3.3); "
              "false keeps K tokens per view."),
    ParamSpec("max_rate", 5.0, "Most camera frames processed per second (recognition and standing questions).",
              float_range=(0.01, 100.0)),
    ParamSpec("concepts", STRING_ARRAY, "Concepts recognised in the camera stream; empty means all stored concepts. "
              "Names not (yet) in the store are ignored with a warning."),
    ParamSpec("standing_questions", STRING_ARRAY, "Questions answered on every processed frame and published on "
              "~/answers."),
    ParamSpec("max_context_concepts", 16, "Similarity budget: most concepts placed in one model context; beyond it the "
              "concepts whose memories best match the image are kept.", int_range=(1, 1024)),
    ParamSpec("threshold", 0.5, "Probability at or above which a concept counts as present.",
              float_range=(0.0, 1.0)),
    ParamSpec("locate", "present", "Which concepts get a location (box, point) in ~/recognitions: present (those "
              "judged present), all (every scored concept) or off.", constraints="present, all or off"),
    ParamSpec("use_depth", False, "3-D positions: subscribe to 'depth' (sensor_msgs/Image, 16UC1 mm or 32FC1 m, "
              "registered to the colour camera) and 'camera_info' (its sensor_msgs/CameraInfo) and give every located "
              "concept a 3-D point in the colour camera's optical frame (Recognitions.locations, ~/positions)."),
    ParamSpec("depth_tolerance", 0.05, "Largest stamp difference in seconds between a colour frame and the depth "
              "frame matched to it; a frame without one keeps 2-D locations only.", float_range=(0.0, 10.0)),
    ParamSpec("max_new_tokens", 64, "Default limit of generated tokens for answers and captions.",
              int_range=(1, 4096)),
    ParamSpec("max_image_pixels", DEFAULT_MAX_PIXELS, "Largest accepted input image in pixels (width * height); "
              "larger images are refused before they are decoded.", int_range=(16, DEFAULT_MAX_PIXELS)),
    ParamSpec("request_timeout", 120.0, "Deadline in seconds of one model call (introduce, recognise, ask, caption); "
              "a call past it is abandoned and answered with an error. 0 disables the deadline.",
              float_range=(0.0, 3600.0)),
    ParamSpec("frame_timeout", 5.0, "Seconds without a camera frame while active after which diagnostics report "
              "WARN. 0 disables the check.", float_range=(0.0, 3600.0)),
)

SPEC_BY_NAME = {s.name: s for s in SPECS}


class ParameterValueError(ValueError):
    """A parameter value outside what the node accepts."""


LOCATE_MODES = ("present", "all", "off")
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def validate(name: str, value: Any) -> None:
    """Raise ParameterValueError if `value` is not acceptable for parameter `name`.

    Ranges are also enforced by rclpy through the descriptors; they are checked here as well so
    that start-up values (which rclpy applies unchecked by callbacks) get the same treatment.
    """
    spec = SPEC_BY_NAME.get(name)
    if spec is None:
        return  # not ours (qos_overrides.*, use_sim_time): rclpy validates those
    if spec.float_range is not None:
        lo, hi = spec.float_range
        if not isinstance(value, (int, float)) or math.isnan(value) or not lo <= value <= hi:
            raise ParameterValueError(f"{name} must be a number in [{lo}, {hi}], got {value!r}")
    if spec.int_range is not None:
        lo, hi = spec.int_range
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise ParameterValueError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
    if name == "max_fraction" and value <= 0.0:
        raise ParameterValueError(f"max_fraction must be greater than 0, got {value!r}")
    if name == "device" and not _DEVICE.match(str(value)):
        raise ParameterValueError(f"device must be auto, cpu, cuda or cuda:N, got {value!r}")
    if name == "dtype" and value not in DTYPES:
        raise ParameterValueError(f"dtype must be one of {', '.join(DTYPES)}, got {value!r}")
    if name == "image_transport" and value not in IMAGE_TRANSPORTS:
        raise ParameterValueError(f"image_transport must be raw or compressed, got {value!r}")
    if name == "locate" and value not in LOCATE_MODES:
        raise ParameterValueError(f"locate must be one of {', '.join(LOCATE_MODES)}, got {value!r}")
    if name == "model" and not str(value).strip():
        raise ParameterValueError("model must not be empty")
    if name == "concepts":
        for concept in value or []:
            try:
                validate_name(concept)
            except ValueError as exc:
                raise ParameterValueError(f"concepts: {exc}") from exc
    if name == "standing_questions":
        for question in value or []:
            if not str(question).strip():
                raise ParameterValueError("standing_questions must not hold empty questions")


@dataclass
class Settings:
    """Parameter values as the node uses them (arrays as lists, empty strings resolved)."""

    model: str = "toy"
    device: str = "auto"
    dtype: str = "auto"
    calibration_file: str = ""
    memory_dir: str = ""
    concepts_file: str = ""
    image_transport: str = "raw"
    autostart: bool = False
    max_tiles: int = 0
    frame_history: int = 8
    max_tokens: int = 0
    max_fraction: float = 0.2
    dynamic_k: bool = True
    max_rate: float = 5.0
    concepts: list[str] = field(default_factory=list)
    standing_questions: list[str] = field(default_factory=list)
    max_context_concepts: int = 16
    threshold: float = 0.5
    locate: str = "present"
    use_depth: bool = False
    depth_tolerance: float = 0.05
    max_new_tokens: int = 64
    max_image_pixels: int = DEFAULT_MAX_PIXELS
    request_timeout: float = 120.0
    frame_timeout: float = 5.0

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> Settings:
        """Build settings from parameter values, validating each (ParameterValueError on the first bad one)."""
        out = cls()
        for spec in SPECS:
            value = values.get(spec.name)
            if spec.default == STRING_ARRAY:
                value = [str(v) for v in (value or [])]  # an unset typed array means empty
            elif value is None:
                value = spec.default
            validate(spec.name, value)
            setattr(out, spec.name, value)
        return out

    def store_directory(self) -> Path:
        """The concept store directory: memory_dir, or one folder per model under ~/.ego_ros/stores."""
        if self.memory_dir:
            return Path(self.memory_dir).expanduser()
        return Path.home() / ".ego_ros" / "stores" / model_slug(self.model)

    def torch_device(self, cuda_available: bool) -> str:
        if self.device == "auto":
            return "cuda:0" if cuda_available else "cpu"
        return self.device

    def introduce_fields(self) -> dict[str, Any]:
        """IntroduceOptions fields these settings choose."""
        return {"dynamic_k": self.dynamic_k, "max_tokens": self.max_tokens or None, "max_fraction": self.max_fraction}


def model_slug(model: str) -> str:
    """A folder name for a model name, path or Hub id ("Qwen/Qwen2.5-VL-7B" -> "Qwen_Qwen2.5-VL-7B")."""
    text = model.strip().rstrip("/\\")
    if "/" in text and Path(text).expanduser().is_dir():
        text = Path(text).name
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")
    return slug or "model"


__all__ = ["IMAGE_TRANSPORTS", "DTYPES", "STRING_ARRAY", "ParamSpec", "SPECS", "SPEC_BY_NAME", "ParameterValueError",
           "Settings", "validate", "model_slug"]
