"""The verdict of a table in a few lines: which row leads at each step of the funnel, per target, and whether its
lead over the next row is significant.

The steps are own-judge success, then the judge stages' funnel steps (registry: robust, relaxed, relaxed under
both potentials, S.U.N., S.U.N. with the gap cross-judge, DFT-verified) where the rows carry them. Rows of known
compounds (``Reference(...)``) are controls and never lead. A lead is "significant" when the table's paired
comparisons (paired.csv, Holm-adjusted) tested that pair on that column at p < 0.05; otherwise the verdict says
whether the two 95 % intervals are apart or overlap (not a test).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from .layouts import cell, missing, row_label
from .stages import funnel_steps

ALPHA = 0.05
CONTROL_PREFIX = "Reference"   # rows of known compounds: controls, not contenders


def steps() -> list[tuple[str, str]]:
    """(rate key, label) of the funnel's steps, own judge first."""
    return [("success", "own judge"), *funnel_steps()]


def _bounds(row: dict[str, Any], key: str) -> tuple[float, float]:
    v, half, lo, hi = row.get(key), row.get(f"{key}_half"), row.get(f"{key}_lo"), row.get(f"{key}_hi")
    if not missing(half):
        return max(0.0, float(v) - float(half)), min(1.0, float(v) + float(half))
    if not missing(lo) and not missing(hi):
        return float(lo), float(hi)
    return float(v), float(v)


def _test(paired: pd.DataFrame | None, target: float, margin: float, key: str, a: str, b: str) -> float | None:
    """The Holm-adjusted p of the pair (a, b) on ``key`` at (``target``, ``margin``) in paired.csv, None when not
    tested."""
    if paired is None or paired.empty or "p_holm" not in paired:
        return None
    same_margin = paired["margin"].astype(float).sub(margin).abs() < 1e-9 if "margin" in paired else True
    hit = paired[(paired["column"] == key) & (paired["target_bg"].astype(float).sub(target).abs() < 1e-9)
                 & same_margin
                 & (((paired["method_a"] == a) & (paired["method_b"] == b))
                    | ((paired["method_a"] == b) & (paired["method_b"] == a)))]
    if hit.empty or missing(hit.iloc[0]["p_holm"]):
        return None
    return float(hit.iloc[0]["p_holm"])


def verdict_rows(table: pd.DataFrame, paired: pd.DataFrame | None = None) -> list[dict[str, Any]]:
    """One record per (target, margin, step) where two or more contenders carry the step: leader, runner-up,
    their cells and what separates them (rows at other margins are not compared)."""
    ours = table[table["source"].fillna("ours") == "ours"] if "source" in table else table
    out = []
    margins = ours["margin"].astype(float) if "margin" in ours else pd.Series(0.0, index=ours.index)
    for target, margin in sorted({(float(t), float(m)) for t, m in zip(ours["target_bg"], margins, strict=True)}):
        rows = [r for r, m in zip(ours.to_dict("records"), margins, strict=True)
                if abs(float(r["target_bg"]) - target) < 1e-9 and abs(float(m) - margin) < 1e-9
                and not str(r["method"]).startswith(CONTROL_PREFIX)]
        for key, label in steps():
            have = [r for r in rows if not missing(r.get(key))]
            if len(have) < 2:
                continue
            have.sort(key=lambda r: -float(r[key]))
            lead, second = have[0], have[1]
            a, b = row_label(lead), row_label(second)
            p = _test(paired, target, margin, key, a, b)
            if float(lead[key]) == float(second[key]):
                why = "tied"
            elif p is not None:
                why = f"{'significant' if p < ALPHA else 'not significant'} (paired, Holm p = {p:.2g})"
            else:
                apart = _bounds(lead, key)[0] > _bounds(second, key)[1]
                why = "intervals apart (not tested)" if apart else "intervals overlap (not tested)"
            out.append({"target_bg": target, "margin": margin, "window": f"{target:g} ± {margin:g}", "step": label,
                        "key": key, "leader": a, "leader_cell": cell(lead, key, 3),
                        "runner_up": b, "runner_up_cell": cell(second, key, 3), "separation": why,
                        "leader_is_zero": float(lead[key]) == 0.0})
    return out


def verdict_markdown(title: str, table: pd.DataFrame, paired: pd.DataFrame | None = None) -> str:
    """verdict.md: the leader at each funnel step per target, as a table with a two-sentence preface."""
    recs = verdict_rows(table, paired)
    head = (f"# Verdict: {title}\n\nWhich row proposes the most crystals that pass each step of the funnel, per "
            "target (95 % intervals; rows of known compounds are controls and do not compete). A lead is called "
            "significant only where the table's paired comparisons tested it (Holm-adjusted, p < 0.05).\n")
    if not recs:
        return head + "\nNo step has two or more rows to compare.\n"
    words = []
    for key, label in steps():   # in words: who leads each step over the targets, and how often significantly
        part = [r for r in recs if r["key"] == key]
        if not part:
            continue
        leads: dict[str, list[str]] = {}
        for r in part:
            leads.setdefault("no row (all 0)" if r["leader_is_zero"] else r["leader"], []).append(r["window"])
        sig = sum(r["separation"].startswith("significant") for r in part)
        apart = sum(r["separation"].startswith("intervals apart") for r in part)
        who = "; ".join(f"{name} at {', '.join(ts)} eV" for name, ts in leads.items())
        how = f"{sig} of {len(part)} leads significant in a paired test" + (
            f", {apart} untested with the intervals apart" if apart else "")
        words.append(f"- **{label}**: {who} ({how})")
    lines = ["| target ± margin (eV) | step | leader | rate | next | rate | lead |", "|---|---|---|---|---|---|---|"]
    for r in recs:
        leader = "none (all 0)" if r["leader_is_zero"] else r["leader"]
        lines.append(f"| {r['window']} | {r['step']} | {leader} | {r['leader_cell']} | {r['runner_up']} | "
                     f"{r['runner_up_cell']} | {r['separation']} |")
    return head + "\n" + "\n".join(words) + "\n\n" + "\n".join(lines) + "\n"


def verdict_lines(table: pd.DataFrame, paired: pd.DataFrame | None = None) -> list[str]:
    """A few console lines: per target, the leader at each step (with * where its lead is significant)."""
    by_target: dict[str, list[str]] = {}
    for r in verdict_rows(table, paired):
        if r["leader_is_zero"]:
            who = "none"
        else:
            mark = "*" if r["separation"].startswith("significant") else ""
            who = f"{r['leader']}{mark} {r['leader_cell']}"
        by_target.setdefault(r["window"], []).append(f"{r['step']}: {who}")
    return [f"{t} eV — " + "; ".join(parts) for t, parts in by_target.items()]
