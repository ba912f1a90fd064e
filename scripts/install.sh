#!/usr/bin/env bash
# Set up ego_ros on a bare machine: a virtual environment in .venv with PyTorch (CPU build unless one
# is already installed), the package with its ROS 2 (pip wheels), evaluation, agents (MCP) and
# development extras, and the ego_msgs interfaces built into the venv.
#
# Usage: bash scripts/install.sh            (from the repository root; safe to run again)
# Env:   EGO_ROS_VENV=path  (default .venv)  EGO_ROS_TORCH="torch==2.13.0"  EGO_ROS_SKIP_MSGS=1
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
venv="${EGO_ROS_VENV:-.venv}"
python="${PYTHON:-python3}"

log() { echo "install.sh: $*"; }

"$python" - <<'PY' || { echo "install.sh: Python 3.10 or newer is needed" >&2; exit 1; }
import sys
sys.exit(0 if sys.version_info >= (3, 10) else 1)
PY

if [[ ! -x "$venv/bin/python" ]]; then
    log "creating virtual environment $venv"
    "$python" -m venv "$venv"
fi
# shellcheck disable=SC1091
source "$venv/bin/activate"
pip() { python -m pip --disable-pip-version-check -q "$@"; }

if ! python -c "import torch" 2>/dev/null; then
    # torch 2.13.0 has a CPU-only wheel (~200 MB) where a CUDA build would be several GB; on a robot with
    # a GPU, install the CUDA build of torch first and this step is skipped.
    log "installing ${EGO_ROS_TORCH:-torch==2.13.0}"
    pip install "${EGO_ROS_TORCH:-torch==2.13.0}"
fi

log "installing ego_ros with the ros, eval, agents and dev extras"
pip install -e ".[ros,eval,agents,dev]"

if [[ "${EGO_ROS_SKIP_MSGS:-0}" != "1" ]]; then
    log "building the ego_msgs interfaces into $venv"
    bash scripts/build_ego_msgs.sh
fi
log "done: activate with 'source $venv/bin/activate' or call $venv/bin/ego-ros directly"
