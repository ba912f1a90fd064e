"""Child processes of the demo's graph: the command line of a node, its start and stop, and the Fast DDS
profile that its environment names.

Apart from the graph because none of it needs rclpy, and the agent backend looks up the same profile
for its own client without starting a graph.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROFILE_NAME = "fastdds_large_images.xml"


# Runs in each child before it becomes the node: asks Linux to SIGTERM it when the demo process dies,
# so a killed demo leaves no nodes behind. A wrapper instead of Popen(preexec_fn=...) because
# preexec_fn is unsafe once rclpy's threads run in the parent.
_CHILD_WRAPPER = (
    "import ctypes, os, signal, sys\n"
    "if sys.platform.startswith('linux'):\n"
    "    ctypes.CDLL(None).prctl(1, int(signal.SIGTERM))\n"  # 1 = PR_SET_PDEATHSIG
    "    if os.getppid() != int(sys.argv[1]): sys.exit(1)\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


def find_profile() -> Path | None:
    """The Fast DDS large-image profile: source tree, then ``<prefix>/share/ego_ros/config``."""
    candidates = [Path(__file__).resolve().parents[2] / "config" / PROFILE_NAME,
                  Path(sys.prefix) / "share" / "ego_ros" / "config" / PROFILE_NAME]
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            candidates.append(Path(prefix) / "share" / "ego_ros" / "config" / PROFILE_NAME)
    return next((c for c in candidates if c.is_file()), None)


@dataclass
class Child:
    """A started child process and the log file its output goes to (closed by `stop_child`)."""

    name: str
    proc: subprocess.Popen
    log_path: Path
    log: Any

    def tail(self, lines: int = 25) -> str:
        self.log.flush()
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def spawn_child(name: str, cmd: list[str], log_dir: Path, env: dict[str, str]) -> Child:
    """Start `cmd` as `name` in its own session, output in ``log_dir/<name>.log``, SIGTERM on the demo's death."""
    log_path = log_dir / f"{name}.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed by stop_child
    wrapped = [sys.executable, "-c", _CHILD_WRAPPER, str(os.getpid()), *cmd]
    proc = subprocess.Popen(wrapped, env=env, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    return Child(name, proc, log_path, log)


def stop_child(child: Child, timeout: float = 10.0) -> int | None:
    """SIGTERM (SIGINT is unreliable for lifecycle nodes), wait, then SIGKILL the child's group."""
    proc = child.proc
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(5)
    child.log.close()
    return proc.returncode


def python_module_command(module: str, params: dict[str, Any], ros_args: Sequence[str] = ()) -> list[str]:
    """``python -m module --ros-args -p k:=v ...`` (values in ROS's YAML parameter syntax)."""
    cmd = [sys.executable, "-m", module, "--ros-args"]
    for key, value in params.items():
        cmd += ["-p", f"{key}:={_param_text(value)}"]
    return cmd + list(ros_args)


def _param_text(value: Any) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(json.dumps(v) if isinstance(v, str) else _param_text(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)  # quoted: "random:llava" or "1e3" stay strings
    return str(value)
