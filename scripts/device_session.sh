#!/usr/bin/env bash
# One lent-GPU session, as run through the device tool: train the toy model on CUDA under a wall-clock
# budget (and, with BENCH set, the real-scale GPU latency benchmark). Everything that must come back is
# written to $OUT as it becomes ready (at most 8 files of at most 16 MiB: the checkpoint travels in
# 15 MiB parts).
#
#   OUT=/tmp/out bash scripts/device_session.sh                 # on the GPU machine
#   OUT=/tmp/out RESUME=1 bash scripts/device_session.sh        # continue from runs/gpu/ckpt_latest.pt(.part*)
#   OUT=/tmp/out BENCH="qwen internvl" bash scripts/device_session.sh   # also the latency benchmark
#   OUT=/tmp/out TRAIN=0 BENCH="qwen internvl" bash scripts/device_session.sh   # the benchmark only
#                (bench/engine_gpu.py: random-weight Qwen2.5-VL-7B and InternVL3-14B, bf16, 448 px, with
#                per-stage profiles and the plain-transformers baseline; about 6 minutes for both)
#   OUT=/tmp/out TRAIN=0 BENCH=qwen BENCH_ARGS="--tiny --device cpu" bash scripts/device_session.sh  # CPU dry run
#   OUT=/tmp/out WORLD=v2 MINUTES=8 bash scripts/device_session.sh  # a fresh run on toy world v2 (a resume
#                                                                   # keeps the checkpoint's world and TWIN)
#   OUT=/tmp/out WORLD=v2 INIT=ego_ros/toy/model MINUTES=8 bash scripts/device_session.sh  # warm start on v2
#                (the CPU pilots' recipe: from INIT's weights, no vision-first phase, 200-step ramp, learning
#                rates 1e-4 / 2e-4, with minimal pairs; docs/toy_model.md, "World 2.1 pilot C")
#   OUT=/tmp/out DEVICE=cpu WORKERS=1 MINUTES=0.5 EXTRA=--tiny bash scripts/device_session.sh   # dry run
#   STEPBENCH=1 ...   first measures one training step of the warm-start recipe (bench/toy_train_step.py)
#
# Reassemble here: cat ckpt_latest.pt.part* > runs/gpu/ckpt_latest.pt
# To resume on the GPU, put the parts in runs/gpu/ and carry runs/gpu: the 64 MiB carry limit counts the
# whole tree, so move ego_ros/toy/model (16 MB, not needed for training) out of the tree for that call.
# train_log.jsonl says per logging window how long the main process waited for data (data_wait_ms)
# and spent launching a step (step_host_ms): the first says add workers or speed up the world, the
# second a larger BATCH.
set -u -o pipefail
: "${OUT:?set OUT}"
DEVICE=${DEVICE:-cuda}
WORKERS=${WORKERS:-14}
MINUTES=${MINUTES:-8}
BATCH=${BATCH:-128}
LM_GROUP=${LM_GROUP:-64}
RESUME=${RESUME:-}
INIT=${INIT:-}
# minimal pairs (a look-alike negative with its positive twin, --twin-weight) in fresh v2 runs: the world-2.1
# CPU pilot C read 0.02-0.08 higher on the held-out twin metric than the same recipe without them
TWIN=${TWIN:-0.25}
EXTRA=${EXTRA:-}
BENCH=${BENCH:-}
BENCH_ARGS=${BENCH_ARGS:-}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-500}
TRAIN=${TRAIN:-1}
RUN=${RUN:-runs/gpu}
PY=${PYTHON:-python3}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
# the package's default world (v1 until v2 weights are committed) unless WORLD names one
WORLD=${WORLD:-$($PY -c "from ego_ros.toy.attributes import DEFAULT_WORLD; print(DEFAULT_WORLD)")}
mkdir -p "$RUN"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || true
  $PY -c "import torch, transformers, sys; print(sys.version.split()[0], torch.__version__, transformers.__version__)"
  nproc
} 2>&1 | tee "$RUN/machine.txt"

