"""Plots a person would rather see than read: the optimisation history of a run."""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from smoacs_bench.data.task import Criteria

# Sizes in points, for a figure shown at its saved size (4.6 in per panel, 110 dpi).
FONTS = {
    "font.size": 11,
    "axes.labelsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 9,
    "figure.titlesize": 13,
}
CAPTION = (
    "Lines and bands: the method's own optimisation-time predictions over its {unit}s (median and "
    '10-90 % range over samples). "Fraction in window": share of samples whose optimisation-time '
    "predicted band gap is inside the target window at that {unit}, not the judged values of the final "
    "proposals (samples.csv)."
)


def _band(ax, y: np.ndarray, color: str) -> None:
    """Median and 10-90 % quantile band over samples of a (steps, samples) array."""
    steps = np.arange(len(y))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # rows where no sample has a value yet
        lo, med, hi = np.nanquantile(y, [0.1, 0.5, 0.9], axis=1)
    ax.fill_between(steps, lo, hi, color=color, alpha=0.25, linewidth=0, label="10-90 % of samples")
    ax.plot(steps, med, color=color, label="median of samples")


def history_figure(
    history: dict[str, np.ndarray], criteria: Criteria, title: str = "", xlabel: str = "step"
) -> Figure:
    """Band gap, formation energy, loss (and tolerance factor) over optimisation steps (or trials): one
    panel each, every line and band in its panel's legend, and a caption saying what is plotted. The target
    window and thresholds drawn are the task's ``criteria``. ``history``: (steps, samples) arrays."""
    target_bg, margin = criteria.target_bg, criteria.margin
    keys = ["band_gap", "formation_energy", "loss"]
    if "tolerance_factor" in history and np.isfinite(history["tolerance_factor"]).any():
        keys.append("tolerance_factor")
    labels = {
        "band_gap": "predicted band gap (eV)",
        "formation_energy": "predicted E_f (eV/atom)",
        "loss": "loss",
        "tolerance_factor": "tolerance factor t",
    }
    with matplotlib.rc_context(FONTS):
        fig = Figure(figsize=(4.6 * len(keys), 4.8))
        axes = fig.subplots(1, len(keys))
        for ax, key in zip(axes, keys, strict=True):
            y = history[key]
            _band(ax, y, "tab:blue")
            top, extra = ax, []  # the axis drawn last, which holds the legend; handles of a twin axis
            if key == "band_gap":
                ax.axhspan(
                    target_bg - margin,
                    target_bg + margin,
                    color="tab:green",
                    alpha=0.3,
                    label=f"target window {target_bg:g} ± {margin:g} eV",
                )
                with np.errstate(all="ignore"):
                    inside = (np.abs(y - target_bg) <= margin).mean(axis=1)
                top = twin = ax.twinx()
                extra = twin.plot(inside, color="tab:orange", lw=1.2, label="fraction in window (right axis)")
                twin.set_ylim(0, 1)
                twin.set_ylabel("fraction in window", color="tab:orange")
            if key == "formation_energy":
                ax.axhline(
                    criteria.ef_max,
                    color="tab:red",
                    ls="--",
                    lw=1,
                    label=f"(B) threshold {criteria.ef_max:g} eV/atom",
                )
            if key == "tolerance_factor":
                lo, hi = criteria.tolerance_range
                ax.axhspan(lo, hi, color="tab:green", alpha=0.2, label=f"(c) window {lo:g}-{hi:g}")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(labels[key])
            handles, names = ax.get_legend_handles_labels()
            top.legend(
                handles + extra,
                names + [h.get_label() for h in extra],
                loc="upper center",
                bbox_to_anchor=(0.5, -0.16),
                ncol=2,
                frameon=False,
            )
        if title:
            fig.suptitle(title)
        fig.text(
            0.5,
            0.01,
            CAPTION.format(unit=xlabel),
            ha="center",
            va="bottom",
            wrap=True,
            fontsize=FONTS["legend.fontsize"],
            color="0.25",
        )
        fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def plot_history(
    history: dict[str, np.ndarray],
    criteria: Criteria,
    path: str | Path,
    title: str = "",
    xlabel: str = "step",
) -> Path:
    """:func:`history_figure` written to ``path`` as a PNG (atomically); returns the path."""
    return _save_png(history_figure(history, criteria, title, xlabel), path)


def _save_png(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` to ``path`` as a PNG at 110 dpi, atomically (readers never see half a file)."""
    path = Path(path)
    tmp = path.with_suffix(".tmp.png")
    with matplotlib.rc_context(FONTS):
        fig.savefig(tmp, dpi=110)
    tmp.replace(path)
    return path


def plot_training_curve(history: list[dict], path: str | Path, title: str = "", unit: str = "",
                        loss_label: str = "training loss") -> Path:
    """Training loss and validation MAE (``unit``) per epoch of a predictor's training, as a PNG (atomically)."""
    epochs = np.array([h["epoch"] for h in history])
    with matplotlib.rc_context(FONTS):
        fig = Figure(figsize=(6.4, 4.0))
        ax = fig.add_subplot()
        ax.plot(epochs, [h["train_loss"] for h in history], color="0.5", label=loss_label)
        ax.plot(epochs, [h["val_mae"] for h in history], color="C0", label=f"validation MAE ({unit})")
        ax.set_xlabel("epoch")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
        ax.set_title(title)
        fig.tight_layout()
    return _save_png(fig, path)
