"""A predictor that wraps another and answers NaN: for testing how methods report failed samples."""

from __future__ import annotations

import math

import torch

from .base import Predictor
from .crystals import SoftCrystals
from .graph import NeighborGraph


class NaNPredictor(Predictor):
    """Same cutoff, elements and graph as ``inner``; every prediction is NaN (gradients stay defined)."""

    def __init__(self, inner: Predictor):
        super().__init__()
        self.inner = inner
        self.name, self.unit, self.cutoff = f"nan({inner.name})", inner.unit, inner.cutoff
        self.register_buffer("supported_elements", inner.supported_elements.clone(), persistent=False)

    def forward(self, crystals: SoftCrystals, graph: NeighborGraph | None = None) -> torch.Tensor:
        out = self.inner(crystals, graph)
        return out + math.nan
