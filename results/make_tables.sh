#!/usr/bin/env bash
# Render every committed table from the run folders (no computation): bash results/make_tables.sh
# Per method and task: <dir>/table.{md,csv,tex} (md beside the paper's rows, seeds pooled with 95 % intervals;
# SMOACS folders also diversity.md); comparison_<task>.md puts the methods side by side under the same
# predictors, with a paired bootstrap of the success difference underneath.
set -euo pipefail
cd "$(dirname "$0")"
table() { smoacs-bench table "$@"; }
done_runs() { for d in "$@"; do [ -f "$d/summary.csv" ] && echo "$d"; done; return 0; }
for dir in smoacs_perovskite smoacs_perovskite_best smoacs_free smoacs_free_n64 smoacs_perovskite3x3x3 \
           tpe_perovskite tpe_perovskite_best tpe_free ftcp_perovskite ftcp_free; do
  mapfile -t runs < <(done_runs "$dir"/seed*/bg*)
  [ ${#runs[@]} -gt 0 ] || continue
  table --runs "${runs[@]}" --format md --with-paper --out "$dir/table.md"
  table --runs "${runs[@]}" --format csv --out "$dir/table.csv"
  table --runs "${runs[@]}" --format tex --out "$dir/table.tex"
  case $dir in smoacs_*|ftcp_*)
    table --runs "${runs[@]}" --layout diversity --format md --with-paper --out "$dir/diversity.md";;
  esac
done
compare() {  # compare OUT RUN_DIRS...
  local out=$1; shift
  mapfile -t runs < <(done_runs "$@")
  [ ${#runs[@]} -gt 0 ] && table --runs "${runs[@]}" --format md --out "$out" "${EXTRA[@]}"
  return 0
}
EXTRA=()
compare comparison_perovskite.md smoacs_perovskite/seed*/bg* tpe_perovskite/seed*/bg* \
  smoacs_perovskite_best/seed*/bg* tpe_perovskite_best/seed*/bg* ftcp_perovskite/seed*/bg*
compare comparison_free.md smoacs_free_n64/seed*/bg* tpe_free/seed*/bg* ftcp_free/seed*/bg*
EXTRA=(--layout diversity)
compare comparison_free_diversity.md smoacs_free_n64/seed*/bg* tpe_free/seed*/bg* ftcp_free/seed*/bg*
EXTRA=()
compare comparison_perovskite3x3x3.md smoacs_perovskite3x3x3/seed*/bg*
