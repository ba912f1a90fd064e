#!/usr/bin/env bash
# Evaluate a toy-model training checkpoint as a candidate for the committed weights, the same way
# the committed weights were evaluated, and print the replacement rule's verdict.
#
#   bash scripts/evaluate_toy_candidate.sh CKPT OUTDIR
#
# Steps (all on the CPU, 4-5 minutes on the 2-core build machine):
#   1. export CKPT as a model directory (OUTDIR/model) and calibrate its layers on the world's exact
#      masks (training instances only), as TRAINING.md describes;
#   2. the trainer's held-out measurement (`ego-ros toy train --measure`);
#   3. bench/toy_quality.py on export seeds 0 and 1 (12 held-out concepts each), and
#      bench/toy_stream_quality.py (the demo's concept in 640x480 camera frames);
#   4. the engine-level separation the toy tests assert (easy negatives, look-alikes).
# The rule, fixed before looking at a candidate: replace the committed weights only when the mean
# Ego 5-view ROC AUC over seeds 0 and 1 is higher and the mean Ego 5-view F1 is not lower.
# Replacing is by hand (copy OUTDIR/model over ego_ros/toy/model, keep TRAINING.md's provenance,
# copy OUTDIR/toy_*quality*.{json,md} to bench/results/), so nothing here touches the package.
set -euo pipefail
ckpt=${1:?checkpoint}
out=${2:?output directory}
root=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-$root/.venv/bin/python}
mkdir -p "$out"
model=$out/model

"$py" -m ego_ros.toy.train_cli --resume "$ckpt" --steps 0 --export "$model"
rm -rf "$out/masks"
"$py" -m ego_ros.cli toy masks --count 64 --seed 0 --out "$out/masks"
"$py" -m ego_ros.cli calibrate --model "$model" --folder "$out/masks" --num-layers 2 \
    --out "$model/ego_calibration.json"
chmod 644 "$model/ego_calibration.json"  # calibration is not personal data (memories stay 0600)
"$py" -m ego_ros.toy.train_cli --measure "$model" | tee "$out/measure.json"

"$py" "$root/bench/toy_quality.py" --model "$model" --concepts 12 --seed 0 --out "$out/toy_quality.json"
"$py" "$root/bench/toy_quality.py" --model "$model" --concepts 12 --seed 1 --out "$out/toy_quality_seed1.json"
# the camera-stream regime of `ego-ros demo` (640x480 frames); reported, not part of the rule
"$py" "$root/bench/toy_stream_quality.py" --model "$model" --out "$out/toy_stream_quality.json"

PYTHONPATH=$root/test "$py" - "$model" "$out" "$root/bench/results" <<'EOF'
import json
import sys
from pathlib import Path

from ego_ros.core.engine import EgoEngine
from test_toy_model import SEPARATION_SEEDS, _engine_scores, _pooled_auc

model, out, committed = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
engine = EgoEngine.load(model)
easy = {s: _pooled_auc([_engine_scores(engine, s, "easy")]) for s in SEPARATION_SEEDS}
hard_scores = {s: _engine_scores(engine, s, "hard") for s in SEPARATION_SEEDS}
hard = {s: _pooled_auc([sc]) for s, sc in hard_scores.items()}
pooled = _pooled_auc(list(hard_scores.values()))  # what the look-alike test asserts
sep = {"easy_auc": easy, "hard_auc": hard, "hard_auc_pooled": pooled}
(out / "separation.json").write_text(json.dumps(sep, indent=1))
print("separation", json.dumps(sep))


def ego5(folder: Path, name: str) -> dict:
    rows = json.loads((folder / name).read_text())["rows"]
    return next(r for r in rows if r["method"] == "Ego 5-view")


names = ("toy_quality.json", "toy_quality_seed1.json")
new = [ego5(out, n) for n in names]
old = [ego5(committed, n) for n in names]
mean = lambda rows, k: sum(r[k] for r in rows) / len(rows)  # noqa: E731
print(f"Ego 5-view AUC  committed {mean(old, 'auc'):.4f}  candidate {mean(new, 'auc'):.4f}")
print(f"Ego 5-view F1   committed {mean(old, 'f1'):.4f}  candidate {mean(new, 'f1'):.4f}")
better = mean(new, "auc") > mean(old, "auc") and mean(new, "f1") >= mean(old, "f1")
print("verdict:", "replace" if better else "keep the committed weights")
EOF
