#!/usr/bin/env bash
# TPE rows: [METHOD=tpe|tpe-n|tpe+n] [WORKERS=2] bash results/run_tpe.sh TASK N_STUDIES TRIALS [extra run flags]
# Targets 0.5/1.5/2.5 eV one after another, each with WORKERS processes (groups of 32 studies; the
# output does not depend on WORKERS). Seed 0, margin 0.04 eV. Studies are journaled in each run folder
# (tpe_journal/, not committed): a killed run resumes where it stopped when re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
task=$1; n=$2; trials=$3; shift 3
method=${METHOD:-tpe}
dir=results/${method}_$task
for bg in 0.5 1.5 2.5; do
  /usr/bin/time -f "$method $task target $bg: %e s wall" smoacs-bench run --method "$method" --task "$task" \
    --target-bg $bg --margin 0.04 --n-samples "$n" --trials "$trials" --seed 0 --device cpu --no-progress \
    --workers "${WORKERS:-2}" --out "$dir/bg$bg" "$@"
done
