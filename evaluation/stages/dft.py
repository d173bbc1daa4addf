"""DFT verification: the PBE band gap of a seeded few of each run's successes (``--dft-subset k``).

Which proposals: k drawn with a fixed seed among the successes after relaxation; where a run has none, among the
relaxed proposals that are own-judge successes; where it has none of those either, among the own-judge successes
as proposed (``dft_on`` says which cell was computed: "relaxed" = CHGNet's, or "proposed"). Engine and settings:
:mod:`smoacs_bench.evaluation.dft`. ``dft_gap_corrected`` applies the linear correction of the engine's
calibration against MP's PBE gaps (``smoacs-bench calibrate dft``); ``dft_ok``: the corrected gap within the target
± (margin + the correction's leave-one-out MAE). Each calculation is cached by crystal and settings (a killed run
resumes; a crystal is computed once for every run and table).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from . import _cache
from .base import RELAXED_ROWS, Column, Stage, StageInput, StageUnavailable, truthy
from .relaxation import SUCCESS_RELAXED

SEED = 0
CALIBRATION_ENV = "SMOACS_DFT_CALIBRATION"
CALIBRATION = Path(__file__).resolve().parents[2] / "results" / "dft_calibration" / "correction.json"


def calibration() -> dict | None:
    """The engine's correction (slope, intercept, loo_mae in eV, the settings it was fitted with), or None."""
    path = Path(os.environ.get(CALIBRATION_ENV) or CALIBRATION)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _flag(samples: pd.DataFrame, col: str) -> np.ndarray:
    return truthy(samples, col).to_numpy()


GAP_CORRECTED = "dft_gap_corrected"
ON_RELAXED, ON_PROPOSED = "relaxed", "proposed"   # dft_on: the cell computed


