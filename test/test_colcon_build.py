"""A colcon build of both packages (ego_msgs is nested, so it needs an explicit --base-paths entry)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.ros
def test_colcon_builds_ego_msgs_and_ego_ros(tmp_path):
    colcon = shutil.which("colcon", path=str(Path(sys.executable).parent)) or shutil.which("colcon")
    assert colcon, "colcon is part of the dev extra (colcon-common-extensions)"
    prefix = sys.prefix
    env = dict(os.environ, CMAKE_PREFIX_PATH=prefix, AMENT_PREFIX_PATH=prefix)
    cmd = [colcon, "--log-base", str(tmp_path / "log"), "build", "--base-paths", ".", "ego_msgs",
           "--build-base", str(tmp_path / "build"), "--install-base", str(tmp_path / "install"),
           "--cmake-args", f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    install = tmp_path / "install"
    # launch_ros looks for executables in lib/<package>; setup.cfg puts them there for colcon.
    for exe in ("ego_node", "synthetic_camera", "ego-ros"):
        assert (install / "ego_ros" / "lib" / "ego_ros" / exe).is_file(), exe
    share = install / "ego_ros" / "share" / "ego_ros"
    assert (share / "package.xml").is_file()
    assert (share / "launch" / "ego.launch.py").is_file() and (share / "config" / "ego.yaml").is_file()
    assert any((install / "ego_msgs").rglob("Recognitions.msg"))
