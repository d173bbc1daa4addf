"""Dataset loaders: the MEGNet set ``mp.2018.6.1.json`` and CDVAE-format CSVs (perov_5, mp_20, carbon_24).

Files are found under ``$SMOACS_DATA_DIR`` (or an explicit directory): ``mp.2018.6.1.json`` and
``<name>/{train,val,test}.csv``. A malformed entry (missing key, unreadable CIF, non-finite number,
element outside Z = 1..98, partial occupancy) is reported as a problem string and skipped, never fatal.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd
from pymatgen.core import Structure

from .elements import UnknownElementError, index_of

DATA_DIR_ENV = "SMOACS_DATA_DIR"
MEGNET_FILE = "mp.2018.6.1.json"
MEGNET_URL = "https://figshare.com/ndownloader/files/15087992"
MEGNET_ENTRIES = 69239
MEGNET_KEYS = ("material_id", "structure", "formation_energy_per_atom", "band_gap")
MEGNET_NUMERIC = ("formation_energy_per_atom", "band_gap")  # eV/atom, eV
CDVAE_SPLITS = ("train", "val", "test")
CDVAE_KEYS = ("material_id", "cif")


@dataclass
class Record:
    """One dataset entry: its id, structure and every other column (numbers as float, in the file's units)."""

    material_id: str
    structure: Structure
    properties: dict[str, Any] = field(default_factory=dict)


def data_dir(path: str | os.PathLike | None = None) -> Path:
    """The data directory: ``path`` if given, else ``$SMOACS_DATA_DIR``; FileNotFoundError if neither."""
    if path is None:
        from .environment import data_dir as configured

        path = configured()
        if not path:
            raise FileNotFoundError(f"no data directory: set ${DATA_DIR_ENV} or 'data = \"DIR\"' in "
                                    f"~/.config/smoacs-bench/config.toml (it should hold perov_5/, {MEGNET_FILE}, "
                                    "...), or pass a path")
    return Path(path)


def parse_structure(cif: str) -> Structure:
    """A Structure from CIF text; ValueError for an unreadable CIF, a disordered site or an element beyond Z = 98."""
    if not isinstance(cif, str) or not cif.strip():
        raise ValueError("empty or non-text CIF")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structure = Structure.from_str(cif, fmt="cif")
    except Exception as exc:  # pymatgen raises many types for bad CIFs
        raise ValueError(f"unreadable CIF ({type(exc).__name__}: {str(exc)[:120]})") from None
    if not structure.is_ordered:
        raise ValueError("disordered structure (partial occupancies)")
    if len(structure) == 0:
        raise ValueError("CIF has no sites")
    for sym in sorted({getattr(sp, "symbol", str(sp)) for sp in structure.species}):
        try:
            index_of(sym)
        except UnknownElementError as exc:
            raise ValueError(str(exc)) from None
    return structure


def _number(value: Any, key: str) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{key} is not a number ({value!r})") from None
    if not math.isfinite(x):
        raise ValueError(f"{key} is not finite ({value!r})")
    return x


def _megnet_record(entry: Any) -> Record:
    if not isinstance(entry, dict):
        raise ValueError(f"entry is a {type(entry).__name__}, not an object")
    missing = [k for k in MEGNET_KEYS if k not in entry]
    if missing:
        raise ValueError(f"missing key {', '.join(missing)}")
    props = {k: v for k, v in entry.items() if k not in ("material_id", "structure")}
    for k in MEGNET_NUMERIC:
        props[k] = _number(entry[k], k)
    return Record(str(entry["material_id"]), parse_structure(entry["structure"]), props)


def _read_json_list(path: Path) -> list:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of entries, got {type(data).__name__}")
    return data


def validate_megnet_json(path: str | os.PathLike, expected_entries: int = MEGNET_ENTRIES) -> int:
    """Check a MEGNet file: JSON list of ``expected_entries`` objects, each with the required keys.

    Returns the number of entries; raises ValueError naming the file and the first problem.
    """
    path = Path(path)
    data = _read_json_list(path)
    if len(data) != expected_entries:
        raise ValueError(f"{path}: {len(data)} entries, expected {expected_entries}")
    for i, entry in enumerate(data):
        missing = [k for k in MEGNET_KEYS if not isinstance(entry, dict) or k not in entry]
        if missing:
            raise ValueError(f"{path}: entry {i} lacks key {', '.join(missing)}")
    return len(data)


def load_megnet(path: str | os.PathLike | None = None, limit: int | None = None
                ) -> tuple[list[Record], list[str]]:
    """Records of ``mp.2018.6.1.json`` (default ``$SMOACS_DATA_DIR/mp.2018.6.1.json``) and problems.

    ``limit`` reads only the first entries. Properties keep every key besides material_id and
    structure; formation_energy_per_atom (eV/atom) and band_gap (eV) must be finite numbers.
    """
    path = Path(path) if path is not None else find_dataset("megnet")[0]
    data = _read_json_list(path)
    records, problems = [], []
    for i, entry in enumerate(data[:limit] if limit is not None else data):
        try:
            records.append(_megnet_record(entry))
        except ValueError as exc:
            mid = entry.get("material_id", "?") if isinstance(entry, dict) else "?"
            problems.append(f"{path.name} entry {i} ({mid}): {exc}")
    return records, problems


def load_cdvae_csv(path: str | os.PathLike, limit: int | None = None) -> tuple[list[Record], list[str]]:
    """Records of a CDVAE-format CSV (columns material_id, cif, properties) and problems.

    A problem reads "<file> row <line>: <reason>", <line> being the file line (1 = header) where the
    row starts (a CIF spans many lines). Property columns become floats where they parse as numbers
    and stay text otherwise; the unnamed index column is dropped. ``limit`` reads only the first rows.
    """
    path = Path(path)
    records, problems = [], []
    csv.field_size_limit(1 << 30)
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            return records, [f"{path.name}: empty file"]
        missing = [k for k in CDVAE_KEYS if k not in header]
        if missing:
            raise ValueError(f"{path}: missing column {', '.join(missing)} (header {header})")
        start = reader.line_num + 1
        for n_rows, row in enumerate(reader):
            if limit is not None and n_rows >= limit:
                break
            try:
                records.append(_cdvae_record(header, row))
            except ValueError as exc:
                problems.append(f"{path.name} row {start}: {exc}")
            start = reader.line_num + 1
    return records, problems


def _cdvae_record(header: list[str], row: list[str]) -> Record:
    if len(row) != len(header):
        raise ValueError(f"{len(row)} fields, header has {len(header)}")
    values = dict(zip(header, row, strict=True))
    props: dict[str, Any] = {}
    for k, v in values.items():
        if k in CDVAE_KEYS or not k:
            continue
        try:
            props[k] = float(v)
        except ValueError:
            props[k] = v
    if not values["material_id"]:
        raise ValueError("empty material_id")
    return Record(values["material_id"], parse_structure(values["cif"]), props)


def find_dataset(name: str, path: str | os.PathLike | None = None) -> list[Path]:
    """Files of a dataset under ``path`` or ``$SMOACS_DATA_DIR``, or at ``name`` itself.

    "megnet" (or "mp.2018.6.1") -> [``mp.2018.6.1.json``]; an existing ``.json``/``.csv`` file -> [it]; an
    existing folder -> its ``mp.2018.6.1.json`` or its ``{train,val,test}.csv``; any other name -> the
    existing ``<name>/{train,val,test}.csv``. FileNotFoundError names what was looked for and where.
    """
    given = Path(name).expanduser()
    if name not in ("megnet", "mp.2018.6.1") and (given.is_file() or given.is_dir()):
        if given.is_file():
            if given.suffix not in (".json", ".csv"):
                raise FileNotFoundError(f"dataset file {given}: expected a MEGNet-format .json or a CDVAE-format .csv")
            return [given]
        if (given / MEGNET_FILE).is_file():
            return [given / MEGNET_FILE]
        found = [given / f"{split}.csv" for split in CDVAE_SPLITS if (given / f"{split}.csv").is_file()]
        if not found:
            raise FileNotFoundError(f"dataset folder {given}: holds neither {MEGNET_FILE} nor "
                                    f"{', '.join(f'{s}.csv' for s in CDVAE_SPLITS)}")
        return found
    root = data_dir(path)
    if name in ("megnet", "mp.2018.6.1"):
        f = root / MEGNET_FILE
        if not f.is_file():
            raise FileNotFoundError(f"dataset {name!r}: {f} not found; run `smoacs-bench data download megnet` "
                                    f"or put {MEGNET_FILE} in ${DATA_DIR_ENV}/")
        return [f]
    files = [root / name / f"{split}.csv" for split in CDVAE_SPLITS]
    found = [f for f in files if f.is_file()]
    if not found:
        raise FileNotFoundError(f"dataset {name!r}: none of {', '.join(f'{s}.csv' for s in CDVAE_SPLITS)} "
                                f"found in {root / name} (data directory from ${DATA_DIR_ENV} or the given path)")
    return found


def load_dataset(name: str, limit: int | None = None, path: str | os.PathLike | None = None
                 ) -> tuple[list[Record], list[str]]:
    """Records and problems of a named dataset (all its splits, in train/val/test order).

    ``limit`` caps the records read from each file.
    """
    files = find_dataset(name, path)
    if files[0].suffix == ".json":
        return load_megnet(files[0], limit)
    records, problems = [], []
    for f in files:
        r, p = load_cdvae_csv(f, limit)
        records += r
        problems += p
    return records, problems


EF_COLUMNS = ("formation_energy_per_atom", "heat_ref", "formation_energy")   # eV/atom
GAP_COLUMNS = ("band_gap",)                                                 # eV
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)


