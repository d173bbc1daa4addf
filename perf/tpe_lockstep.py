"""Wall time of the TPE baseline, from the plain Optuna loop to the batched run, and where the time goes.

Modes, each adding one change to the previous (all run the same studies and trials):

1. ``plain``       one study after another, one predictor call per trial, Optuna's ``TPESampler``,
                   Optuna's journal file (fsync per operation);
2. ``split-once``  ``SplitOnceTPESampler`` (the below/above split once per trial, not per parameter);
3. ``round-journal`` journals written once per round (``methods.tpe.journal.RoundJournal``);
4. ``lockstep``    groups of ``--group-size`` studies in lockstep, one batched predictor call per round;
5. ``workers``     ``--workers`` processes running groups at once;
6. ``batched``     ``BatchTPE`` (engine "batched", the default): Optuna's TPE vectorised over each group's studies,
                   drawing from the same distribution with other random numbers (``tests/test_tpe_batched.py``).

"sampler" is Optuna's ask/tell (including storage writes), "predictor" the MEGNet calls, "objectives"
building structures, the neutrality check and the tolerance factor (seconds summed over processes).
Modes 1-3 propose identical structures (same per-trial seeds, same one-structure predictions); 4-5
batch predictions, whose float32 noise (~1e-6 eV) can tip a late TPE split; the script counts the
proposals identical to mode 1's. Mode 6 draws other random numbers, so its proposals differ; the script
prints each mode's success rate (the evaluator's criteria on the method's predictions) with its Wilson interval.

Run: python perf/tpe_lockstep.py                      (16 studies x 100 trials, ~6 min on 2 cores)
     python perf/tpe_lockstep.py --studies 64 --trials 200 --modes lockstep workers
     python perf/tpe_lockstep.py --studies 256 --trials 200 --group-size 32 --modes workers batched
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import torch

from smoacs_bench.data.task import TASKS, get_task
from smoacs_bench.evaluation.criteria import evaluate
from smoacs_bench.evaluation.stats import wilson
from smoacs_bench.methods import get_method

MODES = ("plain", "split-once", "round-journal", "lockstep", "workers", "batched")


def settings(mode: str, args: argparse.Namespace, tmp: Path) -> dict:
    k = MODES.index(mode)
    return {"split_once": k >= 1,
            "storage": str(tmp / f"{mode}.log") if k < 2 else str(tmp / mode),
            "group_size": args.group_size if k >= 3 else 1,
            "workers": args.workers if k >= 4 else 1,
            "engine": "batched" if k >= 5 else "optuna"}


def run(mode: str, args: argparse.Namespace, tmp: Path) -> tuple[float, dict, list]:
    m = get_method("tpe", trials=args.trials, device=args.device, progress=False, **settings(mode, args, tmp))
    m.allowed_elements()  # loads the models outside the timed part
    t0 = time.perf_counter()
    proposals = m.propose(get_task(args.task, 1.5), args.studies, seed=0)
    return time.perf_counter() - t0, m.artifacts()["timings"], proposals


def success(proposals: list, task) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # pymatgen's radius notes
        df = evaluate([p.structure for p in proposals], [p.band_gap for p in proposals],
                      [p.formation_energy for p in proposals], task.criteria())
    k, n = int(df["success"].sum()), len(df)
    lo, hi = wilson(k, n)
    return f"{k / n:.3f} [{lo:.3f}, {hi:.3f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=16, help="studies (samples), default 16")
    ap.add_argument("--trials", type=int, default=100, help="trials per study, default 100")
    ap.add_argument("--task", choices=list(TASKS), default="perovskite")
    ap.add_argument("--group-size", type=int, default=8, help="studies in lockstep (modes 4-5), default 8")
    ap.add_argument("--workers", type=int, default=2, help="processes (mode 5), default 2")
    ap.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    print(f"TPE, task {args.task}, {args.studies} studies x {args.trials} trials, device {args.device}, "
          f"predictions on 1 torch thread per process")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes:
            results[mode] = run(mode, args, Path(tmp))
            print(f"  {mode}: {results[mode][0]:.1f} s", flush=True)
    n_trials = args.studies * args.trials
    first = next(iter(results))
    print(f"\n{'mode':14s} {'wall s':>8s} {'x faster':>9s} {'sampler s':>10s} {'predictor s':>12s} "
          f"{'objectives s':>13s} {'pred. calls':>11s} {'trials/s':>9s} {'same as ' + first:>14s} "
          f"{'success [95 % Wilson]':>24s}")
    for mode, (wall, t, props) in results.items():
        same = sum(a.structure == b.structure for a, b in zip(results[first][2], props, strict=True))
        print(f"{mode:14s} {wall:8.1f} {results[first][0] / wall:9.2f} {t['sampler_s']:10.1f} "
              f"{t['predictor_s']:12.1f} {t['objectives_s']:13.1f} {t['predictor_calls']:11d} "
              f"{n_trials / wall:9.1f} {same:>8d}/{args.studies} {success(props, get_task(args.task, 1.5)):>24s}")
    for mode, (_, t, _) in results.items():
        total = t["sampler_s"] + t["predictor_s"] + t["objectives_s"]
        print(f"{mode}: sampler {100 * t['sampler_s'] / total:.0f} %, predictor {100 * t['predictor_s'] / total:.0f} %, "
              f"objectives {100 * t['objectives_s'] / total:.0f} % of process time")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
