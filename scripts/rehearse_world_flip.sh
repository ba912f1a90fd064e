#!/usr/bin/env bash
# Rehearse making toy world v2 the default, without touching this checkout: in a scratch git worktree
# of HEAD, set `attributes.DEFAULT_WORLD = "v2"`, optionally put a candidate model directory in place of
# the committed weights, regenerate the demo's concept views for v2 and run the test suite there. The
# failures left are what the flip commit must still change (docs/toy_model.md, "What the next GPU run
# must do", step 4).
#
#   bash scripts/rehearse_world_flip.sh                       # the committed weights, the whole suite
#   bash scripts/rehearse_world_flip.sh OUTDIR/model          # a candidate (evaluate_toy_candidate.sh)
#   bash scripts/rehearse_world_flip.sh "" test/test_demo.py  # the committed weights, some tests
#
# The worktree imports its own package (PYTHONPATH), also in the node processes the ROS tests start,
# and is removed at the end. The whole suite takes about 13 minutes on the 2-core build machine.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-$root/.venv/bin/python}
model=${1:-}
shift || true
[ -z "$model" ] || [ -f "$model/model.safetensors" ] || { echo "not a model directory: $model" >&2; exit 2; }
[ -z "$model" ] || model=$(cd "$model" && pwd)
tree=$(mktemp -d -p "$(dirname "$root")" flip.XXXXXX)
cleanup() { git -C "$root" worktree remove --force "$tree" 2>/dev/null || rm -rf "$tree"; }
trap cleanup EXIT
git -C "$root" worktree add -q --detach "$tree" HEAD
cd "$tree"
[ -e "$root/.venv" ] && ln -s "$root/.venv" .venv  # tests that name the venv find the same one
sed -i 's/^DEFAULT_WORLD = "v1"$/DEFAULT_WORLD = "v2"/' ego_ros/toy/attributes.py
grep -q '^DEFAULT_WORLD = "v2"$' ego_ros/toy/attributes.py || { echo "DEFAULT_WORLD line not found" >&2; exit 2; }
if [ -n "$model" ]; then
  rm -rf ego_ros/toy/model && cp -r "$model" ego_ros/toy/model
fi
export PYTHONPATH=$tree
"$py" -m ego_ros.ros.demo write-concepts config >/dev/null
git status --short
"$py" -m pytest -q -p no:cacheprovider "$@"