def property_labels(record: Record) -> tuple[float, float]:
    """(formation energy in eV/atom, band gap in eV) of a record; ValueError naming what is missing.

    MEGNet set: formation_energy_per_atom, band_gap. CDVAE perov_5: heat_ref and min(dir_gap, ind_gap)
    (GLLB-SC based, not the Materials Project's quantities).
    """
    p = record.properties
    ef = next((p[k] for k in EF_COLUMNS if isinstance(p.get(k), float)), None)
    if ef is None:
        raise ValueError(f"no formation-energy column ({', '.join(EF_COLUMNS)})")
    gap = next((p[k] for k in GAP_COLUMNS if isinstance(p.get(k), float)), None)
    if gap is None:
        gaps = [p[k] for k in ("dir_gap", "ind_gap") if isinstance(p.get(k), float)]
        gap = min(gaps) if gaps else None
    if gap is None:
        raise ValueError("no band-gap column (band_gap, or dir_gap/ind_gap)")
    if not (math.isfinite(ef) and math.isfinite(gap)):
        raise ValueError("non-finite label")
    return float(ef), float(gap)


def split_ids(ids: list[str], seed: int) -> dict[str, list[str]]:
    """Seeded 80/10/10 split of ids: {"train": [...], "val": [...], "test": [...]}."""
    import numpy as np

    perm = np.random.default_rng(seed).permutation(len(ids))
    n_train = int(round(SPLIT_FRACTIONS[0] * len(ids)))
    n_val = int(round(SPLIT_FRACTIONS[1] * len(ids)))
    return {"train": [ids[i] for i in perm[:n_train]],
            "val": [ids[i] for i in perm[n_train:n_train + n_val]],
            "test": [ids[i] for i in perm[n_train + n_val:]]}


