"""Relaxation with a universal interatomic potential: the physical-validity stage's instrument.

Protocol as Matbench Discovery's: ASE's FIRE on a ``FrechetCellFilter`` (positions and cell together),
converged when the largest force (and the filter's cell "force") is below ``fmax`` (0.05 eV/Å), at most
``max_steps`` steps (300). The default potential is CHGNet 0.3.0 (its weights ship inside the ``chgnet``
wheel); any ASE calculator works by name (``sevenn``: SevenNet-0, ``matgl:<model>`` a matgl PES model) or as
``module:factory`` (a callable returning an ASE calculator).

Speed: CHGNet runs *batched in lockstep*: every active structure has its own ASE optimiser and filter, and
one CHGNet call per step predicts energies, forces and stresses of a whole batch (one backward pass for
forces and stresses together, no double-backward graph). A structure leaves the batch when it converges,
explodes or reaches the step cap. Other calculators run the same loop one structure at a time.

Faults never stop a batch: a NaN energy or force, two atoms closer than 0.5 Å, or a volume change beyond x10
(checked every 10 steps) ends that structure's relaxation with a reason; a potential that cannot be loaded raises
:class:`RelaxerUnavailable` with one line naming what to install.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pymatgen.core import Lattice, Structure

from .settings import FIRE_PROTOCOL, RELAXATION_FIELDS, RelaxSettings, relaxer_label  # noqa: F401 - re-exported


class RelaxerUnavailable(RuntimeError):
    """The requested potential cannot be loaded here (the message says what to install)."""


@dataclass
class RelaxOutcome:
    """One structure's relaxation. Energies in eV/atom; ``final`` None when it exploded or never started."""

    converged: bool = False
    steps: int = 0
    energy_initial: float = math.nan
    energy_final: float = math.nan
    final: Structure | None = None
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def energy_drop(self) -> float:
        """Initial minus final energy, eV/atom (positive: the potential found a lower energy)."""
        return self.energy_initial - self.energy_final

    def record(self) -> dict[str, Any]:
        """The outcome as JSON (the final cell as a pymatgen dict), as the relaxation caches keep it."""
        return {"converged": self.converged, "steps": self.steps, "energy_initial": self.energy_initial,
                "energy_final": self.energy_final, "reason": self.reason,
                "final": None if self.final is None else self.final.as_dict()}


def stays(converged: bool, energy_drop: float, moved: dict[str, Any], settings: RelaxSettings) -> bool:
    """'stays': a converged relaxation that dropped at most ``stay_drop`` eV/atom, changed the volume by at most
    ``stay_volume`` % and still matches the start (``moved``: :func:`compare`'s result)."""
    return bool(converged and energy_drop <= settings.stay_drop
                and abs(moved["volume_change"]) <= settings.stay_volume and moved["match"] is True)


