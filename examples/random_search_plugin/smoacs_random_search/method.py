"""Random search: the simplest baseline, written as a smoacs-bench plugin.

For every sample it draws ``trials`` candidates uniformly from the task's search space (the space the
TPE baseline searches: lattice lengths, angles on the free task, coordinates, one element per site),
predicts them with its predictors and proposes the candidate that meets every constraint with the
smallest L_bg + L_f (TPE's objectives and rule, without the Pareto front). Everything but the sampling
comes from smoacs-bench itself.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from optuna.distributions import CategoricalDistribution
from pymatgen.core import Structure

from smoacs_bench.data.pools import get_pool
from smoacs_bench.data.task import Task
from smoacs_bench.evaluation.geometry import lattice_problem
from smoacs_bench.methods import Method, Proposal, deterministic
from smoacs_bench.methods.predictors import DEFAULT_PAIR, allowed_elements, load_pair
from smoacs_bench.methods.tpe import L_BG, L_F, SearchSpace, satisfies
from smoacs_bench.methods.tpe.study import Member, members, objectives


@dataclass
class RandomSearchConfig:
    """Options (``--param KEY=VALUE``); every one needs a default."""

    trials: int = 200  # candidates per sample: the budget, set by --trials
    band_gap_model: str = DEFAULT_PAIR[0]  # registered predictor names
    formation_energy_model: str = DEFAULT_PAIR[1]
    pool: str | None = None  # start structures (free task: their site counts); None: the task's default
    device: str | None = None  # torch device; None: CUDA when available


class RandomSearch(Method):
    """Uniform random search over the task's search space."""

    name = "random-search"  # --method random-search (the entry point's name)
    display_name = "Random"  # table rows read "Random(MEGNet)"
    config_class = RandomSearchConfig
    budget = "trials"  # --trials sets it

    def __init__(self, **options: Any):
        self.cfg = RandomSearchConfig(**options)
        self.device = self.cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")

    def predictor_names(self) -> tuple[str, ...]:
        return (self.cfg.band_gap_model, self.cfg.formation_energy_model)

    def config(self) -> dict[str, Any]:
        return asdict(self.cfg) | {"device": self.device}

    def propose(self, task: Task, n_samples: int, seed: int) -> list[Proposal]:
        predictors = load_pair(*self.predictor_names(), device=self.device)
        # Sample i searches the space of the start structure every method draws for sample i (on the free
        # task its number of sites), so runs of different methods pair sample by sample.
        drawn = get_pool(self.cfg.pool or task.default_pool).draw(n_samples, seed)
        samples = members(
            task, [(d.source, d.crystal.structure) for d in drawn], allowed_elements(predictors)
        )
        with deterministic():  # one random stream per sample, seeded by (seed, sample index)
            return [
                self._search(s, np.random.default_rng([seed, s.index]), predictors, task) for s in samples
            ]

    def _search(self, sample: Member, rng: np.random.Generator, predictors, task: Task) -> Proposal:
        """The best of ``trials`` random candidates for one sample."""
        candidates = [_build(sample.space, _draw(sample.space, rng)) for _ in range(self.cfg.trials)]
        scores = _score(candidates, predictors, task)
        best = min(range(len(scores)), key=lambda k: _rank(scores[k][0], task.ef_max))
        values, attrs = scores[best]
        meta = {
            "sample": sample.index,
            "source": sample.source,
            "trial": best,
            "constraints_met": bool(satisfies(values, task.ef_max)),
        }
        if "failed" in attrs:  # the best candidate failed, so every one did
            return Proposal(
                None, meta=meta | {"reason": f"all {len(candidates)} candidates failed ({attrs['failed']})"}
            )
        return Proposal(candidates[best], attrs["band_gap"], attrs["formation_energy"], meta)


def _rank(values: dict[str, float], ef_max: float) -> tuple[bool, float]:
    """TPE's rule: candidates meeting every constraint first, then the smallest L_bg + L_f (the first wins ties)."""
    return (not satisfies(values, ef_max), values[L_BG] + values[L_F])


def _draw(space: SearchSpace, rng: np.random.Generator) -> dict[str, Any]:
    """One point of the search space, uniformly: floats within their ranges, one of the choices otherwise."""
    return {
        name: d.choices[rng.integers(len(d.choices))]
        if isinstance(d, CategoricalDistribution)
        else float(rng.uniform(d.low, d.high))
        for name, d in space.distributions.items()
    }


def _build(space: SearchSpace, params: dict[str, Any]) -> Structure | None:
    """The candidate's Structure, or None when its lattice is unusable (possible on the free task)."""
    try:
        structure = space.structure(params)
    except (ValueError, ArithmeticError):
        return None
    return None if lattice_problem(structure) else structure


def _score(candidates: list[Structure | None], predictors, task: Task) -> list[tuple[dict, dict]]:
    """(objective values, attributes) per candidate: TPE's objectives on one batched prediction per model."""
    ok = [k for k, st in enumerate(candidates) if st is not None]
    bg, ef = np.full(len(candidates), np.nan), np.full(len(candidates), np.nan)
    if ok:
        bg[ok] = predictors[0].predict_structures([candidates[k] for k in ok])
        ef[ok] = predictors[1].predict_structures([candidates[k] for k in ok])
    return [objectives(st, b, e, task) for st, b, e in zip(candidates, bg, ef, strict=True)]
