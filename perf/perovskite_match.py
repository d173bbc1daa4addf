"""Origin-free perovskite checks on real DFT perovskites (perov_5): how many are judged perovskites.

perov_5 holds relaxed cells in the Materials Project setting (A at the origin), some strongly distorted.
Prints, per file, the share of structures with every coordinate within ±ε of the ideal positions
(after the best translation and site assignment), with all angles in 85-95°, neutral under the
perovskite pattern rule, with 0.8 <= t <= 1.0, and the time per structure.

Run: SMOACS_DATA_DIR=../shared/data python perf/perovskite_match.py [--files test val] [--limit N]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from smoacs_bench.data.datasets import find_dataset, load_cdvae_csv
from smoacs_bench.data.task import get_task
from smoacs_bench.evaluation.criteria import evaluate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", nargs="+", default=["test", "val"])
    ap.add_argument("--limit", type=int)
    ap.add_argument("--eps", type=float, nargs="+", default=[0.15, 0.10, 0.05])
    args = ap.parse_args()
    criteria = get_task("perovskite").criteria(1.5, 0.04)
    paths = {p.stem: p for p in find_dataset("perov_5")}
    for name in args.files:
        records, problems = load_cdvae_csv(paths[name], args.limit)
        structures = [r.structure for r in records]
        t0 = time.perf_counter()
        df = evaluate(structures, [None] * len(structures), [None] * len(structures), criteria)
        dt = (time.perf_counter() - t0) / max(len(structures), 1)
        dev = df["max_coord_dev"].astype(float)
        within = "  ".join(f"±{e}: {(dev <= e + 1e-6).mean():.3f}" for e in args.eps)
        print(f"perov_5/{name}.csv: {len(df)} structures ({len(problems)} unreadable), {1e3 * dt:.1f} ms each")
        print(f"  coordinates within {within}")
        print(f"  angles 85-95°: {df['angles_ok'].mean():.3f}  neutral (pattern rule): {df['neutral'].mean():.3f}  "
              f"neutral (any assignment): {df['neutral_any'].mean():.3f}  0.8 <= t <= 1.0: "
              f"{df['tolerance_ok'].mean():.3f}  (D) perovskite: {df['perovskite_ok'].mean():.3f}")
        print(f"  max coordinate deviation: median {np.nanmedian(dev):.3f}, 90th percentile "
              f"{np.nanpercentile(dev, 90):.3f}, max {np.nanmax(dev):.3f}")


if __name__ == "__main__":
    main()
