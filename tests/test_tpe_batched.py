"""BatchTPE draws from the distribution Optuna's TPESampler draws from, given the same trials.

Thousands of draws from each (Optuna: one seeded sampler per draw; BatchTPE: one study per draw, all
holding the same history) are compared by two-sample tests: Kolmogorov-Smirnov for floats, chi-square
for categoricals. A negative control (another gamma) shows the tests can tell distributions apart.
"""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.samplers._tpe.sampler import _split_trials
from optuna.trial import TrialState, create_trial
from scipy import stats

from smoacs_bench.methods.tpe.batched import BatchTPE, History, below_mask, default_weights

N_DRAWS = 1500
ALPHA = 1e-3

SPACE = {"a": FloatDistribution(3.0, 7.0), "x": FloatDistribution(-0.1, 0.1),
         "r": FloatDistribution(0.01, 10.0, log=True), "el": CategoricalDistribution(["Na", "K", "Rb", "Cs", "Ba"])}
CONDITIONAL = {1: {"site_p1": CategoricalDistribution(["O", "S", "Se"])}}


def _study(n_trials: int = 60, conditional: bool = False) -> optuna.Study:
    """A 3-objective study whose trials favour a ~ 4, x ~ 0.05, el = K (so TPE's draws are far from uniform)."""
    rng = np.random.default_rng(7)
    study = optuna.create_study(directions=["minimize"] * 3)
    for _ in range(n_trials):
        params = {"a": rng.uniform(3, 7), "x": rng.uniform(-0.1, 0.1), "r": float(np.exp(rng.uniform(np.log(0.01), np.log(10)))),
                  "el": SPACE["el"].choices[rng.integers(5)]}
        dists = dict(SPACE)
        if conditional:
            params["pattern"] = int(rng.integers(2))
            dists["pattern"] = CategoricalDistribution([0, 1])
            if params["pattern"] == 1:
                params["site_p1"] = ["O", "S", "Se"][rng.integers(3)]
                dists |= CONDITIONAL[1]
        values = [abs(params["a"] - 4) + rng.normal(0, 0.2), abs(params["x"] - 0.05) * 20 + (params["el"] != "K"),
                  float(rng.integers(2))]
        study.add_trial(create_trial(params=params, distributions=dists, values=values))
    return study


def _history(study: optuna.Study) -> History:   # noqa: D103 (the COMPLETE trials only)
    return History.from_trials(study.get_trials(states=(TrialState.COMPLETE,)), len(study.directions))


def _optuna_draws(study, space, multivariate=False, conditional=None):
    running = study.ask()             # the trial being sampled (constant liar leaves it out of the split)
    frozen = study._storage.get_trial(running._trial_id)
    out = {k: [] for k in space} | {k: [] for k in (conditional or {})}
    for seed in range(N_DRAWS):
        sampler = optuna.samplers.TPESampler(seed=seed, multivariate=multivariate)
        if multivariate:
            drawn = sampler.sample_relative(study, frozen, space)
        else:
            drawn = {k: sampler.sample_independent(study, frozen, k, d) for k, d in space.items()}
        for k, v in (conditional or {}).items():
            drawn[k] = sampler.sample_independent(study, frozen, k, v)
        for k, v in drawn.items():
            out[k].append(v)
    study.tell(running, state=TrialState.FAIL)
    return out


def _batched_draws(study, space, multivariate=False, gamma=0.1, conditional=None):
    h = _history(study)
    rngs = [np.random.RandomState(10_000 + k) for k in range(N_DRAWS)]
    drawn = BatchTPE(gamma=gamma, multivariate=multivariate).sample(
        [h] * N_DRAWS, space, rngs, conditional=(lambda i, p: conditional) if conditional else None)
    return {k: [d[k] for d in drawn] for k in drawn[0]}


def _p_value(a, b, dist) -> float:
    if isinstance(dist, CategoricalDistribution):
        table = np.array([[a.count(c) for c in dist.choices], [b.count(c) for c in dist.choices]])
        table = table[:, table.sum(axis=0) > 0]
        return stats.chi2_contingency(table).pvalue
    return stats.ks_2samp(a, b).pvalue


@pytest.fixture(scope="module")
def study():
    return _study()


@pytest.fixture(scope="module")
def optuna_independent(study):
    return _optuna_draws(study, SPACE)


def test_split_is_optunas(study):
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    below, _ = _split_trials(study, trials, math.ceil(0.1 * len(trials)))
    assert np.flatnonzero(below_mask(_history(study), 0.1)).tolist() == sorted(t.number for t in below)


