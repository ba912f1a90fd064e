"""What the ROS benchmarks (stream rate, soak) share: a process's RSS, latency percentiles, RSS slope, and
writing the result file."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def rss_mb(pid: int) -> float | None:
    """Resident set size of a process in MB, from /proc (None once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def percentiles_ms(values_s: list[float]) -> dict[str, float]:
    """Count, mean, p50/p90/p95/p99 and max of latencies given in seconds, in milliseconds."""
    if not values_s:
        return {}
    arr = np.asarray(values_s) * 1000.0
    out = {"n": len(values_s), "mean": round(float(arr.mean()), 2)}
    out.update({f"p{q}": round(float(np.percentile(arr, q)), 2) for q in (50, 90, 95, 99)})
    out["max"] = round(float(arr.max()), 2)
    return out


def slope_per_minute(samples: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) samples, per minute; None with fewer than 3 samples."""
    if len(samples) < 3:
        return None
    t = np.array([s[0] for s in samples])
    y = np.array([s[1] for s in samples])
    return round(float(np.polyfit(t - t[0], y, 1)[0] * 60.0), 3)


def write_result(out: Path, result: dict[str, Any], say: Callable[[str], None]) -> None:
    """Write the result JSON to `out` (creating its folder), echo it on stdout and say where it went."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=1))
    say(f"wrote {out}")
