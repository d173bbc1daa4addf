"""Stability beyond the 5-site symmetry: relax a distorted supercell of each relaxed success.

On the ideal 5-site cell every site is an inversion centre, forces vanish by symmetry and a relaxation only changes
a, b, c: octahedral tilts and other instabilities cannot appear. This stage takes the relaxed cell of every success
after relaxation on a perovskite task, makes a 2x2x2 supercell (the 135-site task's cell is its own supercell),
displaces every atom by a seeded Gaussian of σ = 0.05 Å per component and relaxes it with CHGNet (FIRE, positions
and cell). ``distortion_drop`` is the relaxed 5-site cell's energy minus the distorted supercell's relaxed energy
(eV/atom; > 0: a lower-symmetry structure is lower in energy). ``stays_distorted``: converged, drop ≤ 0.02
eV/atom, angles still in the task's range and every atom within the task's coordinate window ε (in the task
cell's fractional units) of its undistorted position.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import _cache
from .base import RELAXED_ROWS, Column, Stage, StageInput, StageUnavailable, truthy
from .relaxation import ENERGY_FINAL, SUCCESS_RELAXED

SIGMA = 0.05       # Å, per Cartesian component
MAX_DROP = 0.02    # eV/atom
SEED = 0


STAYS_DISTORTED = "stays_distorted"


class DistortionStage(Stage):
    name = "distortion"
    order = 40
    requires = ("relaxation",)
    revision = 1   # 1: relaxed proposals that are no success after relaxation read False, not empty
    columns = (
        Column("distortion_drop", "eV/atom", "relaxed 5-site energy minus the relaxed distorted supercell's"),
        Column("distortion_max_dev", "", "largest move of an atom from its undistorted position after relaxing, in "
               "the task cell's fractional units"),
        Column(STAYS_DISTORTED, "", "a relaxed success whose distorted supercell relaxes back (drop, angles, "
               "coordinates)", header="stays distorted", over=RELAXED_ROWS),
        Column("distortion_reason", "", "why the distorted supercell gave no verdict"),
    )
    summary = ("'stays distorted': a success after relaxation whose 2x2x2 supercell, randomly displaced, relaxes back "
               "to it; over the relaxed proposals (only successes after relaxation are tried)")

    def settings(self) -> dict:
        return {"sigma": SIGMA, "max_drop": MAX_DROP, "seed": SEED, "relaxer": "chgnet", "supercell": 2}

    def describe(self, options: dict | None = None) -> str:
        return (f"CHGNet 0.3.0, FIRE on positions and cell; displacements σ {SIGMA:g} Å (seed {SEED}); drop ≤ "
                f"{MAX_DROP:g} eV/atom")

    def compute(self, batch: StageInput) -> pd.DataFrame:
        crit = batch.criteria
        if crit is None or not crit.is_perovskite:
            raise StageUnavailable("defined on perovskite tasks only")
        rows = batch.relaxed_rows()
        if not rows:
            raise StageUnavailable("no proposal was relaxed")
        if batch.relaxer != "chgnet":
            raise StageUnavailable(f"the drop is measured against CHGNet's relaxed energy, the proposals were "
                                   f"relaxed with {batch.relaxer}")
        s = batch.samples
        out = self.empty(len(s))
        out["stays_distorted"] = out["stays_distorted"].astype(object)
        out["distortion_reason"] = ""
        if SUCCESS_RELAXED not in s:
            raise StageUnavailable("no success after relaxation column")
        ok = truthy(s, SUCCESS_RELAXED).to_numpy()
        for i in rows:   # a relaxed proposal that is no success after relaxation is not tried: False
            out.loc[i, "stays_distorted"] = False
        todo = [i for i in rows if ok[i]]
        cells = {i: batch.relaxed_structure(i) for i in todo}
        for i in todo:
            if cells[i] is None:
                out.loc[i, "distortion_reason"] = "no relaxed cell"
        todo = [i for i in todo if cells[i] is not None]
        n_super = 1 if crit.perovskite.n > 1 else 2
        starts, undistorted = [], []
        for i in todo:
            base = cells[i].copy()
            if n_super > 1:
                base.make_supercell([n_super] * 3)
            undistorted.append(base)
            starts.append(_displaced(base, i))
        records = self._relax(starts, batch)
        e5 = pd.to_numeric(s.get(ENERGY_FINAL), errors="coerce")
        lo, hi = crit.angle_range
        for i, base, rec in zip(todo, undistorted, records, strict=True):
            if rec.get("final") is None:
                out.loc[i, "distortion_reason"] = rec.get("reason") or "relaxation failed"
                continue
            from pymatgen.core import Structure

            final = Structure.from_dict(rec["final"])
            drop = float(e5.iloc[i] - rec["energy_final"])
            dev = _max_dev(base, final) * n_super   # in the task cell's fractional units
            angles = np.asarray(final.lattice.angles)
            out.loc[i, "distortion_drop"] = drop
            out.loc[i, "distortion_max_dev"] = dev
            out.loc[i, "distortion_reason"] = rec.get("reason", "")
            out.loc[i, "stays_distorted"] = bool(rec["converged"] and drop <= MAX_DROP + 1e-12
                                                 and ((angles >= lo) & (angles <= hi)).all()
                                                 and dev <= crit.coord_eps + 1e-9)
        return out

    def _relax(self, structures: list, batch: StageInput) -> list[dict]:
        folder = None if batch.cache_dir is None else batch.cache_dir / self.name
        return _cache.relax_records(structures, "chgnet", folder, self.settings())


def _displaced(structure, row: int):
    """``structure`` with every atom moved by a Gaussian of σ = SIGMA Å per component, seeded by SEED and the
    crystal (not by its row: the same crystal gets the same displacements in every run)."""
    seed = int(_cache.digest(structure, SEED)[:8], 16)
    rng = np.random.default_rng(seed)
    moved = structure.copy()
    cart = moved.cart_coords + rng.normal(0.0, SIGMA, size=(len(moved), 3))
    from pymatgen.core import Structure

    return Structure(moved.lattice, moved.species, cart, coords_are_cartesian=True)


def _max_dev(initial, final) -> float:
    """Largest fractional move of an atom (rigid shift removed), in the supercell's fractional units."""
    d = final.frac_coords - initial.frac_coords
    d -= np.round(d)
    d -= d.mean(axis=0)
    d -= np.round(d)
    return float(np.abs(d).max())
