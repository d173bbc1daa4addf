"""Figures of the physical-validity stage: the success funnel and the relaxation energy drop per method.

- :func:`funnel_figure`: per target band gap (one panel each), per method, one bar per step of the verification
  funnel: own-judge success, success (robust), success (relaxed), then the judge stages' steps (registry:
  both potentials, S.U.N., gap cross-judge, DFT-verified) where the runs have them, with their 95 % intervals; a
  zero rate shows as a marker on the axis.
- :func:`dft_parity_figure`: the paper's Figure A.1, the judge's predicted gap against the DFT gap of every
  DFT-checked proposal, one colour per method, the target windows drawn.
- :func:`energy_drop_figure`: per method, the distribution of the relaxation energy drop (eV/atom, log
  scale) of its relaxed proposals, the reference crystals among them, with the "stays" threshold drawn.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .comparison import _error
from .layouts import missing, row_label, to_frame
from .plots import FONTS, _save_png

STAGES = (("success", "own judge"),)   # then the stages' funnel steps (registry)
HATCHES = ("", "//", "..", "xx", "\\\\", "++", "oo", "--")


def funnel_stages() -> list[tuple[str, str]]:
    """The funnel's steps: own judge, then the judge stages' steps (registry: robust, relaxed, ...), in order."""
    from .stages import funnel_steps

    return [*STAGES, *funnel_steps()]
DROP_FLOOR = 1e-4  # eV/atom: drops below this (or negative) are drawn at it on the log axis


def funnel_figure(summaries: pd.DataFrame | Iterable[Mapping[str, Any]], title: str = "") -> Figure:
    """Own-judge -> robust -> relaxed success per method (colour) and stage (hatch), one panel per target."""
    df = to_frame(summaries)
    ours = df[df["source"] == "ours"].copy()
    ours["label"] = [row_label(r) for r in ours.to_dict("records")]
    targets = sorted({float(t) for t in ours["target_bg"]})
    methods = list(dict.fromkeys(ours["label"]))
    colors = matplotlib.colormaps["tab10"]
    steps = [(k, n) for k, n in funnel_stages() if k in ours and ours[k].notna().any()]
    with matplotlib.rc_context(FONTS):
        stacked = len(methods) > 4   # many methods: one panel per target, stacked, each as wide as the methods
        width = 1.2 + 0.55 * len(methods) * len(steps) / 1.6 * (1 if stacked else max(len(targets), 1))
        fig = Figure(figsize=(max(6.0, width), 3.6 * max(len(targets), 1) if stacked else 5.4),
                     layout="constrained")
        shape = (max(len(targets), 1), 1) if stacked else (1, max(len(targets), 1))
        axes = np.atleast_1d(fig.subplots(*shape, sharey=True, squeeze=False).ravel())
        for ax, target in zip(axes, targets, strict=False):
            part = ours[ours["target_bg"].astype(float) == target]
            for j, label in enumerate(methods):
                hit = part[part["label"] == label]
                if hit.empty:
                    continue
                row = hit.iloc[0].to_dict()
                bar = 0.8 / max(len(steps), 1)
                for k, (key, _) in enumerate(steps):
                    x = j + (k - (len(steps) - 1) / 2) * bar
                    v = row.get(key)
                    if missing(v):
                        continue
                    err = _error(row, key)
                    ax.bar(x, float(v), width=bar * 0.92, color=colors(j % 10), hatch=HATCHES[k % len(HATCHES)],
                           edgecolor="black",
                           linewidth=0.6, yerr=None if err is None else [[err[0]], [err[1]]], capsize=2)
                    if float(v) == 0.0:
                        ax.plot(x, 0.0, marker="v", color=colors(j % 10), markeredgecolor="black", markersize=6,
                                clip_on=False, zorder=3)
            ax.set_xticks(range(len(methods)))
            ax.set_xticklabels([textwrap.fill(m.replace("(", " ("), 15) for m in methods], fontsize=8)
            ax.set_title(f"target {target:g} eV", fontsize=11)
            ax.set_ylim(0, 1.0)
            ax.grid(axis="y", alpha=0.3)
        for ax in axes if stacked else axes[:1]:
            ax.set_ylabel("success rate (95 % interval)")
        handles = [matplotlib.patches.Patch(facecolor="white", edgecolor="black", hatch=HATCHES[k % len(HATCHES)],
                                            label=name) for k, (_, name) in enumerate(steps)]
        handles.append(matplotlib.lines.Line2D([], [], marker="v", color="grey", linestyle="",
                                               markeredgecolor="black", label="rate 0"))
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 5), frameon=False)
        fig.suptitle(title or "Which successes survive: own judge -> " + " -> ".join(n for _, n in steps[1:]),
                     fontsize=12, x=0.01, ha="left")
    return fig


def energy_drop_figure(drops: Mapping[str, Iterable[float]], stay_drop: float = 0.1, title: str = "") -> Figure:
    """Box and points of the relaxation energy drop (eV/atom) per method; the ``stay_drop`` threshold dashed."""
    labels = [k for k, v in drops.items() if len(list(v))]
    data = [np.clip(np.asarray(list(drops[k]), dtype=float), DROP_FLOOR, None) for k in labels]
    data = [d[np.isfinite(d)] for d in data]
    colors = matplotlib.colormaps["tab10"]
    with matplotlib.rc_context(FONTS):
        fig = Figure(figsize=(max(6.0, 1.6 + 1.3 * len(labels)), 5.0), layout="constrained")
        ax = fig.subplots()
        if labels:
            ax.boxplot(data, positions=range(len(labels)), widths=0.5, showfliers=False)
            rng = np.random.default_rng(0)
            for j, d in enumerate(data):
                ax.scatter(j + rng.uniform(-0.18, 0.18, len(d)), d, s=10, color=colors(j % 10), alpha=0.6,
                           label=None)
            ax.set_xticks(range(len(labels)))
            ax.set_xticklabels([f"{m}\n(n = {len(d)})".replace("(", "\n(", 1) for m, d in zip(labels, data,
                                                                                             strict=True)],
                               fontsize=8)
        ax.set_yscale("log")
        ax.axhline(stay_drop, color="black", linestyle="--", linewidth=1, label=f"'stays' limit {stay_drop:g} eV/atom")
        ax.set_ylabel(f"relaxation energy drop (eV/atom, log; < {DROP_FLOOR:g} drawn at it)")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(loc="upper right", frameon=False)
        ax.set_title(title or "Energy lowered by relaxation, per method (box: quartiles; points: proposals)",
                     fontsize=11, loc="left")
    return fig


def plot_funnel(summaries: pd.DataFrame | Iterable[Mapping[str, Any]], path: str | Path, title: str = "") -> Path:
    return _save_png(funnel_figure(summaries, title), path)


def plot_energy_drop(drops: Mapping[str, Iterable[float]], path: str | Path, stay_drop: float = 0.1,
                     title: str = "") -> Path:
    return _save_png(energy_drop_figure(drops, stay_drop, title), path)


def dft_parity_figure(points: Mapping[str, pd.DataFrame], margin: float, widen: float = 0.0, title: str = "") -> Figure:
    """Figure A.1: per method (colour), the judge's band gap (eV) against the corrected DFT gap (eV) of its
    DFT-checked proposals (``points``: label -> frame with ``band_gap``, ``dft_gap`` (corrected PBE, eV), ``target_bg``);
    each target's window (± margin, and ± margin + ``widen`` dashed) drawn on the DFT axis."""
    colors = matplotlib.colormaps["tab10"]
    with matplotlib.rc_context(FONTS):
        fig = Figure(figsize=(6.2, 5.4), layout="constrained")
        ax = fig.subplots()
        top = 1.0
        targets: set[float] = set()
        for j, (label, part) in enumerate(points.items()):
            part = part.dropna(subset=["band_gap", "dft_gap"])
            if part.empty:
                continue
            ax.scatter(part["dft_gap"], part["band_gap"], s=22, color=colors(j % 10),
                       edgecolor="black", linewidth=0.4, label=f"{label} ({len(part)})")
            top = max(top, float(part[["dft_gap", "band_gap"]].max().max()))
            targets |= {float(t) for t in part["target_bg"]}
        top += 0.5
        for t in sorted(targets):
            ax.axvspan(t - margin, t + margin, color="grey", alpha=0.25)
            if widen:
                for edge in (t - margin - widen, t + margin + widen):
                    ax.axvline(edge, color="grey", lw=0.7, ls="--")
            ax.axhline(t, color="grey", lw=0.5, ls=":")
        ax.plot([0, top], [0, top], color="black", lw=0.8)
        ax.set_xlim(0, top)
        ax.set_ylim(0, top)
        ax.set_xlabel("DFT band gap, PBE, corrected (eV)")
        ax.set_ylabel("judge's band gap, MEGNet (eV)")
        ax.legend(fontsize=8, loc="upper left")
        ax.set_title(title or "Predicted vs DFT band gap of DFT-checked proposals (Figure A.1)", fontsize=11)
    return fig


def plot_dft_parity(points: Mapping[str, pd.DataFrame], path: str | Path, margin: float, widen: float = 0.0) -> Path:
    return _save_png(dft_parity_figure(points, margin, widen), path)
