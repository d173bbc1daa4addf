"""Rendering a paper table from its planned runs: table.{md,csv,tex}, paired.csv, comparison.png, the
physical-validity figures and summary, and report.md."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .experiments import (
    TableSpec,
    format_seconds,
    paper_frame,
)
from .physical import relax_cost, relax_identity
from .planning import PlannedRun, ReproduceResult


# -- rendering -------------------------------------------------------------------------------------------------
def _summaries(runs: list[PlannedRun]):
    import pandas as pd

    from smoacs_bench.evaluation.summary import table_inputs

    frames, paired = [], []
    for run in runs:
        path = run.folder / "summary.csv"
        if not (run.done and path.is_file()):
            continue
        summary = pd.read_csv(path)
        if run.row.label:
            summary["method"] = run.row.label
        if (run.folder / "samples.csv").is_file():
            samples = pd.read_csv(run.folder / "samples.csv")
            summary = summary.assign(**table_inputs(samples))
            paired.append((summary.iloc[0].to_dict() | {"row_tag": run.row.tag}, samples))
        frames.append(summary)
    return frames, paired


def comparison_order(paired: list, first: str) -> list:
    """``paired`` with the runs of row tag ``first`` in front (the paired comparisons take the first method
    seen as A); unchanged when ``first`` is empty or has no run."""
    return sorted(paired, key=lambda item: item[0].get("row_tag") != first) if first else list(paired)


def render(
    spec: TableSpec, runs: list[PlannedRun], table_dir: Path, targets: Sequence[float]
) -> dict[str, Path]:
    """table.{md,csv,tex} beside the paper's rows, paired.csv (two or more methods), comparison.png."""
    import pandas as pd

    from smoacs_bench.evaluation.captions import caption_for
    from smoacs_bench.evaluation.compare import differences_markdown, paired_differences
    from smoacs_bench.evaluation.comparison import plot_comparison
    from smoacs_bench.evaluation.io import atomic_write_text, write_csv
    from smoacs_bench.evaluation.render import render_table

    table_dir.mkdir(parents=True, exist_ok=True)
    frames, paired = _summaries(runs)
    margins = sorted({r.margin for r in runs})
    paper = paper_frame(spec, targets, margins)
    parts = [f for f in [*frames, paper] if not f.empty]
    files: dict[str, Path] = {}
    if not parts:
        text = f"No run of {spec.id} finished and the paper has no rows for it; see report.md.\n"
        atomic_write_text(table_dir / "table.md", text)
        return {"table_md": table_dir / "table.md"}
    df = pd.concat(parts, ignore_index=True)
    md = render_table(df, spec.layout, "md")
    md = md.rstrip("\n") + "\n\n" + caption_for(spec.layout, df, with_paper=not paper.empty) + "\n"
    labels = {s.get("method") for s, _ in paired}
    diffs = None
    if spec.layout != "diversity" and len(labels) >= 2:
        ordered = comparison_order(paired, spec.compare_against)
        diffs = pd.concat([paired_differences(ordered, column) for column in spec.compare_columns],
                          ignore_index=True)
        if not diffs.empty:
            md += "\n" + differences_markdown(diffs)
            write_csv(diffs, table_dir / "paired.csv")
            files["paired"] = table_dir / "paired.csv"
    for fmt, text in (
        ("md", md),
        ("csv", render_table(df, spec.layout, "csv")),
        ("tex", render_table(df, spec.layout, "tex")),
    ):
        atomic_write_text(table_dir / f"table.{fmt}", text)
        files[f"table_{fmt}"] = table_dir / f"table.{fmt}"
    if spec.layout != "diversity":   # the verdict: the leader at each step of the funnel, per target
        from smoacs_bench.evaluation.verdict import verdict_markdown

        pooled = pd.read_csv(files["table_csv"])
        atomic_write_text(table_dir / "verdict.md", verdict_markdown(f"{spec.id} ({spec.title})", pooled, diffs))
        files["verdict"] = table_dir / "verdict.md"
    if spec.layout != "diversity":   # the compact table results/README.md includes (our rows only)
        ours = df[df["source"].fillna("ours") == "ours"] if "source" in df else df
        atomic_write_text(table_dir / "summary.md", render_table(ours, "summary", "md"))
        files["summary_md"] = table_dir / "summary.md"
        atomic_write_text(table_dir / "runs.md", runs_summary(runs))
        files["runs_md"] = table_dir / "runs.md"
    plot_comparison(df, table_dir / "comparison.png")
    files["plot"] = table_dir / "comparison.png"
    files.update(_physical_plots(runs, df, table_dir))
    return files


