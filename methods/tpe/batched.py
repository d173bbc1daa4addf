"""Optuna's multi-objective TPE, vectorised across the studies of a lockstep group.

Optuna's ``TPESampler`` spends ~1.3 ms per parameter per trial in small numpy calls (the trials' param
values, a Parzen estimator for "below" and one for "above", 24 truncated-normal candidates and their
log-densities). :class:`BatchTPE` does the same computation for many studies and all their parameters in a
few array operations:

- the below/above split is Optuna's own (``_split_complete_trials_multi_objective``: non-dominated sorting,
  hypervolume subset selection for ties; ``gamma(n)`` trials below, default ``ceil(0.1 n)``);
- each parameter's Parzen estimators as Optuna builds them (its bandwidth rule with magic clip and
  without endpoints, a prior kernel of weight 1.0 at the middle of the range, below weights all 1 as
  Optuna does for several objectives, above weights by Optuna's ``default_weights`` ramp; categorical
  kernels with the prior spread over the choices);
- ``n_ei_candidates`` (24) candidates from "below", the one with the largest log l(x) - log g(x) kept;
  independently per parameter, or jointly over the fixed parameters (``multivariate``), as Optuna does.

Truncated normals are drawn by inverse CDF (``scipy.special.ndtr``/``ndtri``; every kernel's interval contains
its mean and is at least one sigma wide, so no tail cancels). Draws come from each study's own ``RandomState``
(seeded per trial by the caller), so a study's trial does not depend on which studies share its group. They are not the same random numbers as Optuna's, but draws
from the same distribution: ``tests/test_tpe_batched.py`` compares thousands of draws with Optuna's by
two-sample tests given the same trials. Only float parameters without step and categorical ones are
handled (:func:`supported`); other spaces use Optuna's sampler.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from optuna._hypervolume.hssp import _solve_hssp
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution
from optuna.samplers._tpe.sampler import _get_reference_point
from optuna.study._multi_objective import _fast_non_domination_rank
from optuna.trial import FrozenTrial
from scipy.special import ndtr, ndtri

N_EI_CANDIDATES = 24      # Optuna's default
PRIOR_WEIGHT = 1.0        # Optuna's default
LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def supported(distributions: dict[str, BaseDistribution]) -> bool:
    """True when every distribution is a float without step or a categorical."""
    return all(isinstance(d, CategoricalDistribution) or (isinstance(d, FloatDistribution) and d.step is None)
               for d in distributions.values())


def n_below(gamma: float, n: int) -> int:
    """Trials in "below": ``ceil(gamma n)`` (Optuna's multi-objective default with gamma 0.1)."""
    return math.ceil(gamma * n)


def default_weights(counts: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Optuna's ``default_weights(x)`` at ``positions`` (0-based, in trial order) of rows holding
    ``counts`` observations: 1 for rows under 25; otherwise a ramp from 1/x to 1 over the oldest x - 25."""
    x = np.maximum(counts[:, None], 1).astype(float)
    num = x - 25
    step = np.where(num > 1, (1.0 - 1.0 / x) / np.maximum(num - 1, 1), 0.0)
    ramp = 1.0 / x + positions * step
    return np.where((x >= 25) & (positions < num), ramp, 1.0)


@dataclass
class History:
    """The COMPLETE trials of one study as arrays: internal param values (NaN where a trial lacks the
    param) and objective values (minimised), in trial order."""

    n_objectives: int
    n: int = 0
    values: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))
    params: dict[str, np.ndarray] = field(default_factory=dict)

    def _capacity(self) -> int:
        return len(self.values)

    def add(self, internal: dict[str, float], values: Sequence[float]) -> None:
        if self.n == self._capacity():
            cap = max(16, 2 * self.n)
            grown = np.full((cap, self.n_objectives), np.nan)
            if self.n:
                grown[:self.n] = self.values[:self.n]
            self.values = grown
            for name, col in self.params.items():
                self.params[name] = np.concatenate([col, np.full(cap - len(col), np.nan)])
        for name, v in internal.items():
            if name not in self.params:
                self.params[name] = np.full(self._capacity(), np.nan)
            self.params[name][self.n] = v
        self.values[self.n] = values
        self.n += 1

    def add_trial(self, trial: FrozenTrial) -> None:
        params = trial.params
        self.add({k: d.to_internal_repr(params[k]) for k, d in trial.distributions.items()}, trial.values)

    def column(self, name: str) -> np.ndarray:
        col = self.params.get(name)
        return np.full(self.n, np.nan) if col is None else col[:self.n]

    @classmethod
    def from_trials(cls, trials: Sequence[FrozenTrial], n_objectives: int) -> History:
        h = cls(n_objectives)
        for t in sorted(trials, key=lambda t: t.number):
            h.add_trial(t)
        return h


def below_mask(history: History, gamma: float) -> np.ndarray:
    """(n,) bool: the trials Optuna's multi-objective TPE puts in "below": Optuna's split
    (``_split_complete_trials_multi_objective``: whole non-domination fronts, then hypervolume subset selection on
    the front that overflows) on the minimised values, with Optuna's own functions. Optuna caches only its last
    HSSP; a lockstep group interleaves its studies, so the tie-breaks are cached here for many (a study's
    overflowing front often stays the same for several rounds)."""
    n = history.n
    k = min(n_below(gamma, n), n)
    mask = np.zeros(n, dtype=bool)
    if k == 0:
        return mask
    if k == n:
        mask[:] = True
        return mask
    lvals = np.array(history.values[:n], dtype=float)
    ranks = _fast_non_domination_rank(lvals, n_below=k)
    values, counts = np.unique(ranks, return_counts=True)
    last = int(np.max(values[np.cumsum(counts) <= k], initial=-1))
    mask[ranks <= last] = True
    short = k - int(mask.sum())
    if short > 0:   # the next front overflows: Optuna's hypervolume subset selection picks among it
        tie = np.flatnonzero(ranks == last + 1)
        front = lvals[tie]
        chosen = _hssp(tuple(front.ravel()), tuple(tie), short, tuple(_get_reference_point(front)))
        mask[np.asarray(chosen, dtype=int)] = True
    return mask


@functools.lru_cache(maxsize=4096)
def _hssp(front: tuple[float, ...], indices: tuple[int, ...], size: int, ref: tuple[float, ...]) -> np.ndarray:
    """Optuna's ``_solve_hssp`` on a front (flattened values), its trial indices, the subset size and the reference
    point, as Optuna's ``_solve_hssp_with_cache`` calls it (a deterministic function of these arguments)."""
    return _solve_hssp(np.reshape(front, (len(indices), len(ref))), np.array(indices), size, np.array(ref))


# ---------------------------------------------------------------------------------------------------------
# Parzen estimators over (S studies, K = n + 1 kernels), the last kernel the prior


@dataclass
class Kernels:
    """Mixture of S studies x K kernels: normalised weights (0 for absent kernels) and per-kind arrays."""

    logw: np.ndarray                 # (S, K)
    mu: np.ndarray | None = None     # (S, K) numerical (internal scale: log for log floats)
    sigma: np.ndarray | None = None
    logmass: np.ndarray | None = None
    obs: np.ndarray | None = None    # (S, K) categorical: observed index (-1: prior/absent)
    logz: np.ndarray | None = None   # (S,) categorical: log(C pw / nk + 1)
    lognk: np.ndarray | None = None  # (S,) categorical: log(pw / nk)


def _weights(present: np.ndarray, below: bool) -> np.ndarray:
    """(S, K) normalised mixture weights for observations ``present`` (S, n) plus the prior kernel."""
    counts = present.sum(axis=1)
    if below:
        w = present.astype(float)
    else:
        positions = np.cumsum(present, axis=1) - 1
        w = np.where(present, default_weights(counts, positions), 0.0)
    w = np.concatenate([w, np.full((len(w), 1), PRIOR_WEIGHT)], axis=1)
    w[counts == 0, -1] = 1.0
    return w / w.sum(axis=1, keepdims=True)


def numerical_kernels(obs: np.ndarray, present: np.ndarray, low: float, high: float, below: bool) -> Kernels:
    """Optuna's truncated-normal kernels (``_calculate_numerical_distributions``, magic clip on, endpoints
    off) for observations ``obs`` (S, n) where ``present``, in [low, high]."""
    s, n = obs.shape
    counts = present.sum(axis=1)
    vals = np.where(present, obs, np.inf)
    order = np.argsort(vals, axis=1, kind="stable")
    srt = np.take_along_axis(vals, order, axis=1)
    ext = np.concatenate([np.full((s, 1), low), srt, np.full((s, 1), np.inf)], axis=1)
    ext[np.arange(s), counts + 1] = high
    with np.errstate(invalid="ignore"):
        left = ext[:, 1:-1] - ext[:, :-2]
        right = ext[:, 2:] - ext[:, 1:-1]
        sig = np.maximum(left, right)
        rows = np.flatnonzero(counts >= 2)
        sig[rows, 0] = ext[rows, 2] - ext[rows, 1]
        last = counts[rows] - 1
        sig[rows, last] = ext[rows, last + 1] - ext[rows, last]
    minsigma = (high - low) / np.minimum(100.0, 1.0 + counts + 1.0)
    sig = np.clip(sig, minsigma[:, None], high - low)
    sigma = np.empty_like(sig)
    np.put_along_axis(sigma, order, sig, axis=1)
    mu = np.concatenate([np.where(present, obs, 0.5 * (low + high)), np.full((s, 1), 0.5 * (low + high))], axis=1)
    sigma = np.concatenate([np.where(present, sigma, high - low), np.full((s, 1), high - low)], axis=1)
    logmass = np.log(ndtr((high - mu) / sigma) - ndtr((low - mu) / sigma))   # >= log 0.34: mu in range, sigma <= range
    with np.errstate(divide="ignore"):
        logw = np.log(_weights(present, below))
    return Kernels(logw, mu=mu, sigma=sigma, logmass=logmass)


def categorical_kernels(obs: np.ndarray, present: np.ndarray, n_choices: int, below: bool) -> Kernels:
    """Optuna's categorical kernels (``_calculate_categorical_distributions``): kernel k puts pw / nk on
    every choice and 1 more on its observation, normalised; the prior kernel is uniform."""
    s, n = obs.shape
    counts = present.sum(axis=1)
    nk = counts + 1.0
    with np.errstate(divide="ignore"):
        logw = np.log(_weights(present, below))
    idx = np.concatenate([np.where(present, obs, -1), np.full((s, 1), -1)], axis=1).astype(int)
    return Kernels(logw, obs=idx, logz=np.log(n_choices * PRIOR_WEIGHT / nk + 1.0),
                   lognk=np.log(PRIOR_WEIGHT / nk))


def kernel_logpdf(k: Kernels, x: np.ndarray, dist: BaseDistribution) -> np.ndarray:
    """(S, E, K): log density of candidates ``x`` (S, E, internal scale) under each kernel (a new array; the
    operations in place, in the order of the formula, so that every value is the formula's to the bit)."""
    if isinstance(dist, CategoricalDistribution):
        c = len(dist.choices)
        hit = k.obs[:, None, :] == x[:, :, None].astype(int)
        lp = np.where(hit, np.log(np.exp(k.lognk) + 1.0)[:, None, None], k.lognk[:, None, None])
        lp -= k.logz[:, None, None]
        np.copyto(lp, -math.log(c), where=k.obs[:, None, :] < 0)   # the prior kernel: uniform
        return lp
    z = np.subtract(x[:, :, None], k.mu[:, None, :])
    z /= k.sigma[:, None, :]
    z *= z
    z *= -0.5             # -0.5 z z: scaling by a power of two is exact
    z -= LOG_SQRT_2PI
    z -= np.log(k.sigma)[:, None, :]
    z -= k.logmass[:, None, :]
    return z


def logsumexp(a: np.ndarray, axis: int = -1, overwrite: bool = False) -> np.ndarray:
    """log(sum(exp(a))) along ``axis``, stable; ``overwrite``: ``a`` may be used as scratch space."""
    m = np.max(a, axis=axis, keepdims=True)
    m[~np.isfinite(m)] = 0.0
    t = np.subtract(a, m, out=a if overwrite else None)
    np.exp(t, out=t)
    with np.errstate(divide="ignore"):
        return np.squeeze(m, axis) + np.log(np.sum(t, axis=axis))


def _log_mixture(k: Kernels, x: np.ndarray, dist: BaseDistribution) -> np.ndarray:
    """(S, E): log density of candidates ``x`` under the mixture ``k`` (the kernels' weights added in place)."""
    lp = kernel_logpdf(k, x, dist)
    lp += k.logw[:, None, :]
    return logsumexp(lp, overwrite=True)


def choose_kernels(logw: np.ndarray, u: np.ndarray) -> np.ndarray:
    """(S, E) kernel indices drawn from weights exp(logw) (S, K) with uniforms ``u`` (S, E)."""
    cum = np.cumsum(np.exp(logw), axis=1)
    cum[:, -1] = 1.0
    idx = (cum[:, None, :] < u[:, :, None]).sum(axis=2)
    return np.minimum(idx, logw.shape[1] - 1)


def draw(k: Kernels, kernel: np.ndarray, dist: BaseDistribution, u: np.ndarray, u2: np.ndarray) -> np.ndarray:
    """(S, E) candidates (internal scale) from the chosen kernels, with uniforms ``u``, ``u2`` (S, E)."""
    if isinstance(dist, CategoricalDistribution):
        c = len(dist.choices)
        obs = np.take_along_axis(k.obs, kernel, axis=1)
        p_obs = np.exp(-k.logz)[:, None]            # the extra 1 of an observed kernel, normalised
        uniform = np.minimum((u2 * c).astype(int), c - 1)
        return np.where((obs >= 0) & (u < p_obs), obs, uniform).astype(float)
    mu = np.take_along_axis(k.mu, kernel, axis=1)
    sigma = np.take_along_axis(k.sigma, kernel, axis=1)
    low, high = _bounds(dist)
    pa, pb = ndtr((low - mu) / sigma), ndtr((high - mu) / sigma)   # a <= 0 <= b: no tail cancellation
    return np.clip(ndtri(pa + u * (pb - pa)) * sigma + mu, low, high)


def _bounds(dist: FloatDistribution) -> tuple[float, float]:
    return (math.log(dist.low), math.log(dist.high)) if dist.log else (dist.low, dist.high)


def _internal(col: np.ndarray, dist: BaseDistribution) -> np.ndarray:
    return np.log(col) if isinstance(dist, FloatDistribution) and dist.log else col


def _external(x: float, dist: BaseDistribution) -> Any:
    if isinstance(dist, CategoricalDistribution):
        return dist.choices[int(x)]
    v = math.exp(x) if dist.log else float(x)
    return min(max(v, dist.low), dist.high)


class BatchTPE:
    """Optuna's multi-objective TPE (independent or multivariate) for many studies at once."""

    def __init__(self, gamma: float = 0.1, multivariate: bool = False, n_ei_candidates: int = N_EI_CANDIDATES):
        self.gamma = gamma
        self.multivariate = multivariate
        self.n_ei = n_ei_candidates

    def sample(self, histories: Sequence[History], distributions: dict[str, BaseDistribution],
               rngs: Sequence[np.random.RandomState], below: Sequence[np.ndarray] | None = None,
               conditional: Callable[[int, dict[str, Any]], dict[str, BaseDistribution]] | None = None,
               ) -> list[dict[str, Any]]:
        """One trial's params (external values) for each study. ``histories`` must hold equally many
        trials; ``distributions`` are shared by all studies; ``conditional(i, params)`` gives study i's
        further parameters once the shared ones are chosen (sampled independently, as Optuna does for
        parameters outside the relative search space)."""
        s = len(histories)
        if s == 0:
            return []
        n = histories[0].n
        if any(h.n != n for h in histories):
            raise ValueError("BatchTPE.sample: studies hold different numbers of trials")
        if below is None:
            below = [below_mask(h, self.gamma) for h in histories]
        bmask = np.array(below, dtype=bool).reshape(s, n)
        out: list[dict[str, Any]] = [{} for _ in range(s)]
        names = list(distributions)
        if self.multivariate:
            self._sample_joint(histories, names, distributions, bmask, rngs, out)
        else:
            for name in names:
                self._sample_one(histories, list(range(s)), name, distributions[name], bmask, rngs, out)
        if conditional is not None:
            groups: dict[tuple[str, str], list[int]] = {}
            dists: dict[tuple[str, str], BaseDistribution] = {}
            for i in range(s):
                for name, dist in conditional(i, out[i]).items():
                    key = (name, repr(dist))
                    groups.setdefault(key, []).append(i)
                    dists[key] = dist
            for key in sorted(groups):
                self._sample_one(histories, groups[key], key[0], dists[key], bmask, rngs, out)
        return out

    def _obs(self, histories, rows, name, dist) -> tuple[np.ndarray, np.ndarray]:
        obs = np.array([_internal(histories[i].column(name), dist) for i in rows]).reshape(len(rows), -1)
        return obs, ~np.isnan(obs)

    def _kernels(self, obs, present, bmask, dist) -> tuple[Kernels, Kernels]:
        def build(mask, is_below):
            if isinstance(dist, CategoricalDistribution):
                return categorical_kernels(obs, mask, len(dist.choices), is_below)
            low, high = _bounds(dist)
            return numerical_kernels(obs, mask, low, high, is_below)
        return build(present & bmask, True), build(present & ~bmask, False)

    def _uniforms(self, rngs, rows, k: int) -> np.ndarray:
        """(k, len(rows), E) uniforms, each study's from its own generator."""
        return np.stack([rngs[i].random_sample((k, self.n_ei)) for i in rows], axis=1)

    def _sample_one(self, histories, rows, name, dist, bmask, rngs, out) -> None:
        obs, present = self._obs(histories, rows, name, dist)
        lo, hi = self._kernels(obs, present, bmask[rows], dist)
        u = self._uniforms(rngs, rows, 3)
        x = draw(lo, choose_kernels(lo.logw, u[0]), dist, u[1], u[2])
        acq = _log_mixture(lo, x, dist) - _log_mixture(hi, x, dist)
        best = x[np.arange(len(rows)), np.argmax(acq, axis=1)]
        for r, i in enumerate(rows):
            out[i][name] = _external(best[r], dist)

    def _sample_joint(self, histories, names, distributions, bmask, rngs, out) -> None:
        rows = list(range(len(histories)))
        built = []
        for name in names:
            obs, present = self._obs(histories, rows, name, distributions[name])
            built.append((name, distributions[name], *self._kernels(obs, present, bmask, distributions[name])))
        u = self._uniforms(rngs, rows, 1 + 2 * len(names))
        kernel = choose_kernels(built[0][2].logw, u[0])   # one kernel per candidate, shared by all parameters
        lp_lo = built[0][2].logw[:, None, :].copy()
        lp_hi = built[0][3].logw[:, None, :].copy()
        xs = []
        for j, (_name, dist, lo, hi) in enumerate(built):
            x = draw(lo, kernel, dist, u[1 + 2 * j], u[2 + 2 * j])
            xs.append(x)
            lp_lo = lp_lo + kernel_logpdf(lo, x, dist)
            lp_hi = lp_hi + kernel_logpdf(hi, x, dist)
        best = np.argmax(logsumexp(lp_lo) - logsumexp(lp_hi), axis=1)
        for (name, dist, _lo, _hi), x in zip(built, xs, strict=True):
            for r in rows:
                out[r][name] = _external(x[r, best[r]], dist)
