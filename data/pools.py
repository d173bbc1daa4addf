"""Initial pools: where every method draws its starting structures from, with a seed.

A pool hands out :class:`Drawn` pairs ``(source, crystal)``: ``source`` names the pool entry a sample
came from (``aflow:<label>:<formula>``, a material_id, or ``generated:<seed>:<i>``), ``crystal`` is the
:class:`InitialCrystal` every method starts from (structure, oxidation patterns and, for
perovskites, roles and ideal coordinates). ``InitialCrystal`` has no field for the source, hence the pair.

Pools:

- :class:`PerovskitePool` -- generated ABX3 perovskites (n = 1: 5 sites, n = 3: 135 sites), the
  template patterns [+2, +4, -2] and [+1, +2, -1];
- :class:`AflowPool` -- pymatgen's bundled AFLOW prototype library, filtered to <= 10 sites, neutral
  under "Ours" and with at least one oxidation pattern (the embedded default of the free task);
- :class:`DatasetPool` -- any loaded dataset, filtered the same way (the paper: MEGNet, A.6);
- :class:`DatasetPerovskitePool` -- the ideal-looking perovskites of a dataset, sites re-ordered A, B, X, X, X.

Draws are uniform over the entries, without replacement when ``n`` <= pool size and with replacement
otherwise, deterministic for a seed (``numpy.random.default_rng(seed)``); each draw is a copy.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import NamedTuple

import numpy as np
from pymatgen.core import Structure

from .datasets import Record, load_dataset
from .neutrality import check_species
from .patterns import oxidation_patterns
from .perovskite import match_perovskite
from .templates import PerovskiteCell, random_perovskites

MAX_SITES = 10  # paper A.6: initial structures with up to 10 sites


@dataclass
class InitialCrystal:
    """One starting point: geometry, site-wise oxidation patterns (D, N) and, for perovskites,
    site roles and the ideal coordinates the sites must stay near."""

    structure: Structure
    patterns: np.ndarray
    roles: tuple[str, ...] | None = None
    ideal_coords: np.ndarray | None = None



class Drawn(NamedTuple):
    """One drawn starting point: the id of the pool entry it came from and the crystal."""

    source: str
    crystal: InitialCrystal


def _copy(c: InitialCrystal) -> InitialCrystal:
    return InitialCrystal(c.structure.copy(), np.array(c.patterns, copy=True), c.roles,
                    None if c.ideal_coords is None else np.array(c.ideal_coords, copy=True))


def free_crystal(structure: Structure, max_sites: int = MAX_SITES, max_patterns: int = 10
                 ) -> tuple[InitialCrystal | None, str]:
    """An InitialCrystal for the free task, or (None, reason) when the structure is unusable:
    more than ``max_sites`` sites, disordered, not neutral under "Ours", or no oxidation pattern."""
    if len(structure) > max_sites:
        return None, f"more than {max_sites} sites"
    if not structure.is_ordered:
        return None, "disordered"
    species = [sp.symbol for sp in structure.species]
    neutral = check_species(species)
    if not neutral.neutral:
        return None, f"not neutral: {neutral.reason}"
    patterns, reason = oxidation_patterns(species, max_patterns)
    if len(patterns) == 0:
        return None, f"no oxidation pattern: {reason}"
    return InitialCrystal(structure.copy(), patterns), ""


class Pool:
    """A fixed list of entries ``(source, crystal)``; subclasses fill ``entries`` and ``info``."""

    name = "pool"

    def __init__(self, entries: Sequence[tuple[str, InitialCrystal]], info: dict | None = None):
        self.entries = list(entries)
        self.info = dict(info or {})

    @property
    def size(self) -> int | None:
        """Number of entries (None for a pool generated on demand)."""
        return len(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __bool__(self) -> bool:
        return True  # a pool object is truthy even when generated on demand

    def describe(self) -> dict:
        """What config.json records about the pool: name, kind, size and filtering counts."""
        return {"name": self.name, "kind": type(self).__name__, "size": self.size, **self.info}

    def draw(self, n: int, seed: int) -> list[Drawn]:
        """``n`` copies of pool entries, uniformly at random (with replacement only when n > size)."""
        if not self.entries:
            raise ValueError(f"pool {self.name!r} is empty")
        rng = np.random.default_rng(seed)
        idx = rng.choice(len(self.entries), size=n, replace=n > len(self.entries))
        return [Drawn(self.entries[i][0], _copy(self.entries[i][1])) for i in idx]


class PerovskitePool(Pool):
    """Generated n x n x n perovskites: unit-cell a, b, c ~ U(abc_range) Å, angles 90°, ideal coordinates.

    Unbounded: ``draw(n, seed)`` generates exactly the structures ``random_perovskites(n, seed, ...)``.
    """

    def __init__(self, n: int = 1, abc_range: tuple[float, float] = (2.0, 10.0)):
        super().__init__([])
        self.cell, self.abc_range = PerovskiteCell(n), tuple(abc_range)
        self.name = "perovskite" if n == 1 else f"perovskite{n}x{n}x{n}"

    @property
    def size(self) -> None:
        return None

    def __len__(self) -> int:
        raise TypeError(f"pool {self.name!r} is generated on demand and has no size")

    def describe(self) -> dict:
        return {"name": self.name, "kind": type(self).__name__, "size": None, "n": self.cell.n,
                "n_sites": self.cell.n_sites, "unit_abc_range_angstrom": list(self.abc_range),
                "patterns": self.cell.patterns[:, [0, self.cell.n**3, 2 * self.cell.n**3]].tolist()}

    def draw(self, n: int, seed: int) -> list[Drawn]:
        c = self.cell
        structures = random_perovskites(n, seed, self.abc_range, n=c.n)
        return [Drawn(f"generated:{seed}:{i}", InitialCrystal(s, c.patterns, c.roles, c.frac_coords))
                for i, s in enumerate(structures)]


def _filtered(items: Iterable[tuple[str, Structure]], max_sites: int) -> tuple[list, dict]:
    entries, rejected = [], Counter()
    n_total = 0
    for source, structure in items:
        n_total += 1
        crystal, reason = free_crystal(structure, max_sites)
        if crystal is None:
            rejected[reason.split(":")[0]] += 1
        else:
            entries.append((source, crystal))
    return entries, {"n_entries_read": n_total, "max_sites": max_sites, "rejected": dict(sorted(rejected.items()))}


class DatasetPool(Pool):
    """Structures of a loaded dataset with <= ``max_sites`` sites, neutral, with >= 1 oxidation pattern."""

    def __init__(self, records: Iterable[Record], name: str = "dataset", max_sites: int = MAX_SITES):
        entries, info = _filtered(((r.material_id, r.structure) for r in records), max_sites)
        super().__init__(entries, info)
        self.name = name


def aflow_prototypes() -> list[tuple[str, Structure]]:
    """pymatgen's bundled AFLOW prototype library as (``aflow:<label>:<reduced formula>``, structure),
    288 entries (a repeated id gets ``:2``, ``:3``, ...)."""
    try:
        from pymatgen.analysis.prototypes._data import AFLOW_PROTOTYPE_LIBRARY as library
    except ImportError:  # older pymatgen: pymatgen/analysis/aflow_prototypes.json
        from pymatgen.analysis.prototypes import AFLOW_PROTOTYPE_LIBRARY as library
    out, seen = [], Counter()
    for i, entry in enumerate(library):
        structure = entry["snl"].structure
        source = f"aflow:{(entry.get('tags') or {}).get('aflow') or i}:{structure.composition.reduced_formula}"
        seen[source] += 1
        out.append((source if seen[source] == 1 else f"{source}:{seen[source]}", structure))
    return out


@cache
def _aflow_entries(max_sites: int) -> tuple[tuple, tuple]:
    entries, info = _filtered(aflow_prototypes(), max_sites)
    return tuple(entries), tuple(info.items())


class AflowPool(Pool):
    """AFLOW prototypes (pymatgen's bundled library) usable for the free task; built once per process."""

    name = "aflow"

    def __init__(self, max_sites: int = MAX_SITES):
        entries, info = _aflow_entries(max_sites)
        super().__init__(entries, dict(info))


def as_ideal_perovskite(structure: Structure, tol: float = 0.05, angle_tol: float = 1.0
                        ) -> Structure | None:
    """The structure as an A, B, X, X, X perovskite unit cell, or None.

    Accepted: 5 sites, all angles within 90 ± ``angle_tol``°, and every site within ``tol``
    (fractional, per coordinate) of the ideal positions after the best translation
    (:func:`~.perovskite.match_perovskite`; perov_5 CIFs put the A atom at the origin). Sites are
    re-ordered to the ideal order, translated, and each coordinate is the periodic image nearest its
    ideal value (so it may be slightly negative).
    """
    cell = PerovskiteCell(1)
    if len(structure) != cell.n_sites or not structure.is_ordered:
        return None
    if any(abs(a - 90.0) > angle_tol for a in structure.lattice.angles):
        return None
    match = match_perovskite(structure.frac_coords, cell)
    if match.max_dev > tol:
        return None
    order = np.argsort(match.ideal_index)
    frac = (structure.frac_coords + match.translation)[order]
    frac = cell.frac_coords + (frac - cell.frac_coords + 0.5) % 1.0 - 0.5  # nearest image of the ideal site
    return Structure(structure.lattice, [structure.species[i] for i in order], frac)


class DatasetPerovskitePool(Pool):
    """Perovskite unit cells of a dataset (see :func:`as_ideal_perovskite`), with the two template
    patterns, roles and ideal coordinates (seeds for FTCP and for SMOACS on the perovskite task)."""

    def __init__(self, records: Iterable[Record], name: str = "dataset-perovskite",
                 tol: float = 0.05, angle_tol: float = 1.0):
        cell = PerovskiteCell(1)
        entries, n_total = [], 0
        for r in records:
            n_total += 1
            s = as_ideal_perovskite(r.structure, tol, angle_tol)
            if s is not None:
                entries.append((r.material_id, InitialCrystal(s, cell.patterns, cell.roles, cell.frac_coords)))
        super().__init__(entries, {"n_entries_read": n_total, "coord_tol": tol, "angle_tol_deg": angle_tol})
        self.name = name


def get_pool(name: str, limit: int | None = None, data_path: str | os.PathLike | None = None) -> Pool:
    """A pool by name: "perovskite", "perovskite3x3x3", "aflow", "dataset:<name>" (filtered for the
    free task) or "dataset-perovskite:<name>" (perovskites of a dataset). Datasets are loaded with
    :func:`data.datasets.load_dataset` from ``data_path`` or ``$SMOACS_DATA_DIR`` (``limit`` rows per file)."""
    if name == "perovskite":
        return PerovskitePool(1)
    if name == "perovskite3x3x3":
        return PerovskitePool(3)
    if name == "aflow":
        return AflowPool()
    kind, sep, dataset = name.partition(":")
    if sep and dataset and kind in ("dataset", "dataset-perovskite"):
        records, problems = load_dataset(dataset, limit, data_path)
        pool = DatasetPool(records, name) if kind == "dataset" else DatasetPerovskitePool(records, name)
        pool.info["load_problems"] = len(problems)
        return pool
    raise ValueError(f"unknown pool {name!r}; choose perovskite, perovskite3x3x3, aflow, dataset:<name> "
                     "or dataset-perovskite:<name>")
