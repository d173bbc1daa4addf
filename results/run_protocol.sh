#!/usr/bin/env bash
# Runs under the fair-comparison protocol (pattern neutrality on perovskite tasks, origin-free perovskite
# checks, `final` selection, cross-judge): one folder per seed and target.
#   bash results/run_protocol.sh METHOD TASK N_SAMPLES "SEEDS" [extra run flags]
# e.g. bash results/run_protocol.sh smoacs perovskite 256 "0 1 2"
#      bash results/run_protocol.sh tpe perovskite 64 "0 1 2" --trials 200 --workers 2
# Writes results/<method>_<task>/seed<k>/bg<target>/ (or OUT=DIR); margin 0.04 eV; targets 0.5, 1.5, 2.5 eV.
# FROM=DIR (TPE): reuse the finished studies of DIR/seed<k>/bg<target>/tpe_journal, e.g. to re-select with
#   FROM=results/tpe_perovskite OUT=results/tpe_perovskite_best bash results/run_protocol.sh tpe perovskite 64 "0" \
#     --trials 200 --workers 2 --param selection=best
# Needs SMOACS_MODEL_DIR (models, with cdvae-mp20/ for the cross-judge) and SMOACS_DATA_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
method=$1; task=$2; n=$3; seeds=$4; shift 4
dir=${OUT:-results/${method}_${task}}
for seed in $seeds; do
  for bg in 0.5 1.5 2.5; do
    from=()
    [ -n "${FROM:-}" ] && from=(--param "storage=$FROM/seed$seed/bg$bg/tpe_journal")
    /usr/bin/time -f "$method $task n=$n seed $seed target $bg: %e s wall" smoacs-bench run --method "$method" \
      --task "$task" --target-bg $bg --margin 0.04 --n-samples "$n" --seed "$seed" --device cpu --no-progress \
      --out "$dir/seed$seed/bg$bg" "${from[@]}" "$@" 2>&1 | grep -v "Warning\|rad = \|warnings.warn"
  done
done
