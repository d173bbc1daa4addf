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
from .stages.base import RELAXED_COUNT, RELAXED_ROWS
from .stats import seed_interval, wilson

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
PROTOCOL_COLS: list[tuple[str, str]] = [  # beyond the paper: the generic DP and the independent judge
    ("n_unique_success", "unique successes"),
    ("neutral_any", "neut (any)"),
    ("success_crossjudge", "success (cross-judge)"),
]
SUMMARY_LAYOUT: list[tuple[str, str]] = [   # the compact table results/README.md includes (then the stages')
    ("size", "samples × seeds"), ("success", "success rate"), ("n_unique_success", "unique successes"),
]
LAYOUTS: dict[str, list[tuple[str, str]]] = {   # the judge stages' columns follow (registry): STAGED_LAYOUTS
    "table2": BASE_COLS + PROTOCOL_COLS,
    "table3": BASE_COLS + PEROVSKITE_COLS + PROTOCOL_COLS,
    "table4": BASE_COLS + PEROVSKITE_COLS + PROTOCOL_COLS,
    "diversity": DIVERSITY_COLS,
    "summary": SUMMARY_LAYOUT,
}
STAGED_LAYOUTS = ("table2", "table3", "table4", "summary")   # layouts that show the judge stages' columns
POOLED_FLAGS = {"n_unique_success": "success"}   # distinct compositions pooled over seeds, by flag column
COUNT_KEYS = ("n_success", "n_unique_success", "n_unique_novel_success")
_BASE_RATES = tuple(dict.fromkeys(k for k, _ in BASE_COLS + PEROVSKITE_COLS + PROTOCOL_COLS
                                  if k not in COUNT_KEYS)) + ("unique_rate",)
RELAXED_LINEAGES = f"n_{RELAXED_ROWS}_lineages"   # clone lineages among the relaxed proposals
BASE_SUMMARY_COLS = ("method", "task", "target_bg", "margin", "n_samples", *_BASE_RATES, *COUNT_KEYS,
                     "novelty_reference", "selection", "seed", RELAXED_COUNT, "n_lineages", RELAXED_LINEAGES)
RUN_KEYS = ("method", "task", "target_bg", "margin", "selection", "n_samples")  # one table row: seeds pooled


