"""Relaxation: every proposal (or a seeded draw of them) relaxed with a universal potential and re-judged.

Run option ``relax``: a :class:`~smoacs_bench.evaluation.relax.RelaxSettings` (None skips the stage);
``workers`` (processes), ``relax_cache`` (a task's folder of relaxation records shared by its runs) and ``stats``
(a dict that gets ``structures`` relaxed and their ``seconds``). The relaxations are resumable (``relax_state/`` in the run folder,
:mod:`smoacs_bench.evaluation.relax_runs`); the relaxed cells go to ``structures_relaxed/<row>.cif``. The relaxed
cell is re-predicted by the judge's predictors and every criterion is re-judged on it.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from .base import RELAXED_COUNT, RELAXED_ROWS, Column, Stage, StageInput, StageUnavailable, truthy

RELAXED_DIR = "structures_relaxed"
# the criteria re-judged on the relaxed cell (samples.csv's own-judge flags), and those of perovskite tasks only
JUDGED = ("bg_ok", "ef_ok", "neutral", "min_dist_ok", "valid_structure", "tolerance_ok", "angles_ok",
          "coords_ok", "perovskite_ok")
PEROVSKITE_ONLY = ("tolerance_ok", "angles_ok", "coords_ok", "perovskite_ok")
CONVERGED, STEPS, REASON = "relax_converged", "relax_steps", "relax_reason"
ENERGY_INITIAL, ENERGY_FINAL, ENERGY_DROP = "relax_energy_initial", "relax_energy_final", "relax_energy_drop"
MAX_DISP, RMS_DISP, VOLUME_CHANGE, MATCH = "relax_max_disp", "relax_rms_disp", "relax_volume_change", "relax_match"
BAND_GAP, FORMATION_ENERGY = "relax_band_gap", "relax_formation_energy"
SUCCESS_RELAXED, STAYS, GAP_WIDE = "success_relaxed", "stays", "relaxed_bg_wide"


class RelaxationStage(Stage):
    name = "relaxation"
    order = 2
    requires = ("criteria",)
    columns = (
        Column(RELAXED_ROWS, "", "in the relaxed set (all proposals, or the seeded draw)"),
        Column(CONVERGED, "", "FIRE converged within the step cap"),
        Column(STEPS, "", "FIRE steps taken"),
        Column(ENERGY_INITIAL, "eV/atom", "the potential's energy of the proposal"),
        Column(ENERGY_FINAL, "eV/atom", "the potential's energy of the relaxed cell"),
        Column(ENERGY_DROP, "eV/atom", "initial minus final energy"),
        Column(MAX_DISP, "Å", "largest atomic displacement"),
        Column(RMS_DISP, "Å", "root-mean-square atomic displacement"),
        Column(VOLUME_CHANGE, "%", "volume change"),
        Column(MATCH, "", "the relaxed cell matches the proposal (pymatgen StructureMatcher)"),
        Column(BAND_GAP, "eV", "the judge's band gap of the relaxed cell"),
        Column(FORMATION_ENERGY, "eV/atom", "the judge's formation energy of the relaxed cell"),
        *(Column(f"relaxed_{k}", "", f"criterion {k} re-judged on the relaxed cell") for k in JUDGED),
        Column(SUCCESS_RELAXED, "", "every criterion met on the relaxed cell, with the judge's predictions",
               header="success (relaxed)", over=RELAXED_ROWS, funnel="relaxed", funnel_rank=2),
        Column(STAYS, "", "a converged relaxation that barely moved the crystal (thresholds in the caption)",
               header="stays", over=RELAXED_ROWS),
        Column(GAP_WIDE, "", "the relaxed cell's predicted gap within the wide window of the target",
               header="relaxed gap (wide)", over=RELAXED_ROWS),
        Column(REASON, "", "why a relaxation or its re-judging failed"),
    )
    option_keys = ("relax",)

    def describe(self, options: dict | None = None) -> str:
        settings = (options or {}).get("relax")
        return "" if settings is None else settings.describe()

    def compute(self, batch: StageInput) -> pd.DataFrame:
        from smoacs_bench.evaluation.relax_runs import STATE_DIR, relaxed_indices, run_relaxations

        settings = batch.options.get("relax")
        if settings is None:
            raise StageUnavailable("not asked for")
        if batch.predict is None or batch.folder is None:
            raise StageUnavailable("no judge predictors or no run folder given")
        # a proposal without a structure (unreadable, or a method's failure) is not in the relaxed set
        indices = [i for i in relaxed_indices(batch.samples, settings) if batch.structures[i] is not None]
        stats = batch.options.get("stats", {})
        outcomes = run_relaxations(batch.structures, indices, settings, Path(batch.folder) / STATE_DIR,
                                   int(batch.options.get("workers") or 1), bool(batch.options.get("progress")),
                                   shared=batch.options.get("relax_cache"), stats=stats)
        t0 = time.perf_counter()
        out = relaxation_columns(batch, settings, outcomes)
        stats["judge_seconds"] = time.perf_counter() - t0
        return out

    def summarise(self, samples: pd.DataFrame) -> dict[str, float]:
        out = super().summarise(samples)
        rel = samples[truthy(samples, RELAXED_ROWS)]
        out[RELAXED_COUNT] = len(rel)
        for key in (CONVERGED, "relaxed_perovskite_ok"):
            out[key] = float(truthy(rel, key).mean()) if len(rel) and key in rel and rel[key].notna().any() \
                else float("nan")
        out["success_in_relaxed"] = float(truthy(rel, "success").mean()) if len(rel) else float("nan")
        for key, col in (("relax_drop_median", ENERGY_DROP), ("relax_volume_change_median", VOLUME_CHANGE)):
            out[key] = float(pd.to_numeric(rel[col], errors="coerce").median()) if len(rel) and col in rel \
                else float("nan")
        return out

    def caption(self, rows: pd.DataFrame, notes: list[str]) -> str:
        sizes = []
        for r in rows.to_dict("records"):
            n_rel, n = r.get(RELAXED_COUNT), r.get("n_samples")
            if _number(n_rel) and _number(n):
                per_run = int(n_rel) // max(int(r.get("n_seeds") or 1), 1)
                sizes.append(f"{r['method']} {per_run} of {int(n)}")
        subset = ("; proposals relaxed per run: " + ", ".join(dict.fromkeys(sizes))) if sizes else ""
        return ("'success (relaxed)': every criterion re-judged, with the judge's predictions, on the cell relaxed by "
                + "; ".join(notes) + subset + ". 'stays' needs a converged relaxation that barely moved the crystal "
                "(thresholds above); 'relaxed gap (wide)': the relaxed cell's predicted gap within the wide window "
                "of the target. Relaxation rates are over the relaxed proposals; an all-zero row over seeds shows "
                "the pooled Wilson interval.")

    def report(self, samples: pd.DataFrame) -> list[str]:
        if RELAXED_ROWS not in samples or not truthy(samples, RELAXED_ROWS).any():
            return []
        return [f"after relaxation: {int(truthy(samples, SUCCESS_RELAXED).sum())} successful, "
                f"{int(truthy(samples, STAYS).sum())} stay"]


def kept_cell(samples: pd.DataFrame) -> np.ndarray:
    """Per row, whether the judge relaxed it and kept a relaxed cell (its volume change is recorded with it). A
    relaxation that failed keeps none, whether the relaxer refused the cell at step 0 or it exploded later with a
    final energy on record."""
    volume = pd.to_numeric(samples.get(VOLUME_CHANGE, pd.Series(np.nan, index=samples.index)), errors="coerce")
    return truthy(samples, RELAXED_ROWS).to_numpy() & np.isfinite(volume.to_numpy(dtype=float))


def _number(x) -> bool:
    try:
        return x is not None and float(x) == float(x)
    except (TypeError, ValueError):
        return False


def relaxation_columns(batch: StageInput, settings, outcomes: dict[int, dict]) -> pd.DataFrame:
    """The stage's columns from the relaxation records ``outcomes`` (row -> record); writes the relaxed cells."""
    from pymatgen.core import Structure

    from smoacs_bench.evaluation.criteria import judge_rows
    from smoacs_bench.evaluation.io import atomic_write_text
    from smoacs_bench.evaluation.relax import compare, stays

    criteria, structures = batch.criteria, batch.structures
    n = len(batch.samples)
    cols: dict[str, list] = {c.name: [np.nan] * n for c in RelaxationStage.columns}
    cols[RELAXED_ROWS] = [False] * n
    cols[REASON] = [""] * n
    finals: dict[int, Structure] = {}
    out_dir = Path(batch.relaxed_dir) if batch.relaxed_dir is not None else Path(batch.folder) / RELAXED_DIR
    for i, rec in outcomes.items():
        cols[RELAXED_ROWS][i] = True
        cols[CONVERGED][i] = bool(rec["converged"])
        cols[STEPS][i] = int(rec["steps"])
        cols[ENERGY_INITIAL][i] = rec["energy_initial"]
        cols[ENERGY_FINAL][i] = rec["energy_final"]
        cols[ENERGY_DROP][i] = rec["energy_initial"] - rec["energy_final"]
        cols[REASON][i] = rec["reason"]
        if rec["final"] is not None and structures[i] is not None:
            final = Structure.from_dict(rec["final"])
            finals[i] = final
            moved = compare(structures[i], final)
            cols[MAX_DISP][i] = moved["max_disp"]
            cols[RMS_DISP][i] = moved["rms_disp"]
            cols[VOLUME_CHANGE][i] = moved["volume_change"]
            cols[MATCH][i] = moved["match"]
            cols[STAYS][i] = stays(cols[CONVERGED][i], cols[ENERGY_DROP][i], moved, settings)
            atomic_write_text(out_dir / f"{i}.cif", final.to(fmt="cif"))
    order = sorted(outcomes)
    rows = judge_rows([finals.get(i) for i in order], criteria, batch.predict)
    judged = [k for k in JUDGED if criteria.is_perovskite or k not in PEROVSKITE_ONLY]   # others stay empty
    for i, (_, r) in zip(order, rows.iterrows(), strict=True):
        if i not in finals:
            for k in judged:
                cols[f"relaxed_{k}"][i] = False
            cols[SUCCESS_RELAXED][i] = cols[GAP_WIDE][i] = cols[STAYS][i] = False
            if cols[MATCH][i] != cols[MATCH][i]:
                cols[MATCH][i] = False
            continue
        cols[BAND_GAP][i] = r["band_gap"]
        cols[FORMATION_ENERGY][i] = r["formation_energy"]
        for k in judged:
            v = r.get(k)
            cols[f"relaxed_{k}"][i] = bool(v) if v is not None and v == v else False
        cols[SUCCESS_RELAXED][i] = bool(r["success"])
        gap = r["band_gap"]
        cols[GAP_WIDE][i] = bool(gap is not None and gap == gap
                                 and abs(float(gap) - criteria.target_bg) <= settings.wide_margin + 1e-12)
        if not cols[REASON][i] and r["reason"]:
            cols[REASON][i] = f"relaxed: {r['reason']}"
    return pd.DataFrame(cols, index=batch.samples.index)
