"""S.U.N.: a success that survives relaxation, is (meta)stable against the MP hull and is novel (and, in
``sun_gap_crossjudge``, has the band-gap cross-judge's agreement); unique S.U.N.
counts the distinct compositions pooled over a row's seeds."""

from __future__ import annotations

import pandas as pd

from .base import Column, Stage, StageInput, StageUnavailable, truthy


class SunStage(Stage):
    name = "sun"
    order = 90
    requires = ("relaxation", "hull", "novelty", "gap_crossjudge")
    columns = (
        Column("sun", "", "success after relaxation, E_hull ≤ 0.1 eV/atom and novel (and stays under distortion "
               "where that stage ran)", header="S.U.N.", over="relaxed", distinct="unique S.U.N.", funnel="S.U.N.",
               funnel_rank=20),
        Column("sun_gap_crossjudge", "", "S.U.N. and the band-gap cross-judge puts the gap in its widened window",
               header="S.U.N. (gap cross-judge)", over="relaxed", distinct="unique S.U.N. (gap cross-judge)",
               funnel="S.U.N. + gap cross-judge", funnel_rank=30),
    )
    summary = ("'S.U.N.': success after relaxation ∧ E_hull ≤ 0.1 eV/atom ∧ novel (∧ stays distorted where judged), "
               "over the relaxed proposals; 'S.U.N. (gap cross-judge)' also needs the band-gap cross-judge's gap in its "
               "widened window; their 'unique' counts are distinct compositions pooled over seeds")

    def describe(self) -> str:
        return "thresholds of the hull and relaxation stages"

    def compute(self, batch: StageInput) -> pd.DataFrame:
        s = batch.samples
        rows = batch.relaxed_rows()
        if not rows:
            raise StageUnavailable("no proposal was relaxed")
        if "metastable" not in s or s["metastable"].isna().all():
            raise StageUnavailable("no energy above the hull")
        ok = truthy(s, "success_relaxed") & truthy(s, "metastable") & truthy(s, "novel")
        if "stays_distorted" in s and s["stays_distorted"].notna().any():
            ok &= truthy(s, "stays_distorted") | s["stays_distorted"].isna()
        out = pd.Series([float("nan")] * len(s), index=s.index, dtype=object)
        out.iloc[rows] = ok.iloc[rows].to_numpy()
        both = pd.Series([float("nan")] * len(s), index=s.index, dtype=object)
        if "bg_crossjudge_ok" in s and s["bg_crossjudge_ok"].notna().any():
            both.iloc[rows] = (ok & truthy(s, "bg_crossjudge_ok")).iloc[rows].to_numpy()
        return pd.DataFrame({"sun": out, "sun_gap_crossjudge": both})
