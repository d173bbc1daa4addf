"""Reading proposals from files: CIFs that may be broken, and prediction CSVs."""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from pymatgen.core import Structure
from pymatgen.io.cif import CifParser

from smoacs_bench.data.elements import SYMBOLS, K

from .geometry import lattice_problem

_CELL_FIELDS = ("_cell_length_a", "_cell_length_b", "_cell_length_c",
                "_cell_angle_alpha", "_cell_angle_beta", "_cell_angle_gamma")


def _cell_problem(blocks: dict) -> str:
    """Non-numeric, NaN or non-positive cell lengths/angles in a CIF's raw fields, or ''."""
    for block in blocks.values():
        for key in _CELL_FIELDS:
            raw = block.get(key)
            if raw is None:
                continue
            try:
                val = float(str(raw).split("(")[0])
            except ValueError:
                return f"{key} is not a number ({raw!r})"
            if not math.isfinite(val) or val <= 0:
                return f"{key} must be a positive finite number, got {raw}"
    return ""


def _parse(path: Path, text: str | None = None) -> tuple[Structure | None, str]:
    """(structure, '') or (None, reason for a bad cell). One parse per file (``text``: its contents, when read
    from a packed run folder). CIFs are read with a tiny site tolerance: pymatgen's default (1e-4 fractional)
    merges near-coincident atoms, which criterion (b) must judge, not hide."""
    if path.suffix.lower() != ".cif":
        if text is not None:
            return Structure.from_str(text, fmt=path.suffix.lstrip(".").lower() or "poscar"), ""
        return Structure.from_file(str(path)), ""
    parser = CifParser.from_str(text, site_tolerance=1e-6) if text is not None \
        else CifParser(str(path), site_tolerance=1e-6)
    bad = _cell_problem(parser.as_dict())
    if bad:
        return None, bad
    return parser.parse_structures(primitive=False)[0], ""


def read_structure(path: str | Path) -> tuple[Structure | None, str]:
    """(structure, '') or (None, reason) — never raises for a bad file. A file of a packed run folder
    (``structures/3.cif`` inside ``structures.zip``) is read from its archive."""
    path = Path(path)
    text = None
    if not path.is_file():
        from .packing import read_text

        text = read_text(path)
        if text is None:
            return None, f"{path}: file not found"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            s, bad = _parse(path, text)
    except Exception as e:  # noqa: BLE001 - pymatgen raises many kinds of errors for bad CIFs
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return None, f"{path.name}: unreadable structure file ({msg})"
    if s is None:
        return None, f"{path.name}: {bad}"
    if len(s) == 0:
        return None, f"{path.name}: structure has no sites"
    for site in s:
        if not site.is_ordered:
            return None, f"{path.name}: disordered site {site.species} is not supported"
        symbol = getattr(site.specie, "symbol", str(site.specie))
        if symbol not in SYMBOLS:
            return None, f"{path.name}: unknown element {symbol!r} (only Z = 1..{K} are considered)"
    bad = lattice_problem(s)
    if bad:
        return None, f"{path.name}: {bad}"
    return s, ""


def read_predictions(path: str | Path) -> tuple[dict[str, tuple[float, float]], list[str]]:
    """Predictions CSV with columns ``file, band_gap, formation_energy`` (eV, eV/atom).

    Returns ``({file: (band_gap, formation_energy)}, problems)``; a row with a missing or
    non-numeric value is reported (naming the CSV row) and skipped.
    """
    df = pd.read_csv(path)
    missing = {"file", "band_gap", "formation_energy"} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))}; "
                         "expected file, band_gap, formation_energy")
    out, problems = {}, []
    for i, row in df.iterrows():
        line = i + 2  # header is line 1
        try:
            bg, ef = float(row["band_gap"]), float(row["formation_energy"])
        except (TypeError, ValueError):
            problems.append(f"{path} line {line}: non-numeric prediction for {row['file']}")
            continue
        if not (math.isfinite(bg) and math.isfinite(ef)):
            problems.append(f"{path} line {line}: missing or non-finite prediction for {row['file']}")
            continue
        out[str(row["file"])] = (bg, ef)
        out[Path(str(row["file"])).name] = (bg, ef)
    return out, problems


def lookup(predictions: dict[str, tuple[float, float]], path: str | Path) -> tuple[float, float] | None:
    """Predictions of one file, matched by the path as given or by its file name."""
    p = str(path)
    return predictions.get(p) or predictions.get(Path(p).name)


def names_of(paths: Sequence[str | Path]) -> list[str]:
    """Row names for files: the paths as given."""
    return [str(p) for p in paths]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a file so that readers see either the old or the whole new content, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; result files follow the umask like any other
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_stored_settings(path: str | Path, settings: dict) -> None:
    """ValueError (one line) if the JSON file ``path`` exists and differs from ``settings`` in any of its keys:
    a folder already holds work done with other settings (e.g. a model being trained)."""
    path = Path(path)
    if not path.is_file():
        return
    previous = json.loads(path.read_text())
    diff = [k for k in settings if previous.get(k) != settings[k]]
    if diff:
        raise ValueError(f"{path.parent} holds a model trained with other settings ({', '.join(diff)}); "
                         "choose another --out or delete the folder")


def write_csv(df: pd.DataFrame, path: str | Path) -> None:
    """Atomic CSV write without the index."""
    atomic_write_text(path, df.to_csv(index=False))