def _physical_plots(runs: list[PlannedRun], df: Any, table_dir: Path) -> dict[str, Path]:
    """funnel.png, energy_drop.png and physical.{md,csv} when the runs carry physical-validity columns."""
    import pandas as pd

    from smoacs_bench.evaluation.io import atomic_write_text
    from smoacs_bench.evaluation.physical_plots import plot_energy_drop, plot_funnel
    from smoacs_bench.evaluation.physical_summary import physical_summary, summary_markdown
    from smoacs_bench.evaluation.stages import RELAXED_COUNT, funnel_steps
    from smoacs_bench.evaluation.stages.dft import (
        calibration_name,
        checks_markdown,
        checks_table,
        dft_settings,
        parity_points,
    )
    from smoacs_bench.evaluation.stages.relaxation import ENERGY_DROP, ENERGY_INITIAL

    files: dict[str, Path] = {}
    if not any(c in df and df[c].notna().any() for c, _ in funnel_steps()):
        return files
    files["funnel"] = plot_funnel(df, table_dir / "funnel.png")
    # a crystal relaxed under several targets (the reference row proposes the same crystals for each) counts once
    drops: dict[str, dict[tuple[float, float], float]] = {}
    per_method: dict[str, list[tuple[pd.DataFrame, float | None]]] = {}
    costs: dict[str, list[tuple[pd.DataFrame, float, float]]] = {}   # proposing and judging seconds per run
    model_costs: dict[str, float] = {}   # one-core seconds of the data a row's own trained model learned from
    dft_points: dict[str, list[pd.DataFrame]] = {}
    dft_runs: dict[str, list[tuple[pd.DataFrame, float]]] = {}
    margins: set[float] = set()
    engines: set[str] = set()   # the DFT engines the runs' checks were computed with (one calibration each)
    stay_drop = None
    for run in runs:
        samples = run.folder / "samples.csv"
        if not (run.done and samples.is_file()):
            continue
        s = pd.read_csv(samples)
        if ENERGY_DROP not in s:
            continue
        summary = pd.read_csv(run.folder / "summary.csv").iloc[0]
        label = run.row.label or str(summary["method"])
        dft_points.setdefault(label, []).extend(parity_points(s, float(summary["target_bg"])))
        dft_runs.setdefault(label, []).append((s, float(summary["target_bg"])))
        margins.add(float(summary["margin"]))
        pair = s[[ENERGY_INITIAL, ENERGY_DROP]].apply(pd.to_numeric, errors="coerce").dropna()
        for e0, drop in pair.itertuples(index=False):
            drops.setdefault(label, {})[(round(e0, 6), round(drop, 6))] = drop
        config = json.loads((run.folder / "config.json").read_text())
        physical = config.get("physical", {})
        engines.add(calibration_name(dft_settings(((physical.get("key") or {}).get("stages") or {}).get("dft", {}))))
        per_method.setdefault(label, []).append((s, relax_cost(physical, summary.get(RELAXED_COUNT))))
        # the relaxation (per structure, as measured by the call that relaxed) and the perovskite copies; the later
        # stages' time is not recorded per run (their records are cached across runs)
        judge_s = float(relax_cost(physical, summary.get(RELAXED_COUNT)) or 0.0) \
            + float(physical.get("robust_wall_time_s") or 0.0)
        costs.setdefault(label, []).append((s, float(config.get("wall_time_s") or 0.0), float(judge_s)))
        trained = (config.get("method_config_resolved") or {}).get("agree_model") or {}
        if trained.get("label_seconds"):   # the model's data, once per row
            model_costs[label] = max(model_costs.get(label, 0.0), float(trained["label_seconds"]))
        stay_drop = relax_identity(physical).get("stay_drop", stay_drop)
    if any(dft_points.values()):
        from smoacs_bench.evaluation.physical_plots import plot_dft_parity
        from smoacs_bench.evaluation.stages.dft import calibration

        engine = next(iter(engines)) if len(engines) == 1 else "pyscf"
        cal = calibration(engine)
        files["figure_a1"] = plot_dft_parity({k: pd.concat(v, ignore_index=True) for k, v in dft_points.items() if v},
                                             table_dir / "figure_a1.png", min(margins),
                                             0.0 if cal is None else float(cal["loo_mae"]))
        checks = checks_table(dft_runs)
        atomic_write_text(table_dir / "dft.csv", checks.to_csv(index=False))
        files["dft"] = table_dir / "dft.md"
        atomic_write_text(files["dft"], checks_markdown(checks, engine))
    if drops:
        files["energy_drop"] = plot_energy_drop({k: list(v.values()) for k, v in drops.items()},
                                                table_dir / "energy_drop.png",
                                                stay_drop if stay_drop is not None else 0.1)
        summary = physical_summary(per_method)
        atomic_write_text(table_dir / "physical.csv", summary.to_csv(index=False))
        files["physical"] = table_dir / "physical.md"
        atomic_write_text(files["physical"], summary_markdown(summary) + "\n")
        from smoacs_bench.evaluation.cost import cost_markdown, cost_table, plot_cost

        table = cost_table(costs, model_costs)
        atomic_write_text(table_dir / "cost.csv", table.to_csv(index=False))
        files["cost"] = table_dir / "cost.md"
        atomic_write_text(files["cost"], cost_markdown(table))
        files["cost_plot"] = plot_cost(table, table_dir / "cost.png")
    return files


