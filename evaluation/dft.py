"""DFT band gaps of proposals: PySCF's periodic Kohn-Sham as the default engine, the engines by name, a batch.

PySCF (``pip install pyscf``): PBE, GTH-PBE pseudopotentials, the ``gth-dzvp-molopt-sr`` basis, multigrid
integration at a 70 Ha cutoff (SrTiO3 within 0.015 eV of PySCF's full cutoff, 5x faster than plain FFT), a Γ-centred
k-mesh reduced by the cell's space-group symmetry (and time reversal), plus the eight time-reversal-invariant
points of the cell (Γ, the face centres, edge centres and corner of the reciprocal cell: Γ, X, M, R of a cubic
perovskite) non-self-consistently; Fermi smearing so that metals converge; restricted Kohn-Sham unless the
electron count is odd. No DFT relaxation by default: the structure is used as given (the judge passes the
CHGNet-relaxed cell); ``lattice_scan`` (``--dft-lattice N``) first scales the cell isotropically to the minimum of
a parabola through N DFT total energies (a full relaxation for a cubic cell whose sites sit where forces vanish by
symmetry, as SMOACS-relax's and the screening's are; a volume-only one otherwise). A failure (no basis or
pseudopotential for an element, SCF not converged) is a result with its reason.
Units: eV for gaps, Hartree (Ha) for PySCF's cutoff and smearing, seconds.
"""

from __future__ import annotations

import importlib.util
import itertools
import math
import time
from dataclasses import asdict
from typing import Any

import numpy as np

from .dft_base import (  # noqa: F401 - the interface, re-exported
    ENGINE_DEFAULTS,
    HARTREE,
    DFTEngine,
    DFTResult,
    DFTSettings,
    band_edges,
    occupied,
)

_SUPPORTED: dict[tuple[str, str, str], bool] = {}


