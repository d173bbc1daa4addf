"""Perovskite templates (paper Sections 3.3, 4.3-4.4, A.7-A.8).

ABX3 in a cubic-like cell: A at (0.5, 0.5, 0.5), B at the origin, X at (0.5, 0, 0), (0, 0.5, 0)
and (0, 0, 0.5). Angles are 90°, a, b, c are drawn uniformly
in a range (2-10 Å for the unit cell). Two oxidation patterns: [+2, +4, -2] and [+1, +2, -1]
for A, B, X. An n x n x n supercell repeats every site, role and pattern entry; its sites are
ordered as pymatgen's ``make_supercell`` orders them (each unit-cell site's images together).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pymatgen.core import Lattice, Structure

ROLES = ("A", "B", "X", "X", "X")
IDEAL_FRAC = np.array(
    [[0.5, 0.5, 0.5], [0.0, 0.0, 0.0], [0.5, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 0.5]]
)
ROLE_PATTERNS: tuple[dict[str, int], ...] = ({"A": 2, "B": 4, "X": -2}, {"A": 1, "B": 2, "X": -1})
PLACEHOLDER = {"A": "Sr", "B": "Ti", "X": "O"}  # SrTiO3, for a concrete initial Structure


@dataclass(frozen=True)
class PerovskiteCell:
    """Ideal geometry of an n x n x n perovskite supercell (n = 1: the 5-site unit cell).

    ``frac_coords`` (N, 3) are the ideal fractional coordinates of the supercell, ``roles`` the
    site roles, ``patterns`` (D, N) the site-wise oxidation patterns.
    """

    n: int = 1

    @property
    def n_sites(self) -> int:
        return 5 * self.n**3

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(r for r in ROLES for _ in range(self.n**3))

    @property
    def frac_coords(self) -> np.ndarray:
        n = self.n
        shifts = np.array([(i, j, k) for i in range(n) for j in range(n) for k in range(n)], dtype=float)
        return np.concatenate([(f + shifts) / n for f in IDEAL_FRAC])

    @property
    def patterns(self) -> np.ndarray:
        return np.array([[p[r] for r in self.roles] for p in ROLE_PATTERNS], dtype=int)

    def structure(self, abc, species=None) -> Structure:
        """A Structure of this cell with lattice lengths ``abc`` (Å) of the whole supercell, angles 90°."""
        species = species or [PLACEHOLDER[r] for r in self.roles]
        return Structure(Lattice.orthorhombic(*abc), species, self.frac_coords)


def random_perovskites(n_samples: int, seed: int, abc_range=(2.0, 10.0), n: int = 1) -> list[Structure]:
    """``n_samples`` initial perovskites: unit-cell a, b, c ~ U(abc_range) Å, angles 90°, ideal coordinates.

    For n > 1 the unit cell is repeated n x n x n (so the supercell axes lie in n * abc_range).
    """
    rng = np.random.default_rng(seed)
    cell = PerovskiteCell(n)
    abc = rng.uniform(*abc_range, size=(n_samples, 3)) * n
    return [cell.structure(x) for x in abc]
