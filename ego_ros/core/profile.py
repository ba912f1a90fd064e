"""Per-stage wall-clock breakdown of engine calls, for the benchmarks' profiles.

The engine marks its stages with `stage(name)` (preprocessing, vision tower, prefix, question tails,
decode steps, ...). Without an active `Profiler` a stage costs one context-variable lookup, so the marks
stay in the hot path. With one active, each stage's time is added up by name; nested stages are
recorded under "outer/inner", and the time of a profiled call not covered by any top-level stage is
what the report calls host gaps. On CUDA the profiler synchronises the device at each stage boundary
so that asynchronous kernels are charged to the stage that launched them (this slows the profiled run
a little; benchmarks report unprofiled timings separately).
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import torch

_active: contextvars.ContextVar[Profiler | None] = contextvars.ContextVar("ego_profiler", default=None)
_path: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("ego_profile_path", default=())


class Profiler:
    """Collects stage durations while active (`with Profiler(device) as prof: ...`)."""

    def __init__(self, device: torch.device | str | None = None) -> None:
        dev = torch.device(device) if device is not None else None
        self._cuda = dev if dev is not None and dev.type == "cuda" else None
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.wall = 0.0
        self._token: contextvars.Token | None = None
        self._t0 = 0.0

    def synchronize(self) -> None:
        if self._cuda is not None:
            torch.cuda.synchronize(self._cuda)

    def __enter__(self) -> Profiler:
        self.synchronize()
        self._token = _active.set(self)
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.synchronize()
        self.wall += time.perf_counter() - self._t0
        assert self._token is not None
        _active.reset(self._token)
        self._token = None

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] += seconds
        self.calls[name] += 1

    def report(self, runs: int = 1) -> dict[str, Any]:
        """Milliseconds per run for every stage, plus the host gaps (wall time outside top-level stages)."""
        runs = max(1, runs)
        top = sum(s for n, s in self.seconds.items() if "/" not in n)
        return {"wall_ms": 1000 * self.wall / runs,
                "stages_ms": {n: 1000 * s / runs for n, s in sorted(self.seconds.items())},
                "calls_per_run": {n: c / runs for n, c in sorted(self.calls.items())},
                "host_gaps_ms": 1000 * max(0.0, self.wall - top) / runs}


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Time the enclosed block as stage `name` when a Profiler is active; otherwise do nothing."""
    prof = _active.get()
    if prof is None:
        yield
        return
    path = (*_path.get(), name)
    token = _path.set(path)
    prof.synchronize()
    t0 = time.perf_counter()
    try:
        yield
    finally:
        prof.synchronize()
        prof.add("/".join(path), time.perf_counter() - t0)
        _path.reset(token)


__all__ = ["Profiler", "stage"]
