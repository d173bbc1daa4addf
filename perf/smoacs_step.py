"""Cost of one SMOACS step vs one bare forward+backward of the two predictors, on the same batch,
and the wall time of a full run. The step rebuilds the neighbour graph, as SMOACS now does every step
(``rebuild_every=1``). Goals: ratio <= 1.05; 256 x 200 in <= 3 min on 2 CPU cores.

    python perf/smoacs_step.py [--n-samples 256] [--steps 20] [--full] [--task perovskite]

The step is timed with the optimiser's own pieces (soft forward pass with masks and temperature,
both predictors, tolerance loss, backward, Adam, projection); the bare pass feeds the same
soft crystals, detached, as leaf tensors to the predictors. Both use the graph of the current geometry.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from smoacs_bench.data.task import get_task
from smoacs_bench.methods import get_method
from smoacs_bench.methods.predictors import build_neighbor_graph
from smoacs_bench.methods.smoacs import CrystalState, initial_crystals


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="perovskite")
    ap.add_argument("--n-samples", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--full", action="store_true", help="also time a full 200-step run")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    task = get_task(args.task, 1.5)
    m = get_method("smoacs", progress=False, device=args.device)
    bg_model, ef_model = m.predictors
    state = CrystalState([d.crystal for d in initial_crystals(task, args.n_samples, 0)], m.allowed_elements(), t_start=0.01,
                         abc_range=task.abc_range, angle_range=task.angle_range, coord_eps=task.coord_eps,
                         generator=torch.Generator().manual_seed(0), tolerance=task.is_perovskite,
                         device=args.device)
    opt = torch.optim.Adam(state.parameters(), lr=1e-3)
    crystals, _, _ = state.soft(0.01)
    graph = build_neighbor_graph(crystals.detach(), max(bg_model.cutoff, ef_model.cutoff))
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

    def bare():
        c = crystals.detach()
        for t in (c.lattice, c.frac_coords, c.atom_probs):
            t.requires_grad_(True)
        (bg_model(c, graph) + ef_model(c, graph)).sum().backward()

    cutoff = max(bg_model.cutoff, ef_model.cutoff)

    def step():
        c, p, w = state.soft(0.01)
        g = build_neighbor_graph(c.detach(), cutoff)  # rebuilt every step
        loss = torch.relu((bg_model(c, g) - 1.5).abs() - 0.04) + ef_model(c, g)
        if state.tolerance:
            loss = loss + (state.tolerance_factor(p, w) - 0.9).abs()
        opt.zero_grad()
        loss.sum().backward()
        opt.step()
        state.project()

    def timed(fn):
        fn()
        sync()
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - t0)
        return float(np.median(times))

    t_graph = timed(lambda: build_neighbor_graph(crystals.detach(), 5.0))
    t_bare, t_step = timed(bare), timed(step)
    print(f"{args.task}, {args.n_samples} samples, {graph.num_edges} edges, {args.device}, "
          f"{torch.get_num_threads()} threads")
    print(f"  bare forward+backward of both predictors: {t_bare * 1e3:8.1f} ms")
    print(f"  one SMOACS step (graph rebuilt):          {t_step * 1e3:8.1f} ms   ratio {t_step / t_bare:.2f} "
          "(goal <= 1.05)")
    print(f"  neighbour-graph build (5 Å):              {t_graph * 1e3:8.1f} ms")
    if args.full:
        full = get_method("smoacs", progress=False, device=args.device)
        t0 = time.perf_counter()
        full.propose(task, args.n_samples, seed=0)
        sync()
        wall = time.perf_counter() - t0
        print(f"  full run {args.n_samples} x 200 steps: {wall:.1f} s ({wall / 200 * 1e3:.0f} ms/step on average; "
              "cells shrink as E_f is minimised, so later steps have more edges)")


if __name__ == "__main__":
    main()
