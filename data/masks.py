"""Oxidation masks (paper Section 3.1, Eq. 3-5 and 10).

``m(s)`` is a length-K boolean vector, True for elements that can take oxidation number ``s``
in the "Ours" table. ``M(S_d)`` stacks ``m(s_{n,d})`` over the N sites of pattern d.
Whatever element an argmax picks inside a pattern's mask, the structure is neutral as long
as the pattern's oxidation numbers sum to zero.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .elements import SYMBOLS, K
from .oxidation import OxidationTable, ours


def oxidation_mask(s: int, table: OxidationTable | None = None) -> np.ndarray:
    """``m(s)``: (K,) bool, True where the element can take oxidation number ``s``."""
    tab = table or ours()
    return np.array([s in tab[sym] for sym in SYMBOLS], dtype=bool)


def pattern_mask(pattern: Sequence[int], table: OxidationTable | None = None,
                 allowed: np.ndarray | None = None) -> np.ndarray:
    """``M(S)``: (N, K) bool for one site-wise pattern of oxidation numbers.

    ``allowed`` (K,) optionally removes elements a predictor cannot embed.
    """
    cache: dict[int, np.ndarray] = {}
    rows = []
    for s in pattern:
        if s not in cache:
            cache[s] = oxidation_mask(int(s), table)
        rows.append(cache[s])
    m = np.stack(rows) if rows else np.zeros((0, K), dtype=bool)
    return m & allowed[None, :] if allowed is not None else m


def pattern_masks(patterns: Sequence[Sequence[int]], table: OxidationTable | None = None,
                  allowed: np.ndarray | None = None) -> np.ndarray:
    """(D, N, K) bool masks for D patterns over the same N sites.

    Raises ValueError if a pattern is not neutral, patterns differ in length, or some site of a
    pattern has no admissible element (the optimiser could not pick anything there).
    """
    if len(patterns) == 0:
        raise ValueError("at least one oxidation pattern is needed")
    n = len(patterns[0])
    out = []
    for d, p in enumerate(patterns):
        if len(p) != n:
            raise ValueError(f"pattern {d} has {len(p)} sites, expected {n}")
        if sum(p) != 0:
            raise ValueError(f"pattern {d} {list(p)} is not neutral (sum {sum(p)})")
        m = pattern_mask(p, table, allowed)
        empty = np.flatnonzero(~m.any(axis=1))
        if empty.size:
            raise ValueError(f"pattern {d}: no element can take oxidation number {p[empty[0]]} (site {empty[0]})")
        out.append(m)
    return np.stack(out)