class PySCFEngine(DFTEngine):
    name = "pyscf"

    def unavailable(self) -> str | None:
        if importlib.util.find_spec("pyscf") is None:
            return "the DFT engine pyscf is not installed (pip install pyscf)"
        return None

    def supports(self, element: str, settings: DFTSettings | None = None) -> bool:
        s = settings or DFTSettings()
        key = (element, s.basis, s.pseudo)
        if key not in _SUPPORTED:
            from pyscf.pbc import gto

            try:
                gto.basis.load(s.basis, element)
                gto.pseudo.load(s.pseudo, element)
                _SUPPORTED[key] = True
            except Exception:  # noqa: BLE001 - PySCF raises several types for a missing basis
                _SUPPORTED[key] = False
        return _SUPPORTED[key]

    def band_gap(self, structure, settings: DFTSettings) -> DFTResult:
        t0 = time.perf_counter()
        scale = 1.0
        settings = settings.for_cell(structure)
        try:
            if settings.lattice_scan:
                structure, scale = self._scan(structure, settings)
            out = self._symmetric(self._run, structure, settings)
        except Exception as err:  # noqa: BLE001 - any failure of one calculation is a result with its reason
            out = DFTResult(reason=f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}")
        out.seconds = round(time.perf_counter() - t0, 2)
        out.scale = round(float(scale), 5)
        return out

    def stale(self, record: dict[str, Any], structure, settings: DFTSettings) -> bool:
        """Records from before :func:`_bands` (no ``spin_polarised``) of an odd-electron cell that gave a
        positive gap or PySCF's IndexError: high-symmetry band points may have been dropped, which can only have
        widened a gap (a metal stays a metal); and memory failures of a cell whose symmetrised FFT mesh
        :meth:`_cell` now refuses. Timeouts and SCF failures stand."""
        if "MemoryError" in str(record.get("reason")):
            return not self._cell(structure, settings).space_group_symmetry
        if record.get("spin_polarised") is not None:
            return False
        if not (float(record.get("band_gap", math.nan)) > 0 or "IndexError" in str(record.get("reason"))):
            return False
        return self.electrons(structure, settings) % 2 == 1

    @staticmethod
    def electrons(structure, settings: DFTSettings) -> int:
        """Valence electrons of the cell under ``settings``' pseudopotentials (GTH: the first entry lists the
        valence electrons per angular momentum)."""
        from pyscf.pbc import gto

        per = {el.symbol: int(sum(gto.pseudo.load(settings.pseudo, el.symbol)[0])) for el in structure.composition}
        return sum(per[site.specie.symbol] for site in structure)

    @staticmethod
    def _symmetric(fn, structure, settings: DFTSettings):
        try:
            return fn(structure, settings)
        except RuntimeError as err:
            if "crystal class" not in str(err):
                raise
            # PySCF found symmetry operations it cannot classify (a cell a hair off its symmetry, e.g. a relaxed
            # cubic cell): the full k-mesh, no reduction, about 5x the time
            return fn(structure, settings, symmetry=False)

    def _scan(self, structure, settings: DFTSettings):
        """(the cell scaled to the DFT energy minimum, its scale): a parabola through ``lattice_scan`` total
        energies at scales 1 ± ``lattice_range``; the lowest point's scale where the parabola has no minimum
        inside the scan. A scan whose SCF does not converge raises (the calculation fails with that reason)."""
        if settings.lattice_scan < 3:
            raise ValueError(f"a lattice scan needs at least 3 points, got {settings.lattice_scan}")
        scales = np.linspace(1 - settings.lattice_range, 1 + settings.lattice_range, settings.lattice_scan)
        energies = []
        for f in scales:
            cell = structure.copy()
            cell.scale_lattice(structure.volume * f ** 3)
            mf = self._symmetric(self._scf, cell, settings)[1]
            if not mf.converged:
                raise ValueError(f"lattice scan: SCF not converged at scale {f:.3f}")
            energies.append(float(mf.e_tot))
        a, b, _ = np.polyfit(scales, energies, 2)
        best = -b / (2 * a) if a > 0 else math.nan
        if not (scales[0] <= best <= scales[-1]):
            best = float(scales[int(np.argmin(energies))])
        cell = structure.copy()
        cell.scale_lattice(structure.volume * best ** 3)
        return cell, best

    def _run(self, structure, settings: DFTSettings, symmetry: bool = True) -> DFTResult:
        cell, mf, n_kpts, odd = self._scf(structure, settings, symmetry)
        return self._gap(cell, mf, n_kpts, odd, settings)

    @staticmethod
    def _cell(structure, settings: DFTSettings, symmetry: bool = True):
        """PySCF's cell of ``structure``, with space-group symmetry where asked for and usable: not where PySCF
        cannot classify the cell's operations, nor where symmetrising its FFT mesh grows it more than 8-fold (a
        cell a hair off a higher symmetry: a CHGNet-relaxed RbBr 2e-5 degrees off cubic took 31³ to 31 x 47,620 x
        48,781 points, a 1.6 TiB array)."""
        from pyscf.pbc import gto, tools

        cell = gto.Cell()
        # snapped to 1e-5 (Å, fractional): a relaxed cell a hair off its symmetry (1e-7 Å) otherwise meets PySCF's
        # symmetry search with operations it cannot classify
        lattice = np.round(structure.lattice.matrix, 5)
        frac = np.round(structure.frac_coords, 5) % 1.0
        cell.atom = [[site.specie.symbol, (f @ lattice).tolist()] for site, f in zip(structure, frac, strict=True)]
        cell.a = lattice
        cell.unit = "A"
        cell.basis = settings.basis
        cell.pseudo = settings.pseudo
        cell.verbose = 0
        if settings.ke_cutoff:
            cell.ke_cutoff = settings.ke_cutoff
        cell.space_group_symmetry = symmetry
        cell.symmorphic = False
        try:
            cell.build()
        except RuntimeError:   # PySCF could not classify the cell's symmetry: the full mesh, no reduction
            cell.space_group_symmetry = False
            cell.build()
        if cell.space_group_symmetry:
            plain = tools.cutoff_to_mesh(cell.lattice_vectors(), cell.ke_cutoff) if cell.ke_cutoff else None
            if plain is not None and np.prod(cell.mesh) > 8 * np.prod(plain):
                cell.space_group_symmetry = False
                cell.mesh = None
                cell.build()
        return cell

    def _scf(self, structure, settings: DFTSettings, symmetry: bool = True):
        """(cell, converged mean-field object, irreducible k-points, odd electron count) of one SCF."""
        from pyscf import lib
        from pyscf.pbc import dft

        lib.num_threads(1)
        cell = self._cell(structure, settings, symmetry)
        mesh = settings.mesh(structure.lattice.abc)
        odd = cell.nelectron % 2 == 1
        if odd:   # one unpaired electron per cell; PySCF counts the spin of the whole k-point supercell
            cell.spin = int(np.prod(mesh))
            cell.build()
        try:
            if not cell.space_group_symmetry:
                raise ValueError("no symmetry asked for or usable")
            kpts = cell.make_kpts(mesh, with_gamma_point=True, space_group_symmetry=True,
                                  time_reversal_symmetry=True)
            n_kpts = int(kpts.nkpts_ibz)
        except Exception:  # noqa: BLE001 - no symmetry found: the full mesh
            kpts = cell.make_kpts(mesh, with_gamma_point=True)
            n_kpts = len(kpts)
        mf = (dft.KUKS if odd else dft.KRKS)(cell, kpts=kpts)
        mf.xc = settings.xc
        mf.max_cycle = settings.max_cycle
        mf.conv_tol = settings.conv_tol
        if settings.multigrid:
            mf = mf.multigrid_numint()
        if settings.smearing:
            mf = mf.smearing(sigma=settings.smearing, method="fermi")
        mf.kernel()
        return cell, mf, n_kpts, odd

    @staticmethod
    def _gap(cell, mf, n_kpts: int, odd: bool, settings: DFTSettings) -> DFTResult:
        energies = _per_k(mf.mo_energy, odd)            # [spin][k] arrays (Ha)
        if settings.high_symmetry:
            frac = np.array(list(itertools.product((0.0, 0.5), repeat=3)))
            energies = [e + b for e, b in zip(energies, _per_k(_bands(mf, cell, cell.get_abs_kpts(frac), odd), odd),
                                              strict=True)]
        edges = band_edges(energies, occupied(cell.nelectron, odd))
        if edges is None:
            return DFTResult(converged=bool(mf.converged), n_kpts=n_kpts, spin_polarised=odd,
                             reason=f"no empty band in the {settings.basis} basis: no gap to read")
        gap, direct = edges
        converged = bool(mf.converged)
        return DFTResult(band_gap=max(0.0, gap * HARTREE), direct_gap=max(0.0, direct * HARTREE),
                         converged=converged, n_kpts=n_kpts, cycles=int(getattr(mf, "cycles", 0) or 0),
                         spin_polarised=odd,
                         reason="" if converged else f"SCF not converged in {settings.max_cycle} cycles")


