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
# The rule, fixed before looking at a candidate, for a candidate trained on world v1: replace the
# committed weights only when the mean Ego 5-view ROC AUC over seeds 0 and 1 is higher and the mean
# Ego 5-view F1 is not lower. For a candidate trained on world v2 (its training_state.json says so;
# steps 1 and 3 then use v2 masks and v2 exports): replace only when, on each of export seeds 0 and 1,
# Ego 5-view AUC is not lower than the committed weights' on the same v2 export
# (bench/results/toy_quality_v2*.json) and the Table 3 ordering holds: Keywords-only has the lowest
# AUC of all methods, and Ego (fixed K 20 %) is at least 0.05 AUC above Uniform and Random 20 %.
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
world=$(PYTHONPATH=$root "$py" -c "import sys; from ego_ros.toy.model_world import model_world; print(model_world(sys.argv[1]))" "$model")
echo "candidate trained on world $world"
rm -rf "$out/masks"
"$py" -m ego_ros.cli toy masks --count 64 --seed 0 --world "$world" --out "$out/masks"
"$py" -m ego_ros.cli calibrate --model "$model" --folder "$out/masks" --num-layers 2 \
    --out "$model/ego_calibration.json"
chmod 644 "$model/ego_calibration.json"  # calibration is not personal data (memories stay 0600)
"$py" -m ego_ros.toy.train_cli --measure "$model" | tee "$out/measure.json"

"$py" "$root/bench/toy_quality.py" --model "$model" --concepts 12 --seed 0 --out "$out/toy_quality.json"
"$py" "$root/bench/toy_quality.py" --model "$model" --concepts 12 --seed 1 --out "$out/toy_quality_seed1.json"
# the camera-stream regime of `ego-ros demo` (640x480 frames); reported, not part of the rule
"$py" "$root/bench/toy_stream_quality.py" --model "$model" --out "$out/toy_stream_quality.json"

PYTHONPATH=$root/test "$py" - "$model" "$out" "$root/bench/results" "$world" <<'EOF'
import json
import sys
from pathlib import Path

from ego_ros.core.engine import EgoEngine
from test_toy_model import SEPARATION_SEEDS, _engine_scores, _pooled_auc

model, out, committed, world = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
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
if world == "v1":
    old = [ego5(committed, n) for n in names]
    mean = lambda rows, k: sum(r[k] for r in rows) / len(rows)  # noqa: E731
    print(f"Ego 5-view AUC  committed {mean(old, 'auc'):.4f}  candidate {mean(new, 'auc'):.4f}")
    print(f"Ego 5-view F1   committed {mean(old, 'f1'):.4f}  candidate {mean(new, 'f1'):.4f}")
    better = mean(new, "auc") > mean(old, "auc") and mean(new, "f1") >= mean(old, "f1")
else:
    old = [ego5(committed, n) for n in ("toy_quality_v2.json", "toy_quality_v2_seed1.json")]
    better = True
    for n, o, c in zip(names, old, new):
        rows = {r["method"]: r for r in json.loads((out / n).read_text())["rows"]}
        auc = {m: r["auc"] for m, r in rows.items()}
        ordering = (
            min(auc, key=auc.get) == "Keywords only"
            and auc["Ego 1-view (fixed K 20%)"] >= auc["Uniform 20%"] + 0.05
            and auc["Ego 1-view (fixed K 20%)"] >= auc["Random 20%"] + 0.05
        )
        kw_lookalike = rows["Keywords only"]["auc_by_negative_kind"].get("lookalike")
        print(f"{n}: Ego 5-view AUC committed {o['auc']:.4f} candidate {c['auc']:.4f}; ordering holds: {ordering}; "
              f"Keywords-only AUC vs look-alikes {kw_lookalike}")
        better = better and c["auc"] >= o["auc"] and ordering
print("verdict:", "replace" if better else "keep the committed weights")
EOF