# ----- the cost of one training step (STEPBENCH=1; about a minute): host queuing time against the
# synchronised step time says whether a larger BATCH would come for free (bench/toy_train_step.py)
if [ "${STEPBENCH:-0}" = 1 ]; then
  timeout 300 $PY bench/toy_train_step.py --device "$DEVICE" --init "$INIT" --world "$WORLD" \
    --label "device_session STEPBENCH" --out "$OUT/toy_train_step_gpu.jsonl" 2>&1 | grep -v "Warning" | tail -40
fi

# ----- training (TRAIN=1, the default)
if [ "$TRAIN" = 1 ]; then
if [ -n "$RESUME" ]; then
  if ls "$RUN"/ckpt_latest.pt.part* >/dev/null 2>&1; then
    cat "$RUN"/ckpt_latest.pt.part* > "$RUN/ckpt_latest.pt" && rm -f "$RUN"/ckpt_latest.pt.part*
  fi
  [ -f "$RUN/ckpt_latest.pt" ] || { echo "RESUME set but no $RUN/ckpt_latest.pt(.part*)"; exit 2; }
  # the checkpoint keeps seed and recipe; only the budget, device and loader change
  ARGS=(--resume "$RUN/ckpt_latest.pt" --steps 100000)
else
  ARGS=(--seed 0 --batch-size "$BATCH" --lm-group "$LM_GROUP" --steps 100000 --contrast-instances 16
        --world "$WORLD" --eval-match 1000)  # 200 look-alike pairs: 50 pairs read +-0.05 of noise
  if [ -n "$INIT" ]; then
    ARGS+=(--init "$INIT" --vision-steps 0 --ramp-steps 200 --lr-vision 1e-4 --lr-lm 2e-4)
  else
    ARGS+=(--vision-steps 300 --vision-instances 64 --ramp-steps 1800 --lr-vision 3e-4 --lr-lm 6e-4)
  fi
  [ "$WORLD" = v1 ] || ARGS+=(--twin-weight "$TWIN")
fi
# the checkpoint goes back in 15 MiB parts (checkpoints are written to a temporary file and renamed,
# so a split never sees half of one)
ship() { split -b 15m -d "$RUN/ckpt_latest.pt" "$OUT/ckpt_latest.pt.part"; }
# ship each periodic checkpoint as it is written, so that a call cut short still brings one back
( while sleep 20; do
    if [ -f "$RUN/ckpt_latest.pt" ] && [ "$RUN/ckpt_latest.pt" -nt "$OUT/.shipped" ]; then
      touch "$OUT/.shipped" && ship
    fi
  done ) &
SHIPPER=$!
# shellcheck disable=SC2086
timeout $($PY -c "print(int($MINUTES * 60 + 90))") $PY -m ego_ros.toy.train_cli "${ARGS[@]}" \
  --device "$DEVICE" --workers "$WORKERS" --minutes "$MINUTES" --eval-every 400 --checkpoint-minutes 1.5 \
  --out "$RUN" --no-progress $EXTRA 2>&1 | grep -v "Warning" | tee "$RUN/train_stdout.log"
echo "train exit ${PIPESTATUS[0]}"
kill "$SHIPPER" 2>/dev/null; wait "$SHIPPER" 2>/dev/null
[ -f "$RUN/ckpt_latest.pt" ] && ship
tar czf "$OUT/train.tgz" --exclude='*.pt' -C "$RUN" .
fi

if [ -n "$BENCH" ]; then
  # shellcheck disable=SC2086
  timeout "$BENCH_TIMEOUT" $PY bench/engine_gpu.py --models $BENCH --out-dir "$OUT" $BENCH_ARGS 2>&1 \
    | grep -v "Warning" > "$OUT/bench.log"
  echo "bench exit ${PIPESTATUS[0]}"
  tail -c 3000 "$OUT/bench.log"
fi
ls -la "$OUT"
