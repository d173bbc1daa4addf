"""The judge's relaxation and robustness settings: plain dataclasses, importable without numpy or pymatgen (the
command line reads their defaults before anything heavy loads)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

FIRE_PROTOCOL = "ASE FIRE on a FrechetCellFilter"


RELAXATION_FIELDS = ("relaxer", "fmax", "max_steps", "explode_min_dist", "explode_volume")


@dataclass(frozen=True)
class RelaxSettings:
    """How proposals are relaxed and what counts as staying put. Units: eV/Å, eV/atom, %, eV, Å."""

    relaxer: str = "chgnet"       # chgnet | sevenn | matgl:<model> | module:factory
    fmax: float = 0.05            # eV/Å, convergence threshold on every force (and the cell's)
    max_steps: int = 300          # FIRE steps at most
    subset: int | None = None     # relax at most this many proposals per run (a seeded draw); None: all
    subset_seed: int = 0
    stay_drop: float = 0.1        # eV/atom: "stays" needs an energy drop at most this
    stay_volume: float = 10.0     # %: "stays" needs |volume change| at most this
    wide_margin: float = 0.25     # eV: the relaxed gap's wider window around the target
    explode_min_dist: float = 0.5     # Å: closer atoms end a relaxation ("exploded")
    explode_volume: float = 10.0      # volume grown or shrunk by this factor ends it

    def describe(self) -> str:
        """One phrase for captions and logs."""
        sub = f"; a seeded subset of {self.subset} proposals per run (seed {self.subset_seed})" if self.subset else ""
        return (f"{relaxer_label(self.relaxer)}, {FIRE_PROTOCOL}, fmax {self.fmax:g} eV/Å, at most "
                f"{self.max_steps} steps{sub}; 'stays' = converged, energy drop ≤ {self.stay_drop:g} eV/atom, "
                f"|volume change| ≤ {self.stay_volume:g} % and StructureMatcher match; wide gap window "
                f"± {self.wide_margin:g} eV")

    def identity(self) -> dict[str, Any]:
        """What makes two relaxation stages the same (every field)."""
        return asdict(self)

    def relaxation_identity(self) -> dict[str, Any]:
        """What changes one structure's relaxation (not which proposals are drawn, nor the judging thresholds)."""
        return {k: getattr(self, k) for k in RELAXATION_FIELDS}


def relaxer_label(name: str) -> str:
    return {"chgnet": "CHGNet 0.3.0", "sevenn": "SevenNet-0"}.get(name, name)


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
