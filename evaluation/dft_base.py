"""The DFT engine interface: the settings of a band-gap calculation, its result, and what an engine provides.
Engines: :mod:`.dft` (PySCF, the default) and :mod:`.dft_gpaw` (GPAW). Units: eV, Å, Hartree (Ha) where named,
seconds.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

HARTREE = 27.211386245988   # eV


@dataclass(frozen=True)
class DFTSettings:
    """How a band gap is computed. ``kmesh``: points per reciprocal axis (Γ-centred); ``ke_cutoff`` (Ha; None lets
    PySCF choose from the basis, a 111³ mesh for SrTiO3, too slow for one core); ``smearing`` (Ha) Fermi-Dirac width; ``high_symmetry``: add the eight
    time-reversal-invariant points."""

    engine: str = "pyscf"
    xc: str = "pbe"
    basis: str = "gth-dzvp-molopt-sr"
    pseudo: str = "gth-pbe"
    kmesh: int = 3
    ke_cutoff: float | None = 70.0   # Ha; SrTiO3 with multigrid: 70 Ha 1.640 eV, PySCF's own (111³) 1.655 eV
    multigrid: bool = True   # PySCF's multigrid integration (plain FFTDF at 70 Ha: SrTiO3 1.52 eV, 5x the time)
    smearing: float = 0.005
    high_symmetry: bool = True
    max_cycle: int = 60
    conv_tol: float = 1e-7
    time_limit: float = 600.0   # s of wall time per calculation (in a worker process); 0: none. Not in the identity
    lattice_scan: int = 0       # points of an isotropic lattice scan (DFT total energies) before the gap; 0: none
    lattice_range: float = 0.04   # the scan's scales: 1 ± this (fraction of the lattice lengths)
    klength: float = 0.0   # Å: a k-mesh of max(1, round(klength / a_i)) points along each axis instead of kmesh; 0: kmesh
    pw_cutoff: float = 500.0   # eV: GPAW's plane-wave cutoff (the gpaw engine only)
    # (element, Ha): a cell with one of these elements is computed at the larger of ke_cutoff and its cutoff (the
    # rule of a plane-wave code's per-pseudopotential cutoff); (): ke_cutoff for every cell. See FINE_GRID
    element_cutoffs: tuple[tuple[str, float], ...] = ()

    @classmethod
    def for_engine(cls, engine: str = "pyscf", **kw: Any) -> DFTSettings:
        """The settings of ``engine`` (its own defaults where the default engine's do not apply), with ``kw``."""
        return cls(**{**ENGINE_DEFAULTS.get(engine, {}), "engine": engine, **kw})

    def for_cell(self, structure) -> DFTSettings:
        """The settings ``structure`` is computed with: ``ke_cutoff`` raised to its elements' cutoffs (the rule
        resolved; a cell without those elements keeps these settings' cache key)."""
        if not self.element_cutoffs or self.engine != "pyscf":
            return self
        present = {el.symbol for el in structure.composition}
        cut = max([self.ke_cutoff or 0.0] + [c for el, c in self.element_cutoffs if el in present])
        return replace(self, ke_cutoff=cut or self.ke_cutoff, element_cutoffs=())

    def identity(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("time_limit")
        if not self.element_cutoffs or self.engine != "pyscf":   # keys from before the rule stay as they were
            out.pop("element_cutoffs")
        else:
            out["element_cutoffs"] = [list(p) for p in self.element_cutoffs]
        if self.engine == "pyscf":   # the default engine's cache keys stay as they were before GPAW
            out.pop("pw_cutoff")
        else:                        # what PySCF alone reads
            for k in ("basis", "ke_cutoff", "multigrid"):
                out.pop(k)
        if "multigrid" in out and not self.multigrid:   # the settings before multigrid existed keep their keys
            out.pop("multigrid")
        if not self.lattice_scan:   # nor do those before the lattice scan
            out.pop("lattice_scan")
            out.pop("lattice_range")
        if self.klength:   # the mesh follows the cell: kmesh is not used
            out.pop("kmesh")
        else:              # nor do those before the length rule
            out.pop("klength")
        return out

    def mesh(self, lattice_abc) -> list[int]:
        """Γ-centred k-points along each reciprocal axis for a cell of lengths ``lattice_abc`` (Å)."""
        if not self.klength:
            return [self.kmesh] * 3
        return [max(1, int(math.floor(self.klength / a + 0.5))) for a in lattice_abc]

    def describe_mesh(self) -> str:
        if self.klength:
            return (f"a Γ-centred mesh of max(1, round({self.klength:g} Å / a)) points along each axis "
                    f"({math.floor(self.klength / 4.0 + 0.5)} on a 4 Å axis)")
        return f"a Γ-centred {self.kmesh}x{self.kmesh}x{self.kmesh} mesh"

    def describe(self) -> str:
        if self.engine == "gpaw":
            extra = " plus Γ, X, M, R (the 8 time-reversal-invariant points) non-self-consistently" \
                if self.high_symmetry else ""
            return (f"GPAW periodic {self.xc.upper()}, PAW setups, plane waves to {self.pw_cutoff:g} eV, "
                    f"{self.describe_mesh()} reduced by symmetry{extra}, Fermi smearing {self.smearing:g} Ha; "
                    "the CHGNet-relaxed cell, no DFT relaxation" + self.describe_limit())
        cut = f"cutoff {self.ke_cutoff:g} Ha" if self.ke_cutoff else "PySCF's cutoff for the basis"
        if self.element_cutoffs:
            cut += " (" + ", ".join(f"{c:g} Ha in a cell with {el}" for el, c in sorted(self.element_cutoffs,
                                                                                       key=lambda p: (p[1], p[0]))) + ")"
        extra = " plus Γ, X, M, R (the 8 time-reversal-invariant points) non-self-consistently" if self.high_symmetry \
            else ""
        return (f"{self.engine} periodic {self.xc.upper()}, {self.pseudo.upper()} pseudopotentials, {self.basis}, "
                f"{cut}{', multigrid' if self.multigrid else ''}, {self.describe_mesh()} reduced by symmetry{extra}, Fermi "
                f"smearing {self.smearing:g} Ha; " + (
                    f"the CHGNet-relaxed cell scaled isotropically to the minimum of a parabola through "
                    f"{self.lattice_scan} DFT energies within ±{100 * self.lattice_range:g} % (the DFT lattice)"
                    if self.lattice_scan else "the CHGNet-relaxed cell, no DFT relaxation")
                + self.describe_limit())

    def describe_limit(self) -> str:
        """The time limit, where it is not the default's (a stopped calculation counts as failed)."""
        if self.time_limit == DFTSettings.time_limit:
            return ""
        return (f"; each calculation stopped after {self.time_limit:g} s" if self.time_limit
                else "; no time limit per calculation")

    def stopped_sooner(self, record: dict[str, Any]) -> bool:
        """Whether ``record`` is a calculation stopped at a time limit shorter than this one (so these settings
        compute it again; under the same or a shorter limit its timeout stands)."""
        if "TimeoutError" not in str(record.get("reason") or ""):
            return False
        took = float(record.get("seconds") or 0.0)
        return not self.time_limit or self.time_limit > took + 1.0


# the fine grid (--dft-fine-grid): PySCF's 70 Ha multigrid is not converged for the two tightest GTH
# pseudopotentials of the elements checked (Mg r_loc 0.19, F 0.22 bohr). The gap of one cubic cell moved with its
# origin: CsMgF3 6.21 / 6.93 eV, RbCaF3 6.19 / 6.42 eV at 70 Ha, 6.57 / 6.64 and 6.33 / 6.36 at 140 Ha (GPAW, origin-
# free: 6.72, 6.36); SrTiO3 and NaNbO3 within 0.03 eV at either cutoff (perf/results/dft_grid_2026-12-07.md)
FINE_GRID: tuple[tuple[str, float], ...] = (("F", 140.0), ("Mg", 140.0))

# each engine's own defaults where the default engine's (PySCF's Gaussian basis) do not apply
ENGINE_DEFAULTS: dict[str, dict[str, Any]] = {
    "pyscf": {},
    "gpaw": {"basis": "pw", "pseudo": "paw", "ke_cutoff": None, "multigrid": False, "max_cycle": 100},
}


@dataclass
class DFTResult:
    """One calculation: band gap and smallest direct gap (eV; NaN when it failed), whether the SCF converged,
    wall seconds, and why it gave no gap ("" when it did)."""

    band_gap: float = math.nan
    direct_gap: float = math.nan
    converged: bool = False
    seconds: float = 0.0
    reason: str = ""
    n_kpts: int = 0
    cycles: int = 0
    scale: float = 1.0   # the lattice scan's scale of the cell's lengths (1: the cell as given)
    spin_polarised: bool | None = None   # unrestricted (odd electron count); None: not recorded (before 2026-12-05)

    def record(self) -> dict[str, Any]:
        return asdict(self)


class DFTEngine:
    """An engine computes a band gap from a structure; ``unavailable()`` says why it cannot run here."""

    name = ""

    def unavailable(self) -> str | None:
        return None

    def supports(self, element: str) -> bool:
        """Whether the engine can compute ``element`` (a basis and a pseudopotential for it)."""
        return True

    def band_gap(self, structure, settings: DFTSettings) -> DFTResult:
        raise NotImplementedError

    def stale(self, record: dict[str, Any], structure, settings: DFTSettings) -> bool:
        """Whether a cached ``record`` of ``structure`` came from a known defect of an earlier engine version
        and must be computed again."""
        return False


def occupied(n_electrons: int, spin_polarised: bool) -> list[int]:
    """Occupied bands per spin channel: one unpaired electron in the first channel of a spin-polarised cell."""
    return [(n_electrons + 1) // 2, n_electrons // 2] if spin_polarised else [n_electrons // 2]


def band_edges(levels: list, n_occ: list[int]) -> tuple[float, float] | None:
    """(band gap, smallest direct gap), in the unit of ``levels`` ([spin][k] sorted eigenvalue arrays), with
    ``n_occ`` occupied bands per spin; None where some k-point has no empty band to read."""
    if any(len(e) <= n for es, n in zip(levels, n_occ, strict=True) for e in es):
        return None
    vbm = max(max(e[n - 1] for e in es) for es, n in zip(levels, n_occ, strict=True) if n > 0)
    cbm = min(min(e[n] for e in es) for es, n in zip(levels, n_occ, strict=True))
    direct = min(min(es[k][n] for es, n in zip(levels, n_occ, strict=True))
                 - max(es[k][n - 1] for es, n in zip(levels, n_occ, strict=True) if n > 0)
                 for k in range(len(levels[0])))
    return float(cbm - vbm), float(direct)
