"""The node's /diagnostics status: state, rates, latencies, frame counters, memory, and a level that
tells the truth.

The level follows these rules (`assess`, a pure function, so they are tested without ROS):
  ERROR  the node is unconfigured because its last configure failed (the message gives the reason).
  WARN   concepts in the store are unavailable (files missing or damaged: names and reasons), or a
         concepts_file entry could not be introduced; or, while active: no camera frame for
         `frame_timeout` seconds (since activation if none came), the last frame failed, or
         processing fell below half of min(max_rate, input rate) over the last RATE_WINDOW_S seconds
         while frames arrived (checked once the node has been active for a whole window); or, with
         use_depth, the last processed frame got no 3-D positions (no depth frame, a stale one, no
         camera_info, unusable sizes: the reason is given; its locations are 2-D only).
  OK     none of these.
Every rule that holds adds its sentence to the message; the level is the worst of them.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from std_msgs.msg import Header

#: Seconds over which the input and processing rates are compared.
RATE_WINDOW_S = 10.0
#: Processing below this share of min(max_rate, input rate) over the window counts as far too slow.
SLOW_SHARE = 0.5
OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR


@dataclass
class Health:
    """What the level of the node's status is decided from (a snapshot taken at one diagnostics tick)."""

    state: str
    configure_error: str = ""
    unavailable: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    last_frame_error: str = ""
    #: seconds since the last camera frame (since activation if none came yet); None when not active
    silent_s: float | None = None
    frame_timeout: float = 5.0
    topic: str = "image"
    #: rates over the last full window (None until the node has been active for one)
    input_rate: float | None = None
    processed_rate: float | None = None
    max_rate: float = 5.0
    #: with use_depth: why the last processed frame had no 3-D positions (empty: it had)
    depth_status: str = ""


def assess(h: Health) -> tuple[bytes, str]:
    """(level, message) of the node's status; see the module docstring for the rules."""
    if h.state == "unconfigured" and h.configure_error:
        return ERROR, f"unconfigured: configure failed: {h.configure_error}"
    warnings = []
    if h.unavailable:
        listed = "; ".join(f"{name!r} ({why})" for name, why in sorted(h.unavailable.items()))
        warnings.append(f"{len(h.unavailable)} concept(s) unavailable: {listed}")
    warnings += h.problems
    if h.state == "active":
        if h.frame_timeout > 0 and h.silent_s is not None and h.silent_s >= h.frame_timeout:
            warnings.append(f"no camera frame on {h.topic} for {h.silent_s:.1f} s "
                            f"(frame_timeout {h.frame_timeout:g} s)")
        elif h.last_frame_error:
            warnings.append(f"last frame error: {h.last_frame_error}")
        if h.input_rate is not None and h.processed_rate is not None and h.input_rate > 0:
            expected = min(h.max_rate, h.input_rate)
            if h.processed_rate < SLOW_SHARE * expected:
                warnings.append(f"processing {h.processed_rate:.2f} Hz over the last {RATE_WINDOW_S:g} s, below "
                                f"{SLOW_SHARE:.0%} of min(max_rate {h.max_rate:g} Hz, input {h.input_rate:.2f} Hz)")
        if h.depth_status:
            warnings.append(f"no 3-D positions (2-D locations only): {h.depth_status}")
    if warnings:
        return WARN, "; ".join(warnings)
    return OK, h.state


class RateWindow:
    """Input and processing rates over the last `window` seconds, from cumulative counters sampled
    at each diagnostics tick (monotonic clock: rates bound compute, they say nothing of camera time)."""

    def __init__(self, window: float = RATE_WINDOW_S) -> None:
        self.window = window
        self._samples: deque[tuple[float, int, int]] = deque()

    def reset(self) -> None:
        self._samples.clear()

    def add(self, received: int, processed: int, now: float | None = None) -> tuple[float | None, float | None]:
        """Record the counters; returns (input rate, processed rate) over a full window, else (None, None)."""
        now = time.monotonic() if now is None else now
        self._samples.append((now, received, processed))
        # keep the newest sample that is at least a window old, as the window's start
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window:
            self._samples.popleft()
        t0, r0, p0 = self._samples[0]
        elapsed = now - t0
        if elapsed < self.window or elapsed <= 0:
            return None, None
        return (received - r0) / elapsed, (processed - p0) / elapsed


class DiagnosticsMixin:
    """EgoNode's diagnostics timer and status."""

    def _on_tick(self) -> None:
        self._wake_waiters()
        if rclpy.ok(context=self.context):
            self._diagnostics_pub.publish(DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()),
                                                          status=[self._diagnostic_status()]))

    def _health(self) -> Health:
        s, engine = self._settings, self._engine
        active = self._state == "active"
        input_rate = processed_rate = None
        silent_s = None
        if active:
            input_rate, processed_rate = self._rates.add(self._frames.received, self._stats.processed)
            last = self._frames.last_put_time
            since = self._active_since if last is None or last < self._active_since else last
            silent_s = time.monotonic() - since
        else:
            self._rates.reset()
        topic = self._subscription.topic_name if self._subscription is not None else "image"
        return Health(state=self._state, configure_error=self._configure_error,
                      unavailable=self._unavailable(engine), problems=list(self._problems),
                      last_frame_error=self._stats.last_error, silent_s=silent_s, frame_timeout=float(s.frame_timeout),
                      topic=topic, input_rate=input_rate, processed_rate=processed_rate, max_rate=float(s.max_rate),
                      depth_status=self._depth_status if self._uses_depth() else "")

    def _diagnostic_status(self) -> DiagnosticStatus:
        s, st, engine = self._settings, self._stats, self._engine
        health = self._health()
        latencies = list(st.latencies)
        values = {
            "state": self._state,
            "model": s.model,
            "device": str(engine.backend.device) if engine is not None else s.device,
            "concepts": len(engine.store) if engine is not None else 0,
            "concepts_unavailable": len(health.unavailable),
            "processed_rate_hz": f"{st.rate():.2f}",
            "max_rate_hz": f"{s.max_rate:g}",
            "window_input_rate_hz": "" if health.input_rate is None else f"{health.input_rate:.2f}",
            "window_processed_rate_hz": "" if health.processed_rate is None else f"{health.processed_rate:.2f}",
            "seconds_since_frame": "" if health.silent_s is None else f"{health.silent_s:.1f}",
            "latency_ms": f"{st.last_latency_s * 1e3:.1f}",
            "mean_latency_ms": f"{(sum(latencies) / len(latencies) * 1e3) if latencies else math.nan:.1f}",
            "frames_received": self._frames.received,
            "frames_processed": st.processed,
            "frames_dropped": self._frames.dropped,
            "frames_rejected": st.rejected,
            "frames_failed": st.failed,
            "introducing": self._introducing or "",
            "store_problems": len(self._problems) + len(health.unavailable),
            "use_depth": self._uses_depth(),
            "depth_frames_received": self._depth_received,
            "positions_status": (health.depth_status or "ok") if self._uses_depth() else "",
        }
        for key, mib in sorted(self._memory_report.items()):
            values[f"memory_{key}"] = f"{mib:.2f}"
        level, message = assess(health)
        return DiagnosticStatus(level=level, name=f"{self.get_fully_qualified_name()}: ego", message=message,
                                hardware_id=values["device"],
                                values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])

    @staticmethod
    def _unavailable(engine: object) -> dict[str, str]:
        """The store's unavailable concepts (name -> reason); empty when no engine is loaded."""
        if engine is None:
            return {}
        return dict(engine.store.unavailable())
