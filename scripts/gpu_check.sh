#!/usr/bin/env bash
# The prepared GPU run of issue 11: `bash scripts/gpu_check.sh OUTDIR` on a machine with PyTorch (CUDA),
# Triton and nvcc, and neither Ray nor Optuna (everything runs with PYTHONPATH=.). Within BUDGET seconds
# (default 540: one 10-minute device command with room to spare), most important first:
#   imports.json        the model/tasks/training/bench chain imports without ray and optuna
#   float64.json        fused (Python loop on CUDA), graphed and Triton training against naive.py in float64
#   bench_B*_T*.json    `armin bench model --device cuda --json`, one file per (batch, seq_len), the issue's
#                       target cells (T=1000, without the slow eager loops and the TARDIS family) first, with
#                       the Triton rows; bench.json: all merged (commit it under benchmarks/gpu/, see
#                       benchmarks/gpu/README.md)
#   triton_warm.json    the grid's Triton kernels compiled first, all at once (seconds per model)
#   fractional.json     1, 2, 4, 8 copy-task trials at once on the GPU (plain subprocesses): trials/hour,
#                       peak memory per trial, the 4-at-once target
#   fractional_triton.json  1 and 4 of them with ARMIN_CUDA_KERNELS=triton (the trainer on the Triton kernels)
#   pytest.txt          with PYTEST=1 and pytest installed: the CUDA tests under pytest as well
# Each stage has a time limit (never past the budget) and the script goes on after a failed stage;
# summary.txt lists each stage's exit status (124: its time limit). Environment: PYTHON (default python3),
# DEVICE (default cuda), TINY=1 (a tiny grid and trial budget: with DEVICE=cpu, the CPU test of this script).
set -uo pipefail
OUT=${1:?usage: gpu_check.sh OUTDIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
BUDGET=${BUDGET:-540}
export TORCH_EXTENSIONS_DIR=${TORCH_EXTENSIONS_DIR:-$OUT/torch_extensions}
if [[ "${TINY:-0}" == 1 ]]; then
  CELLS="2:5"; SHORT_CELLS=""; GRID="--hidden 8 --repeats 1 --warmup 0 --modes train,infer --no-naive"
  TRIALS="1,2 --tiny"; STEPS=4; LONG=120; SHORT=60
else
  CELLS="32:1000 256:1000"; SHORT_CELLS="32:100 256:100"
  GRID="--repeats 3 --warmup 1 --modes train,infer --no-naive"
  TRIALS="1,2,4,8"; STEPS=300; LONG=140; SHORT=45
fi
: > "$OUT/summary.txt"
exec 3>&1  # the stages' status lines go to the terminal, whatever a stage's output is redirected to
stage() {  # stage NAME LIMIT_S COMMAND...: run within min(LIMIT_S, what is left of BUDGET), record its status
  local name=$1 limit=$2; shift 2
  local left=$((BUDGET - SECONDS)) start=$SECONDS
  (( limit > left )) && limit=$left
  if (( limit < 5 )); then echo "$name skipped (budget spent)" | tee -a "$OUT/summary.txt" >&3; return; fi
  timeout "$limit" "$@"
  echo "$name rc=$? limit=${limit}s took=$((SECONDS - start))s" | tee -a "$OUT/summary.txt" >&3
}
bench_cell() {  # bench_cell B:T LIMIT [extra flags]
  local B=${1%%:*} T=${1##*:} limit=$2; shift 2
  stage "bench_B${B}_T${T}" "$limit" "$PY" -m armin.cli.main bench model --device "$DEVICE" --batch "$B" \
    --seq-len "$T" $GRID "$@" --json > "$OUT/bench_B${B}_T${T}.json" 2> "$OUT/bench_B${B}_T${T}.err"
}
{ "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "gpu",
  torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)'
  command -v nvcc > /dev/null && nvcc --version | tail -1
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null
  "$PY" -c 'import triton; print("triton", triton.__version__)' 2>&1 | tail -1; } > "$OUT/machine.txt" 2>&1
# the fused C++ loop (the CPU side; CUDA runs its Python loop) builds in the background meanwhile
timeout 300 "$PY" -c 'from armin.costs.warm import prepare; print(prepare())' > "$OUT/extension.txt" 2>&1 &
BUILD=$!
stage imports 60 "$PY" scripts/gpu_check.py imports --out "$OUT/imports.json"
stage float64 120 "$PY" scripts/gpu_check.py float64 --device "$DEVICE" --out "$OUT/float64.json"
if [[ "$DEVICE" == cuda* ]]; then  # the grid's Triton kernels compiled at once, not inside a cell's time limit
  stage triton_warm 200 "$PY" scripts/gpu_check.py triton-warm --device "$DEVICE" --out "$OUT/triton_warm.json"
fi
for cell in $CELLS; do bench_cell "$cell" "$LONG" --no-eager --no-tardis; done
stage fractional 120 "$PY" scripts/gpu_check.py fractional --device "$DEVICE" --trials $TRIALS --steps "$STEPS" \
  --out "$OUT/fractional.json"
for cell in $SHORT_CELLS; do bench_cell "$cell" "$SHORT"; done
# the same trials through the Triton kernels (the trainer's kernels on CUDA: ARMIN_CUDA_KERNELS), 1 and 4 at once
stage fractional_triton 90 env ARMIN_CUDA_KERNELS=triton "$PY" scripts/gpu_check.py fractional --device "$DEVICE" \
  --trials ${TRIALS/1,2,4,8/1,4} --steps "$STEPS" --out "$OUT/fractional_triton.json"
stage merge 30 "$PY" scripts/gpu_check.py merge "$OUT" --out "$OUT/bench.json"
if [[ "${PYTEST:-0}" == 1 ]] && "$PY" -c 'import pytest' 2>/dev/null; then
  stage pytest 90 "$PY" -m pytest -q -p no:cacheprovider -o addopts=-ra tests/model/test_graphs.py \
    tests/model/test_triton_kernel.py > "$OUT/pytest.txt" 2>&1
fi
wait "$BUILD"; echo "extension: $(tail -1 "$OUT/extension.txt")" >> "$OUT/summary.txt"
cat "$OUT/summary.txt"
! grep -v "^extension" "$OUT/summary.txt" | grep -qv " rc=0 "