# -- potentials ------------------------------------------------------------------------------------------------
class BatchedCHGNet:
    """CHGNet energies (eV), forces (eV/Å) and stresses (eV/Å³, 3x3) for many structures in one call."""

    name = "chgnet"

    def __init__(self, model: Any = None, batch_size: int = 16, device: str = "cpu"):
        try:
            from chgnet.model import CHGNet
        except ImportError as err:
            raise RelaxerUnavailable(f"the relaxer 'chgnet' needs the chgnet package: pip install chgnet ({err})") from None
        if model is None:
            with contextlib.redirect_stdout(io.StringIO()):   # CHGNet announces itself on stdout
                model = CHGNet.load(model_name="0.3.0", verbose=False)
        self.device = device
        self.model = model.to(device) if device != "cpu" else model
        self.model.eval()
        self.batch_size = batch_size
        self.version = getattr(self.model, "version", None) or "0.3.0"

    def _one_batch(self, structures: Sequence[Structure]):
        import torch

        with torch.enable_grad():   # forces and stresses are gradients, also when called under no_grad
            return self._compute(structures)

    def _compute(self, structures: Sequence[Structure]):
        import torch
        from chgnet.model.model import BatchedGraph

        m = self.model
        graphs = [m.graph_converter(s) for s in structures]   # built on the CPU by CHGNet's converter
        if self.device != "cpu":
            graphs = [g.to(self.device) for g in graphs]
        bg = BatchedGraph.from_graphs(graphs, bond_basis_expansion=m.bond_basis_expansion,
                                      angle_basis_expansion=m.angle_basis_expansion, compute_stress=True)
        pred = m._compute(bg, compute_force=False, compute_stress=False)
        n_atoms = torch.tensor([len(s) for s in structures], dtype=pred["e"].dtype, device=pred["e"].device)
        per_atom = pred["e"]
        total = (per_atom * n_atoms).sum() if m.is_intensive else per_atom.sum()
        grads = torch.autograd.grad(total, [*bg.atom_positions, *bg.strains])
        k = len(structures)
        comp = m.composition_model(graphs) if m.composition_model is not None else 0.0
        energies = (((per_atom if m.is_intensive else per_atom / n_atoms) + comp).detach().double()
                    * n_atoms.double()).cpu()
        forces = [-g.detach().double().cpu().numpy() for g in grads[:k]]
        stresses = [(g.detach().double() / v.detach().double()).cpu().numpy()
                    for g, v in zip(grads[k:], bg.volumes, strict=True)]
        return [float(e) for e in energies], forces, stresses

    def efs(self, structures: Sequence[Structure]) -> list[tuple[float, np.ndarray, np.ndarray] | str]:
        """Per structure (total energy eV, forces (n, 3) eV/Å, stress (3, 3) eV/Å³), or a reason string."""
        out: list = []
        for i in range(0, len(structures), self.batch_size):
            chunk = structures[i:i + self.batch_size]
            try:
                e, f, s = self._one_batch(chunk)
                out += list(zip(e, f, s, strict=True))
            except Exception:  # noqa: BLE001 - find the structure that broke the batch, keep the rest
                for st in chunk:
                    try:
                        e, f, s = self._one_batch([st])
                        out.append((e[0], f[0], s[0]))
                    except Exception as err:  # noqa: BLE001
                        out.append(f"CHGNet failed: {type(err).__name__}: {str(err).splitlines()[0][:120]}")
        return out


class SerialASE:
    """Any ASE calculator, one structure at a time."""

    def __init__(self, name: str, calculator: Any):
        self.name = name
        self.calc = calculator

    def efs(self, structures: Sequence[Structure]) -> list[tuple[float, np.ndarray, np.ndarray] | str]:
        from ase.stress import voigt_6_to_full_3x3_stress
        from pymatgen.io.ase import AseAtomsAdaptor

        out: list = []
        for s in structures:
            atoms = AseAtomsAdaptor.get_atoms(s)
            atoms.calc = self.calc
            try:
                e = float(atoms.get_potential_energy())
                f = np.asarray(atoms.get_forces(), dtype=float)
                st = np.asarray(atoms.get_stress(voigt=True), dtype=float)
                out.append((e, f, voigt_6_to_full_3x3_stress(st)))
            except Exception as err:  # noqa: BLE001
                out.append(f"{self.name} failed: {type(err).__name__}: {str(err).splitlines()[0][:120]}")
        return out


def _factory(target: str) -> Callable[[], Any]:
    module, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise RelaxerUnavailable(f"relaxer {target!r}: cannot import {module}:{attr} ({err})") from None


_LOADED: dict[tuple[str, int, str], Any] = {}


