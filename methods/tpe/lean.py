"""A TPE trial recorded once, without Optuna's per-trial bookkeeping, and the draws that need no study object.

Optuna's ask/tell writes every suggested parameter, user attribute and value as its own storage operation and
deep-copies trials on access: 16 % of a 128 x 200 TPE run in SMOACS's space on the 5-site task
(``perf/method_costs.py --optuna-path``), more where a trial has more parameters (issue #43). Where every draw comes from
BatchTPE (engine "batched") or from Optuna's ``RandomSampler`` (the start, the startup trials, the random
sampler), :func:`.lockstep.run_lean_round` draws the same params without a study and records each finished trial
once: a :class:`TrialRecord` in memory and, with a journal folder, one Optuna ``CREATE_TRIAL`` journal operation
(:class:`TrialOps`), so that the journal remains an Optuna ``JournalStorage`` (``optuna.load_study`` reads it,
and either path resumes it).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution, distribution_to_json
from optuna.samplers import RandomSampler
from optuna.trial import TrialState

from .space import SearchSpace

CREATE_TRIAL = 4   # optuna.storages.journal._storage.JournalOperation.CREATE_TRIAL


@dataclass
class TrialRecord:
    """A COMPLETE trial as the selection rule reads it (the attributes of Optuna's ``FrozenTrial`` it uses):
    params in their external representation, as Optuna returns them from storage."""

    number: int
    params: dict[str, Any]
    values: list[float]
    user_attrs: dict[str, Any]
    state: TrialState = TrialState.COMPLETE
    distributions: dict[str, BaseDistribution] = field(default_factory=dict)


def _single_value(dist: BaseDistribution) -> Any:
    """Optuna's value of a distribution with one possible value (its ``_get_single_value``)."""
    return dist.choices[0] if isinstance(dist, CategoricalDistribution) else dist.low


def draw_params(space: SearchSpace, seed: int, fixed: dict[str, Any] | None = None) -> dict[str, Any]:
    """The params Optuna's ask gives a trial whose sampler is ``RandomSampler(seed)`` (or a TPESampler in its
    startup trials, which delegates to one seeded alike): ``fixed`` values first (an enqueued trial), a
    distribution with one value without a draw, the others drawn in the order they are suggested (the space's
    parameters, then those its choices make conditional)."""
    sampler = RandomSampler(seed=seed)
    fixed = fixed or {}
    out: dict[str, Any] = {}

    def one(name: str, dist: BaseDistribution) -> Any:
        if name in fixed:
            return fixed[name]
        if dist.single():
            return _single_value(dist)
        return sampler.sample_independent(None, None, name, dist)   # it reads neither the study nor the trial

    for name, dist in space.distributions.items():
        out[name] = one(name, dist)
    for name, dist in space.conditional(out).items():
        out[name] = one(name, dist)
    return out


class TrialOps:
    """Optuna journal operations creating finished trials (``JournalStorage.create_new_trial`` with a template,
    in the format that storage writes), one per trial; distributions serialised once."""

    def __init__(self) -> None:
        self.worker = f"smoacs-bench-{uuid.uuid4()}"
        self._json: dict[int, tuple[BaseDistribution, str]] = {}

    def _dist_json(self, dist: BaseDistribution) -> str:
        hit = self._json.get(id(dist))
        if hit is None or hit[0] is not dist:
            hit = self._json[id(dist)] = (dist, distribution_to_json(dist))
        return hit[1]

    def create(self, study_id: int, internal: dict[str, float], dists: dict[str, BaseDistribution],
               values: list[float], user_attrs: dict[str, Any], system_attrs: dict[str, Any] | None = None,
               when: str | None = None) -> dict[str, Any]:
        when = when or datetime.now(UTC).isoformat(timespec="microseconds")
        return {"op_code": CREATE_TRIAL, "worker_id": self.worker, "study_id": study_id, "datetime_start": when,
                "state": int(TrialState.COMPLETE), "value": None, "values": values, "datetime_complete": when,
                "distributions": {k: self._dist_json(d) for k, d in dists.items()}, "params": internal,
                "user_attrs": user_attrs, "system_attrs": system_attrs or {}, "intermediate_values": {}}
