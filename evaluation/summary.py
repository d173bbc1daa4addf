"""Per-run summary: the rate of every criterion plus diversity, in the tables' schema."""

from __future__ import annotations

import pandas as pd

from .criteria import Criteria
from .diversity import diversity_counts, unique_rate
from .stages.base import RELAXED_ROWS, truthy

RATE_COLUMNS = ("success", "bg_ok", "ef_ok", "valid_structure", "neutral", "neutral_any", "min_dist_ok",
                "perovskite_ok", "tolerance_ok", "angles_ok", "coords_ok", "success_crossjudge", "ef_ok_crossjudge")
PEROVSKITE_ONLY = ("perovskite_ok", "tolerance_ok", "angles_ok", "coords_ok")
CROSSJUDGE = ("success_crossjudge", "ef_ok_crossjudge")


def summarize(rows: pd.DataFrame, method: str, task: str, criteria: Criteria,
              reference: frozenset[str] | None = None, novelty_reference: str = "") -> dict:
    """Rates over all rows (failed proposals count as failures), diversity counts, and the independent
    judge's view: ``success_crossjudge``, ``exploitation_gap`` (success minus cross-judged success) and
    ``judge_offset`` (mean cross-judge minus own-judge E_f, eV/atom); NaN when no cross-judge ran."""
    n = len(rows)
    out: dict = {"method": method, "task": task, "target_bg": criteria.target_bg, "margin": criteria.margin,
                 "n_samples": n}
    judged = "ef_crossjudge" in rows and rows["ef_crossjudge"].notna().any()
    for col in RATE_COLUMNS:
        if col in PEROVSKITE_ONLY and not criteria.is_perovskite:
            out[col] = None
        elif col in CROSSJUDGE and not judged:
            out[col] = float("nan")  # no independent judge ran: unknown, not zero
        elif col not in rows:
            out[col] = float("nan")
        else:
            out[col] = float(rows[col].fillna(False).astype(bool).mean()) if n else float("nan")
    out["exploitation_gap"] = out["success"] - out["success_crossjudge"] if judged else float("nan")
    if judged:
        both = rows[["ef_crossjudge", "formation_energy"]].apply(pd.to_numeric, errors="coerce").dropna()
        out["judge_offset"] = float((both["ef_crossjudge"] - both["formation_energy"]).mean()) if len(both) else float("nan")
    else:
        out["judge_offset"] = float("nan")
    formulas = [f if isinstance(f, str) else None for f in rows["formula"]]
    out["unique_rate"] = unique_rate(formulas)
    out.update(diversity_counts(formulas, list(rows["success"].astype(bool)), reference))
    out["novelty_reference"] = novelty_reference if reference is not None else ""
    if "lineage" in rows and n:   # copies share a parent: the interval resamples copy lineages, not samples
        from .stats import cluster_bootstrap

        lineage = _lineages(rows)
        _, out["success_clo"], out["success_chi"] = cluster_bootstrap(
            rows["success"].fillna(False).astype(bool).to_numpy(), lineage.tolist())
        out["n_lineages"] = int(lineage.nunique())
    return out


def lineage_counts(samples: pd.DataFrame) -> dict:
    """Independent draws behind a run's rates when its samples share copy lineages (SMOACS's copy-and-mutate:
    the copies of one start are one draw): distinct lineages over all samples (``n_lineages``) and over the
    proposals the judge relaxed (``n_relaxed_lineages``). Empty for a run without a ``lineage`` column."""
    if "lineage" not in samples or not len(samples):
        return {}
    lineage = _lineages(samples)
    out = {"n_lineages": int(lineage.nunique())}
    if RELAXED_ROWS in samples:
        out[f"n_{RELAXED_ROWS}_lineages"] = int(lineage[truthy(samples, RELAXED_ROWS)].nunique())
    return out


def _lineages(samples: pd.DataFrame) -> pd.Series:
    """Each sample's copy lineage; a sample without one is its own."""
    own = samples["sample"] if "sample" in samples else pd.Series(range(len(samples)), index=samples.index)
    return samples["lineage"].where(samples["lineage"].notna(), own)



def table_inputs(samples: pd.DataFrame) -> dict:
    """What a table row needs from a run's samples.csv beyond its summary.csv: the copy lineages
    (:func:`lineage_counts`) and, per pooled count (``layouts.pooled_flags``), the run's distinct compositions
    (``<count>_set``, ';'-joined) so that a row over seeds counts each composition once."""
    from .layouts import pooled_flags
    from .stages import distinct_compositions

    out = lineage_counts(samples)
    for key, flag in pooled_flags().items():
        if flag in samples and "formula" in samples:
            out[f"{key}_set"] = ";".join(sorted(distinct_compositions(samples, flag)))
    return out