def check_relaxer(name: str) -> None:
    """Raise :class:`RelaxerUnavailable` (one line, what to install) when ``name`` cannot be loaded here; cheap:
    imports only, no weights."""
    needs = {"chgnet": "chgnet", "sevenn": "sevenn"}
    if name in needs:
        if importlib.util.find_spec(needs[name]) is None:
            raise RelaxerUnavailable(f"the relaxer {name!r} needs the {needs[name]} package: pip install {needs[name]}")
    elif name.startswith("matgl:"):
        if importlib.util.find_spec("matgl") is None:
            raise RelaxerUnavailable(f"relaxer {name!r} needs matgl: pip install matgl")
    elif ":" in name:
        _factory(name)
    else:
        raise RelaxerUnavailable(f"unknown relaxer {name!r}: use chgnet, sevenn, matgl:<model> or module:factory")


DEVICE_ENV = "SMOACS_RELAX_DEVICE"   # where CHGNet and SevenNet run (default cpu); not part of any result's identity


def relax_device() -> str:
    """The relaxers' torch device: ``$SMOACS_RELAX_DEVICE`` (e.g. ``cuda``), else ``cpu``."""
    return os.environ.get(DEVICE_ENV, "").strip() or "cpu"


def load_relaxer(name: str = "chgnet", batch_size: int = 16, device: str | None = None):
    """The potential called ``name``: ``chgnet`` (batched), ``sevenn`` (SevenNet-0), ``matgl:<model name or
    folder>`` (a matgl potential; by name it downloads, which needs internet) or ``module:factory``. ``device``
    (default :func:`relax_device`) is where CHGNet and SevenNet run; the same numbers to float precision, so
    caches do not depend on it."""
    device = device or relax_device()
    if name == "chgnet":
        if ("chgnet", batch_size, device) not in _LOADED:   # one model per process and device
            _LOADED[("chgnet", batch_size, device)] = BatchedCHGNet(batch_size=batch_size, device=device)
        return _LOADED[("chgnet", batch_size, device)]
    if name == "sevenn":
        try:
            from sevenn.calculator import SevenNetCalculator
        except ImportError:
            raise RelaxerUnavailable("the relaxer 'sevenn' needs the sevenn package: pip install sevenn") from None
        return SerialASE(name, SevenNetCalculator("7net-0", device=device))
    if name.startswith("matgl:"):
        try:
            import matgl
            from matgl.ext.ase import PESCalculator
        except ImportError as err:
            raise RelaxerUnavailable(f"relaxer {name!r} needs matgl with its ASE interface ({err})") from None
        try:
            potential = matgl.load_model(name.split(":", 1)[1])
        except Exception as err:  # noqa: BLE001 - offline download, missing folder
            raise RelaxerUnavailable(f"relaxer {name!r}: matgl could not load it ({str(err).splitlines()[0]})") from None
        return SerialASE(name, PESCalculator(potential))
    if ":" in name:
        return SerialASE(name, _factory(name)())
    raise RelaxerUnavailable(f"unknown relaxer {name!r}: use chgnet, sevenn, matgl:<model> or module:factory")


# -- the lockstep FIRE loop -----------------------------------------------------------------------------------
def _too_close(atoms, cutoff: float) -> bool:
    from ase.neighborlist import neighbor_list

    return len(neighbor_list("i", atoms, cutoff, self_interaction=False)) > 0


def _structure(atoms) -> Structure:
    from pymatgen.io.ase import AseAtomsAdaptor

    return AseAtomsAdaptor.get_structure(atoms)


