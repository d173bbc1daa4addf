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
                       seed: int = 0) -> tuple[float, float, float]:
    """Success-rate difference mean(a) - mean(b) of two independent samples (different start structures,
    e.g. FTCP's training crystals against a shared pool) and its 95 % percentile bootstrap interval,
    resampling each group on its own."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(x) == 0 or len(y) == 0:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    bx = x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(axis=1)
    by = y[rng.integers(0, len(y), size=(n_boot, len(y)))].mean(axis=1)
    lo, hi = np.percentile(bx - by, [2.5, 97.5])
    return float(x.mean() - y.mean()), float(lo), float(hi)
