"""CUDA path check: CPU vs CUDA predictions agree, and forward/backward and SMOACS step timings.

    python perf/cuda_check.py            # prints figures; exits non-zero if CUDA disagrees with CPU
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch

from smoacs_bench.data.task import get_task
from smoacs_bench.data.templates import random_perovskites
from smoacs_bench.methods import get_method
from smoacs_bench.methods.predictors import SoftCrystals, get_predictor


def timed(fn, repeats: int = 5) -> float:
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeats


def main() -> int:
    if not torch.cuda.is_available():
        print("CUDA not available; nothing to check")
        return 0
    print("device:", torch.cuda.get_device_name(0), "torch", torch.__version__)
    structures = random_perovskites(64, seed=0)
    worst = 0.0
    for name in ("megnet-bandgap", "megnet-eform"):
        cpu = get_predictor(name, device="cpu").predict_structures(structures)
        gpu = get_predictor(name, device="cuda").predict_structures(structures)
        diff = float(np.nanmax(np.abs(cpu - gpu)))
        worst = max(worst, diff)
        print(f"{name}: max |CPU - CUDA| over 64 structures = {diff:.2e}")
    for dev in ("cpu", "cuda"):
        bg, ef = get_predictor("megnet-bandgap", device=dev), get_predictor("megnet-eform", device=dev)
        c = SoftCrystals.from_structures(random_perovskites(256, seed=1), device=dev)
        c.atom_probs.requires_grad_(True)
        c.lattice.requires_grad_(True)

        def fwd_bwd(bg=bg, ef=ef, c=c):
            (bg(c) + ef(c)).sum().backward()

        print(f"{dev}: forward+backward of both predictors, 256 perovskites: {timed(fwd_bwd, 3) * 1e3:.1f} ms")
    task = get_task("perovskite", 1.5)
    for steps in (200,):
        m = get_method("smoacs", steps=steps, progress=False, device="cuda")
        _ = m.predictors  # load the models before timing
        t0 = time.perf_counter()
        props = m.propose(task, 256, seed=0)
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        ok = sum(not p.failed for p in props)
        print(f"cuda: SMOACS 256 samples x {steps} steps: {dt:.1f} s ({dt / steps * 1e3:.1f} ms/step), {ok} finished")
    return 0 if worst < 1e-3 else 1


if __name__ == "__main__":
    sys.exit(main())