def runs_summary(runs: list[PlannedRun]) -> str:
    """Per row of the table: finished runs, their size, the method's proposing time per run (median, s; as stored
    in config.json: a run reused across sessions keeps the time it took then) and the physical-validity stage's
    time, as a Markdown table (results/README includes it)."""
    import statistics

    import pandas as pd

    from smoacs_bench.evaluation.stages import RELAXED_COUNT

    lines = ["| row | runs | samples × seeds | proposing, per run (s, median) | relaxation + copies, all runs (s) |",
             "|---|---:|---|---:|---:|"]
    by_tag: dict[str, list[PlannedRun]] = {}
    for r in runs:
        if r.done:
            by_tag.setdefault(r.row.tag, []).append(r)
    for tag, rs in by_tag.items():
        walls, physical, partial = [], 0.0, 0
        for r in rs:   # config.json's wall time: the method proposing (judging and the physical stage apart)
            try:
                config = json.loads((r.folder / "config.json").read_text())
            except (OSError, ValueError):
                config = {}
            if "counts only the resumed part" in str(config.get("resumed", "")):
                partial += 1   # a resumed run whose earlier time is unknown: left out of the median
            elif config.get("wall_time_s") is not None:
                walls.append(float(config["wall_time_s"]))
            stage = config.get("physical", {})
            try:
                n_relaxed = pd.read_csv(r.folder / "summary.csv").iloc[0].get(RELAXED_COUNT)
            except (OSError, ValueError, IndexError):
                n_relaxed = None
            physical += float(relax_cost(stage, n_relaxed) or 0) + float(stage.get("robust_wall_time_s") or 0)
        seeds = sorted({r.seed for r in rs})
        median = f"{statistics.median(walls):.0f}" if walls else "-"
        if partial:
            median += f" ({partial} resumed run{'s' if partial > 1 else ''} left out: time before the resume unknown)"
        lines.append(f"| {tag} | {len(rs)} | {rs[0].n_samples} × {len(seeds)} | {median} | {physical:.0f} |")
    return "\n".join(lines) + "\n"


def _status_table(runs: list[PlannedRun]) -> list[str]:
    lines = [
        "| run | method | target (eV) | margin (eV) | seed | status | wall (s) | note |",
        "|---|---|---:|---:|---:|---|---:|---|",
    ]
    for r in runs:
        wall = "" if r.wall_s is None else f"{float(r.wall_s):.1f}"
        note = "see Skipped and failed" if r.reason else r.note
        lines.append(
            f"| {r.key} | {r.row.label or r.row.method} | {r.target:g} | {r.margin:g} | {r.seed} | "
            f"{r.status} | {wall} | {note.replace('|', '/')} |"
        )
    return lines


