"""Textbook cubic perovskites from experimental lattice constants: the physical-validity stage's calibration set.

Each is the ideal 5-site ABX3 cell (A at the body centre, B at the origin, X on the face centres' edges, as
``templates.IDEAL_FRAC``) with the experimental cubic lattice constant (Å; room temperature, or the cubic
high-temperature phase where the room-temperature phase is a slight distortion of it: BaTiO3, CsPbCl3, CsPbBr3),
rounded to 3 decimals from the standard crystallographic literature. Every entry fits one of the task patterns,
[+2, +4, -2] or [+1, +2, -1], so the perovskite judge can give each a verdict.
"""

from __future__ import annotations

from pymatgen.core import Lattice, Structure

from .templates import IDEAL_FRAC

# (A, B, X, a in Å)
TEXTBOOK_PEROVSKITES: tuple[tuple[str, str, str, float], ...] = (
    ("Sr", "Ti", "O", 3.905),
    ("Ba", "Zr", "O", 4.193),
    ("Ba", "Sn", "O", 4.116),
    ("Ba", "Hf", "O", 4.171),
    ("Ba", "Ti", "O", 4.000),
    ("Ca", "Ti", "O", 3.840),   # pseudo-cubic of the orthorhombic room-temperature phase
    ("K", "Mg", "F", 3.973),
    ("K", "Zn", "F", 4.055),
    ("K", "Ni", "F", 4.014),
    ("K", "Mn", "F", 4.190),
    ("K", "Co", "F", 4.071),
    ("Rb", "Ca", "F", 4.452),
    ("Cs", "Ca", "F", 4.526),
    ("Cs", "Pb", "Cl", 5.605),
    ("Cs", "Pb", "Br", 5.874),
)


def textbook_perovskite(a_el: str, b_el: str, x_el: str, a: float, scale: float = 1.0) -> Structure:
    """The ideal cubic ABX3 cell with lattice constant ``a`` (Å) times ``scale``."""
    return Structure(Lattice.cubic(a * scale), [a_el, b_el, x_el, x_el, x_el], IDEAL_FRAC)


def textbook_perovskites(scale: float = 1.0) -> dict[str, Structure]:
    """Every textbook perovskite by formula (e.g. 'SrTiO3'), lattice constants times ``scale``."""
    return {f"{a}{b}{x}3": textbook_perovskite(a, b, x, lat, scale) for a, b, x, lat in TEXTBOOK_PEROVSKITES}