def layout_columns(layout: str) -> list[tuple[str, str]]:
    """(summary key, header) of a layout's value columns: the paper's, ours, then the judge stages' (registry)."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; known: {', '.join(LAYOUTS)}")
    cols = list(LAYOUTS[layout])
    if layout in STAGED_LAYOUTS:
        from .stages import table_columns

        cols += table_columns()
    return cols


def rate_keys() -> tuple[str, ...]:
    """Every rate a table row carries an interval for: the paper's, ours, the stages'."""
    from .stages import rate_columns

    return _BASE_RATES + tuple(c.name for c in rate_columns() if c.name not in _BASE_RATES)


def relaxed_keys() -> tuple[str, ...]:
    """Rates over the relaxed proposals (their interval's unit is the relaxed set)."""
    from .stages import relaxed_keys as staged

    return staged()


def pooled_flags() -> dict[str, str]:
    """{count key: flag column} of the counts pooled over seeds as distinct compositions."""
    from .stages import distinct_flags

    return POOLED_FLAGS | distinct_flags()


def count_keys() -> tuple[str, ...]:
    return COUNT_KEYS + tuple(k for k in pooled_flags() if k not in COUNT_KEYS)


def summary_cols() -> tuple[str, ...]:
    return tuple(dict.fromkeys(BASE_SUMMARY_COLS + rate_keys() + count_keys()))


def layout_for_task(task: str) -> str:
    """The paper layout a task is reported in (``Task.table_layout``), e.g. perovskite -> table3."""
    try:
        return TASKS[task].table_layout
    except KeyError:
        raise KeyError(f"unknown task {task!r}; known: {', '.join(TASKS)}") from None


def to_frame(summaries: pd.DataFrame | Iterable[Mapping[str, Any]], aggregate: bool = True) -> pd.DataFrame:
    """Summaries as table rows; with ``aggregate`` our runs that differ only by seed become one row
    (mean rate and the 95 % t-interval over seeds, ``<rate>_half``), and a single run gets 95 % Wilson
    intervals (``<rate>_lo``, ``<rate>_hi``)."""
    df = summaries.copy() if isinstance(summaries, pd.DataFrame) else pd.DataFrame(list(summaries))
    for col in summary_cols():
        if col not in df:
            df[col] = None
    if "source" not in df:
        df["source"] = "ours"
    df["source"] = df["source"].fillna("ours")
    df["selection"] = df["selection"].fillna("final")
    for col in ("note", "predictor", "novelty_reference", "task"):
        df[col] = df[col].fillna("") if col in df else ""
    df = df.reset_index(drop=True)
    return _aggregate(df) if aggregate else df


def _aggregate(df: pd.DataFrame) -> pd.DataFrame:
    ours = df[df["source"] == "ours"]
    rows = []
    for _, part in ours.groupby(list(RUN_KEYS), sort=False, dropna=False):
        row = part.iloc[0].to_dict()
        seeds = sorted({int(x) for x in part["seed"] if not missing(x)})
        row["n_seeds"] = max(len(part), 1)
        row["seeds"] = ",".join(map(str, seeds))
        for key in rate_keys():
            values = [float(v) for v in part[key] if not missing(v)]
            if not values:
                continue
            if len(part) > 1:
                row[key], row[f"{key}_half"] = seed_interval(values)
                if row[f"{key}_half"] == 0.0 and len(values) == len(part):
                    # every seed at 0 (or 1): a zero-width t-interval says nothing; give the pooled Wilson one
                    n = sum(_draws(run, key) for run in part.to_dict("records"))
                    row[f"{key}_half"] = math.nan
                    row[f"{key}_lo"], row[f"{key}_hi"] = wilson(round(row[key] * n), n)
            elif not missing(row.get(f"{key}_clo")):   # one run with copy lineages: their cluster bootstrap
                row[f"{key}_lo"], row[f"{key}_hi"] = float(row[f"{key}_clo"]), float(row[f"{key}_chi"])
                if row[f"{key}_lo"] == row[f"{key}_hi"]:
                    # no success (or all): every resample agrees, a zero-width interval says nothing; give
                    # the Wilson interval with the lineages as the unit (the independent draws)
                    n = _draws(row, key)
                    row[f"{key}_lo"], row[f"{key}_hi"] = wilson(round(values[0] * n), n)
            else:
                n = _draws(row, key)
                k = values[0] * n   # successes; over lineages an effective count, so not rounded
                row[f"{key}_lo"], row[f"{key}_hi"] = wilson(k if _by_lineage(row, key) else round(k), n)
        from .stages import subset_units

        for col in (RELAXED_COUNT, "n_lineages", RELAXED_LINEAGES, *dict.fromkeys(subset_units().values())):
            if col not in part:
                continue
            counts = [int(v) for v in part[col] if not missing(v)]
            row[col] = sum(counts) if counts else None
        pooled = pooled_flags()
        for key in count_keys():
            sets = part[f"{key}_set"].tolist() if key in pooled and f"{key}_set" in part else []
            if sets and not any(missing(v) for v in sets):   # distinct compositions over the row's seeds
                row[key] = len({x for v in sets for x in str(v).split(";") if x})
                continue
            counts = [v for v in part[key] if not missing(v)] if key in part else []
            row[key] = int(sum(counts)) if counts else None
        rows.append(row)
    if rows:   # rows of one method with different sample counts never share a label
        agg = pd.DataFrame(rows)
        keys = ["method", "task", "target_bg", "margin", "selection"]
        sizes = agg.groupby(keys, dropna=False)["n_samples"].transform("nunique")
        agg.loc[sizes > 1, "method"] = [f"{m} (n={int(n)})" for m, n in zip(agg.loc[sizes > 1, "method"],
                                                                         agg.loc[sizes > 1, "n_samples"], strict=True)]
        rows = agg.to_dict("records")
    out = pd.concat([pd.DataFrame(rows), df[df["source"] != "ours"]], ignore_index=True) if rows else df
    return out.reset_index(drop=True)


def _unit_cols(key: str) -> tuple[str, ...]:
    """The count columns a rate's Wilson interval counts, first choice first."""
    from .stages import subset_units

    units = subset_units()
    if key in units:
        return (units[key],)
    return (RELAXED_LINEAGES, RELAXED_COUNT) if key in relaxed_keys() else ("n_lineages", "n_samples")


def _draws(run: Mapping[str, Any], key: str) -> int:
    """The unit count of a Wilson interval for one run's rate ``key``: its copy lineages where it has them
    (``n_lineages``; copies of one start are one draw, not many), else its samples; for a relaxation rate
    the same over the relaxed proposals. 0 when unknown."""
    for col in _unit_cols(key):
        if not missing(run.get(col)):
            return int(run[col])
    return 0


def _by_lineage(run: Mapping[str, Any], key: str) -> bool:
    cols = _unit_cols(key)
    return len(cols) > 1 and not missing(run.get(cols[0]))


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
    """A cell: the rate with its 95 % interval (Wilson ``lo-hi`` for one run, ``± half`` over seeds)."""
    if key == "size":
        n, seeds = row.get("n_samples"), row.get("n_seeds")
        return "-" if missing(n) else f"{int(n)} × {1 if missing(seeds) else int(seeds)}"
    if key == "unique_in_success":
        return _fraction(row.get("n_unique_success"), row.get("n_success"))
    if key == "unique_novel_in_success":
        return _fraction(row.get("n_unique_novel_success"), row.get("n_success"))
    v = row.get(key)
    if missing(v):
        return _notes(row).get(key, "-")
    if key in count_keys():   # distinct successful compositions, pooled over the row's seeds
        return str(int(v))
    text = f"{float(v):.{decimals}f}"
    half, lo, hi = row.get(f"{key}_half"), row.get(f"{key}_lo"), row.get(f"{key}_hi")
    if not missing(half):
        if float(v) - float(half) < 0 or float(v) + float(half) > 1:   # a rate's interval stays in [0, 1]
            lo, hi = max(0.0, float(v) - float(half)), min(1.0, float(v) + float(half))
            return f"{text} ({lo:.{decimals}f}-{hi:.{decimals}f})"
        return f"{text} ± {float(half):.{decimals}f}"
    if not missing(lo) and not missing(hi):
        places = 2 if float(hi) >= 0.01 else 3   # 0/768 has an upper bound of 0.005: not "0.00"
        return f"{text} ({float(lo):.{places}f}-{float(hi):.{places}f})"
    return text


def row_label(row: Mapping[str, Any]) -> str:
    """The method column: the run's label, with the selection rule when it is not the paper's."""
    sel = row.get("selection")
    return f"{row['method']} [{sel}]" if row.get("source", "ours") == "ours" and sel and sel != "final" else str(row["method"])


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
