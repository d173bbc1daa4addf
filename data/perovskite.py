"""Perovskite criteria (paper Section 4.3, A.7): tolerance factor, lattice angles, coordinates.

Sites are matched one-to-one to the ideal positions of the task's n x n x n perovskite cell after
the global translation that fits best (:func:`match_perovskite`), so that a CIF in another setting
(A at the origin, as the Materials Project and perov_5 write SrTiO3), another site order or another
supercell registry is judged fairly; the matched ideal site gives each site its role (A, B or X).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pymatgen.core import Species, Structure
from scipy.optimize import linear_sum_assignment

from .oxidation import OxidationTable, ours
from .templates import ROLE_PATTERNS, PerovskiteCell


def periodic_deviation(frac: np.ndarray, ideal: np.ndarray) -> np.ndarray:
    """|frac - ideal| per coordinate, wrapped to [0, 0.5]."""
    d = np.abs(frac - ideal) % 1.0
    return np.minimum(d, 1.0 - d)


@dataclass(frozen=True)
class PerovskiteMatch:
    """How a crystal's sites sit on the ideal n x n x n perovskite positions.

    ``ideal_index[s]``: the ideal position of site ``s``; ``roles[s]``: its role (A, B or X);
    ``translation``: the fractional shift (3,) applied to every site before matching (the setting,
    e.g. A rather than B at the origin, and for supercells the registry); ``max_dev``: the largest
    periodic coordinate deviation from the ideal positions after that shift.
    """

    ideal_index: np.ndarray
    roles: tuple[str, ...]
    translation: np.ndarray
    max_dev: float


def bottleneck_assignment(cost: np.ndarray) -> tuple[np.ndarray, float]:
    """The one-to-one assignment of rows to columns minimising the largest cost (exact), and that cost.

    Starts from the min-sum assignment and bisects over the cost values below its maximum; each test
    is a min-sum assignment on the 0/1 matrix ``cost > threshold``.
    """
    rows, cols = linear_sum_assignment(cost)
    best_cols, best = cols, float(cost[rows, cols].max())
    values = np.unique(cost[cost < best])
    lo, hi = 0, len(values)
    while lo < hi:
        mid = (lo + hi) // 2
        over = cost > values[mid]
        r, c = linear_sum_assignment(over)
        if not over[r, c].any():
            best_cols, best, hi = c, float(values[mid]), mid
        else:
            lo = mid + 1
    order = np.empty(len(best_cols), dtype=int)
    order[rows] = best_cols
    return order, best


# IDEAL_FRAC's row of each parity pattern (p0, p1, p2) of a position on the 1/(2n) grid, -1 where no site sits
_PARITY_ROW = np.full(8, -1)
for _p, _row in {(1, 1, 1): 0, (0, 0, 0): 1, (1, 0, 0): 2, (0, 1, 0): 3, (0, 0, 1): 4}.items():
    _PARITY_ROW[4 * _p[0] + 2 * _p[1] + _p[2]] = _row


def snap_assignment(frac: np.ndarray, n: int) -> np.ndarray | None:
    """The ideal-site index of every site of ``frac`` (already translated) when each site lies within
    1/(4n) (Chebyshev, periodic) of its own, distinct ideal position of the n x n x n cell; else None.

    Ideal positions sit on a grid of spacing 1/(2n) and two of them differ by at least 1/(2n) in some
    coordinate, so such a site is strictly closer to its own position than to any other: the row-wise
    nearest positions then form a permutation that is the unique optimum of both the min-sum and the
    bottleneck assignment. O(N), where the dense assignment costs O(N^2) memory and O(N^3) time.
    """
    scaled = np.asarray(frac, dtype=float) * (2 * n)
    grid = np.rint(scaled)
    if np.abs(scaled - grid).max() >= 0.5 - 1e-9:   # a site (near) half-way between grid points: no shortcut
        return None
    g = grid.astype(int) % (2 * n)
    parity, cells = g % 2, g // 2
    rows = _PARITY_ROW[4 * parity[:, 0] + 2 * parity[:, 1] + parity[:, 2]]
    if (rows < 0).any():
        return None
    index = rows * n**3 + cells[:, 0] * n * n + cells[:, 1] * n + cells[:, 2]
    if np.bincount(index, minlength=len(index)).max() > 1:
        return None
    return index


@functools.lru_cache(maxsize=8)
def _axis_tables(n: int) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Per axis, the distinct ideal coordinates of the n x n x n cell and each ideal position's index into them."""
    ideal = PerovskiteCell(n).frac_coords
    return tuple(np.unique(ideal[:, a], return_inverse=True) for a in range(3))


