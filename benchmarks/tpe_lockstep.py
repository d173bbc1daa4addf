"""Wall time of the TPE baseline: N studies x T trials in lockstep (one batched predictor call per
round) vs one study after another (one predictor call per trial), and where the time goes.

"sampler" is Optuna's ask/tell (including storage writes), "predictor" the MEGNet calls, "objectives"
building structures, the neutrality check and the tolerance factor. Both modes use the same per-trial
sampler seeds, so they propose the same structures up to float32 noise of batched predictions; the
script counts the identical proposals.

Run: python benchmarks/tpe_lockstep.py                      (16 studies x 20 trials, ~1-2 min on 2 cores)
     python benchmarks/tpe_lockstep.py --studies 256 --trials 200 --task perovskite3x3x3 --storage journal
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from benchmark.tasks import TASKS, get_task
from methods import get_method


def run(mode: str, args: argparse.Namespace, tmp: Path) -> tuple[float, dict, list]:
    storage = str(tmp / f"{mode}.log") if args.storage == "journal" else None
    m = get_method("tpe", trials=args.trials, lockstep=mode == "lockstep", storage=storage, device=args.device,
                   batch_size=args.batch_size, progress=False)
    m.allowed_elements()  # loads the models outside the timed part
    t0 = time.perf_counter()
    proposals = m.propose(get_task(args.task, 1.5), args.studies, seed=0)
    return time.perf_counter() - t0, m.artifacts()["timings"], proposals


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=16, help="studies (samples), default 16")
    ap.add_argument("--trials", type=int, default=20, help="trials per study, default 20")
    ap.add_argument("--task", choices=list(TASKS), default="perovskite")
    ap.add_argument("--storage", choices=["memory", "journal"], default="memory")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=256, help="structures per predictor forward pass")
    ap.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's own)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"TPE, task {args.task}, {args.studies} studies x {args.trials} trials, storage {args.storage}, "
          f"device {args.device}, {torch.get_num_threads()} torch threads")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("lockstep", "sequential"):
            results[mode] = run(mode, args, Path(tmp))
    n_trials = args.studies * args.trials
    print(f"{'mode':11s} {'wall s':>8s} {'sampler s':>10s} {'predictor s':>12s} {'objectives s':>13s} "
          f"{'pred. calls':>11s} {'trials/s':>9s}")
    for mode, (wall, t, _) in results.items():
        print(f"{mode:11s} {wall:8.2f} {t['sampler_s']:10.2f} {t['predictor_s']:12.2f} {t['objectives_s']:13.2f} "
              f"{t['predictor_calls']:11d} {n_trials / wall:9.1f}")
    lock, seq = results["lockstep"], results["sequential"]
    print(f"speed-up lockstep vs sequential: x{seq[0] / lock[0]:.2f} in wall time, "
          f"x{seq[1]['predictor_s'] / max(lock[1]['predictor_s'], 1e-9):.1f} in predictor time")
    for mode, (wall, t, _) in results.items():
        print(f"{mode}: sampler {100 * t['sampler_s'] / wall:.0f} %, predictor {100 * t['predictor_s'] / wall:.0f} %, "
              f"objectives {100 * t['objectives_s'] / wall:.0f} % of wall time")
    same = sum(a.structure == b.structure for a, b in zip(lock[2], seq[2], strict=True))
    print(f"same proposals in both modes: {same}/{args.studies} (batched float32 predictions differ from "
          "one-structure calls by ~1e-6 eV, which can tip a TPE split late in a study)")


if __name__ == "__main__":
    main()
