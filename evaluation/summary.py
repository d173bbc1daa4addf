"""Per-run summary: the rate of every criterion plus diversity, in the tables' schema."""

from __future__ import annotations

import pandas as pd

from .criteria import Criteria
from .diversity import diversity_counts, unique_rate

RATE_COLUMNS = ("success", "bg_ok", "ef_ok", "valid_structure", "neutral", "min_dist_ok",
                "perovskite_ok", "tolerance_ok", "angles_ok", "coords_ok")
PEROVSKITE_ONLY = ("perovskite_ok", "tolerance_ok", "angles_ok", "coords_ok")


def summarize(rows: pd.DataFrame, method: str, task: str, criteria: Criteria,
              reference: frozenset[str] | None = None, novelty_reference: str = "") -> dict:
    """Rates over all rows (failed proposals count as failures) and diversity counts."""
    n = len(rows)
    out: dict = {"method": method, "task": task, "target_bg": criteria.target_bg, "margin": criteria.margin,
                 "n_samples": n}
    for col in RATE_COLUMNS:
        if col in PEROVSKITE_ONLY and not criteria.is_perovskite:
            out[col] = None
        else:
            out[col] = float(rows[col].fillna(False).astype(bool).mean()) if n else float("nan")
    formulas = [f if isinstance(f, str) else None for f in rows["formula"]]
    out["unique_rate"] = unique_rate(formulas)
    out.update(diversity_counts(formulas, list(rows["success"].astype(bool)), reference))
    out["novelty_reference"] = novelty_reference if reference is not None else ""
    return out
