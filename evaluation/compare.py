"""Comparisons between methods, per (task, target, margin): paired where pairs share a real start, otherwise
unpaired with seeds (or copy lineages) as the unit; p-values Holm-adjusted over a comparison's targets.

Pairing rule: two samples pair when they come from runs with the same seed and the same number of samples,
have the same sample index and the same start (``source``), and neither run copied samples (SMOACS's
copy-and-mutate: a run in which any ``lineage`` is not its sample's own index pairs none of its samples, since
which samples survive uncopied depends on their success).
Paired: mean difference with a bootstrap of pairs and an exact McNemar test. Unpaired with at least two seeds
on both sides: the difference of mean per-seed rates with a Welch t-interval and test (seeds are the unit).
Unpaired otherwise: a bootstrap resampling each side's copy lineages (or samples) and a Fisher exact test.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .layouts import relaxed_keys
from .stages.base import RELAXED_ROWS, truthy
from .stats import fisher_p, holm, mcnemar_p, paired_bootstrap, unpaired_bootstrap, welch_seeds


def _key(summary: Mapping[str, Any]) -> tuple:
    return (summary["task"], float(summary["target_bg"]), float(summary["margin"]))


def _label(summary: Mapping[str, Any]) -> str:
    sel = summary.get("selection")
    sel = sel if isinstance(sel, str) else "final"
    return f"{summary['method']} [{sel}]" if sel != "final" else str(summary["method"])


def _own_start(frame: pd.DataFrame) -> pd.Series:
    """True for the samples of a run (a seed) in which no sample is a copy of another sample's start.

    A run with copy-and-mutate pairs none of its samples: which samples get replaced depends on who was
    succeeding, so its never-copied samples are a selection of the successful ones, and pairing them would
    favour the method."""
    if "lineage" not in frame:
        return pd.Series(True, index=frame.index)
    lineage = pd.to_numeric(frame["lineage"], errors="coerce")
    own = lineage.isna() | (lineage == pd.to_numeric(frame["sample"], errors="coerce"))
    seeds = frame["seed"] if "seed" in frame else pd.Series(0, index=frame.index)
    return own.groupby(seeds).transform("all").astype(bool)


def _clusters(frame: pd.DataFrame) -> list:
    """Copy lineage per sample (seed-qualified); a sample without one is its own cluster."""
    if "lineage" in frame:
        lineage = frame["lineage"].where(frame["lineage"].notna(), frame["sample"])
    else:
        lineage = frame["sample"]
    return [f"{s}/{v}" for s, v in zip(frame["seed"], lineage, strict=True)]


# the relaxation stage's rates are over the proposals the judge relaxed (a seeded subset or all)
def column_names() -> dict[str, str]:
    """A compared column's name in the text: the tables' header (ours and the judge stages')."""
    from .stages import table_columns

    return {"success": "success", **dict(table_columns())}


def paired_differences(runs: Sequence[tuple[Mapping[str, Any], pd.DataFrame]],
                       column: str = "success") -> pd.DataFrame:
    """One row per (task, target, margin) and pair of methods: method A (the first label seen) against each
    other method B, with the difference mean(A) - mean(B) of ``column``, its 95 % interval, how it was
    computed (``kind``: paired, seeds or samples), the p-value and its Holm adjustment over the targets.
    A relaxation column (``layouts.relaxed_keys()``) is compared over the relaxed proposals only, as the
    tables report it; a run without them drops out of that comparison.

    ``runs``: (summary row, samples.csv) per run folder.
    """
    by_key: dict[tuple, dict[str, list[pd.DataFrame]]] = {}
    for summary, samples in runs:
        frame = samples.assign(seed=summary.get("seed", 0), n_run=len(samples))
        if column in relaxed_keys():
            if RELAXED_ROWS not in frame:
                continue
            frame = frame[truthy(frame, RELAXED_ROWS)]
            if frame.empty:
                continue
        by_key.setdefault(_key(summary), {}).setdefault(_label(summary), []).append(frame)
    rows = []
    for key, methods in by_key.items():
        labels = list(methods)
        for other in labels[1:]:
            a = pd.concat(methods[labels[0]], ignore_index=True)
            b = pd.concat(methods[other], ignore_index=True)
            both = a.assign(own=_own_start(a)).merge(b.assign(own=_own_start(b)), on=["seed", "sample"],
                                                     suffixes=("_a", "_b"))
            real = (both["n_run_a"] == both["n_run_b"]) & both["own_a"] & both["own_b"]
            if "source_a" in both and "source_b" in both:
                real &= (both["source_a"].fillna("") == both["source_b"].fillna("")) | both["source_a"].isna()
            unpaired = int((~real).sum()) if real.any() else 0
            both = both[real]
            x_all = a[column].fillna(False).astype(bool)
            y_all = b[column].fillna(False).astype(bool)
            seeds_a = [float(g[column].fillna(False).astype(bool).mean()) for _, g in a.groupby("seed")]
            seeds_b = [float(g[column].fillna(False).astype(bool).mean()) for _, g in b.groupby("seed")]
            dof = np.nan
            if len(both):
                kind = "paired"
                x = both[f"{column}_a"].fillna(False).astype(bool).to_numpy()
                y = both[f"{column}_b"].fillna(False).astype(bool).to_numpy()
                diff, lo, hi = paired_bootstrap(x, y)
                p = mcnemar_p(x, y)
            elif len(seeds_a) >= 2 and len(seeds_b) >= 2:
                kind = "seeds"
                diff, lo, hi, p, dof = welch_seeds(seeds_a, seeds_b)
            else:
                kind = "samples"
                diff, lo, hi = unpaired_bootstrap(x_all.to_numpy(), y_all.to_numpy(),
                                                  clusters_a=_clusters(a), clusters_b=_clusters(b))
                p = fisher_p(x_all.to_numpy(), y_all.to_numpy())
            rows.append({"task": key[0], "target_bg": key[1], "margin": key[2], "method_a": labels[0],
                         "method_b": other, "column": column, "kind": kind, "paired": kind == "paired",
                         "n_pairs": len(both), "n_unpaired": unpaired, "n_a": len(a), "n_b": len(b),
                         "seeds_a": len(seeds_a), "seeds_b": len(seeds_b), "dof": dof,
                         "difference": diff, "lo": lo, "hi": hi, "p": p,
                         "both_zero": not x_all.any() and not y_all.any()})
    out = pd.DataFrame(rows)
    if not out.empty:
        out["p_holm"] = np.nan
        for _, idx in out.groupby(["method_a", "method_b", "column"]).groups.items():
            out.loc[idx, "p_holm"] = holm(out.loc[idx, "p"].tolist())
    return out


def differences_markdown(diffs: pd.DataFrame) -> str:
    """The comparisons as a Markdown paragraph list (empty string when there are none)."""
    if diffs.empty:
        return ""
    lines = ["Differences in success rate (A − B, 95 % intervals). Paired where samples share a real start "
             "(same seed, index and start, equal run sizes, and neither run copied samples: copy-and-mutate leaves the "
             "succeeding samples uncopied): bootstrap of pairs and "
             "exact McNemar test; otherwise unpaired, with seeds as the unit (Welch t) when both rows have two or "
             "more seeds, else a bootstrap of copy lineages (or samples) and Fisher's exact test. p-values are "
             "Holm-adjusted over the targets of each comparison:"]
    names = column_names()
    for r in diffs.to_dict("records"):
        what = names.get(r["column"], r["column"])
        kind = r.get("kind", "paired" if r.get("paired", True) else "samples")
        if kind == "paired":
            extra = f"; {r['n_unpaired']} samples without a shared start left out" if r["n_unpaired"] else ""
            how = f"{r['n_pairs']} pairs{extra}"
        elif kind == "seeds":
            how = f"unpaired over seeds, {r['seeds_a']} vs {r['seeds_b']} seeds, Welch df {r['dof']:.1f}"
        else:
            how = f"unpaired, {r['n_a']} vs {r['n_b']} samples"
        ptext = ""
        if "p" in r and r["p"] == r["p"]:
            ptext = f"; p = {r['p']:.3g}, Holm {r['p_holm']:.3g}"
        head = f"- {r['target_bg']:.2f} ± {r['margin']:.2f} eV, {what}: {r['method_a']} − {r['method_b']}"
        if r.get("both_zero") is True:
            lines.append(f"{head}: no difference (both 0; {how})")
            continue
        lines.append(f"{head} = {r['difference']:+.3f} (95 % CI {r['lo']:+.3f} to {r['hi']:+.3f}; {how}{ptext})")
    return "\n".join(lines) + "\n"
