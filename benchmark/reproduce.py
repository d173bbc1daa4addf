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
import math
import sys
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .executor import Executor, InProcess, Unit, UnitFailed, get_executor
from .experiments import (
    JUDGE_LOAD_SECONDS,
    RELAX_PER_STRUCTURE,
    SPECS,
    STAGES_PER_RELAXED,
    TUNING_ID,
    TableSpec,
    estimate_seconds,
    format_seconds,
    get_spec,
    judge_seconds,
    resolve_targets,
    run_seconds,
)
from .planning import (  # noqa: F401 - re-exported: the planning API is reached through this module too
    FAILED,
    RAN,
    REUSED,
    SKIPPED,
    TO_RUN,
    PlannedRun,
    ReproduceResult,
    _one_line,
    _shown,
    _stored_settings,
    fill_missing_notes,
    plan,
    run_planned,
)
from .rendering import render, write_report  # noqa: F401


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
    stage_options: dict[str, Any] | None = None,
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
            r.row.method, r.task, r.n_samples, r.config.get("steps", r.config.get("trials")), crossjudge, r.config
        )
        + judge_seconds(r.task, r.n_samples, getattr(relax, "subset", None), relax is not None, robust is not None,
                        relax_workers)
        for r in todo
    ) + (JUDGE_LOAD_SECONDS if todo and relax is not None else 0.0)   # the judge's stages included
    if status:
        print(
            f"[reproduce] {spec.id}: {len(todo)} run(s) to do (about {format_seconds(estimate)} on 2 CPU cores), "
            f"{sum(r.status == REUSED for r in runs)} reused, {sum(r.status == SKIPPED for r in runs)} skipped; "
            f"executor {executor.describe()}",
            flush=True,
        )
    if todo:   # the judge's models missing: one message now, not one failure per run
        from .judge import load_judge

        try:
            load_judge()
        except FileNotFoundError as err:
            raise FileNotFoundError(f"the judge's predictors cannot be loaded, so no run can be judged: {err}") \
                from None
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
    notes += _add_physical(runs, relax, robust, relax_workers, progress, status, stage_options)
    fill_missing_notes(runs)
    with warnings.catch_warnings(record=True) as caught:   # third-party warnings go to a log, not the console
        warnings.simplefilter("always")
        files = render(spec, runs, out / spec.id, resolve_targets(spec, targets))
    if caught:
        from smoacs_bench.evaluation.io import atomic_write_text

        from .runner import _warnings_log

        files["warnings"] = out / spec.id / "warnings.log"
        atomic_write_text(files["warnings"], "rendering: " + _warnings_log(caught))
    if spec.id == TUNING_ID:
        from .tuning import write_choice

        files |= write_choice(runs, out / spec.id)
    result = ReproduceResult(
        spec.id, out, out / spec.id, runs, files, round(time.perf_counter() - t0, 1), estimate, notes
    )
    result.files["report"] = write_report(spec, result, request, executor.describe())
    return result


def _add_physical(runs: list[PlannedRun], relax: Any, robust: Any, workers: int, progress: bool,
                  status: bool = True, stage_options: dict[str, Any] | None = None) -> list[str]:
    """The judge's stages on every finished run (without relaxation or robustness, those that need neither: the
    gap cross-judge...); notes for the report."""
    from smoacs_bench.evaluation.relax import RelaxerUnavailable

    from .physical import add_physical, dft_current, dft_inputs_current, prefetch_dft

    per_run = dft_per_run(runs, int((stage_options or {}).get("dft_subset") or 0), (stage_options or {}).get("dft_rows"))
    options = {r.key: {**{k: v for k, v in (stage_options or {}).items() if k != "dft_rows"},
                       "dft_subset": per_run.get(r.key, 0)} for r in runs}

    def judge(r: PlannedRun, opts: dict[str, Any]) -> dict[str, Any]:
        try:
            return add_physical(r.folder, relax, robust, workers=workers, progress=progress, stage_options=opts)
        except RelaxerUnavailable as err:
            raise ValueError(str(err)) from None

    if per_run and int((stage_options or {}).get("dft_workers") or 1) > 1:
        place: dict[tuple, list[str]] = {}   # a row's runs at one target, in seed order
        for r in sorted(runs, key=lambda r: r.seed):
            place.setdefault((r.row.tag, r.task, r.target, r.margin), []).append(r.key)
        entries = []
        for r in runs:
            if r.done and r.key in per_run and not dft_current(r.folder, relax, robust, options[r.key]):
                if not dft_inputs_current(r.folder, relax, robust, options[r.key]):
                    # its relaxation columns are another render's (e.g. a smaller subset): judge its earlier
                    # stages first, so the checks are drawn where the dft stage will draw them
                    judge(r, {**options[r.key], "dft_subset": 0})
                group = place[(r.row.tag, r.task, r.target, r.margin)]
                entries.append((r.folder, per_run[r.key], group.index(r.key), len(group)))
        n = prefetch_dft(entries, stage_options or {}, progress)
        if n and status:
            print(f"[reproduce] {n} DFT calculation(s) computed for the runs' checks", flush=True)
    added, walls = 0, 0.0
    for r in runs:
        if not r.done:
            continue
        res = judge(r, options[r.key])
        if res["status"] == "added" and status:
            print(f"[reproduce] {r.key}: physical validity added in {float(res['wall_s']):.0f} s", flush=True)
        if res["status"] == "added":
            added += 1
            walls += float(res["wall_s"])
    what = "; ".join(x.describe() for x in (relax, robust) if x is not None) or "no relaxation, no robustness"
    return [f"judge stages ({what}): added to {added} run(s) in {walls:.0f} s, the others had them"]


