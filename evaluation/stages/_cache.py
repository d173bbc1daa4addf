"""A stage's cache: one JSON record per crystal and setting, found by a digest, shared by the runs of a task."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np


def digest(structure, settings: Any) -> str:
    """A crystal (lattice, species, fractional coordinates to 1e-8) and the stage's settings, hashed."""
    lat = np.round(structure.lattice.matrix, 8).tolist()
    sites = [(s.specie.symbol, np.round(s.frac_coords, 8).tolist()) for s in structure]
    return hashlib.sha1(json.dumps([lat, sites, settings], sort_keys=True, default=str).encode()).hexdigest()


def get(folder: Path | None, key: str) -> dict[str, Any] | None:
    """The record under ``key`` in ``folder``: its loose file, else its member of the folder's archive (a run
    folder's packed state); None when there is none or it is unreadable."""
    if folder is None:
        return None
    from smoacs_bench.evaluation.packing import read_text

    try:
        text = read_text(Path(folder) / f"{key}.json")
        return None if text is None else json.loads(text)
    except (OSError, ValueError):
        return None


def put(folder: Path | None, key: str, record: dict[str, Any]) -> None:
    if folder is None:
        return
    from smoacs_bench.evaluation.io import atomic_write_text

    Path(folder).mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(folder) / f"{key}.json", json.dumps(record))


def relax_records(structures: list, relaxer: str, folder: Path | None, settings: Any) -> list[dict[str, Any]]:
    """Relaxation records (converged, steps, energies in eV/atom, reason, final structure as a dict) of
    ``structures`` with ``relaxer`` and the judge's FIRE protocol, each taken from ``folder`` when a record of the
    same crystal and ``settings`` is there, else relaxed and stored."""
    from smoacs_bench.evaluation.relax import RelaxSettings, relax

    keys = [digest(st, settings) for st in structures]
    records = {k: r for k, key in enumerate(keys) if (r := get(folder, key)) is not None}
    todo = [k for k in range(len(structures)) if k not in records]
    if todo:
        for k, o in zip(todo, relax([structures[k] for k in todo], RelaxSettings(relaxer=relaxer)), strict=True):
            records[k] = o.record()
            put(folder, keys[k], records[k])
    return [records[k] for k in range(len(structures))]
