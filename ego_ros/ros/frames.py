"""Camera frames waiting for the model, and the counters diagnostics report about them.

Thread-safe: the subscription callback adds frames, the streaming worker takes them, services read
the latest ones, and the diagnostics timer reads the counters.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque

from sensor_msgs.msg import CompressedImage, Image

FrameMsg = Image | CompressedImage


class FrameBuffer:
    """The latest camera frames (a few, for introductions from recent frames), thread-safe.

    The streaming worker only ever takes the newest frame; a frame replaced before the worker took
    it counts as dropped.
    """

    def __init__(self, history: int) -> None:
        self._frames: deque[tuple[int, FrameMsg]] = deque(maxlen=max(1, history))
        self._cond = threading.Condition()
        self._seq = 0
        self._taken = 0
        self.received = 0
        self.dropped = 0
        #: time.monotonic() of the last frame put (None before the first): diagnostics tell camera silence
        self.last_put_time: float | None = None

    def put(self, msg: FrameMsg) -> None:
        with self._cond:
            if self._seq > self._taken:
                self.dropped += 1
            self._seq += 1
            self.received += 1
            self.last_put_time = time.monotonic()
            self._frames.append((self._seq, msg))
            self._cond.notify_all()

    @property
    def last_seq(self) -> int:
        with self._cond:
            return self._seq

    def newest(self) -> tuple[int, FrameMsg] | None:
        with self._cond:
            return self._frames[-1] if self._frames else None

    def latest(self, count: int) -> list[FrameMsg]:
        """Up to `count` most recent frames, oldest first."""
        with self._cond:
            return [m for _, m in list(self._frames)[-count:]]

    def available(self) -> int:
        with self._cond:
            return len(self._frames)

    def take_newest(self, stop: threading.Event, timeout: float) -> FrameMsg | None:
        """Wait (up to `timeout`) for a frame the worker has not taken yet, and take the newest."""
        with self._cond:
            if self._seq == self._taken:
                self._cond.wait(timeout)
            if stop.is_set() or self._seq == self._taken or not self._frames:
                return None
            self._taken = self._seq
            return self._frames[-1][1]

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def clear(self) -> None:
        with self._cond:
            self._frames.clear()
            self._taken = self._seq
            self._cond.notify_all()


class Stats:
    """Counters for diagnostics (updated by the worker, read by the diagnostics timer)."""

    def __init__(self) -> None:
        self.processed = 0
        self.rejected = 0
        self.failed = 0
        self.last_latency_s = math.nan
        self.latencies: deque[float] = deque(maxlen=50)
        self.last_error = ""
        self._tick_time = time.monotonic()
        self._tick_processed = 0

    def rate(self) -> float:
        """Frames processed per second since the previous call."""
        now = time.monotonic()
        elapsed = now - self._tick_time
        rate = (self.processed - self._tick_processed) / elapsed if elapsed > 0 else 0.0
        self._tick_time, self._tick_processed = now, self.processed
        return rate


__all__ = ["FrameBuffer", "FrameMsg", "Stats"]
