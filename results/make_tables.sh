#!/usr/bin/env bash
# Render every committed table from the run folders (no computation): bash results/make_tables.sh
# Per method and task: <dir>/table.{md,csv,tex} (md beside the paper's rows; SMOACS folders also diversity.md);
# comparison_<task>.md puts SMOACS and the TPE variants under the same predictor side by side.
set -euo pipefail
cd "$(dirname "$0")"
table() { smoacs-bench table "$@"; }
done_runs() { for d in "$@"; do [ -f "$d/summary.csv" ] && echo "$d"; done; return 0; }
for dir in smoacs_perovskite smoacs_free smoacs_perovskite3x3x3 tpe_perovskite tpe_free tpe-n_perovskite3x3x3 \
           tpe+n_perovskite3x3x3; do
  mapfile -t runs < <(done_runs "$dir"/bg*)
  [ ${#runs[@]} -gt 0 ] || continue
  table --runs "${runs[@]}" --format md --with-paper --out "$dir/table.md"
  table --runs "${runs[@]}" --format csv --out "$dir/table.csv"
  table --runs "${runs[@]}" --format tex --out "$dir/table.tex"
  case $dir in smoacs_*)
    table --runs "${runs[@]}" --layout diversity --format md --with-paper --out "$dir/diversity.md";;
  esac
done
table --runs smoacs_perovskite/bg* tpe_perovskite/bg* --format md --out comparison_perovskite.md
table --runs smoacs_free/bg* tpe_free/bg* --format md --out comparison_free.md
table --runs smoacs_free/bg* tpe_free/bg* --layout diversity --format md --out comparison_free_diversity.md
table --runs smoacs_perovskite3x3x3/bg* tpe-n_perovskite3x3x3/bg* tpe+n_perovskite3x3x3/bg* --format md \
  --out comparison_perovskite3x3x3.md
