#!/usr/bin/env bash
# Train the default preset (base) on one CUDA GPU with bf16 autocast, in one command of at most
# 10 minutes, and write its weights in files of at most 16 MiB that lgcvd-train --init-from (and
# lgcvd-export) accept.
#
# UNTESTED ON A GPU: no GPU was lent when this was written. tests/test_gpu_train.py runs the same
# command line on the CPU with a tiny preset and a few steps, and its --dry-run.
#
# Inputs, at most 64 MiB together: this source tree (~14 MB) and the training clips as a
# compressed .npz (640 pushsim clips of 30x64x64: ~20 MB), prepared on any machine with
#     python tools/make_dataset.py pushsim -n 640 -o data/gpu/pushsim_train.npz --seed 0
# or rendered on the GPU machine itself with --render N (needs pybullet there; many workers).
# The machine needs python3 with torch, numpy, click, safetensors, tqdm, pillow, onnx; the source
# tree is put on PYTHONPATH, nothing is installed.
#
# Outputs under --out (default: $OUT, else ./gpu_out), each file under 16 MiB for `base`:
#     run/checkpoint.safetensors  the EMA weights in fp16 (~12 MB; tools/slim_checkpoint.py)
#     run/checkpoint.json         the run's config, steps and provenance
#     run/metrics.jsonl           loss and clips/s every 10 steps
#     train.log                   what this script and lgcvd-train printed
# then, on any machine:  lgcvd-train --init-from gpu_out/run ...  |  lgcvd-export gpu_out/run ...
# (--resume needs the full checkpoint with the optimizer state, ~98 MB: it stays in --work,
# default $TMPDIR/lgcvd-gpu-train, on that machine.)
#
# Two phases keep the run inside the budget with a proper cooldown: a probe of --probe-steps
# steps measures this machine's steps/s after warm-up, then the run resumes up to the number of
# steps that fits the rest of --minutes, the last quarter a linear learning-rate cooldown.
#
#     tools/gpu_train.sh --data data/gpu/pushsim_train.npz               # on the GPU machine
#     tools/gpu_train.sh --data data/gpu/pushsim_train.npz --dry-run     # print the plan only
# Through the device tool: run(command="tools/gpu_train.sh", carry=["data/gpu"], timeout_s=600)
# (data/ is git-ignored, so the clips travel by carry; --out defaults to the tool's $OUT).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
data="data/gpu/pushsim_train.npz"
out="${OUT:-gpu_out}"
work=""
preset="base"
device="cuda"
batch=32
lr="3e-4"
minutes=8
probe=100
max_steps=""
render=""
seed=0
dry_run=0
max_input_mib=64
max_file_mib=16

usage() { sed -n '2,/^set -euo/{/^#/p}' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
fail() { echo "gpu_train.sh: $*" >&2; exit 2; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --data) data="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --work) work="$2"; shift 2 ;;
        --preset) preset="$2"; shift 2 ;;
        --device) device="$2"; shift 2 ;;
        --batch-size) batch="$2"; shift 2 ;;
        --lr) lr="$2"; shift 2 ;;
        --minutes) minutes="$2"; shift 2 ;;
        --probe-steps) probe="$2"; shift 2 ;;
        --max-steps) max_steps="$2"; shift 2 ;;
        --render) render="$2"; shift 2 ;;
        --seed) seed="$2"; shift 2 ;;
        --dry-run) dry_run=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) fail "unknown option $1; see tools/gpu_train.sh --help" ;;
    esac
done
# the full run (weights, EMA, Adam state: ~98 MB for base) stays outside --out, which comes back
work="${work:-${TMPDIR:-/tmp}/lgcvd-gpu-train}"
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

train=("$python" -m lgcvd_train.cli --preset "$preset" --data "$data" --out "$work"
    --batch-size "$batch" --lr "$lr" --seed "$seed" --device "$device" --save-every 500 --quiet)
slim=("$python" "$here/tools/slim_checkpoint.py" "$work" "$out/run" --max-mib "$max_file_mib"
    --force)

if [[ -n "$render" && ! -f "$data" ]]; then
    render_cmd=("$python" "$here/tools/make_dataset.py" pushsim -n "$render" -o "$data"
        --seed "$seed" --workers "$(nproc)")
else
    render_cmd=()
fi

