"""Thermodynamic stability: the energy above the Materials Project convex hull of every relaxed proposal.

Recipe (Szymanski & Bartel 2025; ``<data>/mp_hull/README.md``): the relaxer's final energy (CHGNet, eV/atom)
becomes a formation energy with the CHGNet-consistent elemental energies, and is placed on the pymatgen
``PhaseDiagram`` of the proposal's chemical system built from MP's phases. Only a CHGNet relaxation matches the
elemental energies; another relaxer leaves the columns empty with the reason.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .base import RELAXED_ROWS, Column, Stage, StageInput, StageUnavailable
from .relaxation import ENERGY_FINAL, REASON, VOLUME_CHANGE, kept_cell

STABLE = 0.0        # eV/atom: on or below the hull
METASTABLE = 0.1    # eV/atom: the MatterGen / LeMat-GenBench threshold
HULL_RELAXERS = ("chgnet",)


METASTABLE_FLAG = "metastable"
MAX_ELEMENTS = 8    # a hull in more dimensions is not computed: MP's phases span at most 8 elements here, and the
                    # diagram of an n-element system takes all 2^n subsystems and an n-dimensional convex hull


class HullStage(Stage):
    name = "hull"
    order = 10
    revision = 1   # 1: only a relaxation that kept its cell has an E_hull (not one that exploded with an energy)
    requires = ("relaxation",)
    columns = (
        Column("ef_relaxed", "eV/atom", "formation energy of the relaxed cell from the relaxer's energy and the "
               "elemental references"),
        Column("e_hull", "eV/atom", "energy above the MP hull of the relaxed cell (negative: below it)"),
        Column("stable", "", f"relaxed and e_hull ≤ {STABLE:g} eV/atom", header="stable", over=RELAXED_ROWS),
        Column(METASTABLE_FLAG, "", f"relaxed and e_hull ≤ {METASTABLE:g} eV/atom", header="E_hull ≤ 0.1",
               over=RELAXED_ROWS),
        Column("hull_reason", "", "why e_hull is empty for a relaxed proposal"),
    )
    summary = ("'stable' / 'E_hull ≤ 0.1': the relaxed proposal's energy above the Materials Project convex hull is "
               f"≤ {STABLE:g} / ≤ {METASTABLE:g} eV/atom, over the relaxed proposals")

    def settings(self) -> dict:
        return {"stable": STABLE, "metastable": METASTABLE, "reference": "mp_hull"}

    def describe(self, options: dict | None = None) -> str:
        from smoacs_bench.data.mp_reference import hull_reference

        return (f"{hull_reference().label}; E_f from the CHGNet energy of the relaxed cell (CHGNet and MP "
                "differ by up to ~0.1 eV/atom on known perovskites: see results/hull_calibration/)")

    def report(self, samples: pd.DataFrame) -> list[str]:
        """One line per file with an energy above the hull (the first 10), for ``evaluate``."""
        if "e_hull" not in samples:
            return []
        rows = samples[pd.to_numeric(samples["e_hull"], errors="coerce").notna()]
        lines = [f"{r.get('file', '')}: {r.get('formula', '')} E_hull {float(r['e_hull']):+.3f} eV/atom "
                 f"(E_f {float(r['ef_relaxed']):+.3f} eV/atom after relaxation)" for r in rows.head(10).to_dict("records")]
        if len(rows) > 10:
            lines.append(f"... {len(rows) - 10} more in the CSV")
        return lines

    def compute(self, batch: StageInput) -> pd.DataFrame:
        n = len(batch.samples)
        rows = batch.relaxed_rows()
        if not rows:
            raise StageUnavailable("no proposal was relaxed")
        if batch.relaxer not in HULL_RELAXERS:
            raise StageUnavailable(f"the elemental energies match CHGNet, the proposals were relaxed with "
                                   f"{batch.relaxer}")
        from smoacs_bench.data.mp_reference import hull_reference

        try:
            ref = hull_reference()
        except FileNotFoundError as err:
            raise StageUnavailable(str(err)) from None
        out = self.empty(n)
        out["hull_reason"] = ""
        out["stable"] = out["stable"].astype(object)
        out["metastable"] = out["metastable"].astype(object)
        energies = pd.to_numeric(batch.samples.get(ENERGY_FINAL), errors="coerce")
        kept = kept_cell(batch.samples) if VOLUME_CHANGE in batch.samples else None
        for i in rows:
            out.loc[i, ["stable", "metastable"]] = False
            formula = batch.samples["formula"].iloc[i] if "formula" in batch.samples else None
            energy = energies.iloc[i] if energies is not None else np.nan
            if kept is not None and not kept[i] and math.isfinite(float(energy)):
                failed = str(batch.samples[REASON].iloc[i]) if REASON in batch.samples else ""
                out.loc[i, "hull_reason"] = f"the relaxation kept no cell ({failed or 'failed'}): its energy is no phase's"
                continue
            why = _hull(ref, formula, energy)
            if isinstance(why, str):
                out.loc[i, "hull_reason"] = why
                continue
            ef, e_hull = why
            out.loc[i, "ef_relaxed"] = ef
            out.loc[i, "e_hull"] = e_hull
            out.loc[i, "stable"] = bool(e_hull <= STABLE + 1e-9)
            out.loc[i, "metastable"] = bool(e_hull <= METASTABLE + 1e-9)
        return out


def _hull(ref, formula, energy: float) -> tuple[float, float] | str:
    """(E_f, E_hull) in eV/atom, or why not."""
    if not isinstance(formula, str) or not formula:
        return "no structure"
    if energy is None or not math.isfinite(float(energy)):
        return "no relaxed energy (relaxation failed)"
    from pymatgen.core import Composition

    comp = Composition(formula)
    if len(comp.elements) > MAX_ELEMENTS:
        return (f"{len(comp.elements)} elements: no hull is computed beyond {MAX_ELEMENTS} (its diagram needs "
                f"2^{len(comp.elements)} subsystems and a {len(comp.elements)}-dimensional hull)")
    try:
        ef = ref.formation_energy(comp, float(energy))
        return ef, ref.e_above_hull(comp, ef)
    except (KeyError, ValueError) as err:
        return str(err).strip("'\"")
