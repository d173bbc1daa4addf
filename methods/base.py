"""The one interface every optimiser implements (like an Optuna sampler: small and swappable).

A method receives a task (search space + band-gap target) and returns proposals: pymatgen
Structures with the method's own predicted properties and per-sample metadata. The shared
evaluator judges them; tensors never leave the method.

What a method declares, so that the harness needs no knowledge of it:

- ``name`` (registry key) and ``display_name``; ``label`` adds the predictor family,
  e.g. ``SMOACS(MEGNet)``;
- ``config_class``: a dataclass of its options (keyword arguments of the constructor); the CLI's
  ``--param KEY=VALUE`` and generic flags (``--device``, ``--workers``, ...) are checked against it;
- ``budget``: the option that counts its work (``steps`` or ``trials``), set by ``--steps``/``--trials``;
- ``state_dir``: a folder inside the run folder for resumable state; the harness passes its path as
  the ``storage`` option and deletes it on ``--force``;
- ``result_neutral``: options that do not change the output (left out of a run's identity).

The harness passes only options the method declares: ``progress`` (bool) when it has one.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from pymatgen.core import Structure

from smoacs_bench.data.task import Task


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
    display_name: ClassVar[str] = ""       # shown in tables; defaults to ``name``
    config_class: ClassVar[type | None] = None   # dataclass of options, or None
    budget: ClassVar[str | None] = None    # option counting the work: "steps", "trials", ...
    state_dir: ClassVar[str | None] = None  # folder in the run folder for resumable state ("storage")
    result_neutral: ClassVar[tuple[str, ...]] = ("progress",)
    history_unit: ClassVar[str] = "step"   # what a row of ``artifacts()["history"]`` is

    trainable: ClassVar[bool] = False      # whether ``smoacs-bench train NAME`` trains a model for it

    @classmethod
    def train_model(cls, dataset: str, out: str, epochs: int, seed: int = 0, **options: Any) -> Any:
        """Train the method's own model on a dataset into folder ``out`` (methods with ``trainable``)."""
        raise NotImplementedError(f"method {cls.name!r} has no model to train")

    @abc.abstractmethod
    def propose(self, task: Task, n_samples: int, seed: int) -> list[Proposal]:
        """``n_samples`` proposals for ``task``; the same seed gives the same proposals."""

    @classmethod
    def options(cls) -> dict[str, Any]:
        """Option name -> default (``dataclasses.MISSING`` when required), from ``config_class``."""
        if cls.config_class is None:
            return {}
        out = {}
        for f in dataclasses.fields(cls.config_class):
            if f.default is not dataclasses.MISSING:
                out[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                out[f.name] = f.default_factory()
            else:
                out[f.name] = dataclasses.MISSING
        return out

    def predictor_names(self) -> tuple[str, ...]:
        """Registered names of the predictors the method optimises with (empty if none)."""
        return ()

    @property
    def label(self) -> str:
        """Row label: display name and predictor family, e.g. ``SMOACS(MEGNet)``."""
        base = self.display_name or self.name
        names = self.predictor_names()
        if not names:
            return base
        from .predictors import family_label

        return f"{base}({family_label(names)})"

    def config(self) -> dict[str, Any]:
        """Settings worth recording in a run's config.json."""
        return {}

    def artifacts(self) -> dict[str, Any]:
        """Extra results of the last :meth:`propose` call (e.g. optimisation history arrays)."""
        return {}

    def caption_note(self) -> str:
        """A sentence table captions must carry about this method's rows (how it departs from the paper or
        from the common protocol); empty when there is none. Called after :meth:`propose`."""
        return ""


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
