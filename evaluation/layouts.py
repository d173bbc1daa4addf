"""Paper table layouts: which columns a table shows, how a cell is written, and how rows are grouped.

Layouts ``table2`` (free task), ``table3`` and ``table4`` (perovskite tasks) and ``diversity``
(Tables A.3/A.5); a task names its own layout (``Task.table_layout``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from smoacs_bench.data.task import TASKS

from .paper import paper_rows

BASE_COLS: list[tuple[str, str]] = [
    ("success", "success rate"),
    ("bg_ok", "(A)BG"),
    ("ef_ok", "(B) E_f"),
    ("valid_structure", "(C)STR"),
    ("neutral", "(a) neut"),
    ("min_dist_ok", "(b) 0.5Å"),
]
PEROVSKITE_COLS: list[tuple[str, str]] = [
    ("perovskite_ok", "(D)PS"),
    ("tolerance_ok", "(c) tole"),
    ("angles_ok", "(d) angles"),
    ("coords_ok", "(e) coord"),
]
DIVERSITY_COLS: list[tuple[str, str]] = [
    ("success", "success rate"),
    ("unique_rate", "unique rate"),
    ("unique_in_success", "unique rate in success"),
    ("unique_novel_in_success", "unique and novel rate in success"),
]
LAYOUTS: dict[str, list[tuple[str, str]]] = {
    "table2": BASE_COLS,
    "table3": BASE_COLS + PEROVSKITE_COLS,
    "table4": BASE_COLS + PEROVSKITE_COLS,
    "diversity": DIVERSITY_COLS,
}
SUMMARY_COLS = (
    "method", "task", "target_bg", "margin", "n_samples",
    *(k for k, _ in BASE_COLS + PEROVSKITE_COLS),
    "unique_rate", "n_success", "n_unique_success", "n_unique_novel_success", "novelty_reference",
)


def layout_for_task(task: str) -> str:
    """The paper layout a task is reported in (``Task.table_layout``), e.g. perovskite -> table3."""
    try:
        return TASKS[task].table_layout
    except KeyError:
        raise KeyError(f"unknown task {task!r}; known: {', '.join(TASKS)}") from None


def to_frame(summaries: pd.DataFrame | Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    df = summaries.copy() if isinstance(summaries, pd.DataFrame) else pd.DataFrame(list(summaries))
    for col in SUMMARY_COLS:
        if col not in df:
            df[col] = None
    if "source" not in df:
        df["source"] = "ours"
    for col in ("note", "predictor", "novelty_reference", "task"):
        df[col] = df[col].fillna("") if col in df else ""
    return df.reset_index(drop=True)


def missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA


def _notes(row: Mapping[str, Any]) -> dict[str, str]:
    """Parse 'col=-;col=N/A' notes (how the paper marked a missing cell)."""
    out = {}
    for part in str(row.get("note") or "").split(";"):
        if "=" in part:
            key, val = part.split("=", 1)
            out[key.strip()] = val.strip()
    return out


def _fraction(k: Any, n: Any) -> str:
    if missing(n) or int(n) == 0 or missing(k):
        return "-"
    return f"{int(k)}/{int(n)}"


def cell(row: Mapping[str, Any], key: str, decimals: int) -> str:
    if key == "unique_in_success":
        return _fraction(row.get("n_unique_success"), row.get("n_success"))
    if key == "unique_novel_in_success":
        return _fraction(row.get("n_unique_novel_success"), row.get("n_success"))
    v = row.get(key)
    if missing(v):
        return _notes(row).get(key, "-")
    return f"{float(v):.{decimals}f}"


def groups(df: pd.DataFrame, layout: str, with_paper: bool) -> list[pd.DataFrame]:
    """Rows grouped by (task, target, margin), ours first, then the matching paper rows."""
    kind = "diversity" if layout == "diversity" else "metrics"
    keys = df[["task", "target_bg", "margin"]].astype(object).apply(tuple, axis=1)
    order_of = {name: i for i, name in enumerate(TASKS)}  # tasks in the order they are defined
    order = sorted(
        dict.fromkeys(keys),
        key=lambda k: (order_of.get(k[0], len(order_of)), k[0], k[1], k[2]),
    )
    groups = []
    for key in order:
        part = df[keys == key]
        task, target, margin = key
        if with_paper:
            paper = paper_rows(kind, task, float(target), float(margin))
            if not paper.empty:
                part = pd.concat([part, paper], ignore_index=True)
        groups.append(part.reset_index(drop=True))
    return groups
