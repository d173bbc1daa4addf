"""``smoacs-bench reproduce TABLE``: run what a paper table needs, reuse what is done, render it beside the paper.

One unit per method row x target x margin x seed, each a :func:`~.runner.run_experiment` call into its own
folder ``OUT/runs/<task>/<row>_bg<target>_m<margin>_s<seed>_n<samples>[_<budget>]``. A folder that holds a
complete run with the same settings is reused (never re-run, its files untouched); a TPE run that was killed
resumes from its journal. The missing units go to an executor (in-process, local processes or Dask:
:mod:`.executor`). A row whose predictors or model are not here (Crystalformer/ALIGNN weights, an FTCP model
folder) is skipped with the loader's reason; a unit that raises is reported as failed (its traceback in
``error.txt`` of its folder) and the others go on.

Products in ``OUT/<table>/``: ``table.md`` (with caption and, for two or more methods, the paired bootstrap),
``table.csv``, ``table.tex``, ``paired.csv``, ``comparison.png`` and ``report.md`` (what ran, what was reused,
what was skipped and why, wall times, the table and the plot).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .executor import Executor, InProcess, Unit, UnitFailed, get_executor
from .experiments import (
    SPECS,
    MethodRun,
    TableSpec,
    estimate_seconds,
    format_seconds,
    get_spec,
    paper_frame,
    resolve_seeds,
    resolve_targets,
    run_seconds,
    select_runs,
)

REUSED, TO_RUN, RAN, SKIPPED, FAILED = "reused", "to run", "ran", "skipped", "failed"


@dataclass
class PlannedRun:
    """One unit of a table: a method row at one target, margin and seed, in its own folder."""

    row: MethodRun
    task: str
    target: float
    margin: float
    seed: int
    n_samples: int
    folder: Path
    config: dict[str, Any] = field(default_factory=dict)
    status: str = TO_RUN
    reason: str = ""
    wall_s: float | None = None
    note: str = ""

    @property
    def key(self) -> str:
        return self.folder.name

    @property
    def done(self) -> bool:
        return self.status in (REUSED, RAN)


@dataclass
class ReproduceResult:
    """What :func:`reproduce` did and wrote. ``files``: ``table_md``, ``table_csv``, ``table_tex``,
    ``plot``, ``paired``, ``report`` (those written)."""

    table_id: str
    out_dir: Path
    table_dir: Path
    runs: list[PlannedRun]
    files: dict[str, Path]
    wall_s: float
    estimate_s: float
    notes: list[str] = field(default_factory=list)

    def _with(self, status: str) -> list[PlannedRun]:
        return [r for r in self.runs if r.status == status]

    @property
    def ran(self) -> list[PlannedRun]:
        return self._with(RAN)

    @property
    def reused(self) -> list[PlannedRun]:
        return self._with(REUSED)

    @property
    def skipped(self) -> list[PlannedRun]:
        return self._with(SKIPPED)

    @property
    def failed(self) -> list[PlannedRun]:
        return self._with(FAILED)

    @property
    def did_work(self) -> bool:
        """Whether any unit ran (or tried to) in this call."""
        return bool(self.ran or self.failed)


# -- one unit --------------------------------------------------------------------------------------------------
def run_planned(
    method: str,
    task: str,
    target_bg: float,
    margin: float,
    n_samples: int,
    seed: int,
    out_dir: str,
    method_config: dict[str, Any],
    label: str | None = None,
    crossjudge: bool = True,
    progress: bool = True,
    status: bool = True,
) -> dict[str, Any]:
    """One :func:`~.runner.run_experiment` call that reports instead of raising: ``{"status": "ran",
    "wall_s": ...}`` or ``{"status": "failed", "reason": ...}`` (traceback in ``out_dir/error.txt``)."""
    from smoacs_bench.evaluation.io import atomic_write_text

    from .runner import run_experiment

    out = Path(out_dir)
    if status:
        print(f"[reproduce] {out.name}: started", flush=True)
    t0 = time.perf_counter()
    try:
        run_experiment(
            method,
            task,
            target_bg,
            margin,
            n_samples,
            seed,
            out,
            dict(method_config),
            label=label,
            crossjudge=crossjudge,
        )
    except Exception as err:  # noqa: BLE001 - reported with its unit; the other units go on
        atomic_write_text(out / "error.txt", traceback.format_exc())
        reason = " ".join(f"{type(err).__name__}: {err}".split())
        if status:
            print(f"[reproduce] {out.name}: failed ({reason})", flush=True)
        return {"status": FAILED, "reason": reason, "wall_s": round(time.perf_counter() - t0, 1)}
    (out / "error.txt").unlink(missing_ok=True)
    wall = round(time.perf_counter() - t0, 1)
    if status:
        print(f"[reproduce] {out.name}: done in {wall} s", flush=True)
    return {"status": RAN, "wall_s": wall}


# -- planning --------------------------------------------------------------------------------------------------
def _for_row(values: Any, row: MethodRun) -> Any:
    """A per-method argument: one value for every row, or a mapping by row tag or method name."""
    if isinstance(values, Mapping):
        return values.get(row.tag, values.get(row.method))
    return values


def _suffix(budget_name: str | None, budget: int | None, user: Mapping[str, Any] | None,
            neutral: Iterable[str] = ()) -> str:
    """The run folder's suffix: the budget, and a digest of the user's options that change results (options
    in ``neutral``, such as ``workers`` or ``device``, leave the folder name alone)."""
    out = f"_{budget_name}{budget}" if budget_name and budget is not None else ""
    user = {k: v for k, v in (user or {}).items() if k not in set(neutral)}
    if user:
        digest = hashlib.sha1(json.dumps(sorted(user.items()), default=str).encode()).hexdigest()[:8]
        out += f"_o{digest}"
    return out


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it (reports read the same anywhere)."""
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(path)


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _unavailable(cls: type, config: Mapping[str, Any]) -> str:
    """'' when the method can run here, else the loader's reason: the method's own check of its options, its
    predictors other than the MEGNet pair (Crystalformer/ALIGNN weights), a trainable method's model folder."""
    from smoacs_bench.methods.predictors import DEFAULT_PAIR, get_predictor

    try:
        method = cls(**{k: v for k, v in config.items() if k != "progress"})
    except (ValueError, TypeError, FileNotFoundError) as err:
        return _one_line(err)
    for name in method.predictor_names():
        if name in DEFAULT_PAIR:
            continue
        try:
            get_predictor(name, device="cpu")
        except (FileNotFoundError, ValueError, KeyError, OSError, ImportError) as err:
            return _one_line(err)
    if cls.trainable and isinstance(getattr(cls, "model", None), property):
        try:
            method.model  # noqa: B018 - loads the model folder (FTCP), raising when it is missing
        except (FileNotFoundError, ValueError, OSError) as err:
            return _one_line(err)
    return ""