def write_report(spec: TableSpec, result: ReproduceResult, request: str, executor: str) -> Path:
    """report.md: the request, what ran / was reused / was skipped and why, wall times, the table, the plot."""
    from smoacs_bench.evaluation.io import atomic_write_text

    runs = result.runs
    lines = [f"# {spec.id}: {spec.title}", "", f"Request: `{request}`", ""]
    if spec.note:
        lines += [f"Note: {spec.note}.", ""]
    if spec.is_sampling:
        per_row: dict[str, tuple[int, set[int]]] = {}
        for r in runs:
            per_row.setdefault(r.row.tag, (r.n_samples, set()))[1].add(r.seed)
        sizes = "; ".join(f"{tag} {n} samples, seeds {', '.join(map(str, sorted(sd)))}"
                          for tag, (n, sd) in per_row.items())
        lines += [
            f"Task `{spec.task}`; targets {', '.join(f'{t:g}' for t in sorted({r.target for r in runs}))} eV; "
            f"margins {', '.join(f'{m:g}' for m in sorted({r.margin for r in runs}))} eV; {sizes}; "
            f"selection `{spec.selection}`; "
            f"layout `{spec.layout}`; paper table {spec.paper or '-'}; executor {executor}.",
            "",
        ]
    ran_wall = sum(float(r.wall_s or 0) for r in result.ran)
    lines += [
        "## What happened",
        "",
        f"- ran: {len(result.ran)} run(s), {ran_wall:.1f} s of unit wall time "
        f"(estimated beforehand: {format_seconds(result.estimate_s)} on 2 CPU cores)",
        f"- reused: {len(result.reused)} complete run(s) with the same settings (not re-run)",
        f"- skipped: {len(result.skipped)}",
        f"- failed: {len(result.failed)}",
        f"- wall time of this call: {result.wall_s:.1f} s",
        "",
    ]
    why: dict[tuple[str, str], int] = {}
    for r in result.skipped + result.failed:
        why[(f"{r.row.tag} ({r.status})", r.reason)] = why.get((f"{r.row.tag} ({r.status})", r.reason), 0) + 1
    if why:
        lines += ["## Skipped and failed", ""]
        lines += [f"- {who}, {k} run(s): {reason}" for (who, reason), k in why.items()]
        lines.append("")
    for note in result.notes:
        lines += [f"- {note}"]
    if result.notes:
        lines.append("")
    if runs:
        lines += [
            "## Runs",
            "",
            *_status_table(runs),
            "",
            "Wall: the unit's time in this call for runs that ran; for reused runs the stored run's method "
            "time (config.json).",
            "",
        ]
    table = result.files.get("table_md")
    if table and table.is_file():
        lines += ["## Table", "", table.read_text().rstrip("\n"), ""]
    if "plot" in result.files:
        lines += ["## Plot", "", f"![success rate per method and target]({result.files['plot'].name})", ""]
    if "funnel" in result.files:
        lines += ["## Physical validity", "",
                  f"![the verification funnel per method: own judge to the last stage that ran]"
                  f"({result.files['funnel'].name})", ""]
    if "figure_a1" in result.files:
        lines += [f"![Figure A.1: predicted vs DFT band gap of the DFT-checked proposals]"
                  f"({result.files['figure_a1'].name})", ""]
    if "dft" in result.files:
        lines += [result.files["dft"].read_text().rstrip("\n"), ""]
    if "energy_drop" in result.files:
        lines += [f"![relaxation energy drop per method]({result.files['energy_drop'].name})", ""]
    if "physical" in result.files:
        lines += ["Relaxed proposals per method, pooled over targets and seeds (a crystal relaxed under several "
                  "targets counted once; success counts per run):", "",
                  result.files["physical"].read_text().rstrip("\n"), ""]
    names = [p.name for k, p in result.files.items() if k != "report"]
    lines += [
        "Files: "
        + ", ".join(f"[{n}]({n})" for n in names)
        + (", runs under `" + os.path.relpath(result.out_dir / "runs", result.table_dir) + "/`" if runs else ""),
        "",
    ]
    path = result.table_dir / "report.md"
    atomic_write_text(path, "\n".join(lines))
    return path
