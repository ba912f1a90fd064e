"""Which LLM layers' keyword attention the engine uses, and why.

A published checkpoint is recognised by its *architecture* (family, layer count, widths, heads,
vocabulary, vision tower shape), read from its config alone: a model directory can be renamed, copied
or fetched under any Hub id and still get the layers published for it, and nothing is guessed from a
path. The table below holds every architecture with known layers; anything else uses all layers until
`ego-ros calibrate` writes a calibration file (with masks, or self-calibrated without them).

Order of precedence (`choose_layers`): layers set explicitly, a calibration file, the table's default,
all layers.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from .calibration import Calibration


def _pair(value: Any) -> tuple[int, int] | None:
    """Image and patch sizes are an int in some configs and [h, w] in others; compare them as (h, w)."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return (int(value[0]), int(value[-1]))
    return (int(value), int(value))


def _first(cfg: Any, *names: str) -> Any:
    for name in names:
        value = getattr(cfg, name, None)
        if value is not None:
            return value
    return None


@dataclass(frozen=True)
class Architecture:
    """What identifies a published checkpoint's architecture, without paths or weights.

    Fields a family's config does not have are None (Qwen's vision towers have no fixed image size).
    """

    family: str
    layers: int
    hidden_size: int
    intermediate_size: int | None
    heads: int
    kv_heads: int | None
    vocab_size: int
    vision_hidden_size: int | None
    vision_layers: int | None
    vision_heads: int | None
    vision_patch_size: tuple[int, int] | None
    vision_image_size: tuple[int, int] | None

    @classmethod
    def of(cls, config: Any) -> Architecture:
        """The architecture of a transformers config (a model's `config`)."""
        text = config.get_text_config()
        vision = getattr(config, "vision_config", None)
        return cls(
            family=str(config.model_type),
            layers=int(text.num_hidden_layers),
            hidden_size=int(text.hidden_size),
            intermediate_size=_first(text, "intermediate_size"),
            heads=int(text.num_attention_heads),
            kv_heads=_first(text, "num_key_value_heads"),
            vocab_size=int(_first(text, "vocab_size") or config.vocab_size),
            # Qwen2-VL's tower width is embed_dim (its hidden_size is the merger's output, the LLM's width)
            vision_hidden_size=_first(vision, "embed_dim", "hidden_size") if vision is not None else None,
            vision_layers=_first(vision, "num_hidden_layers", "depth") if vision is not None else None,
            vision_heads=_first(vision, "num_attention_heads", "num_heads") if vision is not None else None,
            vision_patch_size=_pair(_first(vision, "patch_size")) if vision is not None else None,
            vision_image_size=_pair(_first(vision, "image_size")) if vision is not None else None,
        )

    def differences(self, other: Architecture) -> list[str]:
        """Names of the fields that differ (for messages and tests)."""
        return [f.name for f in fields(self) if getattr(self, f.name) != getattr(other, f.name)]


@dataclass(frozen=True)
class KnownModel:
    """A published architecture and the layers known for it (None: known model, no published layers)."""

    name: str
    architecture: Architecture
    layers: tuple[int, ...] | None
    #: where the layers come from ("published" by the model's authors or Ego's, or "calibrated" here)
    kind: str
    source: str


#: Every architecture with known layers. The numbers are the checkpoints' own config.json values
#: (random_models.SIZES builds the same architectures for benchmarks; a test checks they match).
KNOWN_MODELS: tuple[KnownModel, ...] = (
    KnownModel(
        name="InternVL3-14B",
        architecture=Architecture(
            family="internvl", layers=48, hidden_size=5120, intermediate_size=13824, heads=40, kv_heads=8,
            vocab_size=151674, vision_hidden_size=1024, vision_layers=24, vision_heads=16,
            vision_patch_size=(14, 14), vision_image_size=(448, 448)),
        layers=(29, 30, 35, 36, 39),
        kind="published",
        source="the Ego authors' layers for InternVL3-14B at 448 px, one tile (shared/design/eval-notes.md; "
               "the paper's section 3.4 gives the procedure, not the numbers)",
    ),
    KnownModel(
        name="Qwen2.5-VL-7B-Instruct",
        architecture=Architecture(
            family="qwen2_5_vl", layers=28, hidden_size=3584, intermediate_size=18944, heads=28, kv_heads=4,
            vocab_size=152064, vision_hidden_size=1280, vision_layers=32, vision_heads=16,
            vision_patch_size=(14, 14), vision_image_size=None),
        layers=None,
        kind="published",
        source="evaluated in the Ego paper, but its layers are not published",
    ),
    KnownModel(
        name="toy",
        architecture=Architecture(
            family="llava", layers=4, hidden_size=256, intermediate_size=512, heads=4, kv_heads=4,
            vocab_size=1017, vision_hidden_size=128, vision_layers=4, vision_heads=4,
            vision_patch_size=(8, 8), vision_image_size=(64, 64)),
        layers=(0, 1),
        kind="calibrated",
        source="the embedded toy model's mask calibration on the toy world's exact masks "
               "(ego_ros/toy/model/ego_calibration.json, docs/toy_model.md)",
    ),
)


def known_model(config: Any) -> KnownModel | None:
    """The table entry whose architecture the config has, if any."""
    arch = Architecture.of(config)
    return next((m for m in KNOWN_MODELS if m.architecture == arch), None)


@dataclass(frozen=True)
class LayerChoice:
    """The layers keyword attention is read on (None: every layer), where they come from and why."""

    layers: list[int] | None
    #: "setting", "calibration", "self-calibration", "default" or "all"
    source: str
    reason: str

    def message(self) -> str:
        which = "all layers" if self.layers is None else f"layers {self.layers}"
        return f"keyword attention on {which}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {"layers": self.layers, "source": self.source, "reason": self.reason}


def choose_layers(config: Any, num_layers: int, layers: list[int] | None = None,
                  calibration: Calibration | None = None) -> LayerChoice:
    """Explicit layers, else the calibration file's, else the table's default for the architecture, else
    all layers (saying why none is known)."""
    if layers is not None:
        return LayerChoice(list(layers), "setting", "set explicitly (EngineConfig.layers / --layers)")
    if calibration is not None:
        where = f"calibration file {calibration.path}" if calibration.path else "calibration given to the engine"
        if calibration.method == "self":
            return LayerChoice(list(calibration.layers), "self-calibration",
                               f"self-calibrated ({where}: spatial coherence of keyword attention on "
                               f"{calibration.samples} unlabeled images)")
        return LayerChoice(list(calibration.layers), "calibration",
                           f"{where} (mask overlap on {calibration.samples} images)")
    known = known_model(config)
    if known is not None and known.layers is not None and max(known.layers) < num_layers:
        return LayerChoice(list(known.layers), "default",
                           f"{known.kind} default for {known.name}, matched by architecture: {known.source}")
    if known is not None:
        return LayerChoice(None, "all", f"all layers (the architecture is {known.name}, {known.source}; "
                                        "run ego-ros calibrate)")
    return LayerChoice(None, "all", "all layers (no default known for this architecture; run ego-ros calibrate)")
