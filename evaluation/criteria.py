"""The shared evaluator: the paper's success criteria applied to one structure at a time.

(A) |bg - target| <= margin; (B) E_f < -0.5 eV/atom; (a) neutral under the task's rule
(``data.rules``: one task pattern on the A/B/X sites for perovskites, any "Ours" assignment otherwise;
``neutral_any`` always reports the latter);
(b) every interatomic distance, periodic images included, >= 0.5 Å; (C) = (a) and (b);
perovskite tasks add (c) 0.8 <= t <= 1.0, (d) all angles in [85°, 95°], (e) every fractional
coordinate within ±ε of its ideal position; (D) = (c) and (d) and (e).
Success = A and B and C (and D for perovskite tasks).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from pymatgen.core import Structure

from smoacs_bench.data.neutrality import format_ox_states
from smoacs_bench.data.oxidation import OxidationTable
from smoacs_bench.data.perovskite import (
    angles_ok,
    match_perovskite,
    role_pattern_assignment,
    tolerance_factor,
)
from smoacs_bench.data.rules import judge_neutrality
from smoacs_bench.data.task import Criteria

from .geometry import lattice_problem, min_distance

COLUMNS = (
    "file", "formula", "n_sites", "band_gap", "formation_energy", "bg_ok", "ef_ok", "neutral", "neutral_any",
    "ox_states",
    "min_dist", "min_dist_ok", "valid_structure", "tolerance_factor", "tolerance_ok", "angles_ok",
    "max_coord_dev", "coords_ok", "perovskite_ok", "success", "ef_crossjudge", "ef_ok_crossjudge",
    "success_crossjudge", "reason",
)


def _finite(x) -> bool:
    return x is not None and isinstance(x, (int, float, np.floating)) and math.isfinite(float(x))


def _formula(structure: Structure) -> str:
    """Unreduced formula without ones and spaces, e.g. 'SrTiO3', 'Fe3O4', 'Sr27Ti27O81'."""
    return "".join(f"{el}{int(n) if n != 1 else ''}" for el, n in structure.composition.get_el_amt_dict().items())


def _empty_row(name: str, criteria: Criteria, reason: str) -> dict:
    row = dict.fromkeys(COLUMNS)
    row.update(file=name, bg_ok=False, ef_ok=False, neutral=False, neutral_any=False, ox_states="", min_dist_ok=False,
               valid_structure=False, success=False, ef_ok_crossjudge=False, success_crossjudge=False, reason=reason)
    if criteria.is_perovskite:
        row.update(tolerance_ok=False, angles_ok=False, coords_ok=False, perovskite_ok=False)
    return row


def evaluate_structure(structure: Structure | None, band_gap: float | None, formation_energy: float | None,
                       criteria: Criteria, name: str = "", table: OxidationTable | None = None,
                       reason: str = "", ef_crossjudge: float | None = None) -> dict:
    """One evaluation row (see COLUMNS). ``structure`` None means it could not be read (``reason`` says why).

    ``ef_crossjudge``: the independent judge's formation energy (eV/atom); ``success_crossjudge`` is
    ``success`` with (B) judged on it instead (False where it is missing).
    """
    if structure is None:
        return _empty_row(name, criteria, reason or "no structure")
    reasons = [reason] if reason else []
    row = _empty_row(name, criteria, "")
    species = [site.specie.symbol for site in structure]
    row.update(formula=_formula(structure), n_sites=len(structure),
               band_gap=band_gap, formation_energy=formation_energy)

    if _finite(band_gap):
        row["bg_ok"] = bool(abs(float(band_gap) - criteria.target_bg) <= criteria.margin + 1e-12)
    else:
        reasons.append("band gap prediction missing or not finite")
    if _finite(formation_energy):
        row["ef_ok"] = bool(float(formation_energy) < criteria.ef_max)
    else:
        reasons.append("formation energy prediction missing or not finite")

    verdict = judge_neutrality(species, structure.frac_coords, criteria, table)
    row["neutral"], row["neutral_any"] = verdict.neutral, verdict.neutral_any
    if not verdict.neutral:
        reasons.append(verdict.reason)

    bad_lattice = lattice_problem(structure)
    if bad_lattice:
        reasons.append(bad_lattice)
    else:
        d = min_distance(structure, search_radius=max(4.0, 2 * criteria.min_dist))
        row["min_dist"] = d
        row["min_dist_ok"] = bool(d >= criteria.min_dist)
        if not row["min_dist_ok"]:
            reasons.append(f"atoms {d:.3f} Å apart (< {criteria.min_dist} Å)")
    row["valid_structure"] = bool(row["neutral"] and row["min_dist_ok"])

    if criteria.is_perovskite and not bad_lattice:
        cell = criteria.perovskite
        match = verdict.match
        if match is None and len(structure) == cell.n_sites:
            match = match_perovskite(structure.frac_coords, cell)
        if match is None:
            if criteria.neutrality != "pattern":  # the pattern rule already said why
                reasons.append(f"{len(structure)} sites, a {cell.n}x{cell.n}x{cell.n} perovskite has {cell.n_sites}")
        else:
            row["max_coord_dev"] = match.max_dev
            row["coords_ok"] = bool(match.max_dev <= criteria.coord_eps + 1e-6)
            row["angles_ok"] = angles_ok(structure, *criteria.angle_range)
            pattern = (verdict.ox_states if criteria.neutrality == "pattern"
                       else role_pattern_assignment(species, match.roles, table))
            if pattern is None:
                reasons.append("no task pattern: tolerance factor not judged")
                row["tolerance_factor"] = math.nan
            else:
                t, why = tolerance_factor(species, match.roles, pattern)
                row["tolerance_factor"] = t
                lo, hi = criteria.tolerance_range
                row["tolerance_ok"] = bool(math.isfinite(t) and lo <= t <= hi)
                if why:
                    reasons.append(why)
            row["perovskite_ok"] = bool(row["tolerance_ok"] and row["angles_ok"] and row["coords_ok"])
    ox = verdict.ox_states
    row["ox_states"] = format_ox_states(species, ox if row["neutral"] else None)
    ok = row["bg_ok"] and row["ef_ok"] and row["valid_structure"]
    row["success"] = bool(ok and (row["perovskite_ok"] if criteria.is_perovskite else True))
    if _finite(ef_crossjudge):
        row["ef_crossjudge"] = float(ef_crossjudge)
        row["ef_ok_crossjudge"] = bool(float(ef_crossjudge) < criteria.ef_max)
    rest = row["bg_ok"] and row["valid_structure"] and (row["perovskite_ok"] if criteria.is_perovskite else True)
    row["success_crossjudge"] = bool(rest and row["ef_ok_crossjudge"])
    row["reason"] = "; ".join(r for r in reasons if r)
    return row


def evaluate(structures: Sequence[Structure | None], band_gaps: Sequence[float | None],
             formation_energies: Sequence[float | None], criteria: Criteria,
             names: Sequence[str] | None = None, reasons: Sequence[str] | None = None,
             table: OxidationTable | None = None,
             ef_crossjudge: Sequence[float | None] | None = None) -> pd.DataFrame:
    """Evaluate a batch; one row per structure, in order. Never raises for a bad structure."""
    n = len(structures)
    names = names or [str(i) for i in range(n)]
    reasons = reasons or [""] * n
    cross = ef_crossjudge if ef_crossjudge is not None else [None] * n
    rows = []
    for s, bg, ef, nm, why, xj in zip(structures, band_gaps, formation_energies, names, reasons, cross, strict=True):
        try:
            rows.append(evaluate_structure(s, bg, ef, criteria, nm, table, why, xj))
        except Exception as e:  # noqa: BLE001 - a broken structure must not stop the table
            rows.append(_empty_row(nm, criteria, f"evaluation failed: {type(e).__name__}: {e}"))
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    df["n_sites"] = df["n_sites"].astype("Int64")
    return df


def predicted(structures: Sequence[Structure | None], predict) -> tuple[list[float | None], list[float | None]]:
    """``predict``'s band gaps (eV) and formation energies (eV/atom) of ``structures``: None where a structure is
    missing or a prediction is not finite (``predict(structures) -> (gaps, energies)``)."""
    bgs: list[float | None] = [None] * len(structures)
    efs: list[float | None] = [None] * len(structures)
    ok = [i for i, s in enumerate(structures) if s is not None]
    if ok:
        bg, ef = predict([structures[i] for i in ok])
        for i, b, e in zip(ok, bg, ef, strict=True):
            bgs[i] = float(b) if b is not None and math.isfinite(float(b)) else None
            efs[i] = float(e) if e is not None and math.isfinite(float(e)) else None
    return bgs, efs


def judge_rows(structures: Sequence[Structure | None], criteria: Criteria, predict) -> pd.DataFrame:
    """Evaluation rows of ``structures`` on ``predict``'s predictions (None rows: failures with a reason)."""
    bg, ef = predicted(structures, predict)
    return evaluate(list(structures), bg, ef, criteria)
