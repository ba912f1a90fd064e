"""Which toy world a model directory was trained on, so that its exports and evaluations use the same one."""

from __future__ import annotations

import json
from pathlib import Path

from . import attributes
from .attributes import WORLDS

#: The committed weights' directory (the built-in model name "toy").
BUILTIN_MODEL_DIR = Path(__file__).resolve().parent / "model"

#: The world of toy weights whose training_state.json names none: they were trained before world v2
#: existed. Not `DEFAULT_WORLD`, which changes when v2 weights are committed.
UNRECORDED_WORLD = "v1"


def model_world(model: str) -> str:
    """The world recorded in `model`'s training_state.json ("toy" = the committed weights); v1 for a toy
    model directory whose state records none (weights trained before world v2 existed); the default
    world when `model` is not a toy model directory (no readable training_state.json)."""
    path = BUILTIN_MODEL_DIR if model == "toy" else Path(model)
    try:
        state = json.loads((path / "training_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return attributes.DEFAULT_WORLD
    if not isinstance(state, dict):
        return attributes.DEFAULT_WORLD
    world = state.get("world_version", UNRECORDED_WORLD)
    return world if world in WORLDS else UNRECORDED_WORLD
