"""MEGNet, Crystalformer and ALIGNN side by side: graph build, forward+backward time and peak memory.

Batches of random soft perovskites (unit-cell a, b, c ~ U(2, 10) Å, 90°, ideal coordinates, random softmax
element distributions; gradients with respect to lattice, coordinates and distributions), by default
256 x 5 sites and 32 x 135 sites. Weights: MEGNet's pretrained band-gap model ($SMOACS_MODEL_DIR/matgl);
Crystalformer the fixture's random state dict (official architecture; $SMOACS_DATA_DIR/../fixtures); ALIGNN a
seeded random initialisation with the shipped CGCNN table (official architecture). Random weights cost the
same as trained ones. Each (family, batch) runs in a fresh subprocess, so its peak resident memory
(``ru_maxrss`` minus the RSS after loading the model) is its own; a case that exceeds ``--timeout`` seconds
is reported as such.

    python perf/predictor_families.py [--device cpu|cuda] [--cases 256x5,32x135] [--families megnet,crystalformer,alignn]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _predictor(family: str, device: str):
    import torch

    if family == "megnet":
        from smoacs_bench.methods.predictors import band_gap_predictor

        return band_gap_predictor(0, device)
    if family == "crystalformer":
        from smoacs_bench.methods.predictors.crystalformer import load_crystalformer

        root = os.environ.get("SMOACS_FIXTURE_DIR") or str(Path(os.environ["SMOACS_DATA_DIR"]).resolve().parent
                                                             / "fixtures")
        path = Path(root) / "crystalformer" / "state_dict.pt"
        if not path.is_file():
            path = Path(root) / "state_dict.pt"
        return load_crystalformer(path, device=device)
    if family == "alignn":
        from smoacs_bench.methods.predictors.alignn import ALIGNNPredictor

        torch.manual_seed(0)
        return ALIGNNPredictor(device=device)
    raise ValueError(f"unknown family {family!r}")


def _case(family: str, n_samples: int, n_sites: int, device: str, repeats: int) -> dict:
    import warnings

    import torch

    from smoacs_bench.data.templates import PerovskiteCell
    from smoacs_bench.methods.predictors import SoftCrystals, lattice_from_parameters

    warnings.filterwarnings("ignore")
    n = round((n_sites / 5) ** (1 / 3))
    predictor = _predictor(family, device)
    g = torch.Generator().manual_seed(0)
    cell = PerovskiteCell(n)
    lattice = lattice_from_parameters((torch.rand(n_samples, 3, generator=g) * 8 + 2) * n,
                                      torch.full((n_samples, 3), 90.0))
    frac = torch.as_tensor(cell.frac_coords, dtype=torch.float32).repeat(n_samples, 1)
    probs = torch.softmax(torch.randn(frac.shape[0], 98, generator=g), dim=1)
    batch = torch.arange(n_samples).repeat_interleave(cell.n_sites)
    base = SoftCrystals(lattice, frac, probs, batch).to(device)
    rss0 = _rss_mb()
    t_graph, t_fb = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        graph = predictor.neighbor_graph(base)
        t_graph.append(time.perf_counter() - t0)
        c = SoftCrystals(base.lattice.clone().requires_grad_(True), base.frac_coords.clone().requires_grad_(True),
                         base.atom_probs.clone().requires_grad_(True), base.batch)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        predictor(c, graph).sum().backward()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t_fb.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {"graph_s": min(t_graph), "fwd_bwd_s": min(t_fb), "peak_extra_mb": peak - rss0,
           "edges": int(getattr(graph, "num_edges", 0) or 0)}
    if device.startswith("cuda"):
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--cases", default="256x5,32x135")
    ap.add_argument("--families", default="megnet,crystalformer,alignn")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--timeout", type=int, default=600)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        family, b, s = args.child.split(":")
        print(json.dumps(_case(family, int(b), int(s), args.device, args.repeats)))
        return
    import torch

    print(f"device={args.device} torch={torch.__version__} threads={torch.get_num_threads()} "
          f"(best of {args.repeats}; peak = resident memory above the loaded model)")
    print(f"{'batch':>16} {'family':>14} {'edges':>8} {'graph s':>8} {'fwd+bwd s':>10} {'peak MB':>9}")
    for case in args.cases.split(","):
        b, s = (int(x) for x in case.split("x"))
        for family in args.families.split(","):
            cmd = [sys.executable, __file__, "--device", args.device, "--repeats", str(args.repeats),
                   "--child", f"{family}:{b}:{s}"]
            try:
                res = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
            except subprocess.TimeoutExpired:
                print(f"{f'{b} x {s}-site':>16} {family:>14}  over {args.timeout} s")
                continue
            if res.returncode != 0:
                print(f"{f'{b} x {s}-site':>16} {family:>14}  failed: {res.stderr.strip().splitlines()[-1]}")
                continue
            r = json.loads(res.stdout.strip().splitlines()[-1])
            print(f"{f'{b} x {s}-site':>16} {family:>14} {r['edges']:>8d} {r['graph_s']:>8.3f} "
                  f"{r['fwd_bwd_s']:>10.3f} {r['peak_extra_mb']:>9.0f}")


if __name__ == "__main__":
    main()
