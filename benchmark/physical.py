"""The physical-validity stage of the shared judge: robustness and relaxation columns for a run folder.

``add_physical(folder, relax, robust)`` reads a finished run folder (``config.json``, ``samples.csv``,
``structures/``) and adds, without re-running the method:

- robustness (:mod:`~smoacs_bench.evaluation.robustness`): ``robust_fraction``, ``success_robust``;
- relaxation (:mod:`~smoacs_bench.evaluation.relax`) of every proposal, or of a seeded subset: ``relaxed``
  (in the relaxed set), ``relax_converged``, ``relax_steps``, ``relax_energy_initial``/``_final``/``_drop``
  (eV/atom), ``relax_max_disp``/``relax_rms_disp`` (Å), ``relax_volume_change`` (%), ``relax_match``
  (StructureMatcher), ``relax_band_gap`` (eV) and ``relax_formation_energy`` (eV/atom) re-predicted by the
  judge on the relaxed cell, every criterion re-judged on it (``relaxed_<criterion>``) and ``success_relaxed``;
  ``relaxed_bg_wide`` (the relaxed gap within the wide window), ``stays`` and ``relax_reason``; the relaxed
  cells in ``structures_relaxed/<sample>.cif``.

``summary.csv`` gains their rates (relaxation rates over the relaxed set, ``n_relaxed``) and ``config.json`` a
``physical`` entry with the settings. Relaxation is resumable: each finished chunk of 8 structures is kept in
``relax_state/`` (the relaxation cache: ``--force`` re-derives every column from it without relaxing again).
The cache keeps every proposal relaxed with the same relaxer settings, whatever draw asked for it, so two
tables that relax different subsets of one run relax each proposal once. A second call with the same settings
does no work.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pymatgen.core import Structure

from smoacs_bench.data.task import Criteria, get_task
from smoacs_bench.evaluation.criteria import evaluate
from smoacs_bench.evaluation.io import atomic_write_text, read_structure, write_csv
from smoacs_bench.evaluation.relax import RELAXATION_FIELDS, RelaxOutcome, RelaxSettings, compare, relax
from smoacs_bench.evaluation.robustness import RobustSettings, perturbed_copies

CHUNK = 8    # structures relaxed in lockstep per chunk (fixed: results do not depend on --relax-workers)
STATE_DIR = "relax_state"
RELAXED_DIR = "structures_relaxed"
JUDGED = ("bg_ok", "ef_ok", "neutral", "min_dist_ok", "valid_structure", "tolerance_ok", "angles_ok",
          "coords_ok", "perovskite_ok")
PEROVSKITE_ONLY = ("tolerance_ok", "angles_ok", "coords_ok", "perovskite_ok")
ROBUST_COLUMNS = ("robust_fraction", "success_robust")
RELAX_COLUMNS = ("relaxed", "relax_converged", "relax_steps", "relax_energy_initial", "relax_energy_final",
                 "relax_energy_drop", "relax_max_disp", "relax_rms_disp", "relax_volume_change", "relax_match",
                 "relax_band_gap", "relax_formation_energy", *(f"relaxed_{k}" for k in JUDGED), "success_relaxed",
                 "relaxed_bg_wide", "stays", "relax_reason")
PHYSICAL_RATES = ("success_robust", "success_relaxed", "stays", "relaxed_bg_wide", "relax_converged",
                  "relaxed_perovskite_ok", "success_in_relaxed")

PredictFn = Callable[[Sequence[Structure]], tuple[Sequence[float], Sequence[float]]]


def _judge_predict(structures: Sequence[Structure]) -> tuple[list[float], list[float]]:
    from .judge import default_predict

    return default_predict(structures) if structures else ([], [])


def judged_rows(structures: Sequence[Structure | None], criteria: Criteria, predict: PredictFn) -> pd.DataFrame:
    """Evaluation rows of ``structures`` on the judge's own predictions (None rows: failures with a reason)."""
    ok = [i for i, s in enumerate(structures) if s is not None]
    bg, ef = [None] * len(structures), [None] * len(structures)
    if ok:
        pbg, pef = predict([structures[i] for i in ok])
        for i, b, e in zip(ok, pbg, pef, strict=True):
            bg[i] = float(b) if math.isfinite(b) else None
            ef[i] = float(e) if math.isfinite(e) else None
    return evaluate(list(structures), bg, ef, criteria)


