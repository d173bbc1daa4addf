"""The optimisation-history plot: every line in a legend, a caption saying what is plotted, readable text."""

from __future__ import annotations

import numpy as np

from smoacs_bench.data.task import get_task
from smoacs_bench.evaluation.plots import history_figure, plot_history


def _history(tolerance: bool = True) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    h = {
        "band_gap": 1.5 + 0.1 * rng.normal(size=(20, 6)),
        "formation_energy": -rng.random((20, 6)),
        "loss": rng.random((20, 6)),
    }
    if tolerance:
        h["tolerance_factor"] = 0.9 + 0.05 * rng.normal(size=(20, 6))
    return h


def _legend_labels(fig) -> list[list[str]]:
    """The legend entries of each panel, left to right (a panel's legend may sit on its twin axis)."""
    axes = sorted((ax for ax in fig.axes if ax.get_legend()), key=lambda ax: ax.get_position().x0)
    return [[t.get_text() for t in ax.get_legend().get_texts()] for ax in axes]


def test_every_line_has_a_legend_entry():
    fig = history_figure(_history(), get_task("perovskite", 1.5, 0.04).criteria(), title="a run")
    panels = _legend_labels(fig)
    assert panels == [
        [
            "10-90 % of samples",
            "median of samples",
            "target window 1.5 ± 0.04 eV",
            "fraction in window (right axis)",
        ],
        ["10-90 % of samples", "median of samples", "(B) threshold -0.5 eV/atom"],
        ["10-90 % of samples", "median of samples"],
        ["10-90 % of samples", "median of samples", "(c) window 0.8-1"],
    ]
    shown = {label for labels in panels for label in labels}
    lines = [line for ax in fig.axes for line in ax.get_lines()]  # twin axes included
    assert len(lines) == 6 and all(line.get_label() in shown for line in lines)


def test_caption_says_fraction_in_window_is_optimisation_time_predictions():
    fig = history_figure(_history(tolerance=False), get_task("free", 0.5).criteria(), xlabel="trial")
    assert len(_legend_labels(fig)) == 3  # no tolerance panel on the free task
    caption = " ".join(t.get_text() for t in fig.texts)
    assert '"Fraction in window"' in caption and "optimisation-time predicted band gap" in caption
    assert "not the judged values" in caption and "at that trial" in caption


def test_text_is_readable():
    fig = history_figure(_history(), get_task("perovskite", 1.5).criteria(), title="a run")
    sizes = [t.get_fontsize() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    sizes += [t.get_fontsize() for t in fig.texts]
    sizes += [ax.xaxis.label.get_fontsize() for ax in fig.axes]
    sizes += [label.get_fontsize() for ax in fig.axes for label in ax.get_xticklabels()]
    assert min(sizes) >= 9
    assert fig.get_suptitle() == "a run"


def test_plot_history_writes_a_png(tmp_path):
    path = plot_history(_history(), get_task("perovskite", 1.5).criteria(), tmp_path / "history.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not list(tmp_path.glob("*.tmp.png"))


def test_physical_figures_are_written(tmp_path):
    """The funnel (own judge -> robust -> relaxed) and the energy-drop figure, zero rates included."""
    from smoacs_bench.evaluation.physical_plots import funnel_figure, plot_energy_drop, plot_funnel

    rows = []
    for method, own, robust, relaxed in (("SMOACS(MEGNet)", 0.45, 0.05, 0.0), ("Reference(perov_5)", 0.02, 0.01, 0.0)):
        for target in (0.5, 1.5):
            rows.append({"method": method, "task": "perovskite", "target_bg": target, "margin": 0.04,
                         "n_samples": 256, "seed": 0, "success": own, "success_robust": robust,
                         "success_relaxed": relaxed, "n_relaxed": 16})
    fig = funnel_figure(rows)
    axes = fig.get_axes()
    assert len(axes) == 2 and axes[0].get_title() == "target 0.5 eV"
    assert len(axes[0].patches) == 6                        # 2 methods x 3 stages
    markers = [ln for ln in axes[0].get_lines() if ln.get_marker() == "v"]
    assert len(markers) == 2                                # both relaxed rates are 0: visible markers
    path = plot_funnel(rows, tmp_path / "funnel.png")
    assert path.stat().st_size > 10_000
    drops = {"SMOACS(MEGNet)": [1.7, 2.2, 0.4, -0.001], "Reference(perov_5)": [0.01, 0.003]}
    assert plot_energy_drop(drops, tmp_path / "drop.png").stat().st_size > 10_000
