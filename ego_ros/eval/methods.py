"""The compared methods (paper Tables 1-3) as engine settings.

A method is how concepts are introduced (which visual tokens are kept) and what the engine puts in
context at inference. The number of reference views is a run setting (``--views``), not a method.

============================ ========== ========= ============ ====================
name                         selection  dynamic_k max_fraction context
============================ ========== ========= ============ ====================
ego                          attention  yes       0.2          memory
ego-fixed                    attention  no        0.2          memory
full-visual                  all        no        1.0          memory
uniform                      uniform    no        0.2          memory
random                       random     no        0.2          memory
keywords                     attention  no        0.2          keywords
full-visual+keywords         all        no        1.0          memory+keywords
reference-images             all        no        1.0          reference_images
base                         attention  no        0.2          none
============================ ========== ========= ============ ====================

``ego`` is the paper's method (K_c = min(K, alpha_c N_r / 100), K = 20% of the tokens); ``ego-fixed``
keeps K = 20% for every view, the setting of the ablation (Table 3), where Uniform and Random use the
same budget. ``keywords`` and ``base`` still introduce concepts (so the engine knows their names and
the keywords exist), but put only the keywords, or nothing, in context.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

SELECTIONS = ("attention", "uniform", "random", "all")
CONTEXTS = ("memory", "keywords", "memory+keywords", "reference_images", "none")


@dataclass(frozen=True)
class MethodSpec:
    """Engine settings of a compared method; ``selection`` and ``context`` take the engine's values."""

    name: str
    selection: str
    dynamic_k: bool
    max_fraction: float
    context: str
    description: str = ""

    def __post_init__(self) -> None:
        if self.selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}, got {self.selection!r}")
        if self.context not in CONTEXTS:
            raise ValueError(f"context must be one of {CONTEXTS}, got {self.context!r}")
        if not 0.0 < self.max_fraction <= 1.0:
            raise ValueError(f"max_fraction must be in (0, 1], got {self.max_fraction!r}")

    @property
    def keep_reference(self) -> bool:
        return self.context == "reference_images"

    def introduce_kwargs(self, seed: int = 0) -> dict[str, Any]:
        """Keyword arguments of ``ego_ros.core.engine.IntroduceOptions`` for this method."""
        return {
            "selection": self.selection,
            "dynamic_k": self.dynamic_k,
            "max_tokens": None,
            "max_fraction": self.max_fraction,
            "keep_reference": self.keep_reference,
            "seed": seed,
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


METHODS: dict[str, MethodSpec] = {
    m.name: m
    for m in (
        MethodSpec("ego", "attention", True, 0.2, "memory", "Ego: attention-selected tokens, dynamic K_c"),
        MethodSpec("ego-fixed", "attention", False, 0.2, "memory", "Ego with a fixed K (20% of the tokens)"),
        MethodSpec("full-visual", "all", False, 1.0, "memory", "all visual tokens of the reference views"),
        MethodSpec("uniform", "uniform", False, 0.2, "memory", "uniformly spaced tokens, same budget as Ego"),
        MethodSpec("random", "random", False, 0.2, "memory", "random tokens (seeded), same budget as Ego"),
        MethodSpec("keywords", "attention", False, 0.2, "keywords", "the generated keywords only, as text"),
        MethodSpec("full-visual+keywords", "all", False, 1.0, "memory+keywords", "all tokens plus keywords"),
        MethodSpec("reference-images", "all", False, 1.0, "reference_images", "raw reference images in context"),
        MethodSpec("base", "attention", False, 0.2, "none", "the base model, no personalization in context"),
    )
}

#: Row labels used in the paper-shaped tables.
DISPLAY_NAMES = {
    "ego": "Ego",
    "ego-fixed": "Ego (fixed K)",
    "full-visual": "Full Visual",
    "uniform": "Uniform",
    "random": "Random",
    "keywords": "Keywords",
    "full-visual+keywords": "Full Visual + Keywords",
    "reference-images": "Reference images",
    "base": "Base model",
}


def get_method(name: str) -> MethodSpec:
    """Return the method called ``name``; raise ValueError listing the known names."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(METHODS)}") from None
