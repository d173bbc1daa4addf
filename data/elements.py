"""Element symbols for atomic numbers Z = 1..98 (K = 98 in the paper).

Index conventions: a per-site distribution over elements is a length-K vector whose
column ``k`` is the element with atomic number ``Z = k + 1``.
"""

from __future__ import annotations

from pymatgen.core.periodic_table import Element

K = 98
SYMBOLS: tuple[str, ...] = tuple(Element.from_Z(z).symbol for z in range(1, K + 1))
_INDEX = {s: i for i, s in enumerate(SYMBOLS)}


class UnknownElementError(ValueError):
    """An element symbol outside Z = 1..98."""


def index_of(symbol: str) -> int:
    """Column index (Z - 1) of an element symbol; raises UnknownElementError."""
    try:
        return _INDEX[symbol]
    except KeyError:
        raise UnknownElementError(f"unknown element {symbol!r} (only Z = 1..{K} are considered)") from None


def z_of(symbol: str) -> int:
    """Atomic number of an element symbol."""
    return index_of(symbol) + 1


def symbol_of(z: int) -> str:
    """Element symbol of atomic number ``z`` (1..98)."""
    if not 1 <= z <= K:
        raise UnknownElementError(f"atomic number {z} outside 1..{K}")
    return SYMBOLS[z - 1]
