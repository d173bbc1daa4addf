#!/usr/bin/env bash
# SMOACS(MEGNet) result tables: bash results/run_smoacs.sh TASK N_SAMPLES DEVICE [extra run flags]
# e.g. bash results/run_smoacs.sh perovskite 256 cpu ; bash results/run_smoacs.sh free 256 cpu
# Needs SMOACS_MODEL_DIR (and SMOACS_DATA_DIR for the novelty reference). Seed 0, 200 steps, margin 0.04 eV.
set -euo pipefail
cd "$(dirname "$0")/.."
task=$1; n=$2; device=$3; shift 3
dir=results/smoacs_$task
runs=()
for bg in 0.5 1.5 2.5; do
  /usr/bin/time -f "$task target $bg: %e s wall" smoacs-bench run --method smoacs --task "$task" --target-bg $bg \
    --margin 0.04 --n-samples "$n" --steps 200 --seed 0 --device "$device" --no-progress --out "$dir/bg$bg" "$@"
  runs+=("$dir/bg$bg")
done
bash results/make_tables.sh