def _stored_settings(folder: Path) -> dict[str, Any] | None:
    cfg = folder / "config.json"
    if not (cfg.is_file() and (folder / "summary.csv").is_file()):
        return None
    try:
        return json.loads(cfg.read_text())
    except (OSError, ValueError):
        return None


def plan(
    spec: TableSpec,
    out_dir: Path,
    samples: int | Mapping[str, int] | None = None,
    seeds: int | Sequence[int] | Mapping[str, int | Sequence[int]] | None = None,
    methods: Iterable[str] | None = None,
    targets: Iterable[float] | None = None,
    budget: int | Mapping[str, int] | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    progress: bool = True,
) -> list[PlannedRun]:
    """Every unit of ``spec`` at these settings, each marked reused (complete with the same settings),
    skipped (with why) or to run. ValueError for an invalid request (unknown target, samples < 1).

    ``samples``, ``seeds``, ``budget`` and ``options`` take one value for every row or a mapping by row tag or
    method name (``{"smoacs": 256, "tpe": 64}``); rows missing from a mapping get the table's default."""
    from smoacs_bench.methods import get_method_class

    from .runner import _settings, method_options, same_run

    target_list = resolve_targets(spec, targets)
    out: list[PlannedRun] = []
    for row in select_runs(spec, methods):
        n = int(_for_row(samples, row) or spec.samples)
        if n < 1:
            raise ValueError(f"samples must be >= 1, got {n}")
        seed_list = resolve_seeds(spec, _for_row(seeds, row))
        reason, cls, config = "", None, dict(row.config())
        try:
            cls = get_method_class(row.method)
        except ValueError as err:
            if row not in spec.runs:  # asked for by name: a user error, not a row of the table to skip
                raise
            reason = _one_line(err)
        user = dict(_for_row(options, row) or {}) if options else {}
        n_budget = _for_row(budget, row)
        if cls is not None:
            known = cls.options()
            if "selection" in known and spec.selection != known["selection"]:
                config["selection"] = spec.selection
            if cls.budget and n_budget is not None:
                if int(n_budget) < 1:
                    raise ValueError(f"budget must be >= 1, got {n_budget}")
                config[cls.budget] = int(n_budget)
            config.update(user)
            try:
                config = method_options(cls, config)
            except ValueError as err:
                reason = _one_line(err)
            if "progress" in known:
                config["progress"] = progress
        suffix = _suffix(cls.budget if cls else None, n_budget if cls and cls.budget else None, user,
                         cls.result_neutral if cls else ())
        for target in target_list:
            for margin in spec.margins_for(row):
                for seed in seed_list:
                    folder = (
                        out_dir
                        / "runs"
                        / spec.task
                        / f"{row.tag}_bg{target:g}_m{margin:g}_s{seed}_n{n}{suffix}"
                    )
                    run = PlannedRun(
                        row, spec.task, float(target), float(margin), int(seed), n, folder, dict(config)
                    )
                    out.append(run)
                    if reason:
                        run.status, run.reason = SKIPPED, reason
                        continue
                    if cls.state_dir:
                        run.config.setdefault("storage", str(folder / cls.state_dir))
                    expected = _settings(
                        row.method, spec.task, run.target, run.margin, n, run.seed, run.config, cls
                    )
                    stored = _stored_settings(folder)
                    if stored is not None and same_run(stored.get("settings"), expected, cls):
                        run.status = REUSED
                        run.wall_s = stored.get("wall_time_s")
                        if str(stored.get("crossjudge", "")).startswith(("not run", "unavailable")):
                            run.note = "stored without the cross-judge"
                    elif stored is not None:
                        run.note = "settings changed since the stored run: runs again"
                    elif cls.state_dir and Path(run.config["storage"]).is_dir():
                        run.note = f"resumes from {cls.state_dir}/"
    # availability, once per row, only where something is left to run
    checked: dict[str, str] = {}
    for run in out:
        if run.status != TO_RUN:
            continue
        if run.row.tag not in checked:
            cls = get_method_class(run.row.method)
            checked[run.row.tag] = _unavailable(cls, {k: v for k, v in run.config.items() if k != "storage"})
        if checked[run.row.tag]:
            run.status, run.reason = SKIPPED, checked[run.row.tag]
    return out


