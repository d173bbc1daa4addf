"""Wall time and peak memory of Crystalformer forward+backward on random soft perovskites.

Batches: 256 five-site perovskites and 2 three-by-three-by-three 135-site supercells (unit-cell
a, b, c ~ U(2, 10) Å, 90° angles, ideal coordinates, random softmax atom_probs), gradients with
respect to lattice, coordinates and atom_probs. Weights: the random-init state dict of the
Crystalformer fixture (``$SMOACS_FIXTURE_DIR`` or ``$SMOACS_DATA_DIR/../fixtures``), i.e. the
MEGNet-checkpoint architecture. Each case runs in a fresh subprocess, so that its peak resident
memory (``resource.getrusage``, minus the process's RSS after loading the model) is its own.

Usage: python3 perf/crystalformer_forward.py [--device cpu|cuda|all] [--repeats 2] [--chunk-elements N]
       [--cases 256x5,2x135]   (any BxS with S = 5 n^3)
A 32 x 135 batch is not run (too slow for a shared 2-core machine); chunking keeps its memory at
about the same per-chunk peak as the 2 x 135 batch, plus O(32 * 135^2) index tensors (about 14 MB).
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

import torch

from smoacs_bench.data.templates import PerovskiteCell
from smoacs_bench.methods.predictors import SoftCrystals, lattice_from_parameters
from smoacs_bench.methods.predictors.crystalformer import CrystalformerConfig, CrystalformerPredictor

CASES = ("256x5", "2x135")


def parse_case(case: str) -> tuple[int, int]:
    """"BxS" (S = 5 n^3 sites) -> (B, n)."""
    b, sites = (int(v) for v in case.split("x"))
    n = round((sites / 5) ** (1 / 3))
    if 5 * n**3 != sites:
        raise ValueError(f"{case}: the number of sites must be 5 n^3 (5, 40, 135, ...)")
    return b, n


def fixture_state() -> dict:
    env = os.environ.get("SMOACS_FIXTURE_DIR")
    roots = [Path(env), Path(env) / "crystalformer"] if env else []
    if os.environ.get("SMOACS_DATA_DIR"):
        roots.append(Path(os.environ["SMOACS_DATA_DIR"]).resolve().parent / "fixtures" / "crystalformer")
    roots.append(Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "crystalformer")
    for r in roots:
        if (r / "state_dict.pt").is_file():
            return torch.load(r / "state_dict.pt", weights_only=True)
    raise SystemExit(f"Crystalformer fixture state_dict.pt not found in {[str(r) for r in roots]}")


def random_perovskites(n_samples: int, n: int, seed: int, device: str) -> SoftCrystals:
    g = torch.Generator().manual_seed(seed)
    cell = PerovskiteCell(n)
    abc = (torch.rand(n_samples, 3, generator=g, dtype=torch.float64) * 8 + 2) * n
    lattice = lattice_from_parameters(abc, torch.full((n_samples, 3), 90.0, dtype=torch.float64))
    frac = torch.as_tensor(cell.frac_coords).repeat(n_samples, 1)
    probs = torch.softmax(torch.randn(frac.shape[0], 98, generator=g, dtype=torch.float64), dim=1)
    batch = torch.arange(n_samples).repeat_interleave(cell.n_sites)
    return SoftCrystals(lattice, frac, probs, batch).to(device, torch.float32)


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_one(case: str, device: str, repeats: int, chunk_elements: int) -> dict:
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    model = CrystalformerPredictor(CrystalformerConfig.from_state_dict(sd := fixture_state()),
                                   chunk_elements=chunk_elements)
    model.load_state_dict(sd, strict=True)
    model.eval().requires_grad_(False).to(device)
    n_samples, n = parse_case(case)
    crystals = random_perovskites(n_samples, n, seed=0, device=device)
    rss0 = _rss_mib()
    times = []
    for _ in range(repeats):
        c = SoftCrystals(crystals.lattice.clone().requires_grad_(True),
                         crystals.frac_coords.clone().requires_grad_(True),
                         crystals.atom_probs.clone().requires_grad_(True), crystals.batch)
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        out = model(c)
        out.sum().backward()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        assert torch.isfinite(out).all() and torch.isfinite(c.frac_coords.grad).all()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
    res = {"case": case, "device": device, "best_s": min(times), "first_s": times[0],
           "peak_rss_mib": peak, "rss_after_load_mib": rss0, "threads": torch.get_num_threads(),
           "chunk_elements": chunk_elements}
    if device == "cuda":
        res["cuda_peak_alloc_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or all (cuda only when available)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--chunk-elements", type=int, default=CrystalformerPredictor(CrystalformerConfig()).chunk_elements)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        case, device = args.one.split("@")
        print(json.dumps(run_one(case, device, args.repeats, args.chunk_elements)))
        return
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]
    print(f"torch={torch.__version__} OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')} "
          f"chunk_elements={args.chunk_elements} (best of {args.repeats}; fwd+bwd w.r.t. all three inputs)")
    print(f"{'batch':>8} {'device':>6} {'best s':>8} {'first s':>8} {'peak RSS MiB':>13} {'after load':>11} "
          f"{'CUDA peak MiB':>14}")
    for device in devices:
        for case in args.cases.split(","):
            cmd = [sys.executable, __file__, "--one", f"{case}@{device}", "--repeats", str(args.repeats),
                   "--chunk-elements", str(args.chunk_elements)]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode:
                print(f"{case:>8} {device:>6} failed: {done.stderr.strip().splitlines()[-1:]}")
                continue
            r = json.loads(done.stdout.strip().splitlines()[-1])
            cuda = f"{r['cuda_peak_alloc_mib']:14.1f}" if "cuda_peak_alloc_mib" in r else f"{'-':>14}"
            print(f"{case:>8} {device:>6} {r['best_s']:8.2f} {r['first_s']:8.2f} {r['peak_rss_mib']:13.0f} "
                  f"{r['rss_after_load_mib']:11.0f} {cuda}")


if __name__ == "__main__":
    main()
