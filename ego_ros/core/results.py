"""What the engine's calls return: a concept's recognition (with its location, when asked) and an answer."""

from __future__ import annotations

from dataclasses import dataclass

from .localise import Location


@dataclass
class Recognition:
    name: str
    probability: float
    present: bool
    #: False when the similarity filter left the concept out of the context (probability is then 0)
    considered: bool = True
    #: where it is in the image, when localisation was asked for it (localise.Location)
    location: Location | None = None


@dataclass
class Answer:
    text: str
    concepts: list[str]
    seconds: float = 0.0
