"""GPAW as a second DFT engine: plane waves and PAW setups (the method of VASP, which the paper and MP used).

PBE in plane waves (``DFTSettings.pw_cutoff``, eV), GPAW's PAW setups, the same Γ-centred k-mesh as the default
engine reduced by the cell's point group and time reversal, plus the eight time-reversal-invariant points
non-self-consistently, Fermi-Dirac smearing, spin polarised with a fixed moment of 1 μB per cell only for an odd
electron count; no DFT relaxation (the structure as given). Installing it: ``make gpaw`` (libxc from Debian, the
sdist from PyPI built with g++, Debian's ``gpaw-data`` setups); the setups are found through ``GPAW_SETUP_PATH``,
GPAW's own configuration, or ``/usr/share/gpaw-setups``. Units: eV, Å, seconds.
"""

from __future__ import annotations

import contextlib
import gzip
import importlib.util
import itertools
import os
import re
import time
from pathlib import Path

import numpy as np

from .dft_base import HARTREE, DFTEngine, DFTResult, DFTSettings, band_edges, occupied

SETUP_ENV = "GPAW_SETUP_PATH"
FALLBACK_SETUPS = (Path("/usr/share/gpaw-setups"), Path.home() / ".gpaw" / "gpaw-setups")
_VALENCE: dict[tuple[str, str], int | None] = {}


def setup_dirs() -> list[Path]:
    """Folders that may hold GPAW's PAW setups, in the order GPAW would search them."""
    dirs = [Path(p) for p in os.environ.get(SETUP_ENV, "").split(os.pathsep) if p]
    try:
        import gpaw

        dirs += [Path(p) for p in gpaw.setup_paths]
    except ImportError:
        pass
    dirs += [p for p in FALLBACK_SETUPS if p.is_dir()]
    for p in Path.home().joinpath(".gpaw").glob("gpaw-setups-*"):
        dirs.append(p)
    return list(dict.fromkeys(d for d in dirs if d.is_dir()))


def valence(element: str, xc: str = "PBE") -> int | None:
    """Valence electrons of ``element``'s standard ``xc`` setup (read from the setup file); None without one."""
    key = (element, xc.upper())
    if key not in _VALENCE:
        _VALENCE[key] = None
        for d in setup_dirs():
            f = d / f"{element}.{xc.upper()}.gz"
            if f.is_file():
                with gzip.open(f, "rt") as fh:
                    m = re.search(r'valence="([0-9.]+)"', fh.read(4000))
                _VALENCE[key] = int(round(float(m.group(1)))) if m else None
                break
    return _VALENCE[key]