class DFTStage(Stage):
    name = "dft"
    order = 60
    requires = ("relaxation",)
    option_keys = ("dft_subset",)
    columns = (
        Column("dft_checked", "", "drawn for a DFT check"),
        Column("dft_on", "", "the cell computed: relaxed (CHGNet's) or proposed"),
        Column("dft_band_gap", "eV", "PBE band gap (raw)"),
        Column(GAP_CORRECTED, "eV", "PBE band gap with the calibration's linear correction"),
        Column("dft_direct_gap", "eV", "smallest direct PBE gap"),
        Column("dft_converged", "", "the SCF converged"),
        Column("dft_seconds", "s", "wall time of the calculation (one core)"),
        Column("dft_reason", "", "why the calculation gave no gap"),
        Column("dft_ok", "", "the corrected PBE gap within the target ± (margin + the calibration's LOO MAE)",
               header="DFT-verified", over="dft_checked", funnel="DFT-verified", funnel_rank=40),
    )
    summary = ("'DFT-verified': share of the DFT-checked proposals (a seeded few successes per run) whose PBE gap, "
               "corrected by the engine's calibration, lies within the target ± (margin + the calibration's "
               "leave-one-out MAE)")

    def settings(self) -> dict:
        from smoacs_bench.evaluation.dft import DFTSettings

        cal = calibration()
        return {"dft": DFTSettings().identity(), "seed": SEED,
                "calibration": None if cal is None else {k: cal.get(k) for k in ("slope", "intercept", "loo_mae")}}

    def describe(self, options: dict | None = None) -> str:
        from smoacs_bench.evaluation.dft import DFTSettings

        cal = calibration()
        corr = ("uncalibrated (no results/dft_calibration/correction.json): the raw gap, window ± margin"
                if cal is None else f"corrected gap = {cal['slope']:.3f} × PBE + {cal['intercept']:+.3f} eV, window "
                f"widened by its leave-one-out MAE {cal['loo_mae']:.2f} eV ({cal['n']} known compounds)")
        return f"{DFTSettings().describe()}; {corr}"

    def compute(self, batch: StageInput) -> pd.DataFrame:
        from smoacs_bench.evaluation.dft import DFTSettings, compute_gaps, get_engine

        k = int(batch.options.get("dft_subset") or 0)
        if k <= 0:
            raise StageUnavailable("not asked for (--dft-subset 0)")
        settings = DFTSettings()
        why = get_engine(settings.engine).unavailable()
        if why:
            raise StageUnavailable(why)
        s = batch.samples
        n = len(s)
        relaxed, own = _flag(s, RELAXED_ROWS), _flag(s, "success")
        pools = [(ON_RELAXED, np.flatnonzero(relaxed & _flag(s, SUCCESS_RELAXED))),
                 (ON_RELAXED, np.flatnonzero(relaxed & own)), (ON_PROPOSED, np.flatnonzero(own))]
        on, pool = next(((w, p) for w, p in pools if len(p)), ("", np.array([], dtype=int)))
        rng = np.random.default_rng(SEED)
        picked = sorted(int(i) for i in rng.choice(pool, size=min(k, len(pool)), replace=False)) if len(pool) else []
        out = self.empty(n)
        for col in ("dft_checked", "dft_converged", "dft_ok"):
            out[col] = out[col].astype(object)
        out["dft_on"] = ""
        out["dft_reason"] = ""
        out["dft_checked"] = False
        cells = {i: (batch.relaxed_structure(i) if on == ON_RELAXED else batch.structures[i]) for i in picked}
        folder = None if batch.cache_dir is None else batch.cache_dir / self.name
        keys = {i: None if c is None else _cache.digest(c, settings.identity()) for i, c in cells.items()}
        records = {i: r for i in picked if keys[i] and (r := _cache.get(folder, keys[i])) is not None}
        todo = [i for i in picked if i not in records]
        if todo:
            workers = int(batch.options.get("dft_workers") or 1)
            for i, res in zip(todo, compute_gaps([cells[i] for i in todo], settings, workers=workers,
                                                 progress=bool(batch.options.get("progress"))), strict=True):
                records[i] = res.record()
                if keys[i]:
                    _cache.put(folder, keys[i], records[i])
        cal = calibration()
        crit = batch.criteria
        for i in picked:
            rec = records[i]
            out.loc[i, ["dft_checked", "dft_on"]] = [True, on]
            out.loc[i, "dft_reason"] = rec.get("reason", "")
            out.loc[i, "dft_converged"] = bool(rec.get("converged"))
            out.loc[i, "dft_seconds"] = rec.get("seconds")
            gap = rec.get("band_gap")
            ok = False
            if gap is not None and math.isfinite(gap):
                corrected = gap if cal is None else cal["slope"] * gap + cal["intercept"]
                out.loc[i, ["dft_band_gap", "dft_direct_gap", GAP_CORRECTED]] = [gap, rec.get("direct_gap"),
                                                                                      corrected]
                window = crit.margin + (0.0 if cal is None else float(cal["loo_mae"]))
                ok = bool(rec.get("converged")) and abs(corrected - crit.target_bg) <= window + 1e-12
            out.loc[i, "dft_ok"] = ok
        return out


def parity_points(samples: pd.DataFrame, target: float) -> list[pd.DataFrame]:
    """The DFT-checked rows of a run as (band_gap: the judge's gap of the computed cell, dft_gap: the corrected
    PBE gap, target_bg), for Figure A.1; empty without any."""
    from .relaxation import BAND_GAP

    if "dft_checked" not in samples or GAP_CORRECTED not in samples:
        return []
    checked = samples[truthy(samples, "dft_checked")]
    if checked.empty:
        return []
    relaxed = checked["dft_on"].astype(str) == ON_RELAXED
    gap = checked["band_gap"].where(~relaxed, checked.get(BAND_GAP, checked["band_gap"]))
    return [checked.assign(band_gap=gap, target_bg=target, dft_gap=checked[GAP_CORRECTED])[
        ["band_gap", "dft_gap", "target_bg"]]]
