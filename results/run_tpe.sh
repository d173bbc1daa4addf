#!/usr/bin/env bash
# TPE(MEGNet) rows: bash results/run_tpe.sh TASK N_STUDIES [extra run flags]; targets 0.5/1.5/2.5 eV run in parallel.
# Seed 0, 200 trials, margin 0.04 eV, CPU. Studies are journaled in each run folder (resumable).
set -euo pipefail
cd "$(dirname "$0")/.."
task=$1; n=$2; shift 2
dir=results/tpe_$task
pids=()
for bg in 0.5 1.5 2.5; do
  OMP_NUM_THREADS=1 /usr/bin/time -f "$task target $bg: %e s wall" smoacs-bench run --method tpe --task "$task" \
    --target-bg $bg --margin 0.04 --n-samples "$n" --trials 200 --seed 0 --device cpu --no-progress \
    --out "$dir/bg$bg" "$@" &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
