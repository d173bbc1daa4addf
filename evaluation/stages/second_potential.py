"""A second opinion on relaxation: the judge's relaxation repeated with SevenNet-0 (optional extra ``sevenn``).

A proposal's "stays" and "success (relaxed)" come from CHGNet; a method that relaxes with CHGNet itself passes
them by construction. This stage relaxes, with the same FIRE protocol and thresholds, every relaxed proposal whose
CHGNet verdict it could overturn (it stays or succeeds after CHGNet's relaxation), re-predicts the SevenNet-relaxed
cell with the judge's predictors and re-judges it. ``stays_both`` / ``success_relaxed_both`` need both potentials
to agree; a proposal CHGNet already failed keeps False without a second relaxation.
"""

from __future__ import annotations

import importlib.util
import math

import pandas as pd

from . import _cache
from .base import RELAXED_ROWS, Column, Stage, StageInput, StageUnavailable, truthy
from .relaxation import STAYS, SUCCESS_RELAXED

RELAXER = "sevenn"
SUCCESS_BOTH = "success_relaxed_both"


class SecondPotentialStage(Stage):
    name = "second_potential"
    order = 30
    requires = ("relaxation",)
    columns = (
        Column("relax2_energy_drop", "eV/atom", "energy drop of the proposal under SevenNet-0's relaxation"),
        Column("stays_relax2", "", "'stays' judged on SevenNet-0's relaxation (same thresholds)"),
        Column("success_relax2", "", "every criterion met on the SevenNet-0-relaxed cell (judge's predictors)"),
        Column("stays_both", "", "stays under CHGNet and under SevenNet-0", header="stays (both)", over=RELAXED_ROWS),
        Column(SUCCESS_BOTH, "", "a success after CHGNet's and after SevenNet-0's relaxation",
               header="success (relaxed, both)", over=RELAXED_ROWS, funnel="relaxed, both potentials", funnel_rank=10),
        Column("relax2_reason", "", "why the second relaxation gave no verdict"),
    )
    summary = ("'stays (both)' / 'success (relaxed, both)': 'stays' and 'success (relaxed)' also hold after the "
               "same relaxation with a second potential, over the relaxed proposals")

    def settings(self) -> dict:
        from smoacs_bench.evaluation.relax import RelaxSettings

        return {"relaxer": RELAXER, **RelaxSettings(relaxer=RELAXER).relaxation_identity(),
                "stay": [RelaxSettings.stay_drop, RelaxSettings.stay_volume]}

    def describe(self, options: dict | None = None) -> str:
        from smoacs_bench.evaluation.relax import RelaxSettings, relaxer_label

        r = RelaxSettings(relaxer=RELAXER)
        return (f"{relaxer_label(RELAXER)}, FIRE, fmax {r.fmax:g} eV/Å, at most {r.max_steps} steps, the stays "
                "thresholds of CHGNet's; only proposals that stay or succeed under CHGNet are relaxed again")

    def compute(self, batch: StageInput) -> pd.DataFrame:
        rows = batch.relaxed_rows()
        if not rows:
            raise StageUnavailable("no proposal was relaxed")
        if importlib.util.find_spec("sevenn") is None:
            raise StageUnavailable("the second potential needs the optional extra sevenn (pip install sevenn)")
        if batch.predict is None:
            raise StageUnavailable("no judge predictors given")
        s = batch.samples
        n = len(s)
        out = self.empty(n)
        for col in ("stays_relax2", "success_relax2", "stays_both", SUCCESS_BOTH):
            out[col] = out[col].astype(object)
        out["relax2_reason"] = ""
        stays, success = truthy(s, STAYS).to_numpy(), truthy(s, SUCCESS_RELAXED).to_numpy()
        todo = [i for i in rows if (stays[i] or success[i]) and batch.structures[i] is not None]
        for i in rows:
            out.loc[i, ["stays_both", SUCCESS_BOTH]] = False
        records = self._relax([batch.structures[i] for i in todo], batch)
        finals = {}
        for i, rec in zip(todo, records, strict=True):
            out.loc[i, "relax2_reason"] = rec.get("reason", "")
            if rec.get("final") is None:
                out.loc[i, ["stays_relax2", "success_relax2"]] = False
                continue
            from pymatgen.core import Structure

            from smoacs_bench.evaluation.relax import RelaxSettings, compare
            from smoacs_bench.evaluation.relax import stays as stays_verdict

            final = Structure.from_dict(rec["final"])
            finals[i] = final
            drop = rec["energy_initial"] - rec["energy_final"]
            moved = compare(batch.structures[i], final)
            r = RelaxSettings(relaxer=RELAXER)
            out.loc[i, "relax2_energy_drop"] = drop
            out.loc[i, "stays_relax2"] = stays_verdict(rec["converged"], drop, moved, r)
        if finals:
            from smoacs_bench.evaluation.criteria import evaluate

            order = sorted(finals)
            bg, ef = batch.predict([finals[i] for i in order])
            judged = evaluate([finals[i] for i in order], [_num(x) for x in bg], [_num(x) for x in ef],
                              batch.criteria)
            for i, ok in zip(order, judged["success"], strict=True):
                out.loc[i, "success_relax2"] = bool(ok)
        for i in todo:
            out.loc[i, "stays_both"] = bool(stays[i] and out.loc[i, "stays_relax2"] is True)
            out.loc[i, SUCCESS_BOTH] = bool(success[i] and out.loc[i, "success_relax2"] is True)
        return out

    def _relax(self, structures: list, batch: StageInput) -> list[dict]:
        """SevenNet relaxation records (cached by crystal and settings)."""
        folder = None if batch.cache_dir is None else batch.cache_dir / self.name
        return _cache.relax_records(structures, RELAXER, folder, self.settings())


def _num(x) -> float | None:
    return float(x) if x is not None and math.isfinite(float(x)) else None
