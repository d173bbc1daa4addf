"""Time and agreement of the CDVAE formation-energy judge (methods/predictors/cdvae.py).

Prints the time to judge 256 perov_5 test structures, CrystalNN graph building and the batched
forward pass separately, then Pearson r and the mean offset (CDVAE - MEGNet, eV/atom) against
MEGNet's formation energy on the first ``--n`` (default 50) perov_5 test structures.

Models: $SMOACS_MODEL_DIR/cdvae-mp20 (default /work/shared/models) and MEGNet-MP-2018.6.1-Eform
under $SMOACS_MODEL_DIR or $SMOACS_MODEL_DIR/matgl. Data: $SMOACS_DATA_DIR/perov_5/test.csv
(default /work/shared/data).
Usage: python3 perf/crossjudge_speed.py [--n 50] [--timed 256] [--device cuda] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from smoacs_bench.data.datasets import load_cdvae_csv
from smoacs_bench.methods.predictors.cdvae import load_cdvae_judge


def megnet_eform(structures, device: str) -> np.ndarray:
    """MEGNet formation energies (eV/atom), trying $SMOACS_MODEL_DIR and then $SMOACS_MODEL_DIR/matgl."""
    from smoacs_bench.methods.predictors import get_predictor

    base = os.environ["SMOACS_MODEL_DIR"]
    for candidate in (base, str(Path(base) / "matgl")):
        os.environ["SMOACS_MODEL_DIR"] = candidate
        try:
            return get_predictor("megnet-eform", device=device).predict_structures(structures)
        except FileNotFoundError as err:
            print(f"MEGNet not under {candidate}: {str(err)[:120]}")
        finally:
            os.environ["SMOACS_MODEL_DIR"] = base
    raise FileNotFoundError("MEGNet-MP-2018.6.1-Eform not found")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50, help="structures compared with MEGNet")
    ap.add_argument("--timed", type=int, default=256, help="structures timed")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, help="torch CPU threads (on a shared 2-core machine 1 is ~10x faster)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("SMOACS_MODEL_DIR", "/work/shared/models")
    data = Path(os.environ.get("SMOACS_DATA_DIR", "/work/shared/data"))

    records, problems = load_cdvae_csv(data / "perov_5" / "test.csv", limit=max(args.n, args.timed))
    structures = [r.structure for r in records]
    print(f"{len(structures)} perov_5 test structures read ({len(problems)} problems); device {args.device}; "
          f"torch threads {torch.get_num_threads()}")

    t0 = time.perf_counter()
    judge = load_cdvae_judge(device=args.device)
    print(f"load: {time.perf_counter() - t0:.2f} s")

    timed = structures[:args.timed]
    t0 = time.perf_counter()
    graphs = judge.build_graphs(timed)
    t_graph = time.perf_counter() - t0
    judge.predict_graphs(graphs[:8])  # warm-up
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    y = judge.predict_graphs(graphs, batch_size=256)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    t_fwd = time.perf_counter() - t0
    n = len(timed)
    print(f"{n} structures: CrystalNN graphs {t_graph:.2f} s ({t_graph / n * 1e3:.1f} ms each), "
          f"forward {t_fwd * 1e3:.0f} ms ({t_fwd / n * 1e3:.2f} ms each), {np.isnan(y).sum()} NaN")

    cmp = structures[:args.n]
    cdvae = judge.predict_graphs(graphs[:args.n]) if args.n <= n else judge.predict_structures(cmp)
    megnet = megnet_eform(cmp, args.device)
    ok = np.isfinite(cdvae) & np.isfinite(megnet)
    r = np.corrcoef(cdvae[ok], megnet[ok])[0, 1]
    diff = cdvae[ok] - megnet[ok]
    print(f"vs MEGNet on {ok.sum()}/{len(cmp)} structures: Pearson r = {r:.3f}, mean offset (CDVAE - MEGNet) "
          f"= {diff.mean():+.3f} eV/atom, MAE {np.abs(diff).mean():.3f} eV/atom")


if __name__ == "__main__":
    main()
