"""Plots a person would rather see than read: the optimisation history of a run."""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from smoacs_bench.data.task import Criteria  # noqa: E402


def _band(ax, y: np.ndarray, color: str, label: str) -> None:
    """Median and 10-90 % quantile band over samples of a (steps, samples) array."""
    steps = np.arange(len(y))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # rows where no sample has a value yet
        lo, med, hi = np.nanquantile(y, [0.1, 0.5, 0.9], axis=1)
    ax.fill_between(steps, lo, hi, color=color, alpha=0.25, linewidth=0)
    ax.plot(steps, med, color=color, label=label)


def plot_history(history: dict[str, np.ndarray], criteria: Criteria, path: str | Path,
                 title: str = "", xlabel: str = "step") -> Path:
    """Band gap, formation energy, loss (and tolerance factor) over optimisation steps (or trials), PNG;
    the target window and thresholds drawn are the task's ``criteria``."""
    target_bg, margin = criteria.target_bg, criteria.margin
    keys = ["band_gap", "formation_energy", "loss"]
    if "tolerance_factor" in history and np.isfinite(history["tolerance_factor"]).any():
        keys.append("tolerance_factor")
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.4))
    labels = {"band_gap": "band gap (eV)", "formation_energy": "formation energy (eV/atom)",
              "loss": "loss", "tolerance_factor": "tolerance factor t"}
    for ax, key in zip(axes, keys, strict=True):
        y = history[key]
        _band(ax, y, "tab:blue", "median, 10-90 %")
        if key == "band_gap":
            ax.axhspan(target_bg - margin, target_bg + margin, color="tab:green", alpha=0.3, label="target window")
            with np.errstate(all="ignore"):
                inside = (np.abs(y - target_bg) <= margin).mean(axis=1)
            twin = ax.twinx()
            twin.plot(inside, color="tab:orange", lw=1, label="fraction in window")
            twin.set_ylim(0, 1)
            twin.set_ylabel("fraction in window", color="tab:orange")
        if key == "formation_energy":
            ax.axhline(criteria.ef_max, color="tab:red", ls="--", lw=1, label=f"{criteria.ef_max:g} eV/atom")
        if key == "tolerance_factor":
            lo, hi = criteria.tolerance_range
            ax.axhspan(lo, hi, color="tab:green", alpha=0.2, label=f"{lo:g}-{hi:g}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(labels[key])
        ax.legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path
