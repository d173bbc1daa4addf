"""The rule that picks a study's proposal from its Pareto front, and the incumbent history.

Objectives (all minimised, see :mod:`.study`): L_bg, L_f, L_neutral unless the variant drops it, and
for perovskites L_t.

Selection rule (the paper gives none): among the Pareto front, prefer trials satisfying every
constraint (L_bg == 0, L_f below the task's E_f threshold, L_neutral == L_t == 0 where those
objectives exist), then the smallest L_bg + L_f, then the lowest trial number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from smoacs_bench.data.task import Task
from smoacs_bench.evaluation.criteria import evaluate_structure
from smoacs_bench.methods.base import Proposal

from .study import L_BG, L_F, L_NEUTRAL, L_T, Member


def satisfies(values: dict[str, float], ef_max: float) -> bool:
    """All constraints met: L_bg == 0, L_f < ``ef_max`` eV/atom, binary objectives 0 where present."""
    return (values[L_BG] == 0.0 and values[L_F] < ef_max
            and values.get(L_NEUTRAL, 0.0) == 0.0 and values.get(L_T, 0.0) == 0.0)


def selection_key(trial: FrozenTrial, names: Sequence[str], ef_max: float) -> tuple[bool, float, int]:
    """Sort key of the selection rule: constraint violators last, then L_bg + L_f, then trial number."""
    v = dict(zip(names, trial.values, strict=True))
    return (not satisfies(v, ef_max), v[L_BG] + v[L_F], trial.number)


def pareto_front(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """COMPLETE trials no other trial dominates (all objectives minimised), as ``Study.best_trials``."""
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    if not done:
        return []
    v = np.array([t.values for t in done], dtype=float)
    le = (v[:, None, :] <= v[None, :, :]).all(-1)   # le[j, i]: j is nowhere worse than i
    lt = (v[:, None, :] < v[None, :, :]).any(-1)
    dominated = (le & lt).any(0)
    return [t for t, d in zip(done, dominated, strict=True) if not d]


def select_trial(trials: optuna.Study | Sequence[FrozenTrial], names: Sequence[str], ef_max: float) -> FrozenTrial:
    """The proposal of a study (or of its trials): the Pareto-front trial with the smallest selection key."""
    front = trials.best_trials if isinstance(trials, optuna.Study) else pareto_front(trials)
    return min(front, key=lambda t: selection_key(t, names, ef_max))


def criteria_met(trial: FrozenTrial, member: Member, task: Task) -> int:
    """How many of the task's criteria the trial's structure meets by the study's own predictions, judged
    by the shared evaluator: (A), (B), (a), (b), and (c), (d), (e) on perovskite tasks; -1 if it failed."""
    bg, ef = trial.user_attrs.get("band_gap"), trial.user_attrs.get("formation_energy")
    if bg is None or ef is None:
        return -1
    try:
        structure = member.space.structure(trial.params)
    except (ValueError, ArithmeticError):
        return -1
    row = evaluate_structure(structure, bg, ef, task.criteria())
    keys = ("bg_ok", "ef_ok", "neutral", "min_dist_ok") + (
        ("tolerance_ok", "angles_ok", "coords_ok") if task.is_perovskite else ())
    return sum(bool(row[k]) for k in keys)


def best_trial(trials: Sequence[FrozenTrial], names: Sequence[str], member: Member, task: Task) -> FrozenTrial:
    """The ``best`` selection rule: the trial meeting most criteria (:func:`criteria_met`), then the smallest
    L_bg + L_f, then the lowest trial number."""
    def key(t: FrozenTrial) -> tuple[int, float, int]:
        v = dict(zip(names, t.values, strict=True))
        return (-criteria_met(t, member, task), v[L_BG] + v[L_F], t.number)

    return min((t for t in trials if t.state == TrialState.COMPLETE), key=key)


def proposal(member: Member, trials: list[FrozenTrial], names: list[str], task: Task,
             selection: str = "final") -> Proposal:
    """The selected trial of a study as a Proposal (failed with a reason if its structure cannot be built).
    ``selection``: "final" (the Pareto rule of :func:`select_trial`) or "best" (:func:`best_trial`)."""
    ef_max = task.ef_max
    trial = select_trial(trials, names, ef_max) if selection == "final" else best_trial(trials, names, member, task)
    values = dict(zip(names, trial.values, strict=True))
    meta = {"sample": member.index, "source": member.source, "trial": trial.number,
            "constraints_met": satisfies(values, ef_max), "objectives": values,
            "reason": trial.user_attrs.get("failed", "")}
    try:
        structure = member.space.structure(trial.params)
    except (ValueError, ArithmeticError) as e:
        return Proposal(None, None, None, meta | {"reason": f"structure cannot be built: {e}"})
    abc = trial.user_attrs.get("relaxed_abc")
    if abc:   # relax_cells: the trial was scored on its relaxed ideal cell
        from pymatgen.core import Lattice, Structure

        structure = Structure(Lattice.orthorhombic(*abc), structure.species, structure.frac_coords)
    return Proposal(structure, trial.user_attrs.get("band_gap"), trial.user_attrs.get("formation_energy"), meta)


def incumbent_history(trials: list[list[FrozenTrial]], names: list[str], ef_max: float) -> dict[str, np.ndarray]:
    """(trials, samples) arrays of the incumbent (selection key over trials so far): its ŷ_bg (eV),
    ŷ_f (eV/atom), t, L_bg + L_f (``loss``), and the best L_bg so far (``best_l_bg``)."""
    n_rows = max(len(ts) for ts in trials)
    keys = ("band_gap", "formation_energy", "loss", "best_l_bg", "tolerance_factor")
    hist = {k: np.full((n_rows, len(trials)), np.nan) for k in keys}
    for j, done in enumerate(trials):
        best, best_bg = None, math.inf
        for r, t in enumerate(done):
            if best is None or selection_key(t, names, ef_max) < selection_key(best, names, ef_max):
                best = t
            best_bg = min(best_bg, t.values[0])
            v = dict(zip(names, best.values, strict=True))
            hist["loss"][r, j] = v[L_BG] + v[L_F]
            hist["best_l_bg"][r, j] = best_bg
            for k in ("band_gap", "formation_energy", "tolerance_factor"):
                val = best.user_attrs.get(k)
                hist[k][r, j] = np.nan if val is None else val
    return hist