# -- rendering -------------------------------------------------------------------------------------------------
def _summaries(runs: list[PlannedRun]):
    import pandas as pd

    frames, paired = [], []
    for run in runs:
        path = run.folder / "summary.csv"
        if not (run.done and path.is_file()):
            continue
        summary = pd.read_csv(path)
        if run.row.label:
            summary["method"] = run.row.label
        frames.append(summary)
        if (run.folder / "samples.csv").is_file():
            paired.append((summary.iloc[0].to_dict(), pd.read_csv(run.folder / "samples.csv")))
    return frames, paired


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
    if spec.layout != "diversity" and len(labels) >= 2:
        diffs = paired_differences(paired)
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

    files: dict[str, Path] = {}
    has = [c for c in ("success_robust", "success_relaxed") if c in df and df[c].notna().any()]
    if not has:
        return files
    files["funnel"] = plot_funnel(df, table_dir / "funnel.png")
    # a crystal relaxed under several targets (the reference row proposes the same crystals for each) counts once
    drops: dict[str, dict[tuple[float, float], float]] = {}
    per_method: dict[str, list[tuple[pd.DataFrame, float | None]]] = {}
    stay_drop = None
    for run in runs:
        samples = run.folder / "samples.csv"
        if not (run.done and samples.is_file()):
            continue
        s = pd.read_csv(samples)
        if "relax_energy_drop" not in s:
            continue
        summary = pd.read_csv(run.folder / "summary.csv").iloc[0]
        label = run.row.label or str(summary["method"])
        pair = s[["relax_energy_initial", "relax_energy_drop"]].apply(pd.to_numeric, errors="coerce").dropna()
        for e0, drop in pair.itertuples(index=False):
            drops.setdefault(label, {})[(round(e0, 6), round(drop, 6))] = drop
        physical = json.loads((run.folder / "config.json").read_text()).get("physical", {})
        per_method.setdefault(label, []).append((s, physical.get("wall_time_s")))
        key = physical.get("key", {})
        stay_drop = (key.get("relax") or {}).get("stay_drop", stay_drop)
    if drops:
        files["energy_drop"] = plot_energy_drop({k: list(v.values()) for k, v in drops.items()},
                                                table_dir / "energy_drop.png",
                                                stay_drop if stay_drop is not None else 0.1)
        summary = physical_summary(per_method)
        atomic_write_text(table_dir / "physical.csv", summary.to_csv(index=False))
        files["physical"] = table_dir / "physical.md"
        atomic_write_text(files["physical"], summary_markdown(summary) + "\n")
    return files


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
                  f"![own-judge, robust and relaxed success per method]({result.files['funnel'].name})", ""]
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


