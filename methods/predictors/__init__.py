"""Differentiable property predictors for soft crystals (see :mod:`.base`)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .base import (
    NUM_ELEMENTS,
    NeighborGraph,
    Predictor,
    SoftCrystals,
    bond_vectors,
    build_neighbor_graph,
    lattice_from_parameters,
)
from .megnet import (
    BAND_GAP_MODEL,
    FORMATION_ENERGY_MODEL,
    MEGNetPredictor,
    band_gap_predictor,
    formation_energy_predictor,
    load_matgl_model,
    load_megnet,
)

PREDICTORS: dict[str, Callable[..., Predictor]] = {
    "megnet-eform": formation_energy_predictor,
    "megnet-bandgap": band_gap_predictor,
}


def get_predictor(name: str, device: torch.device | str | None = None) -> Predictor:
    """Instantiate a registered predictor by name (see ``PREDICTORS``)."""
    try:
        factory = PREDICTORS[name]
    except KeyError:
        raise KeyError(f"unknown predictor {name!r}; known: {sorted(PREDICTORS)}") from None
    return factory(device=device)


__all__ = [
    "BAND_GAP_MODEL",
    "FORMATION_ENERGY_MODEL",
    "NUM_ELEMENTS",
    "PREDICTORS",
    "MEGNetPredictor",
    "NeighborGraph",
    "Predictor",
    "SoftCrystals",
    "band_gap_predictor",
    "bond_vectors",
    "build_neighbor_graph",
    "formation_energy_predictor",
    "get_predictor",
    "lattice_from_parameters",
    "load_matgl_model",
    "load_megnet",
]
