"""Planning the runs of a paper table: which folders a table needs, which are done (reused), which to run,
which to skip (and why), and running one of them as a unit that reports instead of raising."""

from __future__ import annotations

import hashlib
import json
import time
import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .experiments import (
    MethodRun,
    TableSpec,
    resolve_seeds,
    resolve_targets,
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
def _same_value(default: Any, value: Any) -> bool:
    """Whether an option's value equals its default (1 == 1.0, but True is not 1)."""
    if isinstance(default, bool) or isinstance(value, bool):
        return type(default) is type(value) and default == value
    try:
        return bool(default == value)
    except Exception:  # noqa: BLE001 - incomparable values are different
        return False


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
            # an option set to its default changes nothing: same folder, same identity (e.g. a tuned default)
            user = {k: v for k, v in user.items() if not (k in known and _same_value(known[k], v))}
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


def fill_missing_notes(runs: Sequence[PlannedRun]) -> int:
    """Give finished runs stored without a caption note (``method_note`` in summary.csv, empty in runs made
    before their method wrote one) the note their method writes from the stored config; returns how many
    summaries were rewritten. Notes already stored are kept (some carry figures only ``propose`` knows)."""
    import pandas as pd

    from smoacs_bench.evaluation.io import write_csv
    from smoacs_bench.methods import get_method_class

    n = 0
    for r in runs:
        summary, cfg = r.folder / "summary.csv", r.folder / "config.json"
        if not (r.done and summary.is_file() and cfg.is_file()):
            continue
        try:
            df = pd.read_csv(summary)
            note = df.get("method_note", pd.Series([None])).iloc[0]
            if isinstance(note, str) and note.strip():
                continue
            stored = json.loads(cfg.read_text())
            m = get_method_class(r.row.method)(**stored["settings"]["method_config"])
            if hasattr(m, "_pool_info"):
                m._pool_info = stored.get("method_config_resolved", {}).get("pool_used") or {}
            text = m.row_note()
        except Exception:  # noqa: BLE001 - a note is a nicety: a run that cannot give one keeps none
            continue
        if text:
            df["method_note"] = text
            write_csv(df, summary)
            n += 1
    return n