# -- Table 1 ---------------------------------------------------------------------------------------------------
def _reproduce_heldout(spec: TableSpec, out: Path, request: str, t0: float) -> ReproduceResult:
    """Table 1 through the held-out checks (``smoacs-bench heldout``) of the default FTCP model and of the
    predictors trained in the repository's ``models/`` (:func:`~smoacs_bench.methods.predictors.training.trained_folders`)."""
    from smoacs_bench.evaluation.io import atomic_write_text

    table_dir = out / spec.id
    md = table_dir / "table.md"
    notes, files = [], {}
    if md.is_file():
        notes.append(f"reused {md.name} (delete it to compute again)")
        files["table_md"] = md
    else:
        try:
            from smoacs_bench.methods.predictors.training import (
                heldout_predictor,
                heldout_predictor_markdown,
                trained_folders,
            )
            from smoacs_bench.methods.registry import trainable_methods

            owned = [(cls, cls.default_model()) for cls in trainable_methods()]
            owned = [(cls, folder) for cls, folder in owned if folder is not None]
            if not owned:
                raise FileNotFoundError("no trained model of a method (train one with `smoacs-bench train "
                                        "ftcp --dataset perov_5 --out models/ftcp-perov_5`)")
            text = "\n".join(cls.heldout_markdown(folder) for cls, folder in owned)
            folder = owned[0][1]
            trained = trained_folders()
            if trained:   # Crystalformer / ALIGNN trained here (`smoacs-bench train crystalformer ...`)
                text += "\n" + heldout_predictor_markdown([heldout_predictor(f) for f in trained])
                notes.append(f"added the predictors trained in {', '.join(_shown(f) for f in trained)}")
            atomic_write_text(md, text)
            files["table_md"] = md
            notes.append(f"ran `{spec.command}` (held-out MAE of {_shown(folder)})")
        except (ImportError, FileNotFoundError, ValueError) as err:
            notes.append(f"not run by reproduce: {_one_line(err)}; the command is `{spec.command}`")
    result = ReproduceResult(
        spec.id, out, table_dir, [], files, round(time.perf_counter() - t0, 1), estimate_seconds(spec), notes
    )
    table_dir.mkdir(parents=True, exist_ok=True)
    result.files["report"] = write_report(spec, result, request, "in-process")
    return result


