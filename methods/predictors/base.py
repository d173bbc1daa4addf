"""Differentiable property-predictor interface.

A :class:`Predictor` maps a batch of *soft* crystals (:mod:`.crystals`: lattice, fractional
coordinates and a per-site probability distribution over elements) to one scalar per sample,
differentiably with respect to all three. The neighbour graph (:mod:`.graph`) is discrete: it is
built from the current geometry by :func:`~.graph.build_neighbor_graph`, detached, and may be held
fixed by the optimiser between rebuilds. Adding a new model (ALIGNN, Crystalformer, ...) means
writing one subclass that implements :meth:`Predictor.forward` and registering it (``PREDICTORS``).

Conventions: lengths in Å, angles in degrees, lattice rows are the vectors a, b, c
(pymatgen), element column ``k`` of ``atom_probs`` is atomic number ``Z = k + 1``.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from pymatgen.core import Structure

from .crystals import NUM_ELEMENTS, SoftCrystals
from .graph import NeighborGraph, build_neighbor_graph

__all__ = ["Predictor"]


class Predictor(torch.nn.Module, abc.ABC):
    """A differentiable scalar property of a crystal.

    Subclasses set ``name``, ``unit`` and ``cutoff`` (Å), register ``supported_elements``
    ((98,) bool buffer; the optimiser masks out the rest) and implement :meth:`forward`.
    """

    name: str
    unit: str
    cutoff: float
    supported_elements: torch.Tensor

    @property
    def device(self) -> torch.device:
        return self.supported_elements.device

    def neighbor_graph(self, crystals: SoftCrystals) -> NeighborGraph:
        """The graph this predictor uses for ``crystals`` at its own cutoff."""
        return build_neighbor_graph(crystals, self.cutoff)

    @abc.abstractmethod
    def forward(self, crystals: SoftCrystals, graph: NeighborGraph | None = None) -> torch.Tensor:
        """(B,) predictions in ``unit``; builds the graph itself when ``graph`` is None."""

    def predict_structures(self, structures: Sequence[Structure], batch_size: int = 256) -> np.ndarray:
        """(B,) float64 predictions for pymatgen structures, no grad, one-hot species.

        Structures containing an element the model cannot embed (or Z > 98) give NaN.
        """
        out = np.full(len(structures), np.nan)
        ok_mask = self.supported_elements.cpu().numpy()
        ok = [i for i, s in enumerate(structures)
              if all(1 <= el.Z <= NUM_ELEMENTS and ok_mask[el.Z - 1] for el in s.composition.elements)]
        dtype = next((p.dtype for p in self.parameters()), torch.float32)
        with torch.no_grad():
            for k in range(0, len(ok), batch_size):
                idx = ok[k:k + batch_size]
                crystals = SoftCrystals.from_structures([structures[i] for i in idx], self.device, dtype)
                out[idx] = self(crystals).double().cpu().numpy()
        return out


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
