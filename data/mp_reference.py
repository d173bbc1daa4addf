"""Known Materials Project compounds, read from the data folder: the hull reference and MP-20's formulas.

- ``mp_hull/`` (:func:`hull_reference`): MP formation energies of (essentially) stable phases
  (``mp_formation_energies.json``, eV/atom) and elemental energies consistent with CHGNet
  (``element_energies.json``, eV/atom), for the energy above the convex hull.
- ``mp20_reference/`` (:func:`mp20_formulas`, :func:`mp20_abx3`): every MP-20 entry with its MP PBE band gap
  (eV) and formation energy (eV/atom), and the 714 known five-site ABX3 with their species per site.

A missing folder or file raises FileNotFoundError with one line saying where to put it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from itertools import combinations
from pathlib import Path

import pandas as pd

HULL_DIR = "mp_hull"
HULL_FILES = ("mp_formation_energies.json", "element_energies.json")
MP20_DIR = "mp20_reference"
MP20_FORMULAS = "mp20_formulas.csv.gz"
MP20_ABX3 = "mp20_5site_abx3.csv"
SOURCE = ("Bartel-Group/matgen_baselines (matgen_baselines/data/) and LeMat-GenBench; underlying data: "
          "the Materials Project, CC BY 4.0")


def _folder(sub: str, files: tuple[str, ...], root: str | Path | None = None) -> Path:
    from .environment import data_dir, where_to_put

    base = Path(root) if root is not None else data_dir()
    if base is None:
        raise FileNotFoundError(f"no data folder for {sub}/: {where_to_put('data')}; it should hold {sub}/ with "
                                f"{', '.join(files)} ({SOURCE})")
    folder = base / sub
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: missing {', '.join(missing)}; put {sub}/ with {', '.join(files)} in the "
                                f"data folder ({where_to_put('data')}; {SOURCE})")
    return folder


@dataclass
class HullReference:
    """MP phases by chemical system and the elemental energies (eV/atom) that turn a CHGNet energy into E_f."""

    mu: dict[str, float]                                   # eV/atom per element
    by_system: dict[frozenset[str], list[tuple[str, str, float]]]   # {elements: [(mp-id, formula, E_f eV/atom)]}
    label: str = ""
    _diagrams: dict[frozenset[str], object] = field(default_factory=dict, repr=False)

    def formation_energy(self, composition, energy_per_atom: float) -> float:
        """E_f (eV/atom) of a crystal of ``composition`` with total energy ``energy_per_atom`` (eV/atom);
        KeyError naming an element without an elemental energy."""
        amounts = composition.get_el_amt_dict()
        missing = sorted(el for el in amounts if el not in self.mu)
        if missing:
            raise KeyError(f"no elemental reference energy for {', '.join(missing)}")
        n = sum(amounts.values())
        return float(energy_per_atom - sum(k * self.mu[el] for el, k in amounts.items()) / n)

    def diagram(self, elements: frozenset[str]):
        """The pymatgen PhaseDiagram of ``elements`` from the MP phases (elements at 0 eV/atom), cached."""
        if elements not in self._diagrams:
            from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
            from pymatgen.core import Composition

            entries = [PDEntry(Composition(el), 0.0, name=el) for el in sorted(elements)]
            for k in range(1, len(elements) + 1):
                for sub in combinations(sorted(elements), k):
                    for mp_id, formula, ef in self.by_system.get(frozenset(sub), []):
                        comp = Composition(formula)
                        entries.append(PDEntry(comp, ef * comp.num_atoms, name=mp_id))
            self._diagrams[elements] = PhaseDiagram(entries)
        return self._diagrams[elements]

    def e_above_hull(self, composition, formation_energy: float) -> float:
        """Energy above the MP hull (eV/atom; negative below it) of a phase with E_f ``formation_energy``."""
        from pymatgen.analysis.phase_diagram import PDEntry

        elements = frozenset(el.symbol for el in composition.elements)
        entry = PDEntry(composition, formation_energy * composition.num_atoms)
        return float(self.diagram(elements).get_e_above_hull(entry, allow_negative=True))


def hull_reference(root: str | None = None) -> HullReference:
    """The offline hull reference (``<data>/mp_hull/``); FileNotFoundError (one line) when it is missing."""
    return _hull_reference(_folder(HULL_DIR, HULL_FILES, root))


@cache
def _hull_reference(folder: Path) -> HullReference:
    phases = json.loads((folder / HULL_FILES[0]).read_text())
    mu = {k: float(v) for k, v in json.loads((folder / HULL_FILES[1]).read_text()).items()}
    from pymatgen.core import Composition

    by_system: dict[frozenset[str], list[tuple[str, str, float]]] = {}
    for mp_id, rec in phases.items():
        try:
            elements = frozenset(el.symbol for el in Composition(rec["formula"]).elements)
            by_system.setdefault(elements, []).append((mp_id, rec["formula"], float(rec["e_form"])))
        except (KeyError, ValueError, TypeError):
            continue   # a malformed record is left out
    label = (f"MP hull of {len(phases)} phases ({HULL_DIR}/{HULL_FILES[0]}), CHGNet-consistent elemental energies "
             f"({HULL_DIR}/{HULL_FILES[1]})")
    return HullReference(mu, by_system, label)


def mp20_formulas(root: str | None = None) -> pd.DataFrame:
    """MP-20's entries: material_id, formula, reduced (formula), mp_pbe_band_gap_eV, mp_formation_energy_eV_per_atom."""
    return _mp20_formulas(_folder(MP20_DIR, (MP20_FORMULAS,), root) / MP20_FORMULAS)


