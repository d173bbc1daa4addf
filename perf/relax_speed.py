"""Relaxation speed: batched lockstep CHGNet against serial ASE, and against the SMOACS optimisation it judges.

Relaxes N proposals of a stored run (default: the committed SMOACS 5-site perovskite run at 1.5 eV, seed 0)
three ways, with the stage's protocol (FIRE on a FrechetCellFilter, fmax 0.05 eV/Å, at most 300 steps):

1. serial: CHGNet's own ASE calculator, one structure at a time (one torch thread);
2. batched: :func:`smoacs_bench.evaluation.relax.relax`, one CHGNet call per FIRE step for chunks of 8
   structures (one torch thread);
3. batched with ``--workers`` processes (the stage's ``--relax-workers``).

It prints seconds per structure and per FIRE step, the batched/serial speed-up, the final-energy agreement,
the ratio of relaxing N proposals to the SMOACS run's own optimisation time scaled to N samples (the
run's config.json wall time), the engine's limit line (the time inside the potential's batched calls for the
same structures and steps: graphs, forward and backward; the rest is FIRE, the cell filter and bookkeeping) and
CHGNet's time per structure at several batch sizes (one call, one thread). Example (2 CPU cores):

    python perf/relax_speed.py --n 32 --workers 2
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

RUN = Path(__file__).resolve().parents[1] / "results/runs/perovskite/smoacs_bg1.5_m0.04_s0_n256"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default=str(RUN), help="a run folder with structures/ and config.json")
    ap.add_argument("--n", type=int, default=32, help="proposals to relax (the first N)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--serial-n", type=int, default=8, help="of which the serial path relaxes the first K")
    ap.add_argument("--sizes", default="1,4,16,64,256", help="CHGNet batch sizes of the last lines, comma-separated")
    args = ap.parse_args()
    warnings.simplefilter("ignore")

    import torch
    from chgnet.model.dynamics import CHGNetCalculator

    from smoacs_bench.evaluation.io import read_structure
    from smoacs_bench.evaluation.relax import RelaxSettings, SerialASE, load_relaxer, relax
    from smoacs_bench.evaluation.relax_runs import run_relaxations

    torch.set_num_threads(1)
    run = Path(args.run)
    structures = [read_structure(run / "structures" / f"{i}.cif")[0] for i in range(args.n)]   # packed or loose
    settings = RelaxSettings()
    chgnet = load_relaxer("chgnet")

    t0 = time.perf_counter()
    serial = relax(structures[:args.serial_n], settings,
                   SerialASE("chgnet-ase", CHGNetCalculator(model=chgnet.model, device="cpu")))
    t_serial = time.perf_counter() - t0
    timed = _Timed(chgnet)
    t0 = time.perf_counter()
    batched = relax(structures, settings, timed)
    t_batched = time.perf_counter() - t0
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run_relaxations(structures, list(range(args.n)), settings, Path(tmp) / "state", workers=args.workers,
                        progress=False)
        t_workers = time.perf_counter() - t0

    steps_serial = sum(o.steps + 1 for o in serial)
    steps_batched = sum(o.steps + 1 for o in batched)
    per_serial = t_serial / args.serial_n
    per_batched = t_batched / args.n
    diff = max(abs(a.energy_final - b.energy_final) for a, b in zip(serial, batched, strict=False))
    config = json.loads((run / "config.json").read_text())
    smoacs = float(config["wall_time_s"]) * args.n / int(config["settings"]["n_samples"])
    print(f"{args.n} proposals of {run.name}; converged {sum(o.converged for o in batched)}, "
          f"median steps {sorted(o.steps for o in batched)[args.n // 2]}")
    print(f"serial ASE (first {args.serial_n}): {per_serial:.2f} s/structure, "
          f"{1000 * t_serial / steps_serial:.1f} ms per force call")
    print(f"batched, 1 process:   {per_batched:.2f} s/structure, {1000 * t_batched / steps_batched:.1f} ms per "
          f"structure-step; speed-up over serial {per_serial / per_batched:.2f}x")
    print(f"batched, {args.workers} processes: {t_workers:.1f} s for {args.n} ({t_workers / args.n:.2f} s/structure)")
    print(f"largest final-energy difference serial vs batched: {diff:.4f} eV/atom")
    print(f"SMOACS optimisation of {args.n} samples (scaled from its run): {smoacs:.1f} s; "
          f"relaxation / optimisation = {t_workers / smoacs:.1f}x")
    print(f"limit line, 1 process: {timed.seconds:.1f} s inside {timed.calls} batched CHGNet calls (graphs, forward, "
          f"backward) of {t_batched:.1f} s; engine / potential = {t_batched / timed.seconds:.2f}x")
    for size in (int(x) for x in args.sizes.split(",")):
        model = type(chgnet)(chgnet.model, batch_size=size)
        batch = (structures * (1 + size // len(structures)))[:max(size, 16)]
        model.efs(batch[:size])   # warm-up
        t0 = time.perf_counter()
        model.efs(batch)
        print(f"CHGNet batch of {size:>3}: {1000 * (time.perf_counter() - t0) / len(batch):.2f} ms per structure")


class _Timed:
    """A relaxer that counts the seconds spent inside another's ``efs``."""

    def __init__(self, inner):
        self.inner, self.seconds, self.calls = inner, 0.0, 0

    def efs(self, structures):
        t0 = time.perf_counter()
        try:
            return self.inner.efs(structures)
        finally:
            self.seconds += time.perf_counter() - t0
            self.calls += 1


if __name__ == "__main__":
    main()
