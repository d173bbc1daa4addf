#!/usr/bin/env bash
# TPE(MEGNet) rows: bash results/run_tpe.sh TASK N_STUDIES TRIALS [extra run flags]
# Targets 0.5/1.5/2.5 eV run in parallel (one CPU thread each). Seed 0, margin 0.04 eV.
# Studies are journaled in each run folder: a killed run resumes where it stopped when re-run.
# The committed tpe_perovskite rows: bash results/run_tpe.sh perovskite 64 80 --label "TPE(MEGNet), 80 trials"
set -euo pipefail
cd "$(dirname "$0")/.."
task=$1; n=$2; trials=$3; shift 3
dir=results/tpe_$task
pids=()
for bg in 0.5 1.5 2.5; do
  OMP_NUM_THREADS=1 /usr/bin/time -f "$task target $bg: %e s wall" smoacs-bench run --method tpe --task "$task" \
    --target-bg $bg --margin 0.04 --n-samples "$n" --trials "$trials" --seed 0 --device cpu --no-progress \
    --out "$dir/bg$bg" "$@" &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