def _bands(mf, cell, kpts_band: np.ndarray, unrestricted: bool):
    """Eigenvalues (Ha) at ``kpts_band`` from the converged density, non-self-consistently. PySCF's own
    ``get_bands`` of an unrestricted calculation on a symmetry-reduced mesh with time reversal (an odd-electron cell
    without inversion) diagonalises one Fock matrix per irreducible mesh point instead of one per band point: it
    drops band points or raises IndexError (PySCF 2.14). Here each spin's Fock matrix is diagonalised at every band
    point, as PySCF does for a restricted calculation."""
    if not unrestricted:
        return mf.get_bands(kpts_band)[0]
    from pyscf.pbc.scf import hf as pbchf

    fock = mf.get_hcore(cell, kpts_band) + mf.get_veff(cell, mf.make_rdm1(), kpts=mf.kpts, kpts_band=kpts_band)
    s1e = mf.get_ovlp(cell, kpts_band)
    return [pbchf.eigh_with_canonical_orth(fock[s], s1e)[0] for s in range(2)]


def _per_k(mo_energy, unrestricted: bool) -> list[list[np.ndarray]]:
    """Eigenvalues as [spin][k] -> sorted array (Ha), restricted or unrestricted."""
    if unrestricted:
        return [[np.sort(np.asarray(e)) for e in mo_energy[s]] for s in range(2)]
    return [[np.sort(np.asarray(e)) for e in mo_energy]]


def get_engine(name: str) -> DFTEngine:
    if name == "pyscf":
        return PySCFEngine()
    if name == "gpaw":
        from .dft_gpaw import GPAWEngine

        return GPAWEngine()
    raise ValueError(f"unknown DFT engine {name!r}; known: {', '.join(ENGINE_DEFAULTS)}")


def compute_gaps(structures: list, settings: DFTSettings, workers: int = 1, progress: bool = False,
                 on_result=None) -> list[DFTResult]:
    """One :class:`DFTResult` per structure (None: a result with its reason), ``workers`` processes at once;
    ``on_result(index, result)`` is called as each finishes (to store it before the batch ends)."""
    engine = get_engine(settings.engine)
    why = engine.unavailable()
    if why:
        return [DFTResult(reason=why) for _ in structures]
    payload = [None if s is None else s.as_dict() for s in structures]
    results: list[DFTResult | None] = [None] * len(structures)
    from tqdm import tqdm

    bar = tqdm(total=len(structures), desc="DFT", unit="calc", disable=not progress)
    if workers <= 1 or len(structures) <= 1:
        for i, s in enumerate(payload):
            results[i] = DFTResult(**_one(s, asdict(settings)))
            if on_result is not None:
                on_result(i, results[i])
            bar.update(1)
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
            futures = {pool.submit(_one, s, asdict(settings)): i for i, s in enumerate(payload)}
            for fut in as_completed(futures):
                results[futures[fut]] = DFTResult(**fut.result())
                if on_result is not None:
                    on_result(futures[fut], results[futures[fut]])
                bar.update(1)
    bar.close()
    return [r if r is not None else DFTResult(reason="not computed") for r in results]


def _one(structure: dict | None, settings: dict[str, Any]) -> dict[str, Any]:
    """Worker: one calculation, as a plain record."""
    if structure is None:
        return DFTResult(reason="no structure").record()
    from pymatgen.core import Structure

    s = DFTSettings(**settings)
    limit = int(math.ceil(s.time_limit)) if s.time_limit else 0
    if limit:
        import signal

        def stop(*_):
            raise TimeoutError(f"stopped after the time limit of {limit} s")

        before = signal.signal(signal.SIGALRM, stop)
        signal.alarm(limit)
    try:
        return get_engine(s.engine).band_gap(Structure.from_dict(structure), s).record()
    finally:
        if limit:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, before)
