"""The units of cached work of an evaluation run, and the seeded selection that `--limit` makes."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class WorkItem:
    """One unit of cached work: a (task, image, concept, item) with the dataset record behind it."""

    task: str
    key: str
    image: str
    concept: str
    item: str
    record: Any


def select_limited(items: Sequence[Any], limit: int | None, seed: int, group: Callable[[Any], str]) -> list[Any]:
    """Up to ``limit`` items, round-robin over groups in a seeded order, returned in dataset order."""
    if limit is None or limit >= len(items):
        return list(items)
    rng = random.Random(seed)
    buckets: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        buckets.setdefault(group(it), []).append(i)
    order = list(buckets)
    rng.shuffle(order)
    for g in order:
        rng.shuffle(buckets[g])
    chosen: list[int] = []
    while len(chosen) < limit:
        for g in order:
            if buckets[g] and len(chosen) < limit:
                chosen.append(buckets[g].pop())
    return [items[i] for i in sorted(chosen)]
