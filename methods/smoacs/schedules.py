"""Schedules of SMOACS (paper A.4, A.6): softmax temperature, graph rebuild steps."""

from __future__ import annotations

import math


def temperature(step: int, n_steps: int, t_start: float = 0.01, t_end: float = 0.0001) -> float:
    """Linear decay from ``t_start`` at the first step to ``t_end`` at the last."""
    if n_steps <= 1:
        return t_end
    return t_start + (t_end - t_start) * step / (n_steps - 1)


def rebuild_steps(n_steps: int, n_rebuilds: int) -> list[int]:
    """Steps at which to rebuild the neighbour graph: evenly spaced in the integral of the cosine
    learning-rate schedule, F(t) = t/2 + S/(2π) sin(π t / S), so rebuilds are dense early, when
    the structure moves fast, and sparse late. Step 0 always builds the graph and is not listed.
    """
    if n_rebuilds <= 0 or n_steps <= 1:
        return []
    s = float(n_steps)
    integral = [t / 2 + s / (2 * math.pi) * math.sin(math.pi * t / s) for t in range(n_steps)]
    total = s / 2
    out: list[int] = []
    for j in range(1, n_rebuilds + 1):
        level = total * j / (n_rebuilds + 1)
        t = next((i for i, v in enumerate(integral) if v >= level), None)
        if t is not None and t > 0 and (not out or t > out[-1]):
            out.append(t)
    return out


def cosine_factor(step: int, n_steps: int) -> float:
    """Cosine annealing of the learning rates: 1 at step 0, falling to 0 at ``n_steps``."""
    return 0.5 * (1.0 + math.cos(math.pi * step / n_steps)) if n_steps > 0 else 1.0


def mutate_steps(n_steps: int, fractions: tuple[float, ...] = (0.5, 0.75)) -> list[int]:
    """Steps of the copy-and-mutate step: ``fractions`` of the run (steps 100 and 150 of 200)."""
    return sorted({int(round(f * n_steps)) for f in fractions if 0 < round(f * n_steps) < n_steps})


def lr_factors(n_steps: int, restarts: list[int] | tuple[int, ...] = ()) -> list[float]:
    """Learning-rate factor per step: one cosine over the run, or (the authors' released scheduler) a new
    cosine at each step of ``restarts`` that starts from the factor reached there and falls to 0 at the end."""
    out, start, level = [], 0, 1.0
    for step in range(n_steps):
        if step in restarts and step > start:
            level, start = level * cosine_factor(step - start, n_steps - start), step
        out.append(level * cosine_factor(step - start, n_steps - start))
    return out
