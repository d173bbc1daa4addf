"""results/README.md without hand-typed numbers: its generated blocks are filled from files that ``reproduce``
writes (``<table>/summary.md``, ``<table>/physical.md``, ...).

A block is ``<!-- include: PATH -->`` ... ``<!-- end include -->`` (PATH relative to the README); running
``smoacs-bench readme results/README.md`` replaces what lies between the markers with the file's current text
and leaves everything else alone, so prose is written by hand and every number comes from the stored runs.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from smoacs_bench.evaluation.io import atomic_write_text

BLOCK = re.compile(r"(<!-- include: (?P<path>[^ ]+) -->\n)(?P<body>.*?)(<!-- end include -->)", re.S)
# a relative link or image target in markdown (not a web address, an absolute path or an anchor)
LINK = re.compile(r"(\]\()(?!https?:|/|#|mailto:)([^)\s]+)(\))")


def relink(text: str, include: str) -> str:
    """``text`` of the file ``include`` (a path relative to the README) with its relative links made relative to
    the README: ``![plot](parity.png)`` in ``dft_calibration/calibration.md`` becomes
    ``![plot](dft_calibration/parity.png)``."""
    folder = Path(include).parent.as_posix()
    if folder in ("", "."):
        return text
    return LINK.sub(lambda m: f"{m.group(1)}{folder}/{m.group(2)}{m.group(3)}", text)


def fill(readme: Path) -> tuple[str, list[str]]:
    """The README with every include block filled, and the blocks whose file is missing."""
    text = readme.read_text()
    missing: list[str] = []

    def replace(m: re.Match) -> str:
        path = readme.parent / m.group("path")
        if not path.is_file():
            missing.append(m.group("path"))
            return m.group(0)
        return m.group(1) + relink(path.read_text().rstrip("\n"), m.group("path")) + "\n" + m.group(4)

    return BLOCK.sub(replace, text), missing


def cmd_readme(args: argparse.Namespace) -> int:
    readme = Path(args.readme)
    if not readme.is_file():
        raise SystemExit(f"smoacs-bench readme: {readme}: no such file")
    text, missing = fill(readme)
    atomic_write_text(readme, text)
    n = len(BLOCK.findall(text))
    print(f"wrote {readme}: {n} generated block(s)" + (f", {len(missing)} without their file: "
                                                       f"{', '.join(missing)}" if missing else ""))
    return 1 if missing else 0


def add_parser(subparsers: argparse._SubParsersAction, **kwargs: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("readme", **kwargs)
    p.add_argument("readme", nargs="?", default="results/README.md", help="default results/README.md")
    p.set_defaults(func=cmd_readme)
    return p


if __name__ == "__main__":
    sys.exit(cmd_readme(argparse.Namespace(readme=sys.argv[1] if len(sys.argv) > 1 else "results/README.md")))
