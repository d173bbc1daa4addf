"""Robustness without relaxation: does a success survive small, seeded perturbations of its structure?

Each judged proposal gets ``copies`` perturbed copies: every atom displaced by Gaussian noise of
``displacement`` Å per Cartesian axis, and the whole cell strained isotropically by a Gaussian factor
(1 + ε, ε of standard deviation ``strain``). The judge predicts every copy and applies every criterion.
``robust_fraction`` is the fraction of copies that still succeed; ``success_robust`` is own-judge success
*and* a robust fraction of at least ``min_fraction``. Only own-judge successes are perturbed (the rest cannot
be robust successes), so ``robust_fraction`` is empty for them.
"""

from __future__ import annotations

import numpy as np
from pymatgen.core import Lattice, Structure

from .settings import RobustSettings  # noqa: F401 - re-exported


def perturbed_copies(structure: Structure, settings: RobustSettings, sample: int) -> list[Structure]:
    """``settings.copies`` perturbed copies of ``structure``; the same (seed, sample) gives the same copies."""
    rng = np.random.default_rng([settings.seed, int(sample)])
    out = []
    for _ in range(settings.copies):
        factor = 1.0 + settings.strain * rng.standard_normal()
        lattice = Lattice(structure.lattice.matrix * factor)
        cart = structure.frac_coords @ lattice.matrix
        cart = cart + settings.displacement * rng.standard_normal(cart.shape)
        out.append(Structure(lattice, structure.species, cart, coords_are_cartesian=True))
    return out
