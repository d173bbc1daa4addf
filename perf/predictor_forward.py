"""Wall time of graph build and forward+backward of the MEGNet predictors on random perovskites.

Batches: 256 five-site perovskites (a, b, c ~ U(2, 10) Å, 90° angles, ideal coordinates,
random softmax atom_probs) and 32 three-by-three-by-three 135-site supercells of the same.
Usage: python3 perf/predictor_forward.py [--device cuda] [--repeats 3]
Models come from $SMOACS_MODEL_DIR/matgl (run with SMOACS_MODEL_DIR=../shared/models).
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

from smoacs_bench.data.templates import PerovskiteCell
from smoacs_bench.methods.predictors import (
    SoftCrystals,
    band_gap_predictor,
    build_neighbor_graph,
    formation_energy_predictor,
    lattice_from_parameters,
)


def random_perovskites(n_samples: int, n: int, seed: int, device: str) -> SoftCrystals:
    """n x n x n supercells of 5-site perovskites with unit-cell a, b, c ~ U(2, 10) Å."""
    g = torch.Generator().manual_seed(seed)
    cell = PerovskiteCell(n)
    abc = (torch.rand(n_samples, 3, generator=g) * 8 + 2) * n
    lattice = lattice_from_parameters(abc, torch.full((n_samples, 3), 90.0))
    frac = torch.as_tensor(cell.frac_coords, dtype=torch.float32).repeat(n_samples, 1)
    probs = torch.softmax(torch.randn(frac.shape[0], 98, generator=g), dim=1)
    batch = torch.arange(n_samples).repeat_interleave(cell.n_sites)
    return SoftCrystals(lattice, frac, probs, batch).to(device)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench(predictor, crystals: SoftCrystals, device: str, repeats: int) -> tuple[float, float, int]:
    """Best-of-``repeats`` seconds for graph build and for forward+backward; number of edges."""
    t_graph, t_fb, graph = [], [], None
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        graph = build_neighbor_graph(crystals, predictor.cutoff)
        _sync(device)
        t_graph.append(time.perf_counter() - t0)
        c = SoftCrystals(crystals.lattice.clone().requires_grad_(True),
                         crystals.frac_coords.clone().requires_grad_(True),
                         crystals.atom_probs.clone().requires_grad_(True), crystals.batch)
        _sync(device)
        t0 = time.perf_counter()
        predictor(c, graph).sum().backward()
        _sync(device)
        t_fb.append(time.perf_counter() - t0)
    return min(t_graph), min(t_fb), graph.num_edges


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="Incompatible model version")
    predictors = [formation_energy_predictor(args.device), band_gap_predictor(0, args.device)]
    print(f"device={args.device} torch={torch.__version__} threads={torch.get_num_threads()} "
          f"(best of {args.repeats})")
    print(f"{'batch':>24} {'predictor':>15} {'cutoff':>6} {'edges':>8} {'graph s':>8} {'fwd+bwd s':>9}")
    for n_samples, n in ((256, 1), (32, 3)):
        crystals = random_perovskites(n_samples, n, seed=0, device=args.device)
        label = f"{n_samples} x {5 * n**3}-site"
        for p in predictors:
            t_graph, t_fb, n_edges = bench(p, crystals, args.device, args.repeats)
            print(f"{label:>24} {p.name:>15} {p.cutoff:>6.1f} {n_edges:>8d} {t_graph:>8.3f} {t_fb:>9.3f}")


if __name__ == "__main__":
    main()