def deviation_matrix(frac: np.ndarray, n: int) -> np.ndarray:
    """(N, N) largest periodic coordinate deviation of every site from every ideal position of the n x n x n cell.

    Equal, element for element, to ``periodic_deviation(frac[:, None], ideal[None]).max(axis=2)``, but ideal
    coordinates take only 2n distinct values per axis, so each axis is tabulated against those and gathered.
    """
    out = None
    for a, (values, index) in enumerate(_axis_tables(n)):
        dev = periodic_deviation(frac[:, a, None], values[None, :])[:, index]
        out = dev if out is None else np.maximum(out, dev, out=out)
    return out


def _assign(frac: np.ndarray, ideal: np.ndarray, n: int, bottleneck: bool) -> np.ndarray:
    """Site -> ideal-position assignment of (translated) ``frac``: on a supercell the O(N) snap when it applies,
    else the min-sum (or, with ``bottleneck``, the exact minimax) assignment on the dense deviation matrix."""
    if n > 1:
        order = snap_assignment(frac, n)
        if order is not None:
            return order
        dev = deviation_matrix(frac, n)
    else:   # 5 sites: the direct computation is cheaper than either shortcut
        dev = periodic_deviation(frac[:, None, :], ideal[None, :, :]).max(axis=2)
    if bottleneck:
        return bottleneck_assignment(dev)[0]
    rows, cols = linear_sum_assignment(dev)
    order = np.empty(len(frac), dtype=int)
    order[rows] = cols
    return order


