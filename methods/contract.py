"""The contract every method passes (like Optuna's shared sampler tests), reusable by plugins.

``check_method(cls)`` runs a method twice on a tiny perovskite task and checks that it

- returns exactly the requested number of :class:`~.base.Proposal` objects;
- gives the same proposals for the same seed;
- proposes pymatgen Structures (or None with a reason) that the shared evaluator judges without error;
- declares its options, budget and label consistently.

``check_failures_carry_reasons(cls)`` runs it with predictors that return NaN and checks that every
proposal then says why. A plugin's own test suite can call both on its class.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pymatgen.core import Structure

from smoacs_bench.data.task import Task, get_task
from smoacs_bench.evaluation.criteria import evaluate

from .base import Method, Proposal


def small_options(cls: type[Method], budget: int = 3, **extra: Any) -> dict[str, Any]:
    """Options for a tiny, quiet CPU run of ``cls``: its budget set to ``budget`` where it declares one."""
    options = cls.options()
    out: dict[str, Any] = {}
    if cls.budget:
        out[cls.budget] = budget
    for key, value in (("progress", False), ("device", "cpu")):
        if key in options:
            out[key] = value
    return out | dict(cls.contract_options) | extra


def _same(a: Proposal, b: Proposal) -> bool:
    return (a.structure == b.structure and a.band_gap == b.band_gap
            and a.formation_energy == b.formation_energy and a.meta == b.meta)


def check_declarations(cls: type[Method]) -> None:
    """Name, options and budget are declared consistently."""
    assert isinstance(cls.name, str) and cls.name, "a method needs a name"
    options = cls.options()
    if cls.config_class is not None:
        assert dataclasses.is_dataclass(cls.config_class), "config_class must be a dataclass"
        missing = [k for k, v in options.items() if v is dataclasses.MISSING]
        assert not missing, f"options without a default: {missing}"
    if cls.budget is not None:
        assert cls.budget in options, f"budget {cls.budget!r} is not one of the options {list(options)}"
    for key in cls.result_neutral:
        assert cls.config_class is None or key in options or key == "progress", f"unknown result-neutral {key!r}"


def check_method(cls: type[Method], options: dict[str, Any] | None = None, task: Task | None = None,
                 n_samples: int = 3, seed: int = 0) -> list[Proposal]:
    """Run ``cls`` twice with the same seed and check the contract; returns the proposals."""
    check_declarations(cls)
    task = task or get_task("perovskite", 1.5, 0.04)
    options = small_options(cls) if options is None else options
    first = cls(**options).propose(task, n_samples, seed)
    second_method = cls(**options)
    second = second_method.propose(task, n_samples, seed)
    assert isinstance(second_method.label, str) and second_method.label, "a method needs a label"
    assert len(first) == n_samples, f"{cls.name}: {len(first)} proposals for {n_samples} samples"
    for p in first:
        assert isinstance(p, Proposal), f"{cls.name}: {type(p).__name__} is not a Proposal"
        assert p.structure is None or isinstance(p.structure, Structure), f"{cls.name}: not a pymatgen Structure"
        if p.failed:
            assert p.meta.get("reason"), f"{cls.name}: a failed proposal without a reason"
    assert all(_same(a, b) for a, b in zip(first, second, strict=True)), f"{cls.name}: same seed, other output"
    rows = evaluate([p.structure for p in first], [p.band_gap for p in first],
                    [p.formation_energy for p in first], task.criteria(),
                    reasons=[p.meta.get("reason", "") for p in first])
    assert len(rows) == n_samples
    broken = [r for r in rows["reason"] if "evaluation failed" in str(r)]
    assert not broken, f"{cls.name}: the evaluator could not judge {broken}"
    return first


def check_failures_carry_reasons(cls: type[Method], options: dict[str, Any] | None = None,
                                 task: Task | None = None, n_samples: int = 2) -> list[Proposal]:
    """With every prediction NaN (the registry's predictors wrapped), every proposal says why."""
    from .predictors import registry

    task = task or get_task("perovskite", 1.5, 0.04)
    options = small_options(cls) if options is None else options
    saved = dict(registry.PREDICTORS)
    try:
        for name, spec in saved.items():
            registry.PREDICTORS[name] = dataclasses.replace(spec, factory=_nan_factory(spec.factory))
        props = cls(**options).propose(task, n_samples, 0)
    finally:
        registry.PREDICTORS.clear()
        registry.PREDICTORS.update(saved)
    assert len(props) == n_samples
    assert all(p.meta.get("reason") for p in props), (
        f"{cls.name}: with NaN predictions some proposals carry no reason: {[p.meta for p in props]}")
    return props


def _nan_factory(factory):
    def build(device=None):
        from .predictors.nan import NaNPredictor

        return NaNPredictor(factory(device=device))

    return build