def test_split_is_optunas_on_fronts_with_ties_that_need_hypervolume_tie_breaks():
    """Objectives like TPE's here (a clipped gap loss with a plateau at 0, E_f, two 0/1 flags): many equal and
    mutually non-dominated trials, so the overflowing front goes to HSSP; the cached tie-break is Optuna's."""
    from types import SimpleNamespace

    from optuna.samplers._tpe.sampler import _split_complete_trials_multi_objective
    from optuna.study import StudyDirection
    from optuna.study._multi_objective import _fast_non_domination_rank

    rng = np.random.default_rng(1)
    tied = 0
    for n in (12, 30, 57, 120, 200):
        for _ in range(6):
            values = np.column_stack([np.maximum(0, rng.normal(0.1, 0.3, n)).round(2), rng.normal(-1, 0.5, n).round(1),
                                      rng.integers(0, 2, n), rng.integers(0, 2, n)]).astype(float)
            h = History(4)
            for v in values:
                h.add({}, v)
            rows = [SimpleNamespace(values=v, index=i) for i, v in enumerate(values)]
            k = math.ceil(0.1 * n)
            below, _ = _split_complete_trials_multi_objective(
                rows, SimpleNamespace(directions=[StudyDirection.MINIMIZE] * 4), k)
            assert np.flatnonzero(below_mask(h, 0.1)).tolist() == sorted(r.index for r in below)
            assert np.flatnonzero(below_mask(h, 0.1)).tolist() == sorted(r.index for r in below)   # cached
            ranks = _fast_non_domination_rank(values, n_below=k)
            tied += int((ranks <= np.sort(ranks)[k - 1]).sum() > k)
    assert tied >= 5   # the HSSP tie-break was exercised


def test_default_weights_are_optunas():
    from optuna.samplers._tpe.sampler import default_weights as optuna_weights

    for x in (0, 1, 24, 25, 26, 27, 60, 200):
        pos = np.arange(x)[None, :]
        np.testing.assert_allclose(default_weights(np.array([x]), pos)[0], optuna_weights(x))


def test_independent_draws_match_optuna(study, optuna_independent):
    ours = _batched_draws(study, SPACE)
    for name, dist in SPACE.items():
        p = _p_value(optuna_independent[name], ours[name], dist)
        assert p > ALPHA, f"{name}: p = {p:.2g}"
        # far from the prior: the comparison has something to detect
        if not isinstance(dist, CategoricalDistribution):
            uniform = np.random.default_rng(0).uniform(dist.low, dist.high, N_DRAWS)
            assert dist.log or stats.ks_2samp(ours[name], uniform).pvalue < ALPHA


def test_another_gamma_is_detected(study, optuna_independent):
    """Negative control: below = half the trials instead of a tenth is told apart from Optuna's draws."""
    ours = _batched_draws(study, SPACE, gamma=0.5)
    assert min(_p_value(optuna_independent[k], ours[k], d) for k, d in SPACE.items()) < ALPHA


def test_multivariate_draws_match_optuna(study):
    theirs = _optuna_draws(study, SPACE, multivariate=True)
    ours = _batched_draws(study, SPACE, multivariate=True)
    for name, dist in SPACE.items():
        assert _p_value(theirs[name], ours[name], dist) > ALPHA, name
    # joint: the element against the lattice bin (multivariate couples them through the shared kernel)
    def joint(d):
        return [f"{e}/{int(a)}" for e, a in zip(d["el"], d["a"], strict=True)]
    cells = sorted(set(joint(theirs)) | set(joint(ours)))
    p = _p_value(joint(theirs), joint(ours), CategoricalDistribution(cells))
    assert p > ALPHA


def test_conditional_parameter_matches_optuna():
    study = _study(conditional=True)
    space = dict(SPACE) | {"pattern": CategoricalDistribution([0, 1])}
    theirs = _optuna_draws(study, space, conditional=CONDITIONAL[1])
    ours = _batched_draws(study, space, conditional=CONDITIONAL[1])
    for name, dist in (space | CONDITIONAL[1]).items():
        assert _p_value(theirs[name], ours[name], dist) > ALPHA, name


def test_history_grows_like_the_study(study):
    h = History(3)
    for t in study.get_trials(states=(TrialState.COMPLETE,)):
        h.add_trial(t)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert h.n == len(complete) == 60
    np.testing.assert_allclose(h.column("a"), [t.params["a"] for t in complete])
    assert np.isnan(h.column("absent")).all()
