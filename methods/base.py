"""The one interface every optimiser implements (like an Optuna sampler: small and swappable).

A method receives a task (search space + band-gap target) and returns proposals: pymatgen
Structures with the method's own predicted properties and per-sample metadata. The shared
evaluator judges them; tensors never leave the method.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from pymatgen.core import Structure

from benchmark.tasks import Task


@dataclass
class Proposal:
    """One proposed crystal. ``structure`` is None when the sample failed (``meta['reason']`` says why)."""

    structure: Structure | None
    band_gap: float | None = None          # eV, the method's own prediction
    formation_energy: float | None = None  # eV/atom, the method's own prediction
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.structure is None


class Method(abc.ABC):
    """An inverse-design method. Subclasses set ``name`` and implement :meth:`propose`."""

    name: ClassVar[str]
    label: ClassVar[str] = ""  # name shown in tables; defaults to ``name``
    history_unit: ClassVar[str] = "step"  # what a row of ``artifacts()["history"]`` is

    @abc.abstractmethod
    def propose(self, task: Task, n_samples: int, seed: int) -> list[Proposal]:
        """``n_samples`` proposals for ``task``; the same seed gives the same proposals."""

    def config(self) -> dict[str, Any]:
        """Settings worth recording in a run's config.json."""
        return {}

    def artifacts(self) -> dict[str, Any]:
        """Extra results of the last :meth:`propose` call (e.g. optimisation history arrays)."""
        return {}


@contextmanager
def deterministic() -> Iterator[None]:
    """Deterministic torch kernels inside the block (restored afterwards).

    Multi-threaded CPU scatter/index-add kernels accumulate in a varying order; in a 200-step
    optimisation the float noise can flip an argmax, so the same seed gave different crystals.
    On CUDA, kernels without a deterministic version only warn (``warn_only``): GPU runs stay
    non-reproducible at that level.
    """
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
