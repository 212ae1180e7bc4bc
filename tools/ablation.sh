#!/usr/bin/env bash
# The ablation of the paper's Table 5 on pushsim, sized for a 2-core CPU: the `tiny` preset at
# 32×32, four variants with the same data, steps and seed, then one lgcvd-eval report.
#   make the data first:  python tools/make_dataset.py pushsim -n 640 -o data/pushsim_train.npy --seed 0
#                         python tools/make_dataset.py pushsim -n 64 -o data/pushsim_test.npy --seed 1
#   then:                 STEPS=1000 bash tools/ablation.sh
set -euo pipefail
STEPS=${STEPS:-1000}
TRAIN=${TRAIN:-data/pushsim_train.npy}
TEST=${TEST:-data/pushsim_test.npy}
OUT=${OUT:-runs/ablation}
BIN=${BIN:-.venv/bin}
common=(--preset tiny --data "$TRAIN" --steps "$STEPS" --batch-size 8 --lr 1e-3 --seed 0
        --save-every 250 --quiet)
train() {  # NAME FLAGS...: train unless finished, resume if interrupted
  local name=$1; shift
  if [ -f "$OUT/$name/checkpoint.safetensors" ]; then
    "$BIN/lgcvd-train" "${common[@]}" --out "$OUT/$name" --resume "$@"
  else
    "$BIN/lgcvd-train" "${common[@]}" --out "$OUT/$name" "$@"
  fi
}
train baseline --no-two-stage --no-context
train two-stage --no-context
train encoder --no-two-stage
train full
"$BIN/lgcvd-eval" --model "baseline=$OUT/baseline" --model "+two-stage=$OUT/two-stage" \
  --model "+sequence-encoder=$OUT/encoder" --model "full=$OUT/full" \
  --data "$TEST" --clips 64 -p 2 -n 28 --frame-range 3 28 --sampler dpmpp --steps 20 \
  --seed 0 --no-fvd --threads 1 --out "$OUT/eval" --force --quiet