def records_by_id(dataset: str, ids: list[str], limit: int | None = None, path: str | os.PathLike | None = None
                  ) -> list[Record]:
    """The records of ``dataset`` with these ids, in their order; ValueError naming a missing id (the data is
    not what a model was trained on)."""
    records, _ = load_dataset(dataset, limit, path)
    by_id = {r.material_id: r for r in records}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise ValueError(f"dataset {dataset!r} lacks {len(missing)} ids of the model's split (e.g. {missing[0]}): "
                         "not the data the model was trained on")
    return [by_id[i] for i in ids]


def reference_formulas(records: Iterable[Record]) -> frozenset[str]:
    """Reduced formulas of a dataset's records, for novelty."""
    return frozenset(r.structure.composition.reduced_formula for r in records)


def _offline_message(url: str) -> str:
    return (f"could not download {MEGNET_FILE} from {url}. Download it by hand (figshare file 15087992, "
            f"the MEGNet MP-2018.6.1 dataset) and put it in ${DATA_DIR_ENV}/{MEGNET_FILE}, "
            f"or pass its path")


def download_megnet(dest_dir: str | os.PathLike | None = None, url: str = MEGNET_URL,
                    expected_entries: int = MEGNET_ENTRIES, timeout: float = 60.0) -> Path:
    """Download ``mp.2018.6.1.json`` into ``dest_dir`` (default ``$SMOACS_DATA_DIR``) and validate it.

    The file goes to a temporary file in ``dest_dir`` first and is renamed atomically only after
    :func:`validate_megnet_json` passes. An existing valid file is kept. Offline: RuntimeError saying
    where to put the file by hand; invalid download: ValueError.
    """
    dest = data_dir(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / MEGNET_FILE
    if target.is_file():
        try:
            validate_megnet_json(target, expected_entries)
            return target
        except ValueError:
            pass  # replace a broken file
    fd, tmp_name = tempfile.mkstemp(prefix=MEGNET_FILE + ".", suffix=".part", dir=dest)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp:
                    shutil.copyfileobj(resp, out)
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                raise RuntimeError(f"{_offline_message(url)} ({exc})") from exc
        try:
            validate_megnet_json(tmp, expected_entries)
        except ValueError as exc:
            raise ValueError(f"downloaded {MEGNET_FILE} from {url} is invalid: {exc}") from None
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


_FORMULA_SUM = re.compile(r"_chemical_formula_sum\s+['\"]?([^'\"\n]+)")


def _reduced(formula: str) -> str | None:
    from pymatgen.core import Composition

    try:
        return Composition(formula).reduced_formula
    except Exception:  # noqa: BLE001 - a malformed formula is skipped, not fatal
        return None


@cache
def novelty_reference(path: str | None = None) -> tuple[frozenset[str], str]:
    """Reduced formulas to judge novelty against, and a label saying which dataset they come from.

    The MEGNet dataset (as in the paper) when ``mp.2018.6.1.json`` is found; otherwise perov_5
    (its ``formula`` column). Formulas are read without parsing structures (the CIF's
    ``_chemical_formula_sum`` line), so this takes seconds. Returns (empty set, '') if neither exists.
    """
    try:
        megnet = find_dataset("megnet", path)[0]
    except FileNotFoundError:
        megnet = None
    if megnet is not None:
        formulas = set()
        for entry in _read_json_list(megnet):
            match = _FORMULA_SUM.search(str(entry.get("structure", ""))) if isinstance(entry, dict) else None
            reduced = _reduced(match.group(1)) if match else None
            if reduced:
                formulas.add(reduced)
        return frozenset(formulas), f"MEGNet dataset ({megnet.name}, {len(formulas)} formulas)"
    try:
        files = find_dataset("perov_5", path)
    except FileNotFoundError:
        return frozenset(), ""
    formulas = set()
    for f in files:
        col = pd.read_csv(f, usecols=["formula"])["formula"]
        formulas.update(r for r in map(_reduced, col.astype(str)) if r)
    return frozenset(formulas), f"perov_5 ({len(formulas)} formulas; MEGNet dataset not found)"
