"""Geometric validity: lattice sanity and minimum interatomic distance with periodic images."""

from __future__ import annotations

import math

import numpy as np
from pymatgen.core import Structure


def lattice_problem(structure: Structure) -> str:
    """Why the lattice is unusable (NaN/inf entries, non-positive lengths or volume), or ''."""
    m = np.asarray(structure.lattice.matrix, dtype=float)
    if not np.all(np.isfinite(m)):
        return "lattice has NaN or infinite entries"
    if min(structure.lattice.abc) <= 0:
        return "lattice has a non-positive axis length"
    if not structure.lattice.volume > 1e-8:
        return "lattice volume is not positive"
    if not np.all(np.isfinite(structure.frac_coords)):
        return "fractional coordinates have NaN or infinite entries"
    return ""


def min_distance(structure: Structure, search_radius: float = 4.0) -> float:
    """Smallest distance (Å) between any two sites, periodic images included (a site and its own
    images too). Returns ``inf`` if no pair lies within ``search_radius``.
    """
    centers, _, _, dists = structure.get_neighbor_list(r=search_radius, exclude_self=True)
    return float(dists.min()) if len(dists) else math.inf
