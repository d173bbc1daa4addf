"""The comparison plot: one rate (success by default) per method and band-gap window, beside the paper's.

Bars are our runs, grouped by target (and margin), with their 95 % intervals as error bars (Wilson for a
single run, the t-interval over seeds when a row pools several: :func:`~.layouts.to_frame`); the paper's
published values are black markers, drawn on the bar of the method they correspond to (S(Cry)/S(ALI) on
SMOACS, TPE on TPE, ...) or at the middle of the group when we ran no such method.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import matplotlib
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .layouts import missing, row_label, to_frame
from .plots import FONTS

RATE_NAMES = {
    "success": "success rate",
    "bg_ok": "(A) band gap in window",
    "ef_ok": "(B) E_f below threshold",
    "valid_structure": "(C) valid structure",
    "success_crossjudge": "success rate (cross-judge)",
    "unique_rate": "unique rate",
}
PAPER_MARKERS = ("D", "^", "s", "o", "v", "P", "X", "*")
CAPTION = (
    "Bars: our runs (95 % interval: Wilson for one seed, t-interval over seeds); a rate of 0 is a short tick in "
    "the method's colour. Open black-edged markers: the paper's published values, on the bar of the matching "
    "method (S(Cry)/S(ALI) on SMOACS), else mid-group."
)


def _family(label: str) -> str:
    """'SMOACS(MEGNet) λ=1' / 'S(Cry) (paper)' -> 'smoacs'; 'TPE(/N)...' -> 'tpe'; 'FTCP(...)' -> 'ftcp'."""
    low = label.strip().lower()
    if low.startswith("s(") or low.startswith("smoacs"):
        return "smoacs"
    return re.split(r"[^a-z]", low, maxsplit=1)[0]


_PREDICTOR_HINTS = {"cry": "crystalformer", "ali": "alignn"}


def _match(paper_label: str, candidates: list[str]) -> str | None:
    """The bar (our row label) a paper row belongs to: same family, then the predictor and the extra words
    (e.g. ``λ=5``) shared; None when no row of that family ran."""
    base = paper_label.replace("(paper)", "").strip()
    family = _family(base)
    same = [c for c in candidates if _family(c) == family]
    if not same:
        return None
    words = set(base.lower().replace("[", " ").replace("]", " ").split()[1:])
    pred = re.match(r"s\((\w+)\)", base.lower())
    hint = _PREDICTOR_HINTS.get(pred.group(1)) if pred else None
    hint = hint or next((v for k, v in _PREDICTOR_HINTS.items() if k in words), None)

    def score(c: str) -> tuple[int, int]:
        low = c.lower()
        return (sum(w in low.split() for w in words), int(bool(hint) and hint in low))

    return max(same, key=score)


def _axis(keys: list[tuple[float, float]]) -> tuple[list[str], str]:
    """Tick labels and x-axis label of the (target, margin) groups: targets, margins, or both."""
    targets, margins = sorted({t for t, _ in keys}), sorted({m for _, m in keys})
    if len(margins) == 1:
        return [f"{t:.2f}" for t, _ in keys], "target band gap (eV)"
    if len(targets) == 1:
        return [f"± {m:.2f}" for _, m in keys], f"band-gap margin (eV), target {targets[0]:.2f} eV"
    return [f"{t:.2f}\n± {m:.2f}" for t, m in keys], "target band gap ± margin (eV)"


def _error(row: Mapping[str, Any], key: str) -> tuple[float, float] | None:
    v, half = row.get(key), row.get(f"{key}_half")
    lo, hi = row.get(f"{key}_lo"), row.get(f"{key}_hi")
    if missing(v):
        return None
    if not missing(half):
        return float(half), float(half)
    if not missing(lo) and not missing(hi):
        return max(0.0, float(v) - float(lo)), max(0.0, float(hi) - float(v))
    return None


def comparison_figure(
    summaries: pd.DataFrame | Iterable[Mapping[str, Any]], column: str = "success", title: str | None = None
) -> Figure:
    """Bars of ``column`` per method (colour) and band-gap window (group) with 95 % intervals, the paper's
    rows (``source == "paper"``) as markers, a legend entry for each method and each paper row, axes with
    units and a title naming the task(s) and the margin(s)."""
    df = to_frame(summaries)
    ours = df[df["source"] == "ours"].copy()
    paper = df[df["source"] != "ours"].copy()
    for part in (ours, paper):
        part["label"] = [row_label(r) for r in part.to_dict("records")]
    keys = sorted({(float(t), float(m)) for t, m in zip(df["target_bg"], df["margin"], strict=True)})
    margins = sorted({m for _, m in keys})
    methods = list(dict.fromkeys(ours["label"]))
    paper_methods = list(dict.fromkeys(paper["label"]))
    width = 0.8 / max(len(methods), 1)
    colors = matplotlib.colormaps["tab10"]

    with matplotlib.rc_context(FONTS):
        fig = Figure(figsize=(min(12.0, max(6.4, 1.6 + len(keys) * (0.6 + 0.4 * max(len(methods), 1)))), 5.2))
        ax = fig.subplots()
        x_of: dict[tuple[float, float, str], float] = {}
        tops_of: list[tuple[float, tuple[float, float]]] = []
        for j, label in enumerate(methods):
            xs, ys, errs = [], [], []
            for i, (t, m) in enumerate(keys):
                hit = ours[
                    (ours["label"] == label)
                    & (ours["target_bg"].astype(float) == t)
                    & (ours["margin"].astype(float) == m)
                ]
                x = i - 0.4 + width * (j + 0.5)
                x_of[(t, m, label)] = x
                if hit.empty or missing(hit.iloc[0].get(column)):
                    continue
                row = hit.iloc[0].to_dict()
                xs.append(x)
                ys.append(float(row[column]))
                errs.append(_error(row, column) or (math.nan, math.nan))
                tops_of.append((ys[-1], errs[-1]))
            yerr = [[e[0] for e in errs], [e[1] for e in errs]] if xs else None
            zeros = [x for x, y in zip(xs, ys, strict=True) if y == 0]
            if zeros:   # a zero-height bar is invisible: mark it
                ax.hlines([0.0] * len(zeros), [x - width * 0.42 for x in zeros], [x + width * 0.42 for x in zeros],
                          colors=[colors(j % 10)], linewidth=4, zorder=3)
            ax.bar(
                xs,
                ys,
                width * 0.92,
                color=colors(j % 10),
                label=label,
                yerr=yerr,
                capsize=3,
                error_kw={"elinewidth": 1.1, "ecolor": "0.2"},
            )
        handles, names = ax.get_legend_handles_labels()
        for k, label in enumerate(paper_methods):
            marker = PAPER_MARKERS[k % len(PAPER_MARKERS)]
            bar = _match(label, methods)
            xs, ys = [], []
            for i, (t, m) in enumerate(keys):
                hit = paper[
                    (paper["label"] == label)
                    & (paper["target_bg"].astype(float) == t)
                    & (paper["margin"].astype(float) == m)
                ]
                if hit.empty or missing(hit.iloc[0].get(column)):
                    continue
                xs.append(x_of.get((t, m, bar), float(i)) if bar else float(i))
                ys.append(float(hit.iloc[0][column]))
            ax.scatter(
                xs, ys, marker=marker, s=46, facecolor="white", edgecolor="black", linewidth=1.3, zorder=4
            )
            handles.append(
                Line2D(
                    [],
                    [],
                    marker=marker,
                    ls="",
                    markerfacecolor="white",
                    markeredgecolor="black",
                    markeredgewidth=1.3,
                    markersize=7,
                )
            )
            names.append(label if "paper" in label else f"{label} (paper)")
        ticks, xlabel = _axis(keys)
        ax.set_xticks(range(len(keys)), ticks)
        ax.set_xlim(-0.6, len(keys) - 0.4)
        tops = [v + (e[1] if math.isfinite(e[1]) else 0) for v, e in tops_of]
        tops += [float(v) for v in paper[column] if not missing(v)] if column in paper else []
        ax.set_ylim(0, min(1.05, max(0.1, 1.15 * max(tops, default=0.0))))
        what = RATE_NAMES.get(column, column)
        ax.set_ylabel(f"{what} (fraction of samples)")
        ax.set_xlabel(xlabel)
        ax.grid(axis="y", color="0.85", lw=0.8)
        ax.set_axisbelow(True)
        if title is None:
            tasks = ", ".join(dict.fromkeys(str(t) for t in df["task"] if t)) or "?"
            window = (
                (
                    f"margin ± {margins[0]:.2f} eV"
                    if len(margins) == 1
                    else f"margins ± {margins[0]:.2f} to {margins[-1]:.2f} eV"
                )
                if margins
                else ""
            )
            ns = sorted({int(n) for n in ours["n_samples"] if not missing(n)})
            seeds = sorted({int(n) for n in ours.get("n_seeds", pd.Series(dtype=float)) if not missing(n)})
            size = (
                f", {'/'.join(map(str, ns))} samples x {'/'.join(map(str, seeds)) or 1} seed(s)"
                if ns
                else ", no runs of ours"
            )
            title = f"{what.capitalize()} on the {tasks} task, {window}{size}"
        ax.set_title(title, fontsize=12 if len(title) < 70 else 10)   # one line: a long title gets a smaller font
        if handles:
            ax.legend(handles, names, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        fig.text(
            0.01,
            0.01,
            CAPTION,
            ha="left",
            va="bottom",
            wrap=True,
            fontsize=FONTS["legend.fontsize"],
            color="0.25",
        )
        fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


def plot_comparison(
    summaries: pd.DataFrame | Iterable[Mapping[str, Any]],
    path: str | Path,
    column: str = "success",
    title: str | None = None,
    dpi: int = 110,
) -> Figure:
    """:func:`comparison_figure` written to ``path`` as a PNG (atomically); returns the figure."""
    fig = comparison_figure(summaries, column, title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    with matplotlib.rc_context(FONTS):
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    tmp.replace(path)
    return fig
