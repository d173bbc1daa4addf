"""One line per method of what the physical-validity stage found, generated from the run folders' samples.csv.

:func:`physical_summary` pools a method's runs (all targets and seeds). Structure-level figures (converged,
stays, energy drop, volume change, displacement) count a crystal once even when it was relaxed under several
targets (the reference row proposes the same crystals for every target); success counts are per run, since a
success depends on the target.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from .stages.base import RELAXED_ROWS, truthy
from .stages.relaxation import (
    CONVERGED,
    ENERGY_DROP,
    ENERGY_INITIAL,
    MAX_DISP,
    REASON,
    STAYS,
    SUCCESS_RELAXED,
    VOLUME_CHANGE,
)
from .stages.robustness import SUCCESS_ROBUST

COLUMNS = [
    "method", "runs", "crystals relaxed", "converged", "exploded", "crystals staying", "median drop (eV/atom)",
    "median |dV| (%)", "median max disp (A)", "successes relaxed", "success (relaxed)",
    "success (robust)", "proposals", "relax s/structure",
]


def physical_summary(runs: Mapping[str, Iterable[tuple[pd.DataFrame, float | None]]]) -> pd.DataFrame:
    """Per method label: ``runs`` maps a label to (samples.csv frame, relax wall time in s or None) per run."""
    rows = []
    for label, items in runs.items():
        items = [(s, w) for s, w in items if RELAXED_ROWS in s]
        if not items:
            continue
        relaxed = [s[truthy(s, RELAXED_ROWS)] for s, _ in items]
        every = pd.concat(relaxed, ignore_index=True)
        key = every[[ENERGY_INITIAL, ENERGY_DROP]].apply(pd.to_numeric, errors="coerce").round(6)
        unique = every[~key.duplicated().to_numpy() | key.isna().any(axis=1).to_numpy()]
        reason = unique[REASON].astype(str)
        own = every[truthy(every, "success")]
        wall = [w for _, w in items if w is not None]
        n_runs_relaxed = sum(len(r) for r in relaxed)
        rows.append({
            "method": label,
            "runs": len(items),
            "crystals relaxed": len(unique),
            "converged": int(truthy(unique, CONVERGED).sum()),
            "exploded": int(reason.str.startswith("exploded").sum()),
            "crystals staying": int(truthy(unique, STAYS).sum()),
            "median drop (eV/atom)": _median(unique[ENERGY_DROP]),
            "median |dV| (%)": _median(pd.to_numeric(unique[VOLUME_CHANGE], errors="coerce").abs()),
            "median max disp (A)": _median(unique[MAX_DISP]),
            "successes relaxed": len(own),
            "success (relaxed)": int(truthy(own, SUCCESS_RELAXED).sum()),
            "success (robust)": int(sum(truthy(s, SUCCESS_ROBUST).sum() for s, _ in items)),
            "proposals": sum(len(s) for s, _ in items),
            "relax s/structure": (sum(wall) / n_runs_relaxed) if wall and n_runs_relaxed else np.nan,
        })
    return pd.DataFrame(rows, columns=COLUMNS)


def _median(col: pd.Series) -> float:
    values = pd.to_numeric(col, errors="coerce").dropna()
    return float(values.median()) if len(values) else np.nan


def summary_markdown(df: pd.DataFrame) -> str:
    """The summary as a markdown table, with "k of n" counts and medians to 2-3 significant places."""
    head = ["method", "runs", "crystals relaxed", "converged", "exploded", "crystals staying", "median drop (eV/atom)",
            "median \\|ΔV\\| (%)", "median max disp (Å)", "success (relaxed) / own-judge successes relaxed",
            "success (robust), all proposals", "relax s per structure"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for r in df.to_dict("records"):
        cells = [
            str(r["method"]), str(r["runs"]), str(r["crystals relaxed"]), str(r["converged"]), str(r["exploded"]),
            str(r["crystals staying"]), _fmt(r["median drop (eV/atom)"], 3), _fmt(r["median |dV| (%)"], 1),
            _fmt(r["median max disp (A)"], 2), f"{r['success (relaxed)']} of {r['successes relaxed']}",
            f"{r['success (robust)']} of {r['proposals']}", _fmt(r["relax s/structure"], 1),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(value: float, digits: int) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"
