"""The shared judge's stages on a finished run folder: robustness, relaxation and the checks after it.

``add_physical(folder, relax, robust)`` reads a run folder (``config.json``, ``samples.csv``, ``structures/``)
and runs every registered judge stage (:mod:`smoacs_bench.evaluation.stages`) on its proposals, without re-running
the method: robustness, the relaxation (resumable in ``relax_state/``; relaxed cells in ``structures_relaxed/``),
then E_hull, novelty, the second potential, the distortion check, S.U.N., the gap cross-judge and DFT. It writes
samples.csv once with every stage's columns, summary.csv with their rates, and ``config.json`` a ``physical``
entry keyed by every stage's settings: a second call with the same settings does no work, and a stage whose
settings did not change keeps its columns (``--force`` recomputes every stage; relaxations come from
``relax_state/`` and the stages' caches, never relaxed again for nothing).
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from pymatgen.core import Structure

from smoacs_bench.data.task import get_task
from smoacs_bench.evaluation.io import atomic_write_text, read_structure, write_csv
from smoacs_bench.evaluation.packing import pack
from smoacs_bench.evaluation.relax import RelaxSettings
from smoacs_bench.evaluation.relax_runs import SHARED_CACHE
from smoacs_bench.evaluation.robustness import RobustSettings
from smoacs_bench.evaluation.stages import (
    RELAXED_COUNT,
    StageInput,
    identity,
    notes_of,
    run_stages,
    summarise,
)
from smoacs_bench.evaluation.stages.relaxation import RELAXED_DIR

PredictFn = Callable[[Sequence[Structure]], tuple[Sequence[float], Sequence[float]]]
STAGE_CACHE = ".stage_cache"   # in a task's runs folder: the judge stages' records by crystal and settings


def _judge_predict(structures: Sequence[Structure]) -> tuple[list[float], list[float]]:
    from .judge import default_predict

    return default_predict(structures) if structures else ([], [])


def judge_options(relax: RelaxSettings | None, robust: RobustSettings | None,
                  stage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The stages' run options: the relaxation and robustness settings (None: skipped) and the rest."""
    return {**(stage_options or {}), "relax": relax, "robust": robust}


