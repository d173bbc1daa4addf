"""Composition features in the spirit of Magpie (Ward et al. 2016), from pymatgen's element data.

For each of :data:`PROPERTIES` the fraction-weighted mean, mean absolute deviation, minimum, maximum and range
over the composition's elements, plus stoichiometry p-norms (p = 0, 2, 3, 5, 7, 10), the fraction-weighted
valence-electron counts per orbital (s, p, d, f) and their fractions of all valence electrons, and whether the
element set admits a neutral assignment of common oxidation states. A composition with an element pymatgen
has no data for gets NaN there (the gradient-boosted judge handles missing values); one that cannot be parsed
raises ValueError naming it.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np

PROPERTIES = ("Z", "row", "group", "atomic_mass", "X", "atomic_radius", "average_ionic_radius", "mendeleev_no",
              "melting_point", "molar_volume", "electron_affinity", "ionization_energy", "max_oxidation_state",
              "min_oxidation_state", "density_of_solid", "n_s", "n_p", "n_d", "n_f", "n_valence")
STATS = ("mean", "mad", "min", "max", "range")
NORMS = (0, 2, 3, 5, 7, 10)


def feature_names() -> list[str]:
    names = [f"{p}_{s}" for p in PROPERTIES for s in STATS]
    names += [f"norm_{p}" for p in NORMS]
    names += [f"frac_{o}_valence" for o in "spdf"]
    names += ["n_elements", "charge_balanced"]
    return names


def _number(value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return math.nan
    return v if math.isfinite(v) else math.nan


@cache
def element_row(symbol: str) -> tuple[float, ...]:
    """The element's properties in :data:`PROPERTIES` order (NaN where pymatgen has none)."""
    import warnings

    from pymatgen.core import Element

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        el = Element(symbol)
        shells = {"s": 0, "p": 0, "d": 0, "f": 0}
        try:
            structure = el.full_electronic_structure
            outer = max(n for n, _, _ in structure)
            for n, orb, count in structure:   # valence: the outermost shell, and open d/f shells below it
                if n == outer or (orb == "d" and count < 10 and n == outer - 1) or (orb == "f" and count < 14):
                    shells[orb] += count
        except (ValueError, AttributeError, KeyError):
            shells = dict.fromkeys(shells, math.nan)
        values = {"Z": el.Z, "row": el.row, "group": el.group, "atomic_mass": el.atomic_mass, "X": el.X,
                  "atomic_radius": el.atomic_radius, "average_ionic_radius": el.average_ionic_radius,
                  "mendeleev_no": el.mendeleev_no, "melting_point": el.melting_point,
                  "molar_volume": el.molar_volume, "electron_affinity": _safe(el, "electron_affinity"),
                  "ionization_energy": _safe(el, "ionization_energy"), "max_oxidation_state": el.max_oxidation_state,
                  "min_oxidation_state": el.min_oxidation_state, "density_of_solid": el.density_of_solid,
                  "n_s": shells["s"], "n_p": shells["p"], "n_d": shells["d"], "n_f": shells["f"],
                  "n_valence": sum(shells.values())}
    return tuple(_number(values[p]) for p in PROPERTIES)


def _safe(el, attr: str):
    try:
        return getattr(el, attr)
    except (ValueError, KeyError, AttributeError):
        return math.nan


def _balanced(fractions: dict[str, float]) -> float:
    """1 if some choice of one common oxidation state per element makes the reduced composition neutral."""
    from pymatgen.core import Element

    sums = {0.0}   # charges reachable by the elements so far: a set, not every combination (a 135-site cell of
    for el, w in fractions.items():   # 30 elements has billions), rounded so that equal charges merge
        states = set(Element(el).common_oxidation_states or (0,))
        sums = {round(x + w * s, 9) for x in sums for s in states}
    return 1.0 if any(abs(x) < 1e-6 for x in sums) else 0.0


def featurize(formula: str) -> np.ndarray:
    """The feature vector of ``formula`` (see :func:`feature_names`); ValueError for an unreadable formula."""
    from pymatgen.core import Composition

    try:
        amounts = Composition(formula).get_el_amt_dict()
        if not amounts:
            raise ValueError("no elements")
        table = np.array([element_row(el) for el in amounts])   # elements x properties
    except Exception as err:  # noqa: BLE001 - pymatgen raises several types for a bad formula
        raise ValueError(f"unreadable formula {formula!r}: {err}") from None
    total = sum(amounts.values())
    fractions = {el: n / total for el, n in amounts.items()}
    w = np.array(list(fractions.values()))
    out: list[float] = []
    for j in range(table.shape[1]):
        col = table[:, j]
        if np.isnan(col).any():
            out += [math.nan] * len(STATS)
            continue
        mean = float(w @ col)
        out += [mean, float(w @ np.abs(col - mean)), float(col.min()), float(col.max()), float(col.max() - col.min())]
    out += [float(len(w)) if p == 0 else float((w ** p).sum() ** (1 / p)) for p in NORMS]
    orbitals = table[:, [PROPERTIES.index(f"n_{o}") for o in "spdf"]]
    per_orbital = w @ orbitals
    valence = per_orbital.sum()
    out += [float(x / valence) if valence and math.isfinite(valence) else math.nan for x in per_orbital]
    out += [float(len(w)), _balanced(fractions)]
    return np.asarray(out, dtype=float)
