"""Helpers for tests that run real ROS 2 processes: private domains on loopback, logs in tmp, SIGTERM.

Each test gets its own ROS_DOMAIN_ID from a range the other test modules do not use (101-200 here;
test_ego_msgs uses 50-79 and test_fastdds_profile 80-99), discovery limited to localhost, and its logs
in a temporary folder. Node processes are stopped with SIGTERM (SIGINT is unreliable for lifecycle
nodes with the pip wheels), with a SIGKILL fallback.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FASTDDS_PROFILE = REPO / "config" / "fastdds_large_images.xml"
_DOMAINS = itertools.cycle(range(101 + (os.getpid() % 10) * 10, 111 + (os.getpid() % 10) * 10))


def next_domain() -> int:
    return next(_DOMAINS) if os.environ.get("EGO_TEST_DOMAIN") is None else int(os.environ["EGO_TEST_DOMAIN"])


def ros_env(domain: int, log_dir: str | Path | None = None, large_images: bool = True) -> dict[str, str]:
    """Environment for a ROS process (and for this process, see `use_ros_env`)."""
    env = dict(os.environ)
    env.update({
        "ROS_DOMAIN_ID": str(domain),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "ROS_LOG_DIR": str(log_dir or tempfile.mkdtemp(prefix="ego_roslog_")),
        "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp",
        "AMENT_PREFIX_PATH": sys.prefix,
        "PYTHONUNBUFFERED": "1",
    })
    if large_images and FASTDDS_PROFILE.is_file():
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(FASTDDS_PROFILE)
    return env


@contextmanager
def use_ros_env(domain: int, log_dir: str | Path | None = None) -> Iterator[dict[str, str]]:
    """Set the ROS environment for this test process (rclpy reads it at init)."""
    env = ros_env(domain, log_dir)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield env
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def start_process(args: list[str], env: dict[str, str], log_path: str | Path) -> subprocess.Popen:
    """Start a node process (its own session, output to a log file)."""
    log = open(log_path, "wb")  # noqa: SIM115 - closed by stop_process
    proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    proc._ego_log = log  # type: ignore[attr-defined]
    return proc


def stop_process(proc: subprocess.Popen, timeout: float = 15.0) -> int:
    """SIGTERM, wait, then SIGKILL; returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    log = getattr(proc, "_ego_log", None)
    if log is not None:
        log.close()
    return proc.returncode
