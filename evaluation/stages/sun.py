"""S.U.N.: a success that survives relaxation, is (meta)stable against the MP hull and is novel (and, in
``sun_gap_crossjudge``, has the band-gap cross-judge's agreement); unique S.U.N.
counts the distinct compositions pooled over a row's seeds."""

from __future__ import annotations

import pandas as pd

from .base import RELAXED_ROWS, Column, Stage, StageInput, StageUnavailable, truthy
from .distortion import STAYS_DISTORTED
from .gap_crossjudge import GAP_OK
from .hull import METASTABLE_FLAG
from .novelty import NOVEL
from .relaxation import SUCCESS_RELAXED
from .second_potential import SUCCESS_BOTH

SUN = "sun"


class SunStage(Stage):
    name = "sun"
    order = 90
    requires = ("relaxation", "second_potential", "distortion", "hull", "novelty", "gap_crossjudge")
    revision = 1   # 1: within the second potential's verdict (the funnel nested)
    columns = (
        Column(SUN, "", "success after relaxation under both potentials, E_hull ≤ 0.1 eV/atom and novel (and stays under distortion "
               "where that stage ran)", header="S.U.N.", over=RELAXED_ROWS, distinct="unique S.U.N.", funnel="S.U.N.",
               funnel_rank=20),
        Column("sun_gap_crossjudge", "", "S.U.N. and the band-gap cross-judge puts the gap in its widened window",
               header="S.U.N. (gap cross-judge)", over=RELAXED_ROWS, distinct="unique S.U.N. (gap cross-judge)",
               funnel="S.U.N. + gap cross-judge", funnel_rank=30),
    )
    summary = ("'S.U.N.': success after relaxation under both potentials (where the second ran) ∧ stays distorted "
               "(where judged) ∧ E_hull ≤ 0.1 eV/atom ∧ novel, over the relaxed proposals: each step of the funnel "
               "within the one before; 'S.U.N. (gap cross-judge)' also needs the band-gap cross-judge's gap in its "
               "widened window; their 'unique' counts are distinct compositions pooled over seeds")

    def describe(self, options: dict | None = None) -> str:
        return "thresholds of the hull and relaxation stages"

    def compute(self, batch: StageInput) -> pd.DataFrame:
        s = batch.samples
        rows = batch.relaxed_rows()
        if not rows:
            raise StageUnavailable("no proposal was relaxed")
        if METASTABLE_FLAG not in s or s[METASTABLE_FLAG].isna().all():
            raise StageUnavailable("no energy above the hull")
        ok = truthy(s, SUCCESS_RELAXED) & truthy(s, METASTABLE_FLAG) & truthy(s, NOVEL)
        if SUCCESS_BOTH in s and s[SUCCESS_BOTH].notna().any():   # the second potential ran: it must agree
            ok &= truthy(s, SUCCESS_BOTH)
        if STAYS_DISTORTED in s and s[STAYS_DISTORTED].notna().any():
            ok &= truthy(s, STAYS_DISTORTED) | s[STAYS_DISTORTED].isna()
        out = pd.Series([float("nan")] * len(s), index=s.index, dtype=object)
        out.iloc[rows] = ok.iloc[rows].to_numpy()
        both = pd.Series([float("nan")] * len(s), index=s.index, dtype=object)
        if GAP_OK in s and s[GAP_OK].notna().any():
            both.iloc[rows] = (ok & truthy(s, GAP_OK)).iloc[rows].to_numpy()
        return pd.DataFrame({"sun": out, "sun_gap_crossjudge": both})
