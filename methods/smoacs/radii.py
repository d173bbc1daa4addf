"""Ionic radii per (element, oxidation number) for the differentiable tolerance factor (Eq. 15)."""

from __future__ import annotations

import warnings
from functools import cache

import numpy as np
from pymatgen.core import Species

from smoacs_bench.data.elements import SYMBOLS, K


@cache
def radius_vector(state: int) -> np.ndarray:
    """(K,) pymatgen ionic radius (Å) of every element at oxidation number ``state``; NaN where unknown."""
    out = np.full(K, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k, sym in enumerate(SYMBOLS):
            try:
                r = Species(sym, state).ionic_radius
            except (ValueError, KeyError):
                r = None
            if r is not None:
                out[k] = float(r)
    return out
