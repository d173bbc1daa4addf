"""Paired comparisons between methods: the same start structures (same seed, same sample index, same
pool entry), the success difference and its 95 % paired-bootstrap interval."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from .stats import paired_bootstrap, unpaired_bootstrap


def _key(summary: Mapping[str, Any]) -> tuple:
    return (summary["task"], float(summary["target_bg"]), float(summary["margin"]))


def _label(summary: Mapping[str, Any]) -> str:
    sel = summary.get("selection")
    sel = sel if isinstance(sel, str) else "final"
    return f"{summary['method']} [{sel}]" if sel != "final" else str(summary["method"])


def paired_differences(runs: Sequence[tuple[Mapping[str, Any], pd.DataFrame]],
                       column: str = "success") -> pd.DataFrame:
    """One row per (task, target, margin) and pair of methods: methods A (the first label seen) and B,
    the number of paired samples, mean(A) - mean(B) of ``column`` and its bootstrap interval.

    ``runs``: (summary row, samples.csv) per run folder. Samples pair when seed and sample index are equal
    and, where both record it, the start (``source``) too; unpaired samples are counted, not used. When no
    sample pairs (methods that do not start from the shared pool, e.g. FTCP), the row compares all samples
    of both with an independent bootstrap and says so (``paired`` False).
    """
    by_key: dict[tuple, dict[str, list[pd.DataFrame]]] = {}
    for summary, samples in runs:
        frame = samples.assign(seed=summary.get("seed", 0))
        by_key.setdefault(_key(summary), {}).setdefault(_label(summary), []).append(frame)
    rows = []
    for key, methods in by_key.items():
        labels = list(methods)
        for other in labels[1:]:
            a = pd.concat(methods[labels[0]], ignore_index=True)
            b = pd.concat(methods[other], ignore_index=True)
            both = a.merge(b, on=["seed", "sample"], suffixes=("_a", "_b"))
            if "source_a" in both and "source_b" in both:
                same = (both["source_a"].fillna("") == both["source_b"].fillna("")) | both["source_a"].isna()
                unpaired = int((~same).sum())
                both = both[same]
            else:
                unpaired = 0
            paired = len(both) > 0
            if paired:
                x = both[f"{column}_a"].fillna(False).astype(bool)
                y = both[f"{column}_b"].fillna(False).astype(bool)
                diff, lo, hi = paired_bootstrap(x.to_numpy(), y.to_numpy())
            else:
                x = a[column].fillna(False).astype(bool)
                y = b[column].fillna(False).astype(bool)
                diff, lo, hi = unpaired_bootstrap(x.to_numpy(), y.to_numpy())
            rows.append({"task": key[0], "target_bg": key[1], "margin": key[2], "method_a": labels[0],
                         "method_b": other, "column": column, "n_pairs": len(both), "n_unpaired": unpaired,
                         "paired": paired, "n_a": len(a), "n_b": len(b),
                         "difference": diff, "lo": lo, "hi": hi})
    return pd.DataFrame(rows)


def differences_markdown(diffs: pd.DataFrame) -> str:
    """The paired differences as a Markdown paragraph list (empty string when there are none)."""
    if diffs.empty:
        return ""
    lines = ["Paired bootstrap (same start structures; 10,000 resamples of pairs), difference in success rate; "
             "methods with no shared start (FTCP samples training crystals) get an unpaired bootstrap:"]
    for r in diffs.to_dict("records"):
        what = "success" if r["column"] == "success" else r["column"]
        if r.get("paired", True):
            extra = f"; {r['n_unpaired']} samples started elsewhere, left out" if r["n_unpaired"] else ""
            how = f"{r['n_pairs']} pairs{extra}"
        else:
            how = f"unpaired, {r['n_a']} vs {r['n_b']} samples"
        lines.append(f"- {r['target_bg']:.2f} ± {r['margin']:.2f} eV, {what}: {r['method_a']} − {r['method_b']} = "
                     f"{r['difference']:+.3f} (95 % CI {r['lo']:+.3f} to {r['hi']:+.3f}; {how})")
    return "\n".join(lines) + "\n"