@cache
def _mp20_formulas(path: Path) -> pd.DataFrame:
    import warnings

    from pymatgen.core import Composition

    df = pd.read_csv(path)
    with warnings.catch_warnings():   # pymatgen warns about noble gases' electronegativity
        warnings.simplefilter("ignore")
        df["reduced"] = [Composition(f).reduced_formula for f in df["formula"]]
    return df


def mp20_abx3(root: str | None = None) -> pd.DataFrame:
    """The 714 known five-site ABX3 of MP-20 (species_at_sites: A, B, X, X, X; MP PBE gap; MP E_f)."""
    return pd.read_csv(_folder(MP20_DIR, (MP20_ABX3,), root) / MP20_ABX3)


ANION_FAMILIES = {"O": "oxides", "F": "fluorides", "Cl": "chlorides", "Br": "bromides", "I": "iodides",
                  "S": "chalcogenides", "Se": "chalcogenides", "Te": "chalcogenides", "N": "nitrides",
                  "H": "hydrides"}


ABX3_ANIONS = ("O", "N", "F", "Cl", "Br", "I", "S", "Se", "Te")


def is_simple_abx3(species: str | list[str]) -> bool:
    """Distinct A and B and one anion of :data:`ABX3_ANIONS` on the three X sites (species: A, B, X, X, X)."""
    a, b, *x = species.split() if isinstance(species, str) else species
    return a != b and len(set(x)) == 1 and x[0] in ABX3_ANIONS and x[0] not in (a, b)


def anion_family(x_sites: list[str]) -> str:
    """The anion family of an ABX3's three X sites: 'oxides', ..., 'mixed' when they differ, 'other'."""
    families = {ANION_FAMILIES.get(x, "other") for x in x_sites}
    return families.pop() if len(families) == 1 else "mixed"


def ideal_cubic_guess(species: list[str]) -> float:
    """A starting cubic lattice constant (Å) for the ideal ABX3 cell of ``species`` (A, B, X, X, X):
    2 (r_B + r_X) from pymatgen's atomic radii, within 3.4-7.0 Å (a relaxation sets the real one)."""
    from pymatgen.core import Element

    def radius(el: str) -> float:
        r = Element(el).atomic_radius
        return float(r) if r is not None else 1.5

    x = sum(radius(e) for e in species[2:]) / 3
    return float(min(7.0, max(3.4, 2 * (radius(species[1]) + x))))


def known_abx3_cells(root: str | None = None):
    """(rows of :func:`mp20_abx3`, ideal cubic cells with a guessed lattice constant) for the 714 known ABX3."""
    from pymatgen.core import Lattice, Structure

    from .templates import IDEAL_FRAC

    rows = mp20_abx3(root)
    cells = []
    for text in rows["species_at_sites"]:
        species = str(text).split()
        cells.append(Structure(Lattice.cubic(ideal_cubic_guess(species)), species, IDEAL_FRAC))
    return rows, cells
