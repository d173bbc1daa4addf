"""The tuning protocol's verdict: per tuned row, the configuration with the highest mean success.

``smoacs-bench reproduce tuning`` runs every configuration a method declares (``Method.tuning``, the same
number for each method) on tuning seeds no table uses; :func:`write_choice` reads the finished runs and
writes ``chosen.md`` / ``chosen.json`` beside the tuning table: for each row (e.g. ``tpe-smoacs``) the
success of every configuration per target, their mean, and the one chosen (ties go to the earlier, so the
default wins a tie). The table commands then use the chosen settings (docs/reproducing.md, "Tuning").
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import pandas as pd

from smoacs_bench.evaluation.io import atomic_write_text

from .experiments import TUNING_CONFIGS, TUNING_ROWS
from .planning import PlannedRun


def _row_and_config(tag: str) -> tuple[str, int] | None:
    base, _, k = tag.rpartition("-t")
    return (base, int(k)) if base and k.isdigit() else None


def choose(runs: list[PlannedRun]) -> dict[str, dict[str, Any]]:
    """{row tag: {"configs": [{"options", "success" {target: rate}, "mean"}], "chosen": k}} from the finished
    tuning runs (a configuration missing a run gets no mean and cannot be chosen)."""
    grid: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    targets = sorted({r.target for r in runs})
    for r in runs:
        parsed = _row_and_config(r.row.tag)
        if parsed is None:
            continue
        base, k = parsed
        entry = grid[base].setdefault(k, {"options": _tuned_options(r), "success": {}})
        summary = r.folder / "summary.csv"
        if r.done and summary.is_file():
            entry["success"][r.target] = float(pd.read_csv(summary)["success"].iloc[0])
    out = {}
    for base, configs in grid.items():
        rows = []
        for k in sorted(configs):
            c = configs[k]
            complete = all(t in c["success"] for t in targets)
            rows.append({"config": k, "options": c["options"], "success": c["success"],
                         "mean": sum(c["success"].values()) / len(targets) if complete else math.nan})
        finite = [row for row in rows if math.isfinite(row["mean"])]
        chosen = max(finite, key=lambda row: (row["mean"], -row["config"]))["config"] if finite else None
        out[base] = {"configs": rows, "chosen": chosen}
    return out


def _tuned_options(run: PlannedRun) -> dict[str, Any]:
    """The configuration's own options (the row's fixed ones, such as ``space``, left out)."""
    fixed = {k for row in TUNING_ROWS if row.tag == _row_and_config(run.row.tag)[0] for k, _ in row.options}
    return {k: v for k, v in run.row.options if k not in fixed}


def write_choice(runs: list[PlannedRun], table_dir: Path) -> dict[str, Path]:
    """``chosen.md`` and ``chosen.json`` in ``table_dir``."""
    result = choose(runs)
    targets = sorted({r.target for r in runs})
    lines = [f"# Tuning: the configuration chosen per row ({TUNING_CONFIGS} each; highest mean success over "
             f"the targets, ties to the earlier)", "",
             "| row | configuration | " + " | ".join(f"{t:g} eV" for t in targets) + " | mean | chosen |",
             "|---|---|" + "---|" * len(targets) + "---|---|"]
    for base, res in result.items():
        for c in res["configs"]:
            text = ", ".join(f"{k}={v}" for k, v in c["options"].items()) or "defaults"
            cells = " | ".join(f"{c['success'][t]:.3f}" if t in c["success"] else "–" for t in targets)
            mean = f"{c['mean']:.3f}" if math.isfinite(c["mean"]) else "–"
            lines.append(f"| {base} | {c['config']}: {text} | {cells} | {mean} | "
                         f"{'**chosen**' if c['config'] == res['chosen'] else ''} |")
    md, js = table_dir / "chosen.md", table_dir / "chosen.json"
    atomic_write_text(md, "\n".join(lines) + "\n")
    payload = {base: {"chosen": res["chosen"],
                      "options": next((c["options"] for c in res["configs"] if c["config"] == res["chosen"]), None),
                      "configs": [{**c, "success": {f"{t:g}": v for t, v in c["success"].items()}}
                                  for c in res["configs"]]}
               for base, res in result.items()}
    atomic_write_text(js, json.dumps(payload, indent=1, default=str) + "\n")
    return {"chosen_md": md, "chosen_json": js}


def load_choice(path: str | Path) -> dict[str, dict[str, Any]]:
    """{row tag: chosen options} from a ``chosen.json`` (``reproduce TABLE --tuned FILE``); ValueError naming
    the file when it is missing, unreadable or has a row without a choice."""
    p = Path(path)
    if p.is_dir():
        p = p / "chosen.json"
    if not p.is_file():
        raise ValueError(f"{path}: no such file (run `smoacs-bench reproduce tuning` first; it writes chosen.json)")
    try:
        data = json.loads(p.read_text())
    except ValueError as err:
        raise ValueError(f"{p}: not a tuning choice ({err})") from None
    out = {}
    for tag, entry in data.items():
        if not isinstance(entry, dict) or entry.get("options") is None:
            raise ValueError(f"{p}: row {tag!r} has no chosen configuration (its tuning runs are incomplete)")
        out[tag] = dict(entry["options"])
    return out


def merge_tuned(options: dict[str, dict[str, Any]] | None, tuned: dict[str, dict[str, Any]],
                rows: list) -> dict[str, dict[str, Any]]:
    """Per row tag: the tuned options (the row's own, else those of the row it is ``tuned_as``), overridden by
    the user's ``--param`` for that method or tag; the user's other entries unchanged. ``rows``: the table's :class:`MethodRun` rows."""
    out = {k: dict(v) for k, v in (options or {}).items()}
    for row in rows:
        source = row.tag if row.tag in tuned else row.tuned_as
        if source in tuned:
            out[row.tag] = tuned[source] | (options or {}).get(row.method, {}) | (options or {}).get(row.tag, {})
    return out
