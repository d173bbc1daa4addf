"""Perovskite criteria (paper Section 4.3, A.7): tolerance factor, lattice angles, coordinates.

Sites are matched one-to-one to the ideal positions of the task's n x n x n perovskite cell by
an optimal assignment on the periodic coordinate deviation, so that a CIF whose sites come in
another order is judged fairly; the matched ideal site gives each site its role (A, B or X).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pymatgen.core import Species, Structure
from scipy.optimize import linear_sum_assignment

from .oxidation import OxidationTable, ours
from .templates import ROLE_PATTERNS, PerovskiteCell


def periodic_deviation(frac: np.ndarray, ideal: np.ndarray) -> np.ndarray:
    """|frac - ideal| per coordinate, wrapped to [0, 0.5]."""
    d = np.abs(frac - ideal) % 1.0
    return np.minimum(d, 1.0 - d)


def match_sites(structure: Structure, cell: PerovskiteCell) -> tuple[np.ndarray, float]:
    """Ideal-site index of every site and the largest coordinate deviation under that matching.

    Raises ValueError if the structure does not have the cell's number of sites.
    """
    if len(structure) != cell.n_sites:
        raise ValueError(f"{len(structure)} sites, a {cell.n}x{cell.n}x{cell.n} perovskite has {cell.n_sites}")
    ideal = cell.frac_coords
    dev = periodic_deviation(structure.frac_coords[:, None, :], ideal[None, :, :]).max(axis=2)
    rows, cols = linear_sum_assignment(dev)
    match = np.empty(len(structure), dtype=int)
    match[rows] = cols
    return match, float(dev[rows, cols].max())


def angles_ok(structure: Structure, lo: float = 85.0, hi: float = 95.0) -> bool:
    """All three lattice angles within [lo, hi] degrees."""
    return all(lo <= a <= hi for a in structure.lattice.angles)


def role_pattern_assignment(species: Sequence[str], roles: Sequence[str],
                            table: OxidationTable | None = None) -> tuple[int, ...] | None:
    """Oxidation numbers from the first perovskite pattern ([+2,+4,-2], then [+1,+2,-1]) that every
    site's element admits, or None. Such an assignment is neutral for any ABX3 supercell.
    """
    tab = table or ours()
    for pattern in ROLE_PATTERNS:
        ox = tuple(pattern[r] for r in roles)
        if all(o in tab.get(s, ()) for s, o in zip(species, ox, strict=True)):
            return ox
    return None


def tolerance_factor(species: Sequence[str], roles: Sequence[str], ox: Sequence[int]) -> tuple[float, str]:
    """Goldschmidt t = (rA + rX) / (√2 (rB + rX)) from pymatgen ionic radii (Å).

    rA, rB, rX are means over the sites of each role (a unit cell has one A and one B site).
    Returns (t, '') or (nan, reason) when a radius is missing.
    """
    radii: dict[str, list[float]] = {"A": [], "B": [], "X": []}
    for s, r, o in zip(species, roles, ox, strict=True):
        try:
            rad = Species(s, o).ionic_radius
        except ValueError:
            rad = None
        if rad is None:
            return math.nan, f"no ionic radius for {s}{o:+d}"
        radii[r].append(float(rad))
    ra, rb, rx = (float(np.mean(radii[k])) for k in "ABX")
    return (ra + rx) / (math.sqrt(2.0) * (rb + rx)), ""
