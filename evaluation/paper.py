"""The SMOACS paper's published tables, as data.

The published numbers live in ``evaluation/paper_tables/*.csv`` (see the README there); this module only
reads those CSVs, never the paper itself. Which paper table sits beside which task's rows is the task's
``paper_tables``.
"""

from __future__ import annotations

import io
import math
from functools import cache
from importlib import resources

import pandas as pd

from smoacs_bench.data.task import TASKS

PAPER_FILES: dict[str, str] = {
    "A.2": "table_A2.csv",
    "A.3": "table_A3.csv",
    "A.4": "table_A4.csv",
    "A.5": "table_A5.csv",
    "A.6": "table_A6.csv",
    "A.10": "table_A10.csv",
    "A.15": "table_A15.csv",
    "A.16": "table_A16.csv",
}
# Main-text tables 2/3/4 are the 0.5/1.5/2.5 eV rows of appendix tables A.2/A.4/A.6.
MAIN_SUBSETS: dict[str, str] = {"2": "A.2", "3": "A.4", "4": "A.6"}
MAIN_TARGETS: tuple[float, ...] = (0.5, 1.5, 2.5)

TEXT_COLS = ("source", "table", "task", "method", "predictor", "novelty_reference", "note")
INT_COLS = ("n_samples", "n_success", "n_unique_success", "n_unique_novel_success")


def _normalize_id(table_id: str) -> str:
    """'A2', 'a.2', 'Table A.2' -> 'A.2'; '2' stays '2'."""
    tid = str(table_id).strip().upper().removeprefix("TABLE").strip()
    if tid.startswith("A") and not tid.startswith("A."):
        tid = "A." + tid[1:]
    return tid


@cache
def _read_packaged(tid: str) -> pd.DataFrame:
    ref = resources.files(__package__) / "paper_tables" / PAPER_FILES[tid]
    text = ref.read_text(encoding="utf-8")
    df = pd.read_csv(
        io.StringIO(text),
        keep_default_na=False,
        na_values=[""],
        dtype={c: str for c in TEXT_COLS},
    )
    for col in TEXT_COLS:
        if col in df:
            df[col] = df[col].fillna("")
    for col in INT_COLS:
        if col in df:
            df[col] = df[col].astype("Int64")
    return df


def load_paper_table(table_id: str) -> pd.DataFrame:
    """Published rows of a paper table ("2", "3", "4", "A.2", "A.3", "A.4", "A.5", "A.6", "A.10", "A.15", "A.16")."""
    tid = _normalize_id(table_id)
    if tid in MAIN_SUBSETS:
        df = _read_packaged(MAIN_SUBSETS[tid])
        keep = df["target_bg"].apply(lambda t: any(math.isclose(t, x) for x in MAIN_TARGETS))
        df = df[keep].assign(table=tid)
        return df.reset_index(drop=True)
    if tid not in PAPER_FILES:
        known = ", ".join([*MAIN_SUBSETS, *PAPER_FILES])
        raise KeyError(f"unknown paper table {table_id!r}; known: {known}")
    return _read_packaged(tid).copy()


def paper_rows(kind: str, task: str, target: float, margin: float) -> pd.DataFrame:
    """Published rows for our rows of ``task`` at ``target`` ± ``margin`` eV: from the first of the task's
    paper tables of this ``kind`` ("metrics" or "diversity") with that target; empty if none."""
    spec = TASKS.get(task)
    for tid in (spec.paper_tables.get(kind, ()) if spec else ()):
        df = load_paper_table(tid)
        hit = df[
            df["target_bg"].apply(lambda t: math.isclose(t, target, abs_tol=1e-6))
            & df["margin"].apply(lambda m: math.isclose(m, margin, abs_tol=1e-6))
        ]
        if not hit.empty:
            preds = hit["predictor"] if "predictor" in hit else pd.Series("", index=hit.index)
            label = hit["method"] + preds.map(lambda p: f" [{p}]" if p else "") + " (paper)"
            return hit.assign(method=label)
    return pd.DataFrame()