# -- the entry point -------------------------------------------------------------------------------------------
def reproduce(
    table_id: str,
    out_dir: str | Path,
    samples: int | Mapping[str, int] | None = None,
    seeds: int | Sequence[int] | Mapping[str, int | Sequence[int]] | None = None,
    methods: Iterable[str] | None = None,
    executor: Executor | None = None,
    progress: bool = True,
    targets: Iterable[float] | None = None,
    crossjudge: bool = True,
    budget: int | Mapping[str, int] | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    request: str | None = None,
    relax: Any = None,
    robust: Any = None,
    relax_workers: int = 1,
    status: bool = True,
) -> ReproduceResult:
    """Run the missing units of paper table ``table_id`` into ``out_dir`` and render it beside the paper.
    ``progress`` shows progress bars, ``status`` the one-line status of each run.

    ``samples``, ``seeds`` (a count N for seeds 0..N-1, or a list), ``methods`` (registered names or row tags)
    and ``targets`` (eV, a subset of the table's) reduce or change the spec's defaults; ``budget`` sets the
    steps/trials of every method that counts them (or per method: ``{"smoacs": 3, "tpe": 3}``); ``options``
    adds method options (``{"ftcp": {"model": DIR}}``). ``relax`` / ``robust`` (settings of
    :mod:`.physical`) add the physical-validity columns to every finished run, reused ones included.
    A second call with the same arguments does no work.
    """
    t0 = time.perf_counter()
    spec = get_spec(table_id)
    out = Path(out_dir).resolve()
    methods = list(methods) if methods is not None else None
    targets = list(targets) if targets is not None else None
    if request is None:
        args = {
            "samples": samples,
            "seeds": seeds,
            "methods": methods,
            "targets": targets,
            "budget": budget,
            "options": options,
            "crossjudge": None if crossjudge else False,
        }
        request = (
            f"reproduce({spec.id!r}, {str(out_dir)!r}"
            + "".join(f", {k}={v!r}" for k, v in args.items() if v is not None)
            + ")"
        )
    if not spec.is_sampling:
        return _reproduce_heldout(spec, out, request, t0)
    executor = executor or InProcess()
    runs = plan(spec, out, samples, seeds, methods, targets, budget, options, progress)
    todo = [r for r in runs if r.status == TO_RUN]
    estimate = sum(
        run_seconds(
            r.row.method, r.task, r.n_samples, r.config.get("steps", r.config.get("trials")), crossjudge
        )
        for r in todo
    )
    if status:
        print(
            f"[reproduce] {spec.id}: {len(todo)} run(s) to do (about {format_seconds(estimate)} on 2 CPU cores), "
            f"{sum(r.status == REUSED for r in runs)} reused, {sum(r.status == SKIPPED for r in runs)} skipped; "
            f"executor {executor.describe()}",
            flush=True,
        )
    units = [
        Unit(
            run_planned,
            (r.row.method, r.task, r.target, r.margin, r.n_samples, r.seed, str(r.folder), r.config),
            {"label": r.row.label, "crossjudge": crossjudge, "progress": progress, "status": status},
            key=r.key,
        )
        for r in todo
    ]
    notes: list[str] = []
    if units:
        try:
            results = executor.map(units)
        except UnitFailed as err:  # the executor itself broke (a worker died, the cluster went away)
            notes.append(f"the executor stopped: {_one_line(err)}")
            results = [
                {"status": RAN if _stored_settings(r.folder) else FAILED, "reason": _one_line(err)}
                for r in todo
            ]
        for run, res in zip(todo, results, strict=True):
            run.status = res["status"]
            run.reason = res.get("reason", "") if run.status == FAILED else ""
            run.wall_s = res.get("wall_s")
    notes += _add_physical(runs, relax, robust, relax_workers, progress, status)
    files = render(spec, runs, out / spec.id, resolve_targets(spec, targets))
    result = ReproduceResult(
        spec.id, out, out / spec.id, runs, files, round(time.perf_counter() - t0, 1), estimate, notes
    )
    result.files["report"] = write_report(spec, result, request, executor.describe())
    return result