class _Eig3:
    """Matrix exponential, logarithm and the exponential's Fréchet derivative of 3x3 matrices by eigen-
    decomposition (Daleckii-Krein), for the cell filter: scipy's generic ``logm``/``expm_frechet`` cost ~3 ms a
    call, 40 % of a 5-site relaxation. A matrix whose eigenvectors are ill-conditioned (near-defective, e.g. a
    pure shear) falls back to scipy, so results agree with scipy's to ~1e-12."""

    COND = 1e6

    def __init__(self) -> None:
        from scipy.linalg import expm, expm_frechet, logm

        self._scipy = (expm, logm, expm_frechet)
        self._last: tuple[bytes, Any] | None = None

    def _eig(self, a: np.ndarray):
        key = a.tobytes()
        if self._last is None or self._last[0] != key:
            w, v = np.linalg.eig(a)
            ok = np.all(np.isfinite(w)) and np.linalg.cond(v) < self.COND
            self._last = (key, (w, v, np.linalg.inv(v)) if ok else None)
        return self._last[1]

    def expm(self, a: np.ndarray) -> np.ndarray:
        e = self._eig(a)
        if e is None:
            return self._scipy[0](a)
        w, v, vi = e
        return np.real((v * np.exp(w)) @ vi)

    def logm(self, a: np.ndarray) -> np.ndarray:
        e = self._eig(a)
        if e is None or np.any(np.abs(w := e[0]) == 0) or np.any((w.real <= 0) & (np.abs(w.imag) < 1e-12)):
            return np.real(self._scipy[1](a))
        w, v, vi = e
        return np.real((v * np.log(w)) @ vi)

    def expm_frechet(self, a: np.ndarray, direction: np.ndarray, compute_expm: bool = True):
        e = self._eig(a)
        if e is None:
            return self._scipy[2](a, direction, compute_expm=compute_expm)
        w, v, vi = e
        d = w[:, None] - w[None, :]
        zero = d == 0
        safe = np.where(zero, 1.0, d)
        # (exp(w_i) - exp(w_j)) / (w_i - w_j) without cancellation; exp(w_i) where equal
        g = np.exp(w)[None, :] * np.where(zero, 1.0, np.expm1(safe) / safe)
        frechet = np.real(v @ (g * (vi @ direction @ v)) @ vi)
        return (self.expm(a), frechet) if compute_expm else frechet


def _filter(atoms):
    """A FrechetCellFilter whose forces are computed once per geometry (the convergence check and FIRE's step
    both ask for them; each costs a matrix logarithm and nine Fréchet derivatives), with 3x3 matrix functions
    by eigendecomposition (:class:`_Eig3`)."""
    from ase.filters import FrechetCellFilter

    class _Once(FrechetCellFilter):
        _key: bytes | None = None
        _forces: np.ndarray | None = None

        def get_forces(self, *args, **kwargs):
            key = self.atoms.positions.tobytes() + self.atoms.cell.array.tobytes() + bytes(id(self.atoms.calc) % 251)
            if key != self._key:
                self._forces, self._key = super().get_forces(*args, **kwargs), key
            return self._forces.copy()

    flt = _Once(atoms)
    fast = _Eig3()
    for owner in (flt, getattr(flt, "_utility", None)):
        if owner is not None:
            owner.expm, owner.logm, owner.expm_frechet = fast.expm, fast.logm, fast.expm_frechet
    return flt


