"""Judge structure files: read them, get predictions (a CSV or the default predictors), evaluate."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
from pymatgen.core import Structure

from smoacs_bench.data.task import Task
from smoacs_bench.evaluation.criteria import evaluate, predicted
from smoacs_bench.evaluation.io import lookup, read_predictions, read_structure

# (structures) -> (band gaps in eV, formation energies in eV/atom)
PredictFn = Callable[[Sequence[Structure]], tuple[Sequence[float], Sequence[float]]]


_PAIR: list = []   # the judge's predictors, loaded once per process

# a method's own prediction further than this from the judge's (eV; eV/atom) is flagged in run.log
OWN_TOLERANCE = 0.05


def judge_predictors() -> tuple[str, str]:
    """Registered names of the judge's (band gap, formation energy) predictors."""
    from smoacs_bench.methods.predictors import DEFAULT_PAIR

    return DEFAULT_PAIR


def load_judge() -> None:
    """Load the judge's predictors now (once per process); FileNotFoundError naming what is missing."""
    from smoacs_bench.methods.predictors import load_pair

    if not _PAIR:
        _PAIR.append(load_pair(*judge_predictors()))


def default_predict(structures: Sequence[Structure]) -> tuple[list[float], list[float]]:
    """The shared judge's predictions: band gap (eV) and formation energy (eV/atom) from the default
    pair of predictors (``methods.predictors.DEFAULT_PAIR``: MEGNet multi-fidelity band gap at the PBE
    state, MEGNet MP-2018.6.1 formation energy); NaN where a predictor cannot embed an element."""
    load_judge()
    bg_model, ef_model = _PAIR[0]
    bg = bg_model.predict_structures(list(structures))
    ef = ef_model.predict_structures(list(structures))
    return [float(x) for x in bg], [float(x) for x in ef]


def judge_structures(structures: Sequence[Structure | None], predict: PredictFn | None = None
                     ) -> tuple[list[float | None], list[float | None]]:
    """The judge's band gaps (eV) and formation energies (eV/atom) of ``structures``, None where a structure
    is missing or a prediction is not finite: every proposal is predicted from its structure, whatever the
    method that proposed it reported."""
    return predicted(structures, predict or default_predict)


def disagreements(own: Sequence[float | None], judged: Sequence[float | None], what: str, unit: str,
                  tolerance: float = OWN_TOLERANCE) -> list[str]:
    """One line per sample whose reported value differs from the judge's by more than ``tolerance``
    (a reported value where the judge has none counts too; an unreported one does not)."""
    out = []
    for i, (a, b) in enumerate(zip(own, judged, strict=True)):
        if a is None or (isinstance(a, float) and math.isnan(a)):
            continue
        if b is None or abs(float(a) - b) > tolerance:
            shown = "none" if b is None else f"{b:.3f}"
            out.append(f"sample {i}: {what} reported {float(a):.3f} {unit}, judged {shown}")
    return out


_CROSSJUDGE: list = []  # the loaded judge, once per process


def crossjudge_energies(structures: list) -> tuple[list[float] | None, str]:
    """The independent judge's formation energies (eV/atom; NaN where it cannot judge) and a note naming
    it, or (None, why) when its weights are not there."""
    from smoacs_bench.methods.predictors.cdvae import MODEL_SUBDIR, load_cdvae_judge

    if not _CROSSJUDGE:
        try:
            _CROSSJUDGE.append(load_cdvae_judge())
        except FileNotFoundError as err:
            print(f"cross-judge skipped: {err}", file=sys.stderr)
            return None, f"unavailable: {err}"
    ok = [i for i, st in enumerate(structures) if st is not None]
    values = [float("nan")] * len(structures)
    for i, v in zip(ok, _CROSSJUDGE[0].predict_structures([structures[i] for i in ok]), strict=True):
        values[i] = float(v)
    return values, f"CDVAE DimeNet++ (MP-20 formation_energy_per_atom, {MODEL_SUBDIR})"


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
        bgs, efs = judge_structures(structures, predict)
    names = [str(p) for p in paths]
    cross = None
    if crossjudge:
        cross, note = crossjudge_energies(structures)
        if cross is None:
            problems.append(f"cross-judge {note}")
    df = evaluate(structures, bgs, efs, task.criteria(target_bg, margin), names=names, reasons=reasons,
                  ef_crossjudge=cross)
    return df, problems
