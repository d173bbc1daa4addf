"""Novelty against known compounds: a proposal whose reduced formula is in MP-20, perov_5 or (when present) the
MEGNet dataset is known, and ``known_as`` names the first match (an MP id, ``perov_5:<id>``, ``megnet``)."""

from __future__ import annotations

from functools import cache

import pandas as pd

from .base import Column, Stage, StageInput, StageUnavailable


def known_compounds() -> tuple[dict[str, str], str]:
    """{reduced formula: where it is known} and a phrase naming the references; FileNotFoundError when MP-20's
    formulas are missing (perov_5 and the MEGNet dataset are added when found)."""
    from smoacs_bench.data.environment import data_dir

    return _known(str(data_dir()))


@cache
def _known(root: str) -> tuple[dict[str, str], str]:
    from smoacs_bench.data.datasets import find_dataset, novelty_reference
    from smoacs_bench.data.mp_reference import mp20_formulas

    mp = mp20_formulas()
    known: dict[str, str] = {}
    for reduced, mp_id in zip(mp["reduced"], mp["material_id"], strict=True):
        known.setdefault(reduced, str(mp_id))
    used = [f"MP-20 ({len(known)} formulas)"]
    try:
        files = find_dataset("perov_5")
    except FileNotFoundError:
        files = []
    if files:
        from pymatgen.core import Composition

        before = len(known)
        for f in files:
            df = pd.read_csv(f, usecols=["material_id", "formula"])
            for mid, formula in zip(df["material_id"], df["formula"], strict=True):
                try:
                    known.setdefault(Composition(str(formula)).reduced_formula, f"perov_5:{mid}")
                except ValueError:
                    continue
        used.append(f"perov_5 (+{len(known) - before})")
    formulas, label = novelty_reference()
    if label.startswith("MEGNet"):
        before = len(known)
        for f in formulas:
            known.setdefault(f, "megnet")
        used.append(f"the MEGNet dataset (+{len(known) - before})")
    return known, ", ".join(used)


NOVEL = "novel"


class NoveltyStage(Stage):
    name = "novelty"
    order = 20
    requires = ("criteria",)
    columns = (
        Column(NOVEL, "", "the reduced formula is in none of the reference sets", header="novel"),
        Column("known_as", "", "the first known compound with the same reduced formula (MP id, perov_5:<id>, "
               "megnet)"),
    )
    summary = "'novel': the proposal's reduced formula is absent from the known compounds, over all proposals"

    def settings(self) -> dict:
        return {"references": ["mp20", "perov_5", "megnet"]}

    def describe(self, options: dict | None = None) -> str:
        return f"known compounds: {known_compounds()[1]}"

    def compute(self, batch: StageInput) -> pd.DataFrame:
        try:
            known, _ = known_compounds()
        except FileNotFoundError as err:
            raise StageUnavailable(str(err)) from None
        from pymatgen.core import Composition

        novel, known_as = [], []
        for f in batch.samples.get("formula", pd.Series([None] * len(batch.samples))):
            if not isinstance(f, str) or not f:
                novel.append(float("nan"))
                known_as.append("")
                continue
            hit = known.get(Composition(f).reduced_formula, "")
            novel.append(not hit)
            known_as.append(hit)
        return pd.DataFrame({"novel": pd.Series(novel, dtype=object), "known_as": known_as})