def relax(structures: Sequence[Structure | None], settings: RelaxSettings | None = None, relaxer: Any = None,
          progress: Callable[[int], None] | None = None, optimizer: Any = None) -> list[RelaxOutcome]:
    """Relax every structure (None gives an outcome with a reason); returns outcomes in order.

    ``relaxer`` (default: :func:`load_relaxer` of ``settings.relaxer``) has ``efs(structures)``. ``progress`` is
    called with the number of structures that finished, as they finish. ``optimizer``: another ASE optimiser class
    that needs one force call per step (``BFGS``, ``LBFGS``; for ``perf/relax_optimizers.py``), default FIRE, the
    protocol's.
    """
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.optimize import FIRE
    from ase.stress import full_3x3_to_voigt_6_stress
    from pymatgen.io.ase import AseAtomsAdaptor

    settings = settings or RelaxSettings()
    relaxer = relaxer or load_relaxer(settings.relaxer)
    outcomes = [RelaxOutcome() for _ in structures]
    atoms, filters, opts, v0 = {}, {}, {}, {}
    for i, s in enumerate(structures):
        if s is None:
            outcomes[i].reason = "no structure"
            continue
        s = s.copy()
        s.remove_oxidation_states()
        a = AseAtomsAdaptor.get_atoms(s)
        a.set_initial_magnetic_moments(None)
        atoms[i] = a
        v0[i] = a.get_volume()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            filters[i] = _filter(a)
            opts[i] = (optimizer or FIRE)(filters[i], logfile=None)
    active = list(atoms)
    done_count = len(structures) - len(active)
    if progress and done_count:
        progress(done_count)

    def finish(i: int, reason: str = "", converged: bool = False, keep: bool = True) -> None:
        out = outcomes[i]
        out.converged = converged
        out.steps = opts[i].nsteps
        out.reason = reason
        out.final = _structure(atoms[i]) if keep else None
        if progress:
            progress(1)

    while active:
        results = relaxer.efs([_structure(atoms[i]) for i in active])
        still = []
        for i, res in zip(active, results, strict=True):
            a, out = atoms[i], outcomes[i]
            step = opts[i].nsteps
            if isinstance(res, str):
                finish(i, f"exploded at step {step}: {res}", keep=False)
                continue
            energy, forces, stress = res
            if not (math.isfinite(energy) and np.isfinite(forces).all() and np.isfinite(stress).all()):
                finish(i, f"exploded at step {step}: non-finite energy, force or stress", keep=False)
                continue
            n = len(a)
            if step == 0:
                out.energy_initial = energy / n
            out.energy_final = energy / n
            ratio = a.get_volume() / v0[i]
            if not (1 / settings.explode_volume < ratio < settings.explode_volume):
                finish(i, f"exploded at step {step}: volume x{ratio:.3g}", keep=False)
                continue
            if step % 10 == 0 and _too_close(a, settings.explode_min_dist):   # every 10 steps: it is not free
                finish(i, f"exploded at step {step}: atoms closer than {settings.explode_min_dist} Å", keep=False)
                continue
            a.calc = SinglePointCalculator(a, energy=energy, forces=forces,
                                           stress=full_3x3_to_voigt_6_stress(stress))
            f = filters[i].get_forces()
            if float((f ** 2).sum(axis=1).max()) < settings.fmax ** 2:
                finish(i, converged=True)
            elif step >= settings.max_steps:
                finish(i, f"not converged in {settings.max_steps} steps")
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    opts[i].step()
                opts[i].nsteps += 1
                still.append(i)
        active = still
    return outcomes


