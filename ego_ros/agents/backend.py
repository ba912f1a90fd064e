"""What the MCP tools need from the robot: the interface both backends (engine, ROS) implement.

Every method is a coroutine that returns JSON-ready data or raises `AgentError`; each bounds its own
waiting (a per-call timeout), so no tool call can hang.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any

from PIL import Image

#: Reports progress of a long call: (done, total, message); the server forwards it as MCP progress.
ProgressFn = Callable[[float, float | None, str | None], Awaitable[None]]

#: Default bound on one call that runs the model (seconds).
DEFAULT_TIMEOUT_S = 120.0


class ProgressRelay:
    """Progress reported from other threads (the model thread, ROS callbacks), sent on the event loop.

    `flush` waits until every report posted so far is sent, so the last one precedes the tool's result.
    MCP requires progress to increase from one notification to the next: a report that does not is
    dropped (a late duplicate of a ROS feedback message, say).
    """

    def __init__(self, progress: ProgressFn, loop: asyncio.AbstractEventLoop) -> None:
        self._progress, self._loop = progress, loop
        self._sent: list[concurrent.futures.Future] = []
        self._lock = threading.Lock()
        self.last = float("-inf")

    def post(self, done: float, total: float | None, message: str | None) -> None:
        """Thread-safe: schedule one report."""
        with self._lock:
            if done <= self.last:
                return
            self.last = done
            self._sent.append(asyncio.run_coroutine_threadsafe(self._progress(done, total, message), self._loop))

    async def flush(self) -> None:
        pending, self._sent = self._sent, []
        await asyncio.gather(*(asyncio.wrap_future(f) for f in pending), return_exceptions=True)


class Backend(ABC):
    """The robot's personal memory, as the MCP server reaches it."""

    #: "engine" or "ros"; shown in tool descriptions so an agent knows where images come from
    mode: str = ""
    #: whether `what_do_you_see` accepts an image (the ROS node only recognises its camera stream)
    recognizes_given_images: bool = True

    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S, allow_paths: bool = True) -> None:
        if not (math.isfinite(timeout_s) and timeout_s > 0):
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout_s}")
        self.timeout_s = timeout_s
        self.allow_paths = allow_paths

    def describe(self) -> str:
        """One line for the server's instructions: what this server is connected to."""
        return self.mode

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the backend holds (threads, ROS node)."""

    @abstractmethod
    async def list_concepts(self) -> dict[str, Any]: ...

    @abstractmethod
    async def introduce(self, name: str, images: list[Image.Image], frames: int, min_interval_s: float,
                        notes: str, replace: bool, progress: ProgressFn) -> dict[str, Any]:
        """Teach `name` from `images`, or (none given) from `frames` camera frames."""

    @abstractmethod
    async def forget(self, name: str) -> dict[str, Any]: ...

    @abstractmethod
    async def rename(self, old_name: str, new_name: str) -> dict[str, Any]: ...

    @abstractmethod
    async def what_do_you_see(self, image: Image.Image | None, concepts: list[str]) -> dict[str, Any]: ...

    @abstractmethod
    async def locate(self, name: str, image: Image.Image | None) -> dict[str, Any]:
        """Where concept `name` is in the image (default: the latest frame): `location_result`'s shape."""

    @abstractmethod
    async def ask(self, question: str, image: Image.Image | None, concepts: list[str],
                  max_new_tokens: int) -> dict[str, Any]: ...

    @abstractmethod
    async def caption(self, image: Image.Image | None, concepts: list[str], max_new_tokens: int) -> dict[str, Any]: ...

    @abstractmethod
    async def latest_frame(self) -> tuple[Image.Image, dict[str, Any]]:
        """The latest camera frame and what is known about it (stamp, size, age)."""


def concept_summary(name: str, keywords: list[str], views: int, tokens: int, area_percent: list[float | None],
                    notes: str) -> dict[str, Any]:
    """The one shape both backends give a concept in tool results."""
    return {"name": name, "keywords": list(keywords), "views": int(views), "tokens": int(tokens),
            "area_percent": [None if a is None or not math.isfinite(a) else round(float(a), 1)
                             for a in area_percent],
            "notes": notes}


def recognitions_result(names: list[str], probabilities: list[float], present: list[bool],
                        threshold: float) -> dict[str, Any]:
    """`what_do_you_see`'s result core: the present concepts first, then every scored concept."""
    scored = sorted(zip(names, probabilities, present), key=lambda t: -t[1])
    return {"present": [n for n, _, p in scored if p],
            "scores": [{"name": n, "probability": round(float(pr), 4), "present": bool(p)} for n, pr, p in scored],
            "threshold": round(float(threshold), 4)}


def location_result(name: str, found: bool, probability: float, box: tuple[float, float, float, float],
                    point: tuple[float, float], score: float, image_size: tuple[int, int] | None
                    ) -> dict[str, Any]:
    """`locate`'s result core, the same from both backends: pixels of the image searched (origin top-left),
    whose size is given when known (`image_size`, width and height)."""
    out = {"name": name, "found": bool(found), "probability": round(float(probability), 4),
           "box": {"x_min": round(float(box[0]), 1), "y_min": round(float(box[1]), 1),
                   "x_max": round(float(box[2]), 1), "y_max": round(float(box[3]), 1)},
           "point": {"x": round(float(point[0]), 1), "y": round(float(point[1]), 1)},
           "score": round(float(score), 4),
           "note": ("judged present; box and point locate it" if found else
                    "not judged present: box and point are only the map's best guess")}
    if image_size is not None:
        out["image"] = {"width": int(image_size[0]), "height": int(image_size[1])}
    return out