def _centre(frac: np.ndarray, ideal: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The translation, per axis, that centres the residuals of ``frac + t`` about their ideal sites."""
    r = (frac + t - ideal + 0.5) % 1.0 - 0.5
    return t - 0.5 * (r.max(axis=0) + r.min(axis=0))


def match_perovskite(frac_coords: np.ndarray, cell: PerovskiteCell, n_references: int = 8) -> PerovskiteMatch:
    """Match sites to the ideal positions of ``cell`` independently of origin and setting.

    Minimises the largest periodic deviation over a global translation and the site-to-position
    assignment: candidate translations put a reference site (every site of a cell with <= 10 sites,
    else ``n_references`` spread over the list) exactly on each of the five unit-cell positions
    (translations by whole unit cells of a supercell map the ideal positions onto themselves); for each,
    sites are assigned by min-sum assignment and the translation is re-centred per axis; the best
    candidate then gets the exact minimax (bottleneck) assignment and a last re-centring.
    Raises ValueError if the number of sites is not the cell's.
    """
    frac = np.asarray(frac_coords, dtype=float)
    if len(frac) != cell.n_sites:
        raise ValueError(f"{len(frac)} sites, a {cell.n}x{cell.n}x{cell.n} perovskite has {cell.n_sites}")
    if cell.n == 1:
        near = _match_near_ideal(frac, cell)
        if near is not None:
            return near
    ideal = cell.frac_coords
    t = _best_unit_translation(frac, ideal) if cell.n == 1 else _best_translation(frac, cell, n_references)
    order = _assign(frac + t, ideal, cell.n, bottleneck=True)
    t = _centre(frac, ideal[order], t)
    order = _assign(frac + t, ideal, cell.n, bottleneck=True)
    max_dev = float(periodic_deviation(frac + t, ideal[order]).max())
    roles = tuple(cell.roles[j] for j in order)
    return PerovskiteMatch(order, roles, (t + 0.5) % 1.0 - 0.5, float(max_dev))


def _best_translation(frac: np.ndarray, cell: PerovskiteCell, n_references: int = 8) -> np.ndarray:
    """The candidate translation of :func:`match_perovskite` with the smallest largest deviation: one per
    (reference site, unit-cell position), each refined by two rounds of min-sum assignment and re-centring; the
    first of equal ones (within 1e-12) in (reference, position) order."""
    ideal = cell.frac_coords
    n = len(frac)
    refs = np.arange(n) if n <= 10 else np.unique(np.linspace(0, n - 1, n_references).astype(int))
    best: tuple[float, np.ndarray] | None = None
    for r in refs:
        for base in ideal[:: cell.n ** 3][:5]:  # the five unit-cell positions (scaled to the supercell)
            t = (base - frac[r]) % (1.0 / cell.n)
            for _ in range(2):
                order = _assign(frac + t, ideal, cell.n, bottleneck=False)
                t = _centre(frac, ideal[order], t)
            d = float(periodic_deviation(frac + t, ideal[order]).max())
            if best is None or d < best[0] - 1e-12:
                best = (d, t)
    return best[1]


def _best_unit_translation(frac: np.ndarray, ideal: np.ndarray) -> np.ndarray:
    """:func:`_best_translation` of a 5-site cell, the 25 candidates as one array: the same element-wise
    arithmetic and the same min-sum assignments (SciPy's, per candidate), hence the same translation bit for bit,
    without Python's per-candidate overhead (TPE matches every trial; 46 % take this search)."""
    ts = (ideal[None, :, :] - frac[:, None, :]) % 1.0         # (reference site, unit-cell position, 3)
    ts = ts.reshape(-1, 3)                                       # in the loop's (reference, position) order
    for _ in range(2):
        moved = frac[None, :, :] + ts[:, None, :]               # (candidate, site, 3)
        dev = periodic_deviation(moved[:, :, None, :], ideal[None, None, :, :]).max(axis=3)
        orders = np.empty((len(ts), len(frac)), dtype=int)
        for c in range(len(ts)):
            r, cols = linear_sum_assignment(dev[c])
            orders[c, r] = cols
        target = ideal[orders]                                   # (candidate, site, 3)
        res = (moved - target + 0.5) % 1.0 - 0.5
        ts = ts - 0.5 * (res.max(axis=1) + res.min(axis=1))
    d = periodic_deviation(frac[None, :, :] + ts[:, None, :], target).max(axis=(1, 2))
    best = 0
    for c in range(1, len(ts)):
        if d[c] < d[best] - 1e-12:
            best = c
    return ts[best]


def _match_near_ideal(frac: np.ndarray, cell: PerovskiteCell) -> PerovskiteMatch | None:
    """The match of a 5-site cell whose sites, as given, lie within 1/8 (periodic, per coordinate, after centring)
    of distinct ideal positions; None otherwise (the general search decides).

    Then that assignment, centred, is the unique minimax optimum the general search finds: no translation but 0
    maps the five ideal positions onto themselves, so under any other assignment two sites need shifts that differ
    by 1/2 in some coordinate, and one of them deviates by at least 1/4 - 1/8. The same result to float rounding,
    without the 25 candidate translations (TPE matches every trial)."""
    order = snap_assignment(frac, 1)
    if order is None:
        return None
    ideal = cell.frac_coords[order]
    t = _centre(frac, ideal, np.zeros(3))
    max_dev = float(periodic_deviation(frac + t, ideal).max())
    if max_dev >= 0.125 - 1e-9:
        return None
    return PerovskiteMatch(order, tuple(cell.roles[j] for j in order), (t + 0.5) % 1.0 - 0.5, max_dev)


def match_sites(structure: Structure, cell: PerovskiteCell) -> tuple[np.ndarray, float]:
    """Ideal-site index of every site and the largest coordinate deviation (see :func:`match_perovskite`)."""
    m = match_perovskite(structure.frac_coords, cell)
    return m.ideal_index, m.max_dev


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