def _add_physical(runs: list[PlannedRun], relax: Any, robust: Any, workers: int, progress: bool,
                  status: bool = True) -> list[str]:
    """The physical-validity stage on every finished run; notes for the report."""
    if relax is None and robust is None:
        return []
    from smoacs_bench.evaluation.relax import RelaxerUnavailable

    from .physical import add_physical

    added, walls = 0, 0.0
    for r in runs:
        if not r.done:
            continue
        try:
            res = add_physical(r.folder, relax, robust, workers=workers, progress=progress)
        except RelaxerUnavailable as err:
            raise ValueError(str(err)) from None
        if res["status"] == "added" and status:
            print(f"[reproduce] {r.key}: physical validity added in {float(res['wall_s']):.0f} s", flush=True)
        if res["status"] == "added":
            added += 1
            walls += float(res["wall_s"])
    what = "; ".join(x.describe() for x in (relax, robust) if x is not None)
    return [f"physical validity ({what}): added to {added} run(s) in {walls:.0f} s, the others had it"]


def list_tables() -> list[tuple[str, str, float]]:
    """(id, description, estimated seconds at the spec's defaults on 2 CPU cores) of every table spec."""
    return [(s.id, s.title + (f" [{s.command}]" if s.command else ""), estimate_seconds(s)) for s in SPECS]


# -- command line ----------------------------------------------------------------------------------------------
def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``reproduce`` subcommand to ``smoacs-bench``'s subparsers."""
    p = subparsers.add_parser(
        "reproduce",
        help="run a paper table's experiments (what is missing) and render it beside the paper's numbers",
    )
    p.add_argument(
        "table", nargs="?", help="table id: " + ", ".join(s.id for s in SPECS) + " (--list: rows, sizes, time)"
    )
    p.add_argument("--list", action="store_true", help="list the tables with their estimated time and exit")
    p.add_argument("--samples", help="samples per run, or per method such as smoacs=256,tpe=64 "
                   "(default: the table's, 256 for most)")
    p.add_argument("--seeds", help="N for seeds 0..N-1, a comma list such as 0,1,2, or counts per method such "
                   "as smoacs=3,tpe=1 (default: the table's)")
    p.add_argument("--param", action="append", default=[], metavar="METHOD:KEY=VALUE",
                   help="a method option for this table's runs, e.g. smoacs:selection=best (repeatable); "
                   "runs with extra options get their own folders")
    p.add_argument("--methods", help="comma list of methods or row tags to run (default: the table's)")
    p.add_argument("--targets", help="comma list of target band gaps in eV, a subset of the table's")
    p.add_argument(
        "--budget", type=int, help="steps (SMOACS) / trials (TPE) of every method, for quick checks"
    )
    p.add_argument("--workers", type=int, help="run units in N local processes")
    p.add_argument("--scheduler", help="run units on a Dask cluster (scheduler address tcp://host:8786)")
    p.add_argument(
        "--out", default="reproduce", help="root folder: runs/ and one folder per table (default ./reproduce)"
    )
    p.add_argument("--no-crossjudge", action="store_true", help="skip the independent formation-energy judge")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars (status lines still print)")
    from .physical import add_physical_args

    add_physical_args(p)
    p.set_defaults(func=cmd_reproduce)
    return p


def _per_method(text: str, flag: str) -> dict[str, int]:
    out = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        try:
            out[name.strip()] = int(value)
        except ValueError:
            raise ValueError(f"--{flag} expects METHOD=N pairs such as smoacs=256,tpe=64, got {text!r}") from None
        if out[name.strip()] < 1:
            raise ValueError(f"--{flag} must be >= 1, got {part!r}")
    return out


