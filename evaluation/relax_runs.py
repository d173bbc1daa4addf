"""The judge's relaxations of a run's proposals: resumable, chunked, shared between the runs of a task.

:func:`run_relaxations` relaxes a seeded draw of a run's proposals (:func:`relaxed_indices`) in chunks of
:data:`CHUNK` structures, ``workers`` processes at once, and keeps each finished chunk in the run folder's
``relax_state/`` (a second call with the same relaxer settings relaxes nothing; another draw relaxes only the new
proposals). A task's ``.relax_cache/`` holds every crystal's record by digest, so that the same crystal proposed
by another run (the reference row under every target) is relaxed once.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pymatgen.core import Structure

from .io import atomic_write_text
from .relax import RELAXATION_FIELDS, RelaxSettings, relax
from .stages import _cache

CHUNK = 8    # structures relaxed in lockstep per chunk (fixed: results do not depend on --relax-workers)
STATE_DIR = "relax_state"
SHARED_CACHE = ".relax_cache"   # in a task's runs folder: relaxation records by crystal and settings


def relaxed_indices(samples: pd.DataFrame, settings: RelaxSettings) -> list[int]:
    """The samples to relax: all, or a seeded draw of ``settings.subset`` without replacement (sorted)."""
    n = len(samples)
    if not settings.subset or settings.subset >= n:
        return list(range(n))
    rng = np.random.default_rng(settings.subset_seed)
    return sorted(int(i) for i in rng.choice(n, size=settings.subset, replace=False))


def _relax_chunk(structures: list[dict | None], settings: dict[str, Any]) -> list[dict[str, Any]]:
    """Worker: relax one chunk (structures as dicts) and return serialisable outcomes."""
    import torch

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    objs = [None if s is None else Structure.from_dict(s) for s in structures]
    return [o.record() for o in relax(objs, RelaxSettings(**settings))]


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


def _shared_get(folder: Path, key: str | None) -> dict[str, Any] | None:
    return _cache.get(folder, key) if key else None


def run_relaxations(structures: list[Structure | None], indices: list[int], settings: RelaxSettings, state: Path,
                    workers: int = 1, progress: bool = True, shared: Path | None = None,
                    stats: dict[str, float] | None = None) -> dict[int, dict[str, Any]]:
    """Relax ``structures[i]`` for i in ``indices`` in chunks of :data:`CHUNK`, ``workers`` processes at once,
    saving each finished chunk in ``state`` (resumable; a sample whose crystal was relaxed there before with the
    same settings, by this draw or another, is not relaxed again); returns sample -> outcome record. With
    ``shared`` (a folder), a crystal relaxed with the same settings before (in another run of the task, e.g. the
    reference row's crystals under each target) is taken from there instead of relaxed again. ``stats`` (a
    dict) gets ``structures`` (relaxed by this call) and ``seconds`` (their wall time)."""
    from tqdm import tqdm

    if not indices:
        return {}
    from .packing import unpack

    unpack(state)   # a packed run folder: the state's chunks back as files, re-packed by the caller
    key = {"relax": settings.relaxation_identity(), "indices": indices}
    crystal = {i: None if structures[i] is None else _cache.digest(structures[i], key["relax"]) for i in indices}
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
            _cache.put(shared, digests[i], rec)
    found = {i: _shared_get(shared, digests.get(i)) for i in indices if i not in done}
    found = {i: dict(rec, crystal=crystal[i]) for i, rec in found.items() if rec is not None}
    if found:   # crystals relaxed before with the same settings, in another run of the task
        done.update(found)
        atomic_write_text(state / _chunk_name(sorted(found)), json.dumps({str(k): v for k, v in found.items()}))
    rest = [i for i in indices if i not in done]
    todo = list(enumerate(rest[k:k + CHUNK] for k in range(0, len(rest), CHUNK)))
    bar = tqdm(total=len(indices), initial=len(indices) - len(rest), desc="relax",
               unit="structure", disable=not progress or not rest, file=sys.stderr)

    def save(n: int, chunk: list[int], records: list[dict[str, Any]]) -> None:
        part = {i: dict(rec, crystal=crystal[i]) for i, rec in zip(chunk, records, strict=True)}
        atomic_write_text(state / _chunk_name(chunk), json.dumps({str(k): v for k, v in part.items()}))
        done.update(part)
        for i, rec in part.items():
            if digests.get(i):
                _cache.put(shared, digests[i], rec)
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
        stats.update(structures=len(rest), seconds=time.perf_counter() - t0)
    return {i: done[i] for i in indices}
