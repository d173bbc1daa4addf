"""Would another optimiser shorten the judge's relaxations? ASE's FIRE (the protocol), BFGS and LBFGS in the same
lockstep loop, and FIRE after a cell pre-relaxation (``relax_cell(hold_sites=True)``, at most 60 quasi-Newton steps on
ln(a, b, c) with the sites held; its steps counted in), (:func:`smoacs_bench.evaluation.relax.relax`, CHGNet 0.3.0, FrechetCellFilter, fmax 0.05 eV/Å, at most
300 steps) on the first N proposals of a stored run (default: the committed SMOACS 5-site run at 1.5 eV, seed 0).

Prints, per optimiser, the wall time (one torch thread), mean and median steps and how many converged; then, per
alternative, its final energies against FIRE's (eV/atom) and how many final cells StructureMatcher still matches to
FIRE's. Fewer steps that end in other minima would change the judge's verdicts, not just its cost. Example:

    python perf/relax_optimizers.py --n 64
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

RUN = Path(__file__).resolve().parents[1] / "results/runs/perovskite/smoacs_bg1.5_m0.04_s0_n256"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default=str(RUN), help="a run folder with structures (packed or loose)")
    ap.add_argument("--n", type=int, default=64, help="proposals to relax (the first N)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")

    import numpy as np
    import torch
    from ase.optimize import BFGS, FIRE, LBFGS

    from smoacs_bench.evaluation.io import read_structure
    from smoacs_bench.evaluation.relax import RelaxSettings, compare, load_relaxer, relax, relax_cell

    torch.set_num_threads(1)
    structures = [read_structure(Path(args.run) / "structures" / f"{i}.cif")[0] for i in range(args.n)]
    chgnet = load_relaxer("chgnet")
    outcomes = {}

    def report(name: str, seconds: float) -> None:
        steps = [o.steps for o in outcomes[name]]
        print(f"{name:10s} {seconds:6.1f} s  steps mean {np.mean(steps):5.1f} median {np.median(steps):5.1f}  "
              f"converged {sum(o.converged for o in outcomes[name])} of {len(steps)}", flush=True)

    for name, cls in (("FIRE", FIRE), ("BFGS", BFGS), ("LBFGS", LBFGS)):
        t0 = time.perf_counter()
        outcomes[name] = relax(structures, RelaxSettings(), chgnet, optimizer=cls)
        report(name, time.perf_counter() - t0)
    t0 = time.perf_counter()
    pre = relax_cell(structures, RelaxSettings(max_steps=60), chgnet, hold_sites=True)
    outcomes["cell first"] = relax([p.final or s for p, s in zip(pre, structures, strict=True)], RelaxSettings(), chgnet)
    for p, o in zip(pre, outcomes["cell first"], strict=True):
        o.steps += p.steps
    report("cell first", time.perf_counter() - t0)
    for name in ("BFGS", "LBFGS", "cell first"):
        pairs = [(a, b) for a, b in zip(outcomes["FIRE"], outcomes[name], strict=True)
                 if a.final is not None and b.final is not None]
        d = np.array([b.energy_final - a.energy_final for a, b in pairs])
        same = sum(bool(compare(a.final, b.final)["match"]) for a, b in pairs)
        print(f"{name} vs FIRE over {len(pairs)} cells: final energy mean {d.mean():+.3f}, max |.| {np.abs(d).max():.3f} "
              f"eV/atom; {(np.abs(d) > 0.002).sum()} differ by > 0.002 eV/atom; {same} final cells match FIRE's")


if __name__ == "__main__":
    main()