if [[ $dry_run == 1 ]]; then
    echo "plan (bf16 autocast is lgcvd-train's default on CUDA):"
    [[ ${#render_cmd[@]} -gt 0 ]] && echo "  render: ${render_cmd[*]}"
    echo "  probe:  ${train[*]} --steps $probe"
    echo "  run:    ${train[*]} --resume --steps STEPS --cooldown-steps STEPS/4" \
        "(STEPS: what fits $minutes min at the probe's steps/s${max_steps:+, at most $max_steps})"
    echo "  slim:   ${slim[*]}"
    if [[ -f "$data" ]]; then
        echo "  data:   $data, $(( $(stat -c %s "$data") / 1048576 )) MiB"
    else
        echo "  data:   $data is missing${render:+ (rendered first)}"
    fi
    "$python" -c "import torch; print('  torch', torch.__version__, '| cuda:',
        torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'not available')"
    exit 0
fi

mkdir -p "$out"
log="$out/train.log"
: > "$log"
say() { echo "$*" | tee -a "$log"; }
budget=$("$python" -c "print(int(float('$minutes') * 60))")

if [[ ${#render_cmd[@]} -gt 0 ]]; then
    say "rendering $render clips: ${render_cmd[*]}"
    "${render_cmd[@]}" >> "$log" 2>&1
fi
[[ -f "$data" ]] || fail "$data is missing; prepare it with tools/make_dataset.py (see --help) or pass --render N"
size_mib=$(( $(stat -c %s "$data") / 1048576 ))
(( size_mib <= max_input_mib )) || fail "$data is $size_mib MiB, over the $max_input_mib MiB of inputs"
if [[ "$device" == cuda* ]]; then
    "$python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" ||
        fail "torch sees no CUDA GPU here; run on a GPU machine or pass --device cpu"
fi

# Phase 1: the probe. A run stopped by the budget (timeout's SIGTERM) saves its checkpoint.
started=$SECONDS
say "probe: ${train[*]} --steps $probe --force"
status=0
timeout -s TERM "$budget" "${train[@]}" --steps "$probe" --force >> "$log" 2>&1 || status=$?
(( status == 0 )) || fail "the probe stopped with exit code $status; see $log"

# Steps that fit the rest of the budget, at the probe's rate after its first 10 steps, less the
# probe's own start-up time (process start, data, CUDA init), which the second phase pays again.
steps=$("$python" - "$work/metrics.jsonl" "$batch" "$budget" "$(( SECONDS - started ))" \
    "$probe" "${max_steps:-0}" 2> >(tee -a "$log" >&2) <<'PY'
import json, sys
path, batch, budget, probe_wall, probe, cap = sys.argv[1], *map(float, sys.argv[2:])
recs = [json.loads(line) for line in open(path)]
secs = [r["step"] * batch / r["clips_per_s"] for r in recs]  # since the probe's first step
if len(recs) >= 2:  # from the first record on: the first steps (warm-up) are slower
    rate = (recs[-1]["step"] - recs[0]["step"]) / max(secs[-1] - secs[0], 1e-9)
else:
    rate = recs[-1]["step"] / max(secs[-1], 1e-9)
startup = max(probe_wall - secs[-1], 0.0)
left = budget - probe_wall - startup - 20  # the second phase starts up again; 20 s to save
steps = max(int(probe + max(left, 0.0) * rate), int(probe))
if cap:
    steps = min(steps, int(cap))
print(steps)
print(f"probe: {rate:.2f} steps/s, start-up {startup:.0f} s -> {steps} steps", file=sys.stderr)
PY
)
say "run: ${train[*]} --resume --steps $steps --cooldown-steps $(( steps / 4 ))"
left=$(( budget - (SECONDS - started) ))
(( left > 10 )) || left=10
status=0
timeout -s TERM "$left" "${train[@]}" --resume --steps "$steps" \
    --cooldown-steps "$(( steps / 4 ))" >> "$log" 2>&1 || status=$?
case $status in
    0) say "trained to step $steps" ;;
    124|130|143) say "stopped by the time budget; the checkpoint holds the last step reached" ;;
    *) fail "training stopped with exit code $status; see $log" ;;
esac

"${slim[@]}" | tee -a "$log"
cp "$work/metrics.jsonl" "$out/run/metrics.jsonl"
say "done in $(( SECONDS - started )) s: $out/run (lgcvd-train --init-from $out/run, lgcvd-export $out/run)"
