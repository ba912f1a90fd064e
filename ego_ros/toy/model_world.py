"""Which toy world a model directory was trained on, so that its exports and evaluations use the same one."""

from __future__ import annotations

import json
from pathlib import Path

from .attributes import DEFAULT_WORLD, WORLDS

#: The committed weights' directory (the built-in model name "toy").
BUILTIN_MODEL_DIR = Path(__file__).resolve().parent / "model"


def model_world(model: str) -> str:
    """The world recorded in `model`'s training_state.json ("toy" = the committed weights), or v1 when
    the file or the field is missing (weights trained before world v2 existed) or the model is not a
    toy model directory."""
    path = BUILTIN_MODEL_DIR if model == "toy" else Path(model)
    try:
        state = json.loads((path / "training_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return DEFAULT_WORLD
    world = state.get("world_version") if isinstance(state, dict) else None
    return world if world in WORLDS else DEFAULT_WORLD