def dft_per_run(runs: list[PlannedRun], k: int, rows: Sequence[str] | None = None) -> dict[str, int]:
    """``--dft-subset K`` of a table: K checks per (row, target, margin) pooled over the row's seeds, so
    ceil(K / seeds) per run (a one-seed row, such as a deterministic screening, gets all K); ``rows`` (methods or
    row tags, ``--dft-rows``) limits them to those rows."""
    if k <= 0:
        return {}
    if rows:
        runs = [r for r in runs if r.row.method in rows or (r.row.tag and r.row.tag in rows)]
    def group(r: PlannedRun) -> tuple:   # a table row is its tag (its label may be left to the method)
        return r.row.tag, r.task, r.target, r.margin

    seeds: dict[tuple, int] = {}
    for r in runs:
        seeds[group(r)] = seeds.get(group(r), 0) + 1
    return {r.key: math.ceil(k / seeds[group(r)]) for r in runs}


def list_tables() -> list[tuple[str, str, float]]:
    """(id, description, estimated seconds at the spec's defaults on 2 CPU cores) of every table spec,
    the tuning protocol last."""
    specs = [*SPECS, get_spec(TUNING_ID)]
    return [(s.id, s.title + (f" [{s.command}]" if s.command else ""), estimate_seconds(s)) for s in specs]


# -- command line ----------------------------------------------------------------------------------------------
def add_parser(subparsers: Any, **kwargs: Any) -> argparse.ArgumentParser:
    """Add the ``reproduce`` subcommand to ``smoacs-bench``'s subparsers."""
    p = subparsers.add_parser("reproduce", **kwargs)
    p.add_argument(
        "table", nargs="?", help="table id: " + ", ".join(s.id for s in SPECS) + f", or {TUNING_ID} (the tuning protocol; "
        "--list: rows, sizes, time)"
    )
    p.add_argument("--list", action="store_true", help="list the tables with their estimated time and exit")
    p.add_argument("--samples", help="samples per run, or per method such as smoacs=256,tpe=64 "
                   "(default: the table's, 256 for most)")
    p.add_argument("--seeds", help="N for seeds 0..N-1, a comma list such as 0,1,2, or counts per method such "
                   "as smoacs=3,tpe=1 (default: the table's)")
    p.add_argument("--param", action="append", default=[], metavar="METHOD:KEY=VALUE",
                   help="a method option for this table's runs, e.g. smoacs:selection=best (repeatable); "
                   "runs with extra options get their own folders")
    p.add_argument("--tuned", metavar="FILE", help="the tuning protocol's chosen.json (or its folder): each tuned "
                   "row runs with its chosen settings (--param still overrides)")
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
    from .options import add_physical_args

    add_physical_args(p, table=True)
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
          "2 CPU cores, the table's defaults; the judge's relaxation and later stages come on top: about "
          f"{RELAX_PER_STRUCTURE[1] + STAGES_PER_RELAXED[1]:g} s per relaxed 5-site proposal, "
          "see --relax-subset; reproduce's own estimate includes them")
    for spec, (tid, text, seconds) in zip([*SPECS, get_spec(TUNING_ID)], rows, strict=True):
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
        if args.tuned:
            from .tuning import load_choice, merge_tuned

            options = merge_tuned(options, load_choice(args.tuned), list(spec.runs))
        targets = _targets_arg(args.targets)
        methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
        executor = get_executor(args.workers, args.scheduler)
        from .options import physical_settings
        from .options import stage_options as stage_options_of

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
            stage_options=stage_options_of(args),
        )
    except (ValueError, FileNotFoundError) as err:
        return fail(_one_line(err))
    except SystemExit as err:   # the judge options' one-line messages (benchmark.options)
        if not isinstance(err.code, str):
            raise
        return fail(err.code.removeprefix("smoacs-bench: "))
    for key, what in (("table_md", "table"), ("plot", "plot"), ("report", "report"), ("chosen_md", "chosen")):
        if key in result.files:
            print(f"{what}: {result.files[key]}")
    if "verdict" in result.files:   # the leader at each step of the funnel, per target (* = significant lead)
        import pandas as pd

        from smoacs_bench.evaluation.verdict import verdict_lines

        table_dir = result.files["verdict"].parent
        paired = pd.read_csv(result.files["paired"]) if "paired" in result.files else None
        print(f"verdict ({result.files['verdict']}):")
        for line in verdict_lines(pd.read_csv(table_dir / "table.csv"), paired):
            print(f"  {line}")
    print(
        f"{len(result.ran)} ran, {len(result.reused)} reused, {len(result.skipped)} skipped, "
        f"{len(result.failed)} failed ({result.wall_s:.0f} s)"
    )
    if result.failed:
        return fail(f"{len(result.failed)} run(s) failed; see {result.files['report']}")
    return 0
