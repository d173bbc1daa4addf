"""What a verified success costs: per table row, the wall time spent proposing and judging, and the distinct
successes (compositions pooled over the row's seeds) at each step of the funnel, per hour of that time.

The steps are own-judge success and the judge stages' funnel steps (registry). Proposing time is the method's
(config.json ``wall_time_s``; a one-off cost a row shares between its runs, such as screening-relax's scoring,
is in the run that paid it, so summing a row's runs charges it once); judging time is the relaxation of the
relaxed subset (seconds per structure as measured by the call that relaxed it) and the perturbed copies; DFT
checks are charged at their measured one-core seconds; the other later stages' time (second potential,
distortion) is not recorded per run and is left out. Later steps are
counted on the relaxed subset only, so their rates per hour are of what was checked, not of everything proposed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pandas as pd

from .stages import distinct_compositions, funnel_steps
from .stages.dft import cpu_seconds


def steps() -> list[tuple[str, str]]:
    return [("success", "own judge"), *funnel_steps()]


def cost_table(rows: Mapping[str, Iterable[tuple[pd.DataFrame, float, float]]],
               models: Mapping[str, float] | None = None) -> pd.DataFrame:
    """``rows``: row label -> (samples.csv frame, proposing s, judging s) per run; ``models``: row label -> the
    one-core seconds of the data a row's own trained model cost (SMOACS-relax's DFT-trained gap model: the DFT
    labels it learned from), charged once per row. One record per row: runs, hours, and per step the distinct
    successes and their number per hour (NaN where no run carries the step)."""
    out = []
    for label, items in rows.items():
        items = list(items)
        propose = sum(float(p or 0) for _, p, _ in items)
        judge = sum(float(j or 0) for _, _, j in items)
        dft = sum(cpu_seconds(s) for s, _, _ in items)
        model = float((models or {}).get(label) or 0.0)
        hours = (propose + judge + dft + model) / 3600.0
        rec = {"row": label, "runs": len(items), "propose_s": round(propose, 1), "judge_s": round(judge, 1),
               "dft_s": round(dft, 1), "model_s": round(model, 1), "hours": round(hours, 3)}
        for key, name in steps():
            frames = [s for s, _, _ in items if key in s and s[key].notna().any()]
            if not frames:
                rec[name], rec[f"{name} per hour"] = float("nan"), float("nan")
                continue
            n = len(set().union(*(distinct_compositions(s, key) for s in frames)))
            rec[name] = n
            rec[f"{name} per hour"] = n / hours if hours > 0 else float("nan")
        out.append(rec)
    return pd.DataFrame(out)


def cost_markdown(df: pd.DataFrame) -> str:
    """The cost table as markdown: per step 'distinct (per hour)'."""
    names = [name for _, name in steps() if name in df and df[name].notna().any()]
    dft = "dft_s" in df and bool((df["dft_s"] > 0).any())
    model = "model_s" in df and bool((df["model_s"] > 0).any())
    head = ["row", "runs", "proposing (s)", "judging (s)", *(["DFT (s, one core)"] if dft else []),
            *(["model's data (s, one core)"] if model else []), *(f"{n}: distinct (per h)" for n in names)]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for r in df.to_dict("records"):
        cells = [str(r["row"]), str(r["runs"]), f"{r['propose_s']:.0f}", f"{r['judge_s']:.0f}",
                 *([f"{r['dft_s']:.0f}"] if dft else []), *([f"{r['model_s']:.0f}"] if model else [])]
        for n in names:
            v, per = r.get(n), r.get(f"{n} per hour")
            cells.append("-" if v != v else f"{int(v)} ({per:.1f})" if per == per else str(int(v)))
        lines.append("| " + " | ".join(cells) + " |")
    return ("Distinct successes (compositions pooled over seeds) at each step of the funnel, and per hour of wall "
            "time spent proposing and judging (2 CPU cores; judging: the relaxation and the perturbed copies; DFT: the "
            "checks' one-core seconds; the other later stages' time left out; later steps counted on the relaxed "
            "subset, DFT-verified on the DFT-checked few"
            + ("; model's data: the DFT labels a row's own trained model learned from, charged once per row" if model
               else "") + ").\n\n"
            + "\n".join(lines) + "\n")


def plot_cost(df: pd.DataFrame, path) -> object:
    """Distinct successes per hour at each step of the funnel (x), one bar per row (colour); log scale, a zero
    drawn as a marker on the axis."""
    import matplotlib
    import numpy as np
    from matplotlib.figure import Figure

    from .plots import FONTS, _save_png

    names = [name for _, name in steps() if f"{name} per hour" in df and df[f"{name} per hour"].notna().any()]
    rows = list(df["row"])
    colors = matplotlib.colormaps["tab10"]
    with matplotlib.rc_context(FONTS):
        fig = Figure(figsize=(max(6.0, 1.1 * len(names) * max(len(rows), 1) / 2.5), 4.4), layout="constrained")
        ax = fig.subplots()
        width = 0.8 / max(len(rows), 1)
        floor = 0.05
        for j, (_, r) in enumerate(df.iterrows()):
            values = np.array([float(r.get(f"{n} per hour", np.nan)) for n in names])
            x = np.arange(len(names)) + (j - (len(rows) - 1) / 2) * width
            shown = np.where(values > 0, values, np.nan)
            ax.bar(x, shown, width=width, color=colors(j % 10), label=str(r["row"]))
            zero = values == 0
            ax.scatter(x[zero], np.full(zero.sum(), floor), marker="v", color=colors(j % 10), s=18)
        ax.set_yscale("log")
        ax.set_ylim(bottom=floor * 0.8)
        ax.set_xticks(np.arange(len(names)), names, rotation=20, ha="right")
        ax.set_ylabel("distinct successes per hour (2 CPU cores)")
        ax.set_title("What a success costs, at each step of the funnel (▼: none)")
        ax.legend(fontsize=7, ncols=2)
    return _save_png(fig, path)
