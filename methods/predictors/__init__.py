"""Differentiable property predictors for soft crystals: interface (:mod:`.base`), input
(:mod:`.crystals`), neighbour graphs (:mod:`.graph`), models (:mod:`.megnet`) and the registry."""

from __future__ import annotations

from .base import Predictor
from .crystals import NUM_ELEMENTS, SoftCrystals, lattice_from_parameters
from .graph import NeighborGraph, bond_vectors, build_neighbor_graph
from .megnet import (
    BAND_GAP_MODEL,
    FORMATION_ENERGY_MODEL,
    MEGNetPredictor,
    band_gap_predictor,
    formation_energy_predictor,
    load_matgl_model,
    load_megnet,
)
from .registry import (
    DEFAULT_PAIR,
    FAMILIES,
    PREDICTORS,
    PredictorSpec,
    allowed_elements,
    family_label,
    family_of,
    family_pair,
    get_predictor,
    load_pair,
    paper_abbrev,
)

__all__ = [
    "BAND_GAP_MODEL",
    "DEFAULT_PAIR",
    "FAMILIES",
    "family_of",
    "family_pair",
    "paper_abbrev",
    "FORMATION_ENERGY_MODEL",
    "NUM_ELEMENTS",
    "PREDICTORS",
    "MEGNetPredictor",
    "NeighborGraph",
    "Predictor",
    "PredictorSpec",
    "SoftCrystals",
    "allowed_elements",
    "band_gap_predictor",
    "bond_vectors",
    "build_neighbor_graph",
    "family_label",
    "formation_energy_predictor",
    "get_predictor",
    "lattice_from_parameters",
    "load_matgl_model",
    "load_megnet",
    "load_pair",
]
