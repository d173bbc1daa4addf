"""An independent band-gap judge: every proposal's gap from a composition model trained on MP-20's PBE gaps.

The judge's MEGNet is off by ~1.9 eV on known perovskites, so a success inside a ±0.04 eV window says little on its
own. ``bg_crossjudge`` is the cross-judge's gap (eV), ``bg_disagreement`` |MEGNet − cross-judge| (eV), and
``success_gap_crossjudge`` every criterion of ``success`` with (A) judged on the cross-judge inside the target
window widened by the cross-judge's own in-domain MAE (held-out five-site ABX3, gapped), stated in the caption.
"""

from __future__ import annotations

import pandas as pd

from .base import Column, Stage, StageInput, StageUnavailable, truthy

GAP_OK = "bg_crossjudge_ok"
EXPLOITED = "exploited_gap"


class GapCrossJudgeStage(Stage):
    name = "gap_crossjudge"
    order = 5
    requires = ("criteria",)
    columns = (
        Column("bg_crossjudge", "eV", "band gap by the independent composition judge"),
        Column("bg_disagreement", "eV", "|judge's band gap − cross-judge's|"),
        Column(GAP_OK, "", "the cross-judge's gap within the target ± (margin + its in-domain MAE)"),
        Column("success_gap_crossjudge", "", "every criterion of success, (A) judged by the gap cross-judge in the "
               "widened window", header="success (gap cross-judge)"),
        Column(EXPLOITED, "", "an own-judge success whose gap the cross-judge puts outside its widened window: the "
               "judge's blind spot the optimiser found", header="exploited (gap)"),
        Column("bg_crossjudge_reason", "", "why the cross-judge gave no gap"),
    )
    summary = ("'success (gap cross-judge)': every criterion of success with (A) judged by an independent band-gap "
               "model within the target ± (margin + its in-domain MAE), over all proposals; 'exploited (gap)': the "
               "share of proposals that are own-judge successes the cross-judge's gap rules out")

    def settings(self) -> dict:
        try:
            from smoacs_bench.evaluation.gap_judge import load_gap_judge

            m = load_gap_judge().manifest
            return {"kind": m["kind"], "mae": m["holdout"]["mae_gapped"], "seed": m["seed"],
                    "training_formulas": m["training_formulas"]}
        except FileNotFoundError as err:
            return {"unavailable": str(err)}

    def describe(self, options: dict | None = None) -> str:
        from smoacs_bench.evaluation.gap_judge import load_gap_judge

        judge = load_gap_judge()
        return f"{judge.label}; window widened by {judge.mae_in_domain:.2f} eV"

    def compute(self, batch: StageInput) -> pd.DataFrame:
        from smoacs_bench.evaluation.gap_judge import load_gap_judge

        try:
            judge = load_gap_judge()
        except FileNotFoundError as err:
            raise StageUnavailable(str(err)) from None
        s = batch.samples
        if "formula" not in s:
            raise StageUnavailable("no formula column")
        gaps, reasons = judge.predict(s["formula"].tolist())
        out = pd.DataFrame({"bg_crossjudge": gaps, "bg_crossjudge_reason": reasons}, index=s.index)
        judged = pd.to_numeric(s.get("band_gap"), errors="coerce") if "band_gap" in s else None
        out["bg_disagreement"] = (judged - out["bg_crossjudge"]).abs() if judged is not None else float("nan")
        crit = batch.criteria
        if crit is None:
            out["success_gap_crossjudge"] = out["bg_crossjudge_ok"] = out[EXPLOITED] = float("nan")
            return out
        window = crit.margin + judge.mae_in_domain
        in_window = (out["bg_crossjudge"] - crit.target_bg).abs() <= window + 1e-12
        rest = truthy(s, "ef_ok") & truthy(s, "valid_structure")
        if crit.is_perovskite:
            rest &= truthy(s, "perovskite_ok")
        out["bg_crossjudge_ok"] = in_window.astype(object)
        out["success_gap_crossjudge"] = (in_window & rest).astype(object)
        out.loc[s["formula"].isna(), "success_gap_crossjudge"] = False
        # a success the cross-judge could not judge (no gap) is not counted as exploited
        out[EXPLOITED] = (truthy(s, "success") & out["bg_crossjudge"].notna() & ~in_window).astype(object)
        return out
