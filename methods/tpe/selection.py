"""Objectives of a TPE study and the rule that picks a study's proposal from its Pareto front.

Objectives, all minimised: L_bg = max(0, |y - ŷ_bg| - h) (eV), L_f = ŷ_f (eV/atom) (Eq. 13),
L_neutral (Eq. A.1, 0/1) unless the variant drops it, and for perovskites L_t (Eq. A.2, 0/1).

Selection rule (the paper gives none): among the Pareto front, prefer trials satisfying every
constraint (L_bg == 0, L_f < -0.5 eV/atom, L_neutral == L_t == 0 where those objectives exist), then
the smallest L_bg + L_f, then the lowest trial number.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from benchmark.tasks import Task

L_BG, L_F, L_NEUTRAL, L_T = "L_bg", "L_f", "L_neutral", "L_t"
FAILED = {L_BG: 1e3, L_F: 1e3, L_NEUTRAL: 1.0, L_T: 1.0}  # objective values of a failed trial
EF_MAX = -0.5                                                # eV/atom, criterion (B)


def objective_names(task: Task, neutrality: bool) -> list[str]:
    """The objectives of a study, in order."""
    return [L_BG, L_F] + ([L_NEUTRAL] if neutrality else []) + ([L_T] if task.is_perovskite else [])


def satisfies(values: dict[str, float]) -> bool:
    """All constraints met: L_bg == 0, L_f < -0.5 eV/atom, binary objectives 0 where present."""
    return (values[L_BG] == 0.0 and values[L_F] < EF_MAX
            and values.get(L_NEUTRAL, 0.0) == 0.0 and values.get(L_T, 0.0) == 0.0)


def selection_key(trial: FrozenTrial, names: Sequence[str]) -> tuple[bool, float, int]:
    """Sort key of the selection rule: constraint violators last, then L_bg + L_f, then trial number."""
    v = dict(zip(names, trial.values, strict=True))
    return (not satisfies(v), v[L_BG] + v[L_F], trial.number)


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


def select_trial(trials: optuna.Study | Sequence[FrozenTrial], names: Sequence[str]) -> FrozenTrial:
    """The proposal of a study (or of its trials): the Pareto-front trial with the smallest selection key."""
    front = trials.best_trials if isinstance(trials, optuna.Study) else pareto_front(trials)
    return min(front, key=lambda t: selection_key(t, names))
