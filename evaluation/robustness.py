"""Robustness without relaxation: does a success survive small, seeded perturbations of its structure?

Each judged proposal gets ``copies`` perturbed copies: every atom displaced by Gaussian noise of
``displacement`` Å per Cartesian axis, and the whole cell strained isotropically by a Gaussian factor
(1 + ε, ε of standard deviation ``strain``). The judge predicts every copy and applies every criterion.
``robust_fraction`` is the fraction of copies that still succeed; ``success_robust`` is own-judge success
*and* a robust fraction of at least ``min_fraction``. Only own-judge successes are perturbed (the rest cannot
be robust successes), so ``robust_fraction`` is empty for them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from pymatgen.core import Lattice, Structure


@dataclass(frozen=True)
class RobustSettings:
    """How many perturbed copies, how large (Å, relative strain), and the fraction that must succeed."""

    copies: int = 8
    displacement: float = 0.02    # Å, Gaussian σ per Cartesian axis
    strain: float = 0.005         # Gaussian σ of the isotropic strain (0.5 %)
    min_fraction: float = 0.75    # success_robust: at least this fraction of copies succeed
    seed: int = 0

    def describe(self) -> str:
        return (f"{self.copies} copies with Gaussian displacements of {self.displacement:g} Å and isotropic strain "
                f"of {100 * self.strain:g} % (σ), robust when ≥ {100 * self.min_fraction:g} % of them succeed")

    def identity(self) -> dict[str, Any]:
        return asdict(self)


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
