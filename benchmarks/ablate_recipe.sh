#!/usr/bin/env bash
# The fast-CPU recipe's ablation on a short budget: the plain student (baseline stage, MobileNetV2 at 128 px, from
# scratch) with the paper's settings, the fast-CPU recipe, and the paper's settings with one change of the recipe
# at a time. EPOCHS (default 30, 1,440 steps of batch 32: about 12 minutes a run on 2 cores) is the same for every
# run; the folder name carries it, so runs of other lengths never mix. Resumable like the training script: rerun it
# and finished runs are skipped, a killed one continues from last.h5. Validation NME is in each run's
# summary.json; `benchmarks/ablation_table.py` evaluates every finished run and prints the table.
#   RUNS=/work/edgekd-runs EPOCHS=30 bash benchmarks/ablate_recipe.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-/work/edgekd-runs}
DATA=${DATA:-../shared/data}
SIZE=${SIZE:-128}
EPOCHS=${EPOCHS:-30}
EDGEKD=${EDGEKD:-.venv/bin/edgekd}
PREPARED=$RUNS/data/300w-$SIZE
A=$RUNS/train/300w-$SIZE-ablation-e$EPOCHS

[ -f "$PREPARED/manifest.json" ] || $EDGEKD data prepare --dataset 300w --root "$DATA/300w" --out-dir "$PREPARED" --input-size "$SIZE"

run() {  # run NAME [options]: one baseline stage in $A/NAME
  local dir=$A/$1/baseline
  if [ -f "$dir/summary.json" ]; then echo "== $1: finished, skipped"; return; fi
  local resume=()
  [ -f "$dir/last.h5" ] && resume=(--resume)
  echo "== $1 ($(date -u +%H:%M))"
  $EDGEKD train "$PREPARED" --run-dir "$A/$1" --stage baseline --epochs "$EPOCHS" "${resume[@]}" "${@:2}"
}

# BN momentum 0.99 comes with the fast-cpu recipe only; BN re-estimation before validation is on in every run.
run fast-cpu --recipe fast-cpu                          # every change together
run paper --recipe paper                                # none: L2, inverse-time decay, default head, [0, 1], full augment
run paper+l1 --recipe paper --loss l1                   # each change alone, on the paper's settings
run paper+cosine --recipe paper --schedule cosine
run paper+mean-shape-head --recipe paper --head-init mean-shape
run paper+input-norm --recipe paper --input-norm
run paper+light-augment --recipe paper --augment light