def _samples_arg(text: str | None) -> int | dict[str, int] | None:
    if text is None:
        return None
    if "=" in text:
        return _per_method(text, "samples")
    try:
        n = int(text)
    except ValueError:
        raise ValueError(f"--samples expects N or METHOD=N pairs, got {text!r}") from None
    if n < 1:
        raise ValueError(f"--samples must be >= 1, got {n}")
    return n


def _params_arg(items: list[str]) -> dict[str, dict[str, Any]] | None:
    from .values import parse_value

    out: dict[str, dict[str, Any]] = {}
    for item in items:
        method, sep, rest = item.partition(":")
        key, eq, value = rest.partition("=")
        if not (sep and eq and method.strip() and key.strip()):
            raise ValueError(f"--param expects METHOD:KEY=VALUE, got {item!r}")
        out.setdefault(method.strip(), {})[key.strip()] = parse_value(value)
    return out or None


def _seeds_arg(text: str | None) -> int | list[int] | dict[str, int] | None:
    if text is None:
        return None
    text = text.strip()
    if "=" in text:
        return _per_method(text, "seeds")
    try:
        return [int(s) for s in text.split(",") if s.strip()] if "," in text else int(text)
    except ValueError:
        raise ValueError(f"--seeds expects N or a comma list of integers, got {text!r}") from None


def _targets_arg(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ValueError(f"--targets expects a comma list of numbers (eV), got {text!r}") from None


def _print_list() -> None:
    rows = list_tables()
    width = max(len(r[0]) for r in rows)
    print(f"{'table':<{width}}  {'estimate':>9}  description; rows (samples x seeds x targets); estimates: serial, "
          "2 CPU cores, the table's defaults")
    for spec, (tid, text, seconds) in zip(SPECS, rows, strict=True):
        print(f"{tid:<{width}}  {format_seconds(seconds):>9}  {text}")
        if spec.is_sampling:
            tags = ", ".join(dict.fromkeys(r.tag for r in spec.runs))
            print(f"{'':<{width}}  {'':>9}    rows: {tags}; {spec.samples} x {len(spec.seeds)} seed(s) x "
                  f"{len(spec.targets)} target(s) ({', '.join(f'{x:g}' for x in spec.targets)} eV)")


def cmd_reproduce(args: argparse.Namespace) -> int:
    """``smoacs-bench reproduce``: user errors are one line on stderr and exit status 1."""

    def fail(msg: str) -> int:
        print(f"smoacs-bench reproduce: {msg}", file=sys.stderr)
        return 1

    if args.list:
        _print_list()
        return 0
    if not args.table:
        return fail("name a table (e.g. table3) or use --list")
    for flag in ("workers", "budget"):
        value = getattr(args, flag, None)
        if value is not None and value < 1:
            return fail(f"--{flag} must be >= 1, got {value}")
    try:
        spec = get_spec(args.table)
        seeds = _seeds_arg(args.seeds)
        samples = _samples_arg(args.samples)
        options = _params_arg(args.param)
        targets = _targets_arg(args.targets)
        methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
        executor = get_executor(args.workers, args.scheduler)
        from .physical import physical_settings

        relax, robust = physical_settings(args)
        result = reproduce(
            spec.id,
            args.out,
            samples=samples,
            seeds=seeds,
            methods=methods,
            executor=executor,
            progress=not args.no_progress,
            targets=targets,
            crossjudge=not args.no_crossjudge,
            budget=args.budget,
            options=options,
            request="smoacs-bench " + " ".join(sys.argv[1:]),
            relax=relax,
            robust=robust,
            relax_workers=args.relax_workers,
        )
    except (ValueError, FileNotFoundError) as err:
        return fail(_one_line(err))
    for key, what in (("table_md", "table"), ("plot", "plot"), ("report", "report")):
        if key in result.files:
            print(f"{what}: {result.files[key]}")
    print(
        f"{len(result.ran)} ran, {len(result.reused)} reused, {len(result.skipped)} skipped, "
        f"{len(result.failed)} failed ({result.wall_s:.0f} s)"
    )
    if result.failed:
        return fail(f"{len(result.failed)} run(s) failed; see {result.files['report']}")
    return 0