# -- robustness ------------------------------------------------------------------------------------------------
def robustness_columns(samples: pd.DataFrame, structures: list[Structure | None], criteria: Criteria,
                       settings: RobustSettings, predict: PredictFn) -> pd.DataFrame:
    """``robust_fraction`` and ``success_robust`` for every row (perturbing own-judge successes only)."""
    success = samples["success"].fillna(False).astype(bool).to_numpy()
    todo = [i for i, s in enumerate(structures) if s is not None and success[i]]
    copies = [c for i in todo for c in perturbed_copies(structures[i], settings, i)]
    fraction = np.full(len(samples), np.nan)
    if copies:
        rows = judged_rows(copies, criteria, predict)
        ok = rows["success"].to_numpy(dtype=bool).reshape(len(todo), settings.copies)
        fraction[todo] = ok.mean(axis=1)
    robust = success & (np.nan_to_num(fraction, nan=0.0) >= settings.min_fraction - 1e-12)
    return pd.DataFrame({"robust_fraction": fraction, "success_robust": robust})


# -- relaxation ------------------------------------------------------------------------------------------------
def relaxed_indices(samples: pd.DataFrame, settings: RelaxSettings) -> list[int]:
    """The samples to relax: all, or a seeded draw of ``settings.subset`` without replacement (sorted)."""
    n = len(samples)
    if not settings.subset or settings.subset >= n:
        return list(range(n))
    rng = np.random.default_rng(settings.subset_seed)
    return sorted(int(i) for i in rng.choice(n, size=settings.subset, replace=False))


def _outcome_record(o: RelaxOutcome) -> dict[str, Any]:
    return {"converged": o.converged, "steps": o.steps, "energy_initial": o.energy_initial,
            "energy_final": o.energy_final, "reason": o.reason,
            "final": None if o.final is None else o.final.as_dict()}


def _relax_chunk(structures: list[dict | None], settings: dict[str, Any]) -> list[dict[str, Any]]:
    """Worker: relax one chunk (structures as dicts) and return serialisable outcomes."""
    import torch

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    objs = [None if s is None else Structure.from_dict(s) for s in structures]
    return [_outcome_record(o) for o in relax(objs, RelaxSettings(**settings))]


def _load_state(state: Path, key: dict[str, Any]) -> tuple[dict[int, list[dict[str, Any]]], bool]:
    """The records of every sample relaxed before with the same relaxer settings, by any draw (other settings:
    discarded), and whether the state's last draw was this one (``key["indices"]``)."""
    done: dict[int, list[dict[str, Any]]] = {}
    if not state.is_dir():
        return done, False
    meta = state / "settings.json"
    stored = json.loads(meta.read_text()) if meta.is_file() else {}
    relax_key = stored.get("relax") or {}
    if {k: relax_key.get(k) for k in RELAXATION_FIELDS} != key["relax"]:   # older states stored every setting
        shutil.rmtree(state)
        return done, False
    for f in sorted(state.glob("chunk_*.json")):
        try:
            for k, rec in json.loads(f.read_text()).items():
                done.setdefault(int(k), []).append(rec)
        except (json.JSONDecodeError, ValueError):
            f.unlink()
    return done, stored.get("indices") == key["indices"]


def _chunk_name(chunk: list[int]) -> str:
    """A chunk's file, named by its samples (chunks of different draws never overwrite each other)."""
    import hashlib

    return f"chunk_{chunk[0]:05d}_{hashlib.sha1(json.dumps(chunk).encode()).hexdigest()[:8]}.json"


SHARED_CACHE = ".relax_cache"   # in a task's runs folder: relaxation records by crystal and settings


