"""Optuna's multi-objective TPE sampler, with the below/above split computed once per trial.

With independent sampling (Optuna's default for multi-objective TPE) ``TPESampler`` splits the
finished trials into "below" and "above" again for every parameter, although the split depends only
on the trials: non-dominated sorting, hypervolume subset selection and the feasibility scan are
repeated 23 times per trial on the 5-site perovskite task and 543 times on the 3x3x3 task.
``SplitOnceTPESampler`` memoises the split within one trial and samples exactly what ``TPESampler``
samples (``tests/test_tpe.py`` compares them parameter by parameter). The memo is keyed by the
trials and their states, so trials finishing elsewhere mid-trial (constant liar, Optuna's default,
counts RUNNING trials) start a new split.
"""

from __future__ import annotations

from typing import Any

from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, TPESampler
from optuna.samplers._tpe import sampler as _tpe_module
from optuna.study import Study
from optuna.trial import FrozenTrial


class SplitOnceTPESampler(TPESampler):
    """``TPESampler`` that splits the trials once per trial instead of once per parameter."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._memo: tuple[tuple, tuple[list, list]] | None = None

    def _sample(self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        original = getattr(_tpe_module, "_split_trials", None)
        if original is None:  # another Optuna layout: plain TPESampler
            return super()._sample(study, trial, search_space)

        def split_once(study_: Study, trials: list[FrozenTrial], n_below: int):
            # the trials (and their states: constant liar counts RUNNING ones) identify the split
            key = (study_._study_id, trial.number, n_below, tuple((t.number, t.state) for t in trials))
            if self._memo is None or self._memo[0] != key:
                self._memo = (key, original(study_, trials, n_below))
            below, above = self._memo[1]
            return list(below), list(above)

        _tpe_module._split_trials = split_once
        try:
            return super()._sample(study, trial, search_space)
        finally:
            _tpe_module._split_trials = original


class FixedSampler(BaseSampler):
    """Returns params drawn elsewhere (by :class:`.batched.BatchTPE`), so that Optuna records the trial."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> dict:
        return {}

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self.params[param_name]
