"""Run one experiment: a method on a task, judged by the shared evaluator, written to a folder.

Output folder: ``config.json`` (settings, versions, wall time), ``samples.csv`` (one evaluation row
per sample), ``summary.csv`` (rates of every criterion and diversity), ``structures.zip`` (the proposals as
``<sample>.cif``; :mod:`~smoacs_bench.evaluation.packing`; ``smoacs-bench export`` writes them out),
``history.npz`` and ``history.png`` when the method records an optimisation history, and ``run.log`` (the
warnings raised while proposing and judging, counted, instead of on the console).
Files are written atomically and ``config.json`` last, so a folder with a config is complete; a
second call with the same settings returns the stored summary instead of recomputing.
"""

from __future__ import annotations

import json
import platform
import shutil
import sys
import time
import warnings
from collections import Counter
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from smoacs_bench.data.datasets import novelty_reference
from smoacs_bench.data.task import get_task
from smoacs_bench.evaluation.criteria import evaluate
from smoacs_bench.evaluation.io import atomic_write_text, write_csv
from smoacs_bench.evaluation.packing import PACKED_DIRS, pack, remove
from smoacs_bench.evaluation.plots import plot_history
from smoacs_bench.evaluation.summary import summarize
from smoacs_bench.methods import Method, get_method_class

from .judge import OWN_TOLERANCE, crossjudge_energies, disagreements, judge_predictors, judge_structures


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("torch", "matgl", "pymatgen", "optuna", "smoacs-bench"):
        try:
            out[pkg] = version(pkg)
        except Exception:  # noqa: BLE001
            out[pkg] = "not installed"
    return out


def _warnings_log(caught: list) -> str:
    """Distinct warnings of a run with their counts, most frequent first."""
    counts = Counter(f"{w.category.__name__}: {str(w.message).strip()} ({Path(w.filename).name}:{w.lineno})"
                     for w in caught)
    lines = [f"{n:6d} x {text}" for text, n in counts.most_common()]
    return f"{len(caught)} warnings, {len(counts)} distinct\n" + "\n".join(lines) + "\n"


def method_options(cls: type[Method], config: dict[str, Any]) -> dict[str, Any]:
    """``config`` checked against the options ``cls`` declares; an unknown key raises ValueError naming them.
    A method without ``config_class`` accepts any keys."""
    known = cls.options()
    if cls.config_class is not None:
        unknown = sorted(set(config) - set(known))
        if unknown:
            raise ValueError(f"{cls.name} has no option {', '.join(unknown)}; its options: {', '.join(known)}")
        cls.check_option_types(config)
    return dict(config)


def run_identity(cls: type[Method], method_config: dict[str, Any]) -> dict[str, Any]:
    """The options that define a run's result: without the method's ``result_neutral`` options, without
    its resumable-state location (``storage``: where, not what) and without options at their declared
    default, so that ``trials=200`` given explicitly is the same run as the default 200."""
    defaults = cls.options()
    return {k: v for k, v in method_config.items()
            if k not in cls.result_neutral and k != "storage" and not (k in defaults and defaults[k] == v)}


def _settings(method: str, task: str, target_bg: float, margin: float, n_samples: int, seed: int,
              method_config: dict[str, Any], cls: type[Method] | None = None) -> dict[str, Any]:
    """A run's identity: what a stored run must match to be reused (``cls``: normalise ``method_config``)."""
    out = {"method": method, "task": task, "target_bg": target_bg, "margin": margin,
           "n_samples": n_samples, "seed": seed}
    if cls is not None:
        method_config = run_identity(cls, method_config)
        if cls.revision:
            out["revision"] = cls.revision
    return out | {"method_config": method_config}


def same_run(stored: dict[str, Any] | None, expected: dict[str, Any], cls: type[Method]) -> bool:
    """Whether stored settings (``config.json`` "settings", possibly written before :func:`run_identity`
    existed) describe the run ``expected``."""
    if not isinstance(stored, dict) or not isinstance(stored.get("method_config"), dict):
        return False
    return {**stored, "method_config": run_identity(cls, stored["method_config"])} == expected