def relax_cell(structures: Sequence[Structure | None], settings: RelaxSettings | None = None, relaxer: Any = None,
               max_step: float = 0.05, curvature: float = 10.0, hold_sites: bool = False) -> list[RelaxOutcome]:
    """Relax only the lattice lengths of orthorhombic cells whose sites sit where forces vanish by symmetry (every
    fractional coordinate 0 or 1/2: inversion centres on mirror planes), all structures in one potential call per
    iteration.

    Quasi-Newton (Broyden) on x = ln(a, b, c) per structure: the gradient of the energy per atom is V σ_ii / N
    (eV), which is also what the FrechetCellFilter calls the cell force, so convergence (every |V σ_ii| / N below
    ``fmax``) is the criterion of :func:`relax`: FIRE started from the result stops at once. Steps are capped at
    ``max_step`` in ln(length); ``curvature`` (eV) is the initial d²(E/N)/dx². A structure whose atomic forces
    exceed ``fmax`` (the symmetry does not hold) or whose cell is not orthorhombic ends with a reason and no
    final structure: relax it with :func:`relax`.

    ``hold_sites``: forces are not checked; the fractional coordinates are held and the cell relaxes under them
    (``converged``: every cell force below ``fmax``; the atoms are not at rest). A cell pre-relaxation, before
    FIRE relaxes the positions too.
    """
    settings = settings or RelaxSettings()
    relaxer = relaxer or load_relaxer(settings.relaxer)
    outcomes = [RelaxOutcome() for _ in structures]
    current: dict[int, Structure] = {}
    for i, st in enumerate(structures):
        if st is None:
            outcomes[i].reason = "no structure"
        elif np.abs(np.asarray(st.lattice.angles) - 90.0).max() > 1e-3:   # degrees (float32 cells: 90.000003)
            outcomes[i].reason = "not an orthorhombic cell: relax it with FIRE"
        else:
            s = Structure(Lattice.orthorhombic(*st.lattice.abc), st.species, st.frac_coords)
            s.remove_oxidation_states()
            current[i] = s
    x = {i: np.log(np.asarray(s.lattice.abc, dtype=float)) for i, s in current.items()}
    hess = {i: np.eye(3) * curvature for i in current}
    last: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    active = list(current)
    for step in range(settings.max_steps + 1):
        if not active:
            break
        results = relaxer.efs([current[i] for i in active])
        still = []
        for i, res in zip(active, results, strict=True):
            out, s = outcomes[i], current[i]
            out.steps = step
            if isinstance(res, str):
                out.reason = f"exploded at step {step}: {res}"
                continue
            energy, forces, stress = res
            n = len(s)
            if not (math.isfinite(energy) and np.isfinite(forces).all() and np.isfinite(stress).all()):
                out.reason = f"exploded at step {step}: non-finite energy, force or stress"
                continue
            if step == 0:
                out.energy_initial = energy / n
            out.energy_final = energy / n
            if not hold_sites and float(np.linalg.norm(forces, axis=1).max()) >= settings.fmax:
                out.reason = f"atomic forces {np.linalg.norm(forces, axis=1).max():.3g} eV/Å: no symmetry, use FIRE"
                continue
            g = s.volume * np.diag(stress) / n
            if float(np.abs(g).max()) < settings.fmax:
                out.converged, out.final = True, s
                continue
            if step == settings.max_steps:
                out.reason, out.final = f"not converged in {settings.max_steps} steps", s
                continue
            if i in last:   # Broyden update of the 3x3 curvature from the last step
                dx, dg = x[i] - last[i][0], g - last[i][1]
                if float(dx @ dx) > 1e-16:
                    hess[i] = hess[i] + np.outer(dg - hess[i] @ dx, dx) / float(dx @ dx)
            try:
                delta = -np.linalg.solve(hess[i], g)
            except np.linalg.LinAlgError:
                delta = -g / curvature
            if not np.isfinite(delta).all() or float(delta @ g) >= 0:   # not a descent direction: reset
                hess[i] = np.eye(3) * curvature
                delta = -g / curvature
            delta *= min(1.0, max_step / max(float(np.abs(delta).max()), 1e-12))
            last[i] = (x[i].copy(), g)
            x[i] = x[i] + delta
            current[i] = Structure(Lattice.orthorhombic(*np.exp(x[i])), s.species, s.frac_coords)
            still.append(i)
        active = still
    return outcomes


# -- how far a structure moved ---------------------------------------------------------------------------------
def displacement(initial: Structure, final: Structure) -> tuple[float, float]:
    """(max, RMS) atomic displacement in Å: fractional differences wrapped to the nearest image, the rigid
    shift (their mean) removed, expressed with the final lattice (the cell's own change is the volume change)."""
    d = np.asarray(final.frac_coords) - np.asarray(initial.frac_coords)
    d -= np.round(d)
    d -= d.mean(axis=0)
    d -= np.round(d)
    cart = d @ final.lattice.matrix
    norms = np.linalg.norm(cart, axis=1)
    return float(norms.max()), float(np.sqrt((norms ** 2).mean()))


def compare(initial: Structure, final: Structure) -> dict[str, Any]:
    """Displacements (Å), volume change (%) and whether pymatgen's StructureMatcher (defaults: ltol 0.2,
    stol 0.3, angle_tol 5°) still matches the two."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    max_d, rms_d = displacement(initial, final)
    try:
        matched = bool(StructureMatcher().fit(initial, final))
    except Exception:  # noqa: BLE001 - a degenerate cell is no match
        matched = False
    return {"max_disp": max_d, "rms_disp": rms_d,
            "volume_change": 100.0 * (final.volume / initial.volume - 1.0), "match": matched}
