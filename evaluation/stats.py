"""Uncertainty of rates: Wilson intervals for one run, intervals over seeds, and a paired bootstrap of
the difference between two methods started from the same structures. All intervals are 95 %."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

Z95 = 1.959963984540054


def wilson(k: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion k / n; (nan, nan) for n = 0."""
    if n <= 0 or not math.isfinite(k):
        return math.nan, math.nan
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def seed_interval(values: Sequence[float]) -> tuple[float, float]:
    """(mean, half-width of the 95 % t-interval of the mean) over seeds; half-width nan for one value."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if len(v) == 0:
        return math.nan, math.nan
    if len(v) == 1:
        return float(v[0]), math.nan
    half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
    return float(v.mean()), float(half)


def paired_bootstrap(a: Sequence[bool], b: Sequence[bool], n_boot: int = 10_000,
                     seed: int = 0) -> tuple[float, float, float]:
    """Success-rate difference mean(a) - mean(b) over paired samples (same start structure) and its 95 %
    percentile bootstrap interval, resampling pairs."""
    x = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    boots = x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(axis=1)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return float(x.mean()), float(lo), float(hi)


def unpaired_bootstrap(a: Sequence[bool], b: Sequence[bool], n_boot: int = 10_000,
                       seed: int = 0, clusters_a: Sequence | None = None,
                       clusters_b: Sequence | None = None) -> tuple[float, float, float]:
    """Success-rate difference mean(a) - mean(b) of two independent samples (different start structures,
    e.g. FTCP's training crystals against a shared pool) and its 95 % percentile bootstrap interval,
    resampling each group on its own: whole clusters (copy lineages) where given, else samples."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(x) == 0 or len(y) == 0:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)

    def rates(v: np.ndarray, clusters: Sequence | None) -> np.ndarray:
        labels = np.arange(len(v)) if clusters is None else np.unique(
            np.asarray([str(c) for c in clusters]), return_inverse=True)[1]
        k = int(labels.max()) + 1
        sums = np.bincount(labels, weights=v, minlength=k)
        sizes = np.bincount(labels, minlength=k).astype(float)
        draws = rng.integers(0, k, size=(n_boot, k))
        return sums[draws].sum(axis=1) / sizes[draws].sum(axis=1)

    lo, hi = np.percentile(rates(x, clusters_a) - rates(y, clusters_b), [2.5, 97.5])
    return float(x.mean() - y.mean()), float(lo), float(hi)


def cluster_bootstrap(successes: Sequence[bool], clusters: Sequence, n_boot: int = 10_000,
                      seed: int = 0) -> tuple[float, float, float]:
    """Success rate and its 95 % percentile interval resampling whole clusters (copy lineages: a sample and
    the copies of it share a cluster) with replacement; the rate of a resample is successes / samples in it.
    With every sample its own cluster this is the ordinary bootstrap."""
    x = np.asarray(successes, dtype=float)
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    labels, idx = np.unique(np.asarray([str(c) for c in clusters]), return_inverse=True)
    k = len(labels)
    sums = np.bincount(idx, weights=x, minlength=k)
    sizes = np.bincount(idx, minlength=k).astype(float)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, k, size=(n_boot, k))
    rates = sums[draws].sum(axis=1) / sizes[draws].sum(axis=1)
    lo, hi = np.percentile(rates, [2.5, 97.5])
    return float(x.mean()), float(lo), float(hi)


def mcnemar_p(a: Sequence[bool], b: Sequence[bool]) -> float:
    """Exact McNemar p-value (two-sided) of paired successes: a binomial test on the discordant pairs."""
    x, y = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    only_a, only_b = int((x & ~y).sum()), int((~x & y).sum())
    if only_a + only_b == 0:
        return 1.0
    return float(stats.binomtest(only_a, only_a + only_b, 0.5).pvalue)


def fisher_p(a: Sequence[bool], b: Sequence[bool]) -> float:
    """Two-sided Fisher exact p-value of two independent success counts."""
    x, y = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    table = [[int(x.sum()), int((~x).sum())], [int(y.sum()), int((~y).sum())]]
    return float(stats.fisher_exact(table).pvalue)


def welch_seeds(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float, float, float]:
    """Difference of mean per-seed rates, its 95 % Welch t-interval, the p-value and the degrees of freedom
    (seeds are the unit); NaN where either side has fewer than two seeds."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = float(x.mean() - y.mean()) if len(x) and len(y) else math.nan
    if len(x) < 2 or len(y) < 2:
        return diff, math.nan, math.nan, math.nan, math.nan
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    se = math.sqrt(vx + vy)
    if se == 0:
        return diff, diff, diff, (1.0 if diff == 0 else 0.0), math.nan
    df = (vx + vy) ** 2 / (vx ** 2 / (len(x) - 1) + vy ** 2 / (len(y) - 1))
    half = stats.t.ppf(0.975, df) * se
    p = float(stats.ttest_ind(x, y, equal_var=False).pvalue)
    return diff, diff - half, diff + half, p, float(df)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (NaN stays NaN), in the input's order."""
    p = np.asarray(pvalues, dtype=float)
    ok = np.flatnonzero(np.isfinite(p))
    out = np.full(len(p), math.nan)
    if len(ok) == 0:
        return out.tolist()
    order = ok[np.argsort(p[ok], kind="stable")]
    m = len(order)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()
