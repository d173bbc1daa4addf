"""Robustness: does an own-judge success survive small, seeded perturbations of its structure?

Every own-judge success gets ``copies`` perturbed copies (:mod:`smoacs_bench.evaluation.robustness`); the judge
predicts and judges each. Run option ``robust``: a :class:`~smoacs_bench.evaluation.robustness.RobustSettings`, or
None to skip the stage.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from .base import Column, Stage, StageInput, StageUnavailable, truthy

ROBUST_FRACTION = "robust_fraction"
SUCCESS_ROBUST = "success_robust"


class RobustnessStage(Stage):
    name = "robustness"
    order = 1
    requires = ("criteria",)
    columns = (
        Column(ROBUST_FRACTION, "", "fraction of a success's perturbed copies that still succeed (empty for "
               "the rest)"),
        Column(SUCCESS_ROBUST, "", "an own-judge success whose perturbed copies still succeed",
               header="success (robust)", funnel="robust", funnel_rank=1),
    )
    summary = "'success (robust)': an own-judge success whose perturbed copies still succeed"
    option_keys = ("robust",)

    def compute(self, batch: StageInput) -> pd.DataFrame:
        from smoacs_bench.evaluation.criteria import judge_rows
        from smoacs_bench.evaluation.robustness import perturbed_copies

        settings = batch.options.get("robust")
        if settings is None:
            raise StageUnavailable("not asked for")
        if batch.predict is None:
            raise StageUnavailable("no judge predictors given")
        t0 = time.perf_counter()
        success = truthy(batch.samples, "success").to_numpy()
        todo = [i for i, s in enumerate(batch.structures) if s is not None and success[i]]
        copies = [c for i in todo for c in perturbed_copies(batch.structures[i], settings, i)]
        fraction = np.full(len(batch.samples), np.nan)
        if copies:
            rows = judge_rows(copies, batch.criteria, batch.predict)
            ok = rows["success"].to_numpy(dtype=bool).reshape(len(todo), settings.copies)
            fraction[todo] = ok.mean(axis=1)
        robust = success & (np.nan_to_num(fraction, nan=0.0) >= settings.min_fraction - 1e-12)
        batch.options.get("stats", {})["robust_seconds"] = time.perf_counter() - t0
        return pd.DataFrame({ROBUST_FRACTION: fraction, SUCCESS_ROBUST: robust}, index=batch.samples.index)

    def describe(self, options: dict | None = None) -> str:
        settings = (options or {}).get("robust")
        return "" if settings is None else settings.describe()
