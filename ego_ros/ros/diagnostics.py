"""The node's /diagnostics status: state, rates, latencies, frame counters and memory.
"""

from __future__ import annotations

import math

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from std_msgs.msg import Header


class DiagnosticsMixin:
    """EgoNode's diagnostics timer and status."""

    def _on_tick(self) -> None:
        self._wake_waiters()
        if rclpy.ok(context=self.context):
            self._diagnostics_pub.publish(DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()),
                                                          status=[self._diagnostic_status()]))

    def _diagnostic_status(self) -> DiagnosticStatus:
        s, st, engine = self._settings, self._stats, self._engine
        latencies = list(st.latencies)
        values = {
            "state": self._state,
            "model": s.model,
            "device": str(engine.backend.device) if engine is not None else s.device,
            "concepts": len(engine.store) if engine is not None else 0,
            "processed_rate_hz": f"{st.rate():.2f}",
            "max_rate_hz": f"{s.max_rate:g}",
            "latency_ms": f"{st.last_latency_s * 1e3:.1f}",
            "mean_latency_ms": f"{(sum(latencies) / len(latencies) * 1e3) if latencies else math.nan:.1f}",
            "frames_received": self._frames.received,
            "frames_processed": st.processed,
            "frames_dropped": self._frames.dropped,
            "frames_rejected": st.rejected,
            "frames_failed": st.failed,
            "introducing": self._introducing or "",
            "store_problems": len(self._problems),
        }
        for key, mib in sorted(self._memory_report.items()):
            values[f"memory_{key}"] = f"{mib:.2f}"
        if self._problems:
            level, message = DiagnosticStatus.WARN, "; ".join(self._problems)
        elif st.last_error and self._state == "active":
            level, message = DiagnosticStatus.WARN, f"last frame error: {st.last_error}"
        else:
            level, message = DiagnosticStatus.OK, self._state
        return DiagnosticStatus(level=level, name=f"{self.get_fully_qualified_name()}: ego", message=message,
                                hardware_id=values["device"],
                                values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
