"""One core, one run: SMOACS, TPE in SMOACS's space and the judge's relaxation of SMOACS's proposals, side by side.

Issue #43's acceptance figures, measured in one process on one torch thread (OMP_NUM_THREADS=1 is set before
torch loads), the same task, target and seed for every part:

1. SMOACS N x STEPS (``get_method("smoacs")``, its defaults) proposing on the CPU;
2. TPE in SMOACS's space N x STEPS (``get_method("tpe", space="smoacs")``, one process, BatchTPE), with its
   own split of the time (sampler, predictor, objectives) from the method's artifacts;
3. relaxing SMOACS's N proposals with the judge's protocol (CHGNet 0.3.0, FIRE on a FrechetCellFilter, fmax
   0.05 eV/Å, at most 300 steps; ``evaluation.relax.relax``, one process), and the time inside CHGNet's calls.

It prints each wall time and the two ratios the issue asks for (relaxation / SMOACS and TPE / SMOACS, targets
<= 1.0). Other processes on the machine slow every part alike only if they run throughout; run it on a quiet
machine for figures to quote.

    python perf/method_costs.py                      # 128 x 200, 5-site perovskite, 1.5 eV (~5 min on one core)
    python perf/method_costs.py --n 32 --steps 50    # a quick look
    python perf/method_costs.py --optuna-path        # TPE also through Optuna's ask/tell (the same trials)
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=128, help="samples (SMOACS) and studies (TPE)")
    ap.add_argument("--steps", type=int, default=200, help="SMOACS steps and TPE trials per study")
    ap.add_argument("--task", default="perovskite")
    ap.add_argument("--target", type=float, default=1.5, help="band-gap target, eV")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--optuna-path", action="store_true",
                    help="also run TPE through Optuna's ask/tell (the same trials; the cost the lean path saves)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")

    import torch

    from smoacs_bench.data.task import get_task
    from smoacs_bench.evaluation.relax import RelaxSettings, load_relaxer, relax
    from smoacs_bench.methods import get_method

    torch.set_num_threads(1)
    task = get_task(args.task, target_bg=args.target)
    print(f"{args.task}, {args.target} eV, seed {args.seed}, {args.n} x {args.steps}, one torch thread")

    smoacs = get_method("smoacs", steps=args.steps, progress=False, device="cpu")
    _ = smoacs.predictors   # loading the models is not the optimisation
    t0 = time.perf_counter()
    proposals = smoacs.propose(task, args.n, seed=args.seed)
    t_smoacs = time.perf_counter() - t0
    print(f"SMOACS:     {t_smoacs:7.1f} s")

    def run_tpe(label: str) -> float:
        tpe = get_method("tpe", space="smoacs", trials=args.steps, progress=False, device="cpu", workers=1)
        _ = tpe.predictors
        t0 = time.perf_counter()
        tpe.propose(task, args.n, seed=args.seed)
        took = time.perf_counter() - t0
        timings = (tpe.artifacts() or {}).get("timings") or {}
        split = ", ".join(f"{k.removesuffix('_s')} {float(v):.1f} s" for k, v in timings.items()
                          if k.endswith("_s") and k != "wall_s" and float(v) > 0)
        print(f"{label}: {took:7.1f} s" + (f"  ({split})" if split else ""))
        return took

    t_tpe = run_tpe("TPE (SMOACS space)")
    if args.optuna_path:
        from smoacs_bench.methods.tpe import lockstep

        lean = lockstep.lean_applies
        lockstep.lean_applies = lambda *a, **k: False
        try:
            t_optuna = run_tpe("TPE (SMOACS space) through Optuna's ask/tell")
        finally:
            lockstep.lean_applies = lean
        print(f"  Optuna's ask/tell / lean = {t_optuna / t_tpe:.2f}")

    structures = [p.structure for p in proposals]
    relaxer = load_relaxer("chgnet")
    inside = [0.0]

    class Timed:
        def efs(self, batch):
            t = time.perf_counter()
            try:
                return relaxer.efs(batch)
            finally:
                inside[0] += time.perf_counter() - t

    t0 = time.perf_counter()
    out = relax(structures, RelaxSettings(), Timed())
    t_relax = time.perf_counter() - t0
    print(f"relaxing SMOACS's {len(structures)} proposals: {t_relax:7.1f} s ({inside[0]:.1f} s inside CHGNet, "
          f"{sum(o.converged for o in out)} converged, {sum(o.steps + 1 for o in out)} structure-steps)")
    print(f"relaxation / SMOACS = {t_relax / t_smoacs:.2f} (target <= 1.0); TPE / SMOACS = {t_tpe / t_smoacs:.2f} "
          "(target <= 1.0)")


if __name__ == "__main__":
    main()
