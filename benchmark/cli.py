"""Command-line entry point ``smoacs-bench``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .tasks import TASKS


def _add_target(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target-bg", type=float, default=1.5, help="target band gap, eV (default 1.5)")
    p.add_argument("--margin", type=float, default=0.04, help="band-gap margin h, eV (default 0.04)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="smoacs-bench", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)

    ev = sub.add_parser("evaluate", help="judge structure files with the paper's criteria")
    ev.add_argument("files", nargs="+", help="structure files (CIF, POSCAR, ...)")
    ev.add_argument("--task", choices=list(TASKS), default="free")
    _add_target(ev)
    ev.add_argument("--predictions", help="CSV with columns file, band_gap, formation_energy "
                    "(default: predict with the MEGNet models)")
    ev.add_argument("--out", required=True, help="output CSV, one row per file")
    ev.set_defaults(func=cmd_evaluate)
    return ap


def cmd_evaluate(args: argparse.Namespace) -> int:
    from evaluation.io import write_csv

    from .judge import judge_files
    from .tasks import get_task

    df, problems = judge_files(args.files, get_task(args.task), args.target_bg, args.margin, args.predictions)
    write_csv(df, args.out)
    for msg in problems:
        print(f"skipped/flagged: {msg}", file=sys.stderr)
    n = len(df)
    print(f"{n} structures, {int(df['success'].sum())} successful "
          f"({df['success'].mean():.3f}); {len(problems)} problem(s); wrote {Path(args.out)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
