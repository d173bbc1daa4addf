#!/usr/bin/env bash
# Table-3-style SMOACS(MEGNet) results: 256 samples x 200 steps, seed 0, CPU (2 cores), targets 0.5/1.5/2.5 eV.
set -euo pipefail
cd "$(dirname "$0")/../.."
for bg in 0.5 1.5 2.5; do
  /usr/bin/time -f "target $bg: %e s wall" smoacs-bench run --method smoacs --task perovskite --target-bg $bg \
    --margin 0.04 --n-samples 256 --steps 200 --seed 0 --device cpu --no-progress \
    --out results/smoacs_perovskite/bg$bg "$@"
done
smoacs-bench table --runs results/smoacs_perovskite/bg0.5 results/smoacs_perovskite/bg1.5 \
  results/smoacs_perovskite/bg2.5 --format md --with-paper --out results/smoacs_perovskite/table3.md
smoacs-bench table --runs results/smoacs_perovskite/bg0.5 results/smoacs_perovskite/bg1.5 \
  results/smoacs_perovskite/bg2.5 --format tex --out results/smoacs_perovskite/table3.tex
smoacs-bench table --runs results/smoacs_perovskite/bg0.5 results/smoacs_perovskite/bg1.5 \
  results/smoacs_perovskite/bg2.5 --format csv --out results/smoacs_perovskite/table3.csv
smoacs-bench table --runs results/smoacs_perovskite/bg0.5 results/smoacs_perovskite/bg1.5 \
  results/smoacs_perovskite/bg2.5 --layout diversity --format md --with-paper --out results/smoacs_perovskite/diversity.md