class GPAWEngine(DFTEngine):
    name = "gpaw"

    def unavailable(self) -> str | None:
        if importlib.util.find_spec("gpaw") is None:
            return ("the DFT engine gpaw is not installed (no wheel on PyPI: `make gpaw` builds it with libxc and "
                    "installs Debian's gpaw-data setups)")
        if not setup_dirs():
            return (f"gpaw finds no PAW setups: put them in {FALLBACK_SETUPS[0]} (Debian's gpaw-data) or set "
                    f"{SETUP_ENV} (`gpaw install-data DIR` downloads them)")
        return None

    def supports(self, element: str, settings: DFTSettings | None = None) -> bool:
        return valence(element, (settings or DFTSettings.for_engine(self.name)).xc) is not None

    @staticmethod
    def electrons(structure, settings: DFTSettings) -> int:
        """Valence electrons of the cell under GPAW's setups."""
        return sum(valence(site.specie.symbol, settings.xc) for site in structure)

    def band_gap(self, structure, settings: DFTSettings) -> DFTResult:
        t0 = time.perf_counter()
        try:
            with _one_thread():   # one core per calculation, like the default engine (workers add cores)
                out = self._run(structure, settings)
        except Exception as err:  # noqa: BLE001 - any failure of one calculation is a result with its reason
            out = DFTResult(reason=f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}")
        out.seconds = round(time.perf_counter() - t0, 2)
        return out

    def _run(self, structure, settings: DFTSettings) -> DFTResult:
        if settings.lattice_scan:
            raise ValueError("the GPAW engine has no lattice scan (use the pyscf engine for --dft-lattice)")
        import gpaw
        from ase import Atoms
        from gpaw import GPAW, PW, FermiDirac, KohnShamConvergenceError

        gpaw.setup_paths.extend(str(d) for d in setup_dirs() if str(d) not in gpaw.setup_paths)
        missing = sorted({s.specie.symbol for s in structure if valence(s.specie.symbol, settings.xc) is None})
        if missing:
            return DFTResult(reason=f"no GPAW {settings.xc.upper()} setup for {', '.join(missing)}")
        structure = niggli(structure)
        # snapped to 1e-5 (Å, fractional) like the default engine: a relaxed cell a hair off its symmetry
        lattice = np.round(structure.lattice.matrix, 5)
        frac = np.round(structure.frac_coords, 5) % 1.0
        atoms = Atoms([s.specie.symbol for s in structure], scaled_positions=frac, cell=lattice, pbc=True)
        odd = self.electrons(structure, settings) % 2 == 1
        if odd:
            atoms.set_initial_magnetic_moments([1.0 / len(atoms)] * len(atoms))
        width = settings.smearing * HARTREE
        calc = GPAW(mode=PW(settings.pw_cutoff), xc=settings.xc.upper(),
                    kpts={"size": settings.mesh(structure.lattice.abc), "gamma": True},
                    occupations=FermiDirac(width, fixmagmom=odd), spinpol=odd, maxiter=settings.max_cycle,
                    symmetry={"tolerance": 1e-5}, txt=None)
        atoms.calc = calc
        converged = True
        try:
            atoms.get_potential_energy()
        except KohnShamConvergenceError:
            converged = False
        if not converged:
            return DFTResult(n_kpts=len(calc.get_ibz_k_points()), spin_polarised=odd, cycles=settings.max_cycle,
                             reason=f"SCF not converged in {settings.max_cycle} cycles")
        n_kpts = len(calc.get_ibz_k_points())
        energies = _levels(calc)
        if settings.high_symmetry:
            trim = np.array(list(itertools.product((0.0, 0.5), repeat=3)))
            bands = calc.fixed_density(kpts=trim, symmetry="off", txt=None)
            energies = [e + b for e, b in zip(energies, _levels(bands), strict=True)]
        edges = band_edges(energies, occupied(int(round(calc.get_number_of_electrons())), odd))
        if edges is None:
            return DFTResult(converged=True, n_kpts=n_kpts, spin_polarised=odd, reason="no empty band to read a gap")
        return DFTResult(band_gap=max(0.0, edges[0]), direct_gap=max(0.0, edges[1]), converged=True,
                         n_kpts=n_kpts, cycles=int(calc.get_number_of_iterations() or 0), spin_polarised=odd)


def niggli(structure):
    """``structure`` in its Niggli-reduced cell where that cell is shorter (the same crystal: GPAW warns that results
    "may be wrong" for a cell with strongly skewed axes, as free-task proposals often have; the k-mesh rule then
    follows the reduced axes), else as given (an already reduced cell keeps its axes and its symmetry-reduced mesh)."""
    reduced = structure.get_reduced_structure()
    return structure if np.allclose(sorted(structure.lattice.abc), sorted(reduced.lattice.abc), atol=1e-3) else reduced


def _one_thread():
    """BLAS on one thread (GPAW links its own OpenBLAS beside numpy's: two threads each on a busy 2-core machine
    made SrTiO3 take 57 s instead of 7 s); a no-op without threadpoolctl. GPAW's libraries are loaded first, as the
    limit applies to the libraries loaded when it is set."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    import _gpaw  # noqa: F401 - GPAW's C extension, linked to the system's BLAS
    import scipy.linalg  # noqa: F401 - loads scipy's own OpenBLAS, which GPAW calls

    return threadpool_limits(1)


def _levels(calc) -> list[list[np.ndarray]]:
    """Eigenvalues (eV) as [spin][k] -> sorted array."""
    nk = len(calc.get_ibz_k_points())
    return [[np.sort(np.asarray(calc.get_eigenvalues(kpt=k, spin=s))) for k in range(nk)]
            for s in range(calc.get_number_of_spins())]