def run_experiment(method: str, task: str, target_bg: float, margin: float, n_samples: int, seed: int,
                   out_dir: str | Path, method_config: dict[str, Any] | None = None,
                   label: str | None = None, force: bool = False, crossjudge: bool = True,
                   relax: Any = None, robust: Any = None, relax_workers: int = 1,
                   stage_options: dict[str, Any] | None = None,
                   progress: bool = False) -> dict[str, Any]:
    """Run, evaluate and write everything; returns the summary dict.

    Every proposal is judged by the shared evaluator on the judge's predictions from its structure (the
    default MEGNet pair, :func:`.judge.judge_structures`); a method's own numbers go to ``own_*`` columns, and
    any further than 0.05 eV (eV/atom) from the judge's are listed in run.log. With ``crossjudge`` the
    independent formation-energy judge
    (CDVAE's DimeNet++ on MP-20, ``$SMOACS_MODEL_DIR/cdvae-mp20``); without it those columns are NaN.

    ``method`` is a registered name or ``package.module:Class``; ``method_config`` holds its options
    (checked against what it declares). A method with a ``state_dir`` gets ``storage`` inside ``out_dir``
    unless given; ``force`` deletes that state and runs again.

    ``relax`` (:class:`~smoacs_bench.evaluation.relax.RelaxSettings`) and ``robust``
    (:class:`~smoacs_bench.evaluation.robustness.RobustSettings`) add the physical-validity columns
    (:func:`.physical.add_physical`), also to a stored run that lacks them.
    """
    out = Path(out_dir)
    cls = get_method_class(method)
    method_config = method_options(cls, method_config or {})
    if cls.state_dir:
        method_config.setdefault("storage", str(out / cls.state_dir))
        if force and Path(method_config["storage"]).is_dir():
            shutil.rmtree(method_config["storage"])
    settings = _settings(method, task, target_bg, margin, n_samples, seed, method_config, cls)
    cfg_path = out / "config.json"
    if cfg_path.exists() and (out / "summary.csv").exists() and not force:
        stored = json.loads(cfg_path.read_text())
        if same_run(stored.get("settings"), settings, cls):
            print(f"{out}: already complete with these settings; not re-running (use --force)")
            _physical(out, relax, robust, relax_workers, progress, stage_options=stage_options)
            return pd.read_csv(out / "summary.csv").iloc[0].to_dict()
    the_task = get_task(task, target_bg, margin)
    m = cls(**method_config)
    for stale in PACKED_DIRS:   # of an earlier run in this folder, loose or packed
        remove(out / stale)
    storage = method_config.get("storage") if cls.state_dir else None
    had_state = bool(storage) and Path(storage).is_dir() and any(Path(storage).iterdir())
    with warnings.catch_warnings(record=True) as caught:   # pymatgen & co. go to run.log, not the console
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        proposals = m.propose(the_task, n_samples, seed)
        # a method that resumed a killed run (SMOACS's checkpoints) reports the time spent before the resume
        earlier = float(getattr(m, "seconds_before_resume", 0.0) or 0.0)
        wall = time.perf_counter() - t0 + earlier

        structures = [p.structure for p in proposals]
        # the judge predicts every proposal from its structure; the method's own numbers are kept aside
        bgs, efs = judge_structures(structures)
        cross, cross_note = crossjudge_energies(structures) if crossjudge else (None, "not run (--no-crossjudge)")
        rows = evaluate(structures, bgs, efs, the_task.criteria(),
                        names=[f"structures/{i}.cif" for i in range(len(proposals))],
                        reasons=[p.meta.get("reason", "") for p in proposals], ef_crossjudge=cross)
    rows.insert(0, "sample", np.arange(len(proposals)))
    rows.insert(1, "source", [str(p.meta.get("source", "")) for p in proposals])
    for key in ("lineage", "parents"):   # copy lineages (SMOACS): the start a sample descends from, its copies
        if any(key in p.meta for p in proposals):
            rows.insert(2 if key == "lineage" else 3, key, [p.meta.get(key, "") for p in proposals])
    own = {k: [p.meta.get("own_predictions", {}).get(k, np.nan) for p in proposals]
           for k in sorted({k for p in proposals for k in p.meta.get("own_predictions", {})})}
    for k, values in (("band_gap", [p.band_gap for p in proposals]),
                      ("formation_energy", [p.formation_energy for p in proposals])):
        if k not in own and any(v is not None for v in values):
            own[k] = [np.nan if v is None else float(v) for v in values]
    for k, values in own.items():  # the method's own view (its predictors, FTCP's branch); never judged on
        rows[f"own_{k}"] = values
    mismatched = (disagreements([p.band_gap for p in proposals], bgs, "band gap", "eV")
                  + disagreements([p.formation_energy for p in proposals], efs, "formation energy", "eV/atom"))
    (out / "structures").mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(proposals):
        if p.structure is not None:
            atomic_write_text(out / "structures" / f"{i}.cif", p.structure.to(fmt="cif"))
    write_csv(rows, out / "samples.csv")
    log = _warnings_log(caught)
    if mismatched:
        log += (f"{len(mismatched)} reported prediction(s) differ from the judge's by more than {OWN_TOLERANCE} "
                f"(judged on the judge's; own values in own_* columns):\n" + "\n".join(mismatched) + "\n")
        print(f"{out}: {len(mismatched)} of the method's own predictions disagree with the judge's; "
              f"see run.log", file=sys.stderr)
    name = label or m.label
    with warnings.catch_warnings(record=True) as later:   # formulas of exotic elements warn (pymatgen): run.log too
        warnings.simplefilter("always")
        reference, reference_label = novelty_reference()
        summary = summarize(rows, name, task, the_task.criteria(), reference=reference or None,
                            novelty_reference=reference_label)
    if later:
        log += "while summarising: " + _warnings_log(later)
    atomic_write_text(out / "run.log", log)
    resolved = m.config()
    summary.update(seed=seed, selection=resolved.get("selection", "final"), neutrality=the_task.neutrality,
                   predictors=",".join(m.predictor_names()), judge=",".join(judge_predictors()),
                   own_disagreements=len(mismatched), crossjudge=cross_note,
                   method_note=m.row_note())
    summary["wall_time_s"] = round(wall, 1)
    write_csv(pd.DataFrame([summary]), out / "summary.csv")

    history = m.artifacts().get("history")
    if history:
        # float16 is ample for a history plot and keeps the file small
        np.savez_compressed(out / "history.npz", **{k: np.asarray(v, dtype=np.float16) for k, v in history.items()})
        plot_history(history, the_task.criteria(), out / "history.png", xlabel=m.history_unit,
                     title=f"{name} on {task}, target {target_bg} ± {margin} eV, {n_samples} samples")
    config = {"settings": settings, "method_config_resolved": resolved, "judge": list(judge_predictors()),
              "own_disagreements": len(mismatched), "crossjudge": cross_note,
              "versions": _versions(),
              "wall_time_s": round(wall, 1), "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if earlier:
        config["resumed"] = f"resumed from a checkpoint; {earlier:.1f} s of wall_time_s were spent before the resume"
    elif had_state and not hasattr(m, "seconds_before_resume"):   # e.g. TPE's journals: the time before is unknown
        config["resumed"] = (f"resumed from {Path(storage).name}/; wall_time_s counts only the resumed part "
                             "(the time before the resume is not recorded)")
    atomic_write_text(cfg_path, json.dumps(config, indent=2, default=str))
    pack(out)   # one archive per folder of small files: structures/ -> structures.zip
    if _physical(out, relax, robust, relax_workers, progress, force=force, stage_options=stage_options):
        return pd.read_csv(out / "summary.csv").iloc[0].to_dict()
    return summary


def _physical(out: Path, relax: Any, robust: Any, workers: int, progress: bool, force: bool = False,
              stage_options: dict[str, Any] | None = None) -> bool:
    """Add the physical-validity columns when asked; whether anything was asked."""
    if relax is None and robust is None:
        return False
    from .physical import add_physical

    add_physical(out, relax, robust, workers=workers, progress=progress, force=force, stage_options=stage_options)
    return True