def physical_key(relax: RelaxSettings | None, robust: RobustSettings | None,
                 stage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a run folder's judge columns were computed with: every stage's identity."""
    return {"stages": identity(judge_options(relax, robust, stage_options))}


def stage_columns(samples: pd.DataFrame, structures: list[Structure | None], criteria: Any,
                  options: dict[str, Any], folder: Path, cache_dir: Path | None = None, progress: bool = False,
                  predict: PredictFn | None = None, previous: dict[str, Any] | None = None,
                  previous_notes: dict[str, str] | None = None, relaxed_dir: Path | None = None,
                  reuse: bool = True) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``samples`` with every judge stage's columns (replacing older ones) and the stages' summary entries (rates,
    pooled counts of this run, the phrase each ran with or why not). ``folder``: where the relaxation keeps its
    state; the relaxed cells go to ``relaxed_dir`` (default ``folder/structures_relaxed``)."""
    relax = options.get("relax")
    batch = StageInput(samples, structures, criteria, relax.relaxer if relax is not None else None,
                       dict(options, progress=progress), predict or _judge_predict,
                       Path(relaxed_dir) if relaxed_dir is not None else Path(folder) / RELAXED_DIR,
                       cache_dir, Path(folder))
    added, notes = run_stages(batch, progress=progress, previous=previous, previous_notes=previous_notes,
                              reuse=reuse)
    out = pd.concat([samples.drop(columns=[c for c in added.columns if c in samples]), added], axis=1)
    return out, summarise(out, notes)


def add_physical(folder: str | Path, relax_settings: RelaxSettings | None = None,
                 robust_settings: RobustSettings | None = None, predict: PredictFn | None = None,
                 workers: int = 1, progress: bool = True, force: bool = False,
                 stage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the judge's stages on a finished run folder (see the module docstring); returns
    ``{"status": "added"|"unchanged", "wall_s": ..., **rates}``. ``None`` settings skip that stage."""
    folder = Path(folder)
    cfg_path, samples_path, summary_path = folder / "config.json", folder / "samples.csv", folder / "summary.csv"
    for p in (cfg_path, samples_path, summary_path):
        if not p.is_file():
            raise FileNotFoundError(f"{folder}: no {p.name} (not a finished run folder)")
    config = json.loads(cfg_path.read_text())
    key = physical_key(relax_settings, robust_settings, stage_options)
    stored = config.get("physical", {}).get("key") or {}
    if not force and stored == key:
        return {"status": "unchanged", "wall_s": 0.0}
    settings = config["settings"]
    criteria = get_task(settings["task"]).criteria(float(settings["target_bg"]), float(settings["margin"]))
    samples = pd.read_csv(samples_path)
    summary = pd.read_csv(summary_path)
    structures: list[Structure | None] = []
    for f in samples["file"]:
        s, _ = read_structure(folder / str(f)) if isinstance(f, str) else (None, "")
        structures.append(s)
    stats: dict[str, float] = {}
    options = dict(judge_options(relax_settings, robust_settings, stage_options), workers=workers, stats=stats,
                   relax_cache=folder.parent / SHARED_CACHE)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out, rates = stage_columns(samples, structures, criteria, options, folder, folder.parent / STAGE_CACHE,
                                   progress, predict, stored.get("stages"), notes_of(summary.iloc[0]),
                                   reuse=not force)
    wall = time.perf_counter() - t0
    write_csv(out, samples_path)
    previous = config.get("physical", {})
    per_structure = _relax_seconds(stats, previous, summary.iloc[0].get(RELAXED_COUNT))
    for k, v in rates.items():
        summary[k] = v
    write_csv(summary.drop(columns=[c for c in ("relax_note", "robust_note") if c in summary]), summary_path)
    relaxed_now = bool(stats.get("structures"))
    config["physical"] = {"key": key, "relax": relax_settings.describe() if relax_settings else "not run",
                          "robust": robust_settings.describe() if robust_settings else "not run",
                          "wall_time_s": round(wall, 1) if relaxed_now or "wall_time_s" not in previous
                          else previous.get("wall_time_s"),
                          "relax_s_per_structure": per_structure,
                          "robust_wall_time_s": round(stats["robust_seconds"], 1) if "robust_seconds" in stats
                          else previous.get("robust_wall_time_s"),
                          "workers": workers, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    atomic_write_text(cfg_path, json.dumps(config, indent=2, default=str))
    pack(folder)   # the relaxed cells and the relaxation's state, each in one archive
    return {"status": "added", "wall_s": round(wall, 1), **rates}


def _relax_seconds(stats: dict[str, float], previous: dict[str, Any], previous_relaxed: Any) -> float | None:
    """Wall seconds per relaxed structure: of this call's relaxations, else (all taken from the state) of the
    call that relaxed them (stored, or its stage wall time over its relaxed count)."""
    if stats.get("structures"):
        return round(stats["seconds"] / stats["structures"], 3)
    if previous.get("relax_s_per_structure") is not None:
        return previous["relax_s_per_structure"]
    try:
        n = int(previous_relaxed)
    except (TypeError, ValueError):
        return None
    wall = previous.get("wall_time_s")   # that call's stage: its robust copies, then its relaxations
    if wall is None or n <= 0:
        return None
    return round((float(wall) - float(previous.get("robust_wall_time_s") or 0.0)) / n, 3)


def relax_identity(stage: dict[str, Any]) -> dict[str, Any]:
    """The relaxation settings a run folder's judge columns were computed with (config.json's ``physical``)."""
    from smoacs_bench.evaluation.stages.relaxation import RelaxationStage

    key = stage.get("key") or {}
    return ((key.get("stages") or {}).get(RelaxationStage.name) or {}).get("relax") or {}


def relax_cost(stage: dict[str, Any], n_relaxed: Any) -> float | None:
    """Wall seconds a run's relaxations took (``stage``: config.json's ``physical``), whichever call made them."""
    rate = stage.get("relax_s_per_structure")
    try:
        n = float(n_relaxed)
    except (TypeError, ValueError):
        n = math.nan
    if rate is not None and math.isfinite(n):
        return float(rate) * n
    wall = stage.get("wall_time_s")   # stored before rates were kept: that call's stage less its robust copies
    return None if wall is None else float(wall) - float(stage.get("robust_wall_time_s") or 0.0)


def dft_inputs_current(folder: str | Path, relax: RelaxSettings | None, robust: RobustSettings | None,
                       stage_options: dict[str, Any] | None = None) -> bool:
    """Whether ``folder``'s samples.csv holds the columns the dft stage draws its checks from (those of the stages
    it requires: the relaxation) as these settings compute them. Another table's render (a smaller relaxation
    subset) may have left them otherwise; a draw from them is then not the stage's, and computes cells no table
    uses."""
    from smoacs_bench.evaluation.stages.dft import DFTStage

    return _stages_current(folder, relax, robust, stage_options, DFTStage.requires)


def dft_current(folder: str | Path, relax: RelaxSettings | None, robust: RobustSettings | None,
                stage_options: dict[str, Any] | None = None) -> bool:
    """Whether ``folder``'s DFT columns are already what these settings compute (the dft stage and the stages it
    requires have their stored identities, and it ran): the stage keeps them, so its checks need no calculation
    even where the calculation cache (never committed: a fresh clone has none) lacks them."""
    from smoacs_bench.evaluation.stages.dft import DFTStage

    try:
        summary = pd.read_csv(Path(folder) / "summary.csv", nrows=1)
    except (OSError, ValueError):
        return False
    note = notes_of(summary.iloc[0]).get(DFTStage.name, "") if len(summary) else ""
    return (bool(note) and not note.startswith("not run")
            and _stages_current(folder, relax, robust, stage_options, (*DFTStage.requires, DFTStage.name)))


def _stages_current(folder: str | Path, relax: RelaxSettings | None, robust: RobustSettings | None,
                    stage_options: dict[str, Any] | None, names: Sequence[str]) -> bool:
    """Whether ``folder``'s config.json stores, for each of the stages ``names``, the identity these settings give."""
    cfg = Path(folder) / "config.json"
    try:
        stored = (json.loads(cfg.read_text()).get("physical", {}).get("key") or {}).get("stages") or {}
    except (OSError, ValueError):
        return False
    current = json.loads(json.dumps(physical_key(relax, robust, stage_options)["stages"], default=str))
    return all(name in stored and stored[name] == current[name] for name in names if name in current)


