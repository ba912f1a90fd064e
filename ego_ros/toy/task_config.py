"""`TaskConfig`: the mix of training tasks, memory forms and phrasings, and the hard-negative curriculum."""

from __future__ import annotations

from dataclasses import dataclass, field

from .attributes import DEFAULT_WORLD, check_world

MEMORY_FORMS: tuple[str, ...] = ("full", "mask", "jitter", "random", "crop", "crop_mask")


@dataclass
class TaskConfig:
    """Mix of tasks and the curriculum. Probabilities need not sum to one (they are normalised)."""

    weights: dict[str, float] = field(
        default_factory=lambda: {
            "match": 0.46,
            "describe": 0.12,
            "area": 0.06,
            "attribute": 0.07,
            "count": 0.04,
            "caption": 0.08,
            "concept_qa": 0.10,
            "choose": 0.07,
        }
    )
    #: memory form of a context entry (see MEMORY_FORMS); "keywords" switches the whole context to text
    memory_forms: dict[str, float] = field(
        default_factory=lambda: {
            "full": 0.1,
            "mask": 0.3,
            "jitter": 0.3,
            "random": 0.18,
            "crop": 0.04,
            "crop_mask": 0.08,
        }
    )
    keywords_context_p: float = 0.1
    #: contexts with memory and keyword text together (the engine's "memory+keywords" mode)
    memory_keywords_p: float = 0.04
    #: recognition questions asked in other words than the engine's prompt (benchmark phrasings)
    paraphrase_p: float = 0.15
    #: share of negatives that are hard (a near-duplicate instead of the concept), reached after ramp_steps
    hard_max: float = 0.65
    ramp_steps: int = 12000
    #: share of images rendered at a larger (often 4:3) size and resized to 64x64 like a camera frame
    big_render_p: float = 0.2
    #: the toy world the samples come from (`attributes.WORLDS`): in "v2" instances carry identity
    #: signatures and most hard negatives are look-alikes that differ only in the signature (glyph and shade)
    world: str = DEFAULT_WORLD
    #: weight, beside `weights`, of ``match_twin`` in training: a hard negative (in v2 a look-alike) together
    #: with its positive twin, the same sample with the concept in the negative's place, so that the answer
    #: turns on the signature alone within one step (a minimal pair). 0 (the default) leaves the data stream
    #: exactly as before.
    twin_weight: float = 0.0

    def __post_init__(self) -> None:
        check_world(self.world)

    def hard_share(self, step: int) -> float:
        return self.hard_max * min(1.0, max(0.0, step / max(1, self.ramp_steps)))

    def ramp_progress(self, step: int) -> float:
        """How far the hard-negative curriculum has come at `step`, 0 -> 1 over `ramp_steps`: the samplers
        scale their other hard-case probabilities (near-duplicate contexts, companions, look-alike
        queries) by it."""
        return self.hard_share(step) / max(self.hard_max, 1e-9)