def _digest(structure: Structure, relax_identity: Any) -> str:
    """A crystal (lattice, species, coordinates to 1e-8) and the relaxation settings, hashed."""
    import hashlib

    lat = np.round(structure.lattice.matrix, 8).tolist()
    sites = [(s.specie.symbol, np.round(s.frac_coords, 8).tolist()) for s in structure]
    text = json.dumps([lat, sites, relax_identity], sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()


def _shared_get(folder: Path, digest: str | None) -> dict[str, Any] | None:
    if not digest or not (folder / f"{digest}.json").is_file():
        return None
    try:
        return json.loads((folder / f"{digest}.json").read_text())
    except (OSError, ValueError):
        return None


def _shared_put(folder: Path, digest: str, record: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / f"{digest}.json", json.dumps(record))


def run_relaxations(structures: list[Structure | None], indices: list[int], settings: RelaxSettings, state: Path,
                    workers: int = 1, progress: bool = True, shared: Path | None = None,
                    stats: dict[str, float] | None = None) -> dict[int, dict[str, Any]]:
    """Relax ``structures[i]`` for i in ``indices`` in chunks of :data:`CHUNK`, ``workers`` processes at once,
    saving each finished chunk in ``state`` (resumable; a sample whose crystal was relaxed there before with the
    same settings, by this draw or another, is not relaxed again); returns sample -> outcome record. With
    ``shared`` (a folder), a crystal relaxed with the same settings before (in another run of the task, e.g. the
    reference row's crystals under each target) is taken from there instead of relaxed again. ``stats`` (a
    dict) gets ``relaxed`` (structures relaxed by this call) and ``seconds`` (their wall time)."""
    from tqdm import tqdm

    key = {"relax": settings.relaxation_identity(), "indices": indices}
    crystal = {i: None if structures[i] is None else _digest(structures[i], key["relax"]) for i in indices}
    stored, same_draw = _load_state(state, key)
    # a record is reused only for the crystal it relaxed; one written before digests were kept, only by the
    # draw that wrote it (then it gains its digest, for any later draw)
    done: dict[int, dict[str, Any]] = {}
    for i in indices:
        records = stored.get(i, [])
        match = [r for r in records if "crystal" in r and r["crystal"] == crystal[i]]
        match += [r for r in records if "crystal" not in r and same_draw]
        if match:
            done[i] = match[0]
    state.mkdir(parents=True, exist_ok=True)
    legacy = {i: dict(rec, crystal=crystal[i]) for i, rec in done.items() if "crystal" not in rec}
    if legacy:
        done.update(legacy)
        atomic_write_text(state / _chunk_name(sorted(legacy)), json.dumps({str(k): v for k, v in legacy.items()}))
    for f in state.glob("chunk_*.json"):   # an older chunk whose every sample now has a record with its digest
        try:
            records = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if records and all("crystal" not in r and int(k) in done for k, r in records.items()):
            f.unlink()
    atomic_write_text(state / "settings.json", json.dumps(key))
    digests = {i: d for i, d in crystal.items() if d is not None} if shared is not None else {}
    for i, rec in done.items():   # what this run relaxed before seeds the shared cache
        if digests.get(i) and _shared_get(shared, digests[i]) is None:
            _shared_put(shared, digests[i], rec)
    found = {i: _shared_get(shared, digests.get(i)) for i in indices if i not in done}
    found = {i: dict(rec, crystal=crystal[i]) for i, rec in found.items() if rec is not None}
    if found:   # crystals relaxed before with the same settings, in another run of the task
        done.update(found)
        atomic_write_text(state / _chunk_name(sorted(found)), json.dumps({str(k): v for k, v in found.items()}))
    rest = [i for i in indices if i not in done]
    todo = list(enumerate(rest[k:k + CHUNK] for k in range(0, len(rest), CHUNK)))
    bar = tqdm(total=len(indices), initial=len(indices) - len(rest), desc="relax",
               unit="structure", disable=not progress, file=sys.stderr)

    def save(n: int, chunk: list[int], records: list[dict[str, Any]]) -> None:
        part = {i: dict(rec, crystal=crystal[i]) for i, rec in zip(chunk, records, strict=True)}
        atomic_write_text(state / _chunk_name(chunk), json.dumps({str(k): v for k, v in part.items()}))
        done.update(part)
        for i, rec in part.items():
            if digests.get(i):
                _shared_put(shared, digests[i], rec)
        bar.update(len(chunk))

    payload = {n: [None if structures[i] is None else structures[i].as_dict() for i in c] for n, c in todo}
    cfg = asdict(settings)
    t0 = time.perf_counter()
    if workers <= 1 or len(todo) <= 1:
        for n, c in todo:
            save(n, c, _relax_chunk(payload[n], cfg))
    else:
        import multiprocessing as mp

        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
            futures = {pool.submit(_relax_chunk, payload[n], cfg): (n, c) for n, c in todo}
            from concurrent.futures import as_completed

            for fut in as_completed(futures):
                n, c = futures[fut]
                save(n, c, fut.result())
    bar.close()
    if stats is not None:
        stats.update(relaxed=len(rest), seconds=time.perf_counter() - t0)
    return {i: done[i] for i in indices}


def relaxation_columns(samples: pd.DataFrame, structures: list[Structure | None], criteria: Criteria,
                       settings: RelaxSettings, outcomes: dict[int, dict[str, Any]], predict: PredictFn,
                       cif_dir: Path) -> pd.DataFrame:
    """The relaxation columns (see the module docstring); writes ``cif_dir/<sample>.cif``."""
    n = len(samples)
    cols: dict[str, list] = {c: [np.nan] * n for c in RELAX_COLUMNS}
    cols["relaxed"] = [False] * n
    cols["relax_reason"] = [""] * n
    finals: dict[int, Structure] = {}
    out_dir = Path(cif_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for i, rec in outcomes.items():
        cols["relaxed"][i] = True
        cols["relax_converged"][i] = bool(rec["converged"])
        cols["relax_steps"][i] = int(rec["steps"])
        cols["relax_energy_initial"][i] = rec["energy_initial"]
        cols["relax_energy_final"][i] = rec["energy_final"]
        cols["relax_energy_drop"][i] = rec["energy_initial"] - rec["energy_final"]
        cols["relax_reason"][i] = rec["reason"]
        if rec["final"] is not None and structures[i] is not None:
            final = Structure.from_dict(rec["final"])
            finals[i] = final
            moved = compare(structures[i], final)
            cols["relax_max_disp"][i] = moved["max_disp"]
            cols["relax_rms_disp"][i] = moved["rms_disp"]
            cols["relax_volume_change"][i] = moved["volume_change"]
            cols["relax_match"][i] = moved["match"]
            atomic_write_text(out_dir / f"{i}.cif", final.to(fmt="cif"))
    order = sorted(outcomes)
    rows = judged_rows([finals.get(i) for i in order], criteria, predict)
    for i, (_, r) in zip(order, rows.iterrows(), strict=True):
        if i not in finals:
            for k in JUDGED:
                if criteria.is_perovskite or k not in PEROVSKITE_ONLY:
                    cols[f"relaxed_{k}"][i] = False
            cols["success_relaxed"][i] = cols["relaxed_bg_wide"][i] = cols["stays"][i] = False
            if cols["relax_match"][i] != cols["relax_match"][i]:
                cols["relax_match"][i] = False
            continue
        cols["relax_band_gap"][i] = r["band_gap"]
        cols["relax_formation_energy"][i] = r["formation_energy"]
        for k in JUDGED:
            v = r.get(k)
            if not criteria.is_perovskite and k in PEROVSKITE_ONLY:
                continue    # not judged on this task: stays empty
            cols[f"relaxed_{k}"][i] = bool(v) if v is not None and v == v else False
        cols["success_relaxed"][i] = bool(r["success"])
        gap = r["band_gap"]
        cols["relaxed_bg_wide"][i] = bool(gap is not None and gap == gap
                                          and abs(float(gap) - criteria.target_bg) <= settings.wide_margin + 1e-12)
        cols["stays"][i] = bool(cols["relax_converged"][i]
                                and cols["relax_energy_drop"][i] <= settings.stay_drop
                                and abs(cols["relax_volume_change"][i]) <= settings.stay_volume
                                and cols["relax_match"][i] is True)
        if not cols["relax_reason"][i] and r["reason"]:
            cols["relax_reason"][i] = f"relaxed: {r['reason']}"
    return pd.DataFrame(cols)


# -- summary ---------------------------------------------------------------------------------------------------
def physical_summary(samples: pd.DataFrame) -> dict[str, Any]:
    """Rates of the physical columns: robust over all samples, relaxation over the relaxed set."""
    out: dict[str, Any] = dict.fromkeys(PHYSICAL_RATES, float("nan"))
    out.update(n_relaxed=0, relax_drop_median=float("nan"), relax_volume_change_median=float("nan"))
    if "success_robust" in samples:
        out["success_robust"] = float(samples["success_robust"].fillna(False).astype(bool).mean())
    if "relaxed" in samples:
        rel = samples[samples["relaxed"].fillna(False).astype(bool)]
        out["n_relaxed"] = len(rel)
        if len(rel):
            for key in ("success_relaxed", "stays", "relaxed_bg_wide", "relax_converged", "relaxed_perovskite_ok"):
                if key in rel and rel[key].notna().any():
                    out[key] = float(rel[key].fillna(False).astype(bool).mean())
            out["success_in_relaxed"] = float(rel["success"].fillna(False).astype(bool).mean())
            out["relax_drop_median"] = float(pd.to_numeric(rel["relax_energy_drop"], errors="coerce").median())
            out["relax_volume_change_median"] = float(
                pd.to_numeric(rel["relax_volume_change"], errors="coerce").median())
    return out


# -- the stage -------------------------------------------------------------------------------------------------
def physical_key(relax: RelaxSettings | None, robust: RobustSettings | None,
                 stage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    from smoacs_bench.evaluation.stages import identity

    return {"relax": relax.identity() if relax else None, "robust": robust.identity() if robust else None,
            "stages": identity(stage_options)}


STAGE_CACHE = ".stage_cache"   # in a task's runs folder: the judge stages' records by crystal and settings


def stage_columns(samples: pd.DataFrame, structures: list[Structure | None], criteria: Criteria,
                  relaxer: str | None, relaxed_dir: Path | None = None, cache_dir: Path | None = None,
                  progress: bool = False, predict: PredictFn | None = None,
                  options: dict[str, Any] | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``samples`` with every registered judge stage's columns (replacing older ones) and the stages' summary
    entries (rates, pooled counts of this run, the phrase each ran with or why not)."""
    from smoacs_bench.evaluation.stages import StageInput, run_stages, summarise

    batch = StageInput(samples, structures, criteria, relaxer, dict(options or {}, progress=progress),
                       predict or _judge_predict, relaxed_dir, cache_dir)
    added, notes = run_stages(batch, progress=progress)
    out = pd.concat([samples.drop(columns=[c for c in added.columns if c in samples]), added], axis=1)
    return out, summarise(out, notes)


def add_physical(folder: str | Path, relax_settings: RelaxSettings | None = None,
                 robust_settings: RobustSettings | None = None, predict: PredictFn | None = None,
                 workers: int = 1, progress: bool = True, force: bool = False,
                 stage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Add robustness and relaxation columns to a finished run folder (see the module docstring); returns
    ``{"status": "added"|"unchanged", "wall_s": ..., **rates}``. ``None`` settings skip that part."""
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
    # a part whose settings did not change is kept as it is (a relaxation is never redone for nothing)
    keep_robust = not force and robust_settings is not None and stored.get("robust") == key["robust"] \
        and all(c in samples for c in ROBUST_COLUMNS)
    keep_relax = not force and relax_settings is not None and stored.get("relax") == key["relax"] \
        and all(c in samples for c in RELAX_COLUMNS)
    kept = ([*ROBUST_COLUMNS] if keep_robust else []) + ([*RELAX_COLUMNS] if keep_relax else [])
    old = samples[kept].copy()
    samples = samples.drop(columns=[c for c in (*ROBUST_COLUMNS, *RELAX_COLUMNS) if c in samples])
    structures: list[Structure | None] = []
    for f in samples["file"]:
        s, _ = read_structure(folder / str(f)) if isinstance(f, str) else (None, "")
        structures.append(s)
    predict = predict or _judge_predict
    relax_stats: dict[str, float] = {}
    t0 = time.perf_counter()
    parts = [samples]
    t_robust = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if keep_robust:
            parts.append(old[list(ROBUST_COLUMNS)])
        elif robust_settings is not None:
            parts.append(robustness_columns(samples, structures, criteria, robust_settings, predict))
            t_robust = time.perf_counter() - t0
        if keep_relax:
            parts.append(old[list(RELAX_COLUMNS)])
        elif relax_settings is not None:
            indices = relaxed_indices(samples, relax_settings)
            outcomes = run_relaxations(structures, indices, relax_settings, folder / STATE_DIR, workers, progress,
                                       shared=folder.parent / SHARED_CACHE, stats=relax_stats)
            parts.append(relaxation_columns(samples, structures, criteria, relax_settings, outcomes, predict,
                                             folder / RELAXED_DIR))
    out = pd.concat(parts, axis=1)
    relaxer = relax_settings.relaxer if relax_settings is not None else None
    out, stage_summary = stage_columns(out, structures, criteria, relaxer, folder / RELAXED_DIR,
                                       folder.parent / STAGE_CACHE, progress, predict, stage_options)
    wall = time.perf_counter() - t0
    write_csv(out, samples_path)
    rates = physical_summary(out) | stage_summary
    summary = pd.read_csv(summary_path)
    previous = config.get("physical", {})
    per_structure = _relax_seconds(relax_stats, previous, summary.iloc[0].get("n_relaxed"))
    for k, v in rates.items():
        summary[k] = v
    summary["relax_note"] = relax_settings.describe() if relax_settings else ""
    summary["robust_note"] = robust_settings.describe() if robust_settings else ""
    write_csv(summary, summary_path)
    config["physical"] = {"key": key, "relax": relax_settings.describe() if relax_settings else "not run",
                          "robust": robust_settings.describe() if robust_settings else "not run",
                          "wall_time_s": round(wall, 1) if not keep_relax else previous.get("wall_time_s"),
                          "relax_s_per_structure": per_structure,
                          "robust_wall_time_s": round(t_robust, 1) if not keep_robust
                          else previous.get("robust_wall_time_s"),
                          "workers": workers, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    atomic_write_text(cfg_path, json.dumps(config, indent=2, default=str))
    return {"status": "added", "wall_s": round(wall, 1), **rates}


def _relax_seconds(stats: dict[str, float], previous: dict[str, Any], previous_relaxed: Any) -> float | None:
    """Wall seconds per relaxed structure: of this call's relaxations, else (all taken from the state) of the
    call that relaxed them (stored, or its stage wall time over its relaxed count)."""
    if stats.get("relaxed"):
        return round(stats["seconds"] / stats["relaxed"], 3)
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


# -- command-line options shared by run, evaluate, reproduce and relax ------------------------------------------
def add_physical_args(p: Any, default_relax: str = "chgnet") -> None:
    """The physical-validity options of a subcommand."""
    g = p.add_argument_group("physical validity (relaxation and robustness)")
    g.add_argument("--relax", default=default_relax, metavar="NAME|none",
                   help=f"relax every proposal with this potential (default {default_relax}; chgnet = CHGNet 0.3.0, "
                   "sevenn = SevenNet-0, matgl:<model>, module:factory) and re-judge it; none skips it")
    g.add_argument("--fmax", type=float, default=RelaxSettings.fmax, help="FIRE convergence, eV/Å (default 0.05)")
    g.add_argument("--max-steps", type=int, default=RelaxSettings.max_steps, help="FIRE steps at most (default 300)")
    g.add_argument("--relax-subset", type=int, metavar="N",
                   help="relax a seeded draw of N proposals per run instead of all")
    g.add_argument("--relax-workers", type=int, default=1, help="relaxation processes (default 1)")
    g.add_argument("--robust-copies", type=int, default=RobustSettings.copies,
                   help="perturbed copies per success for success (robust); 0 skips it (default 8)")
    g.add_argument("--dft-subset", type=int, default=0, metavar="K",
                   help="DFT-check K successes per run (PySCF PBE band gap; minutes each on one core; default 0)")
    g.add_argument("--dft-workers", type=int, default=1, help="DFT processes at once (default 1)")


def stage_options(args: Any) -> dict[str, Any]:
    """The judge stages' run options from :func:`add_physical_args`' flags; SystemExit (one line) on a bad value."""
    subset, workers = getattr(args, "dft_subset", 0) or 0, getattr(args, "dft_workers", 1) or 1
    if subset < 0 or workers <= 0:
        raise SystemExit(f"--dft-subset must be >= 0 and --dft-workers > 0, got {subset} and {workers}")
    return {"dft_subset": subset, "dft_workers": workers}


def physical_settings(args: Any) -> tuple[RelaxSettings | None, RobustSettings | None]:
    """Settings from :func:`add_physical_args`' options; SystemExit (one line) on a bad value."""
    for flag in ("fmax", "max_steps", "relax_subset", "relax_workers"):
        value = getattr(args, flag, None)
        if value is not None and value <= 0:
            raise SystemExit(f"--{flag.replace('_', '-')} must be > 0, got {value}")
    if args.robust_copies < 0:
        raise SystemExit(f"--robust-copies must be >= 0, got {args.robust_copies}")
    relax_settings = None
    if str(args.relax).lower() != "none":
        from smoacs_bench.evaluation.relax import RelaxerUnavailable, check_relaxer

        try:
            check_relaxer(args.relax)
        except RelaxerUnavailable as err:
            raise SystemExit(f"smoacs-bench: {err}") from None
        relax_settings = RelaxSettings(relaxer=args.relax, fmax=args.fmax, max_steps=args.max_steps,
                                       subset=args.relax_subset)
    robust_settings = RobustSettings(copies=args.robust_copies) if args.robust_copies else None
    return relax_settings, robust_settings