def prefetch_dft(folders: Sequence[tuple[str | Path, int] | tuple[str | Path, int, int, int]],
                 stage_options: dict[str, Any], progress: bool = True) -> int:
    """Compute, ``dft_workers`` processes at once, the DFT checks the dft stage will draw (k of them) in every
    (run folder, k) that already has its relaxation as the stage will see it (:func:`dft_inputs_current`), so a
    table's calculations share one pool instead of a few per run; each lands in the task's stage cache and in its
    run folder's ``dft_state.zip`` as it finishes, where the stage finds it (a stopped batch keeps what it computed,
    on any machine the folders are committed to). An entry may add (the run's index among its row's seeds, the
    row's number of seeds): draws are then computed in the order of their place in the row's
    pooled checks, so a batch stopped early has checked every (row, target) alike. Returns how many were
    computed."""
    from smoacs_bench.evaluation.dft import compute_gaps, get_engine
    from smoacs_bench.evaluation.packing import read_text
    from smoacs_bench.evaluation.stages import _cache
    from smoacs_bench.evaluation.stages.base import RELAXED_ROWS
    from smoacs_bench.evaluation.stages.dft import (
        ON_PROPOSED,
        STATE_DIR,
        cached,
        cell_of,
        choose,
        dft_settings,
        state_of,
        usable_rows,
    )

    settings = dft_settings(stage_options)
    if get_engine(settings.engine).unavailable():
        return 0
    engine = get_engine(settings.engine)
    todo: dict[str, tuple[int, Structure, Path]] = {}   # key -> (place among the row's draws, cell, cache)
    for entry in folders:
        folder, k = Path(entry[0]), int(entry[1])
        seed_index, n_seeds = (int(entry[2]), int(entry[3])) if len(entry) > 2 else (0, 1)
        if k <= 0 or not (folder / "samples.csv").is_file():
            continue
        samples = pd.read_csv(folder / "samples.csv", low_memory=False)
        if RELAXED_ROWS not in samples:
            continue
        cache, state = folder.parent / STAGE_CACHE / "dft", state_of(folder)
        for rank, (i, pool) in enumerate(choose(samples, k, usable_rows(samples, engine))):
            if cell_of(pool) == ON_PROPOSED:
                f = samples["file"].iloc[i]
                cell = read_structure(folder / str(f))[0] if isinstance(f, str) else None
            else:
                text = read_text(folder / RELAXED_DIR / f"{i}.cif")
                cell = None if text is None else Structure.from_str(text, fmt="cif")
            if cell is None:
                continue
            key = _cache.digest(cell, settings.for_cell(cell).identity())
            if (cached(cache, key, cell, settings, engine) is None and cached(state, key, cell, settings, engine)
                    is None and key not in todo):
                todo[key] = (rank * n_seeds + seed_index, cell, folder)
    if not todo:
        return 0
    # every row's first pooled draw, then its second...: a batch stopped early has checked every row alike
    jobs = sorted(todo.items(), key=lambda kv: kv[1][0])

    def store(j: int, res) -> None:   # in the task's cache and, packed, in the run folder (committed with it)
        key, (_, _, folder) = jobs[j]
        _cache.put(folder.parent / STAGE_CACHE / "dft", key, res.record())
        _cache.put(state_of(folder), key, res.record())
        pack(folder, (STATE_DIR,))

    compute_gaps([cell for _, (_, cell, _) in jobs], settings, workers=int(stage_options.get("dft_workers") or 1),
                 progress=progress, on_result=store)
    return len(jobs)
