#!/usr/bin/env bash
# The fast-CPU recipe's ablation: the plain student (baseline stage, 110 epochs from scratch, as in
# benchmarks/train_300w.sh stage 1) with one change of the recipe undone at a time. Resumable like the training
# script; each run takes about 40 minutes on 2 cores, so this is a plan for sessions to come (queued after
# train_300w.sh, never run in the same session as it). Validation NME is in each run's summary.json.
#   RUNS=/work/edgekd-runs bash benchmarks/ablate_recipe.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-/work/edgekd-runs}
SIZE=${SIZE:-128}
EDGEKD=${EDGEKD:-.venv/bin/edgekd}
PREPARED=$RUNS/data/300w-$SIZE
A=$RUNS/train/300w-$SIZE-ablation

run() {  # run NAME [options]: one baseline stage in $A/NAME
  local dir=$A/$1/baseline
  if [ -f "$dir/summary.json" ]; then echo "== $1: finished, skipped"; return; fi
  local resume=()
  [ -f "$dir/last.h5" ] && resume=(--resume)
  echo "== $1 ($(date -u +%H:%M))"
  $EDGEKD train "$PREPARED" --run-dir "$A/$1" --stage baseline --epochs 110 "${resume[@]}" "${@:2}"
}

run l2-loss --loss l2                      # L1 -> the paper's L2
run default-head --head-init default       # head at the mean shape -> Glorot kernel, zero bias
run unit-range-input --no-input-norm       # [-1, 1] inside the model -> [0, 1] pixels as they are
run inverse-time --schedule inverse-time   # cosine over the planned steps -> the paper's decay (1e-4 per step)
run full-augment --augment full            # light -> gamma, blur, noise and occlusion too
run paper --recipe paper --epochs 110      # all of them undone (MobileNetV2 student, the paper's settings)
