"""Judge structure files: read them, get predictions (a CSV or the default predictors), evaluate."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
from pymatgen.core import Structure

from smoacs_bench.data.task import Task
from smoacs_bench.evaluation.criteria import evaluate
from smoacs_bench.evaluation.io import lookup, read_predictions, read_structure

# (structures) -> (band gaps in eV, formation energies in eV/atom)
PredictFn = Callable[[Sequence[Structure]], tuple[Sequence[float], Sequence[float]]]


def default_predict(structures: Sequence[Structure]) -> tuple[list[float], list[float]]:
    """The shared judge's predictions: band gap (eV) and formation energy (eV/atom) from the default
    pair of predictors (``methods.predictors.DEFAULT_PAIR``: MEGNet multi-fidelity band gap at the PBE
    state, MEGNet MP-2018.6.1 formation energy)."""
    from smoacs_bench.methods.predictors import load_pair

    bg_model, ef_model = load_pair()
    bg = bg_model.predict_structures(list(structures))
    ef = ef_model.predict_structures(list(structures))
    return [float(x) for x in bg], [float(x) for x in ef]


def judge_files(paths: Sequence[str | Path], task: Task, target_bg: float, margin: float,
                predictions: str | Path | None = None,
                predict: PredictFn | None = None, crossjudge: bool = False) -> tuple[pd.DataFrame, list[str]]:
    """One evaluation row per file, plus the problems met (bad files, bad prediction rows).

    Predictions come from ``predictions`` (CSV: file, band_gap, formation_energy) when given,
    else from ``predict`` (default: the MEGNet predictors) on the readable structures. With
    ``crossjudge`` the independent judge's formation energies fill the ``*_crossjudge`` columns.
    """
    problems: list[str] = []
    read = [read_structure(p) for p in paths]
    structures = [s for s, _ in read]
    reasons = [why for _, why in read]
    problems += [why for why in reasons if why]
    bgs: list[float | None] = [None] * len(paths)
    efs: list[float | None] = [None] * len(paths)
    if predictions is not None:
        table, bad_rows = read_predictions(predictions)
        problems += bad_rows
        for i, p in enumerate(paths):
            hit = lookup(table, p)
            if hit is None:
                if structures[i] is not None:
                    problems.append(f"{p}: no row in {predictions}")
                    reasons[i] = f"no prediction in {Path(predictions).name}"
            else:
                bgs[i], efs[i] = hit
    else:
        ok = [i for i, s in enumerate(structures) if s is not None]
        if ok:
            bg, ef = (predict or default_predict)([structures[i] for i in ok])
            for i, b, e in zip(ok, bg, ef, strict=True):
                bgs[i] = b if math.isfinite(b) else None
                efs[i] = e if math.isfinite(e) else None
    names = [str(p) for p in paths]
    cross = None
    if crossjudge:
        from .runner import crossjudge_energies

        cross, note = crossjudge_energies(structures)
        if cross is None:
            problems.append(f"cross-judge {note}")
    df = evaluate(structures, bgs, efs, task.criteria(target_bg, margin), names=names, reasons=reasons,
                  ef_crossjudge=cross)
    return df, problems
