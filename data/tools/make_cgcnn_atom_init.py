"""Write ``data/cgcnn_atom_init.json``: the 92 CGCNN atom features, built from their published definition.

Xie & Grossman, Phys. Rev. Lett. 120, 145301 (2018), Supplemental Table S2: each element is a concatenation of
one-hot categories. The layout that the released ``atom_init.json`` uses (and that FTCP's ``ELM_PROP`` rows and
ALIGNN's ``cgcnn`` atom features read) is:

=====================  ==========================  ======  ==========================================
property               range                       slots   encoding
=====================  ==========================  ======  ==========================================
group number           0-18                        19      slot = group (slot 0: f-block, no group)
period                 1-7                         7       slot = period - 1
electronegativity      0.5-4.0 (Pauling)           10      equal bins
covalent radius        25-250 pm                   10      equal bins
valence electrons      1-12                        12      slot = n - 1
first ionisation       ln(eV) 1.3-3.3              10      equal bins of ln(IE / eV)
electron affinity      -3 to 3.7 eV                10      equal bins; no stable anion -> all zero
block                  s, p, d, f                  4
atomic volume          ln(cm^3/mol) 1.5-4.3        10      equal bins of ln(V)
=====================  ==========================  ======  ==========================================

Bins are ``numpy.digitize`` against ``numpy.linspace(lo, hi, n + 1)`` and clipped into the range; a missing value
leaves its category all zero.

Sources: group, period, block, first ionisation energy and molar volume from pymatgen's element data;
Pauling electronegativity, Pyykkö single-bond covalent radii and electron affinities from ``mendeleev``.
Departures, each a published value that CGCNN's table uses where the modern tables differ:

* electronegativity of Si, Cu, Hg and Bi: the released table puts them in bin 3 (1.55-1.90); their modern Pauling
  values (1.90, 1.90, 2.00, 2.02) sit on or above that bin's upper edge. ``EN_BIN_OVERRIDE`` says so explicitly
  (the authors' fixture shows it for these four; other elements near an edge may differ in the same way);
* atomic volume of elements that are gases at room temperature: the liquid's atomic volume (N 17.3, O 14.0,
  F 17.1, Cl 18.7 cm^3/mol, ...), as in the classic atomic-volume tables, not the gas-solid molar volume.

Valence electrons: the group number for groups 1-12, group - 10 for groups 13-18 (He: 2), 3 for the f block.
The authors' FTCP fixture (``SMOACS_MODEL_DIR``'s sibling ``fixtures/ftcp``) checks 20 elements exactly
(tests/test_ftcp_representation.py); the other rows follow the same rules and are not checked against the
released file.

Run once (needs ``pip install mendeleev``, which the package itself does not depend on)::

    python data/tools/make_cgcnn_atom_init.py
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np

Z_MAX = 100
EN_BIN_OVERRIDE = {"Si": 3, "Cu": 3, "Hg": 3, "Bi": 3}
LIQUID_ATOMIC_VOLUME = {  # cm^3/mol, liquid at the boiling point (classic atomic-volume tables)
    "H": 14.1, "He": 31.8, "N": 17.3, "O": 14.0, "F": 17.1, "Ne": 16.8, "Cl": 18.7, "Ar": 24.2,
    "Kr": 32.2, "Xe": 42.9, "Rn": 50.5,
}  # fmt: skip
BLOCKS = "spdf"


def one_hot_bin(value: float | None, lo: float, hi: float, n: int = 10) -> list[float]:
    out = [0.0] * n
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return out
    edges = np.linspace(lo, hi, n + 1)
    k = int(np.digitize(value, edges)) - 1
    out[min(max(k, 0), n - 1)] = 1.0
    return out


def one_hot(k: int | None, n: int) -> list[float]:
    out = [0.0] * n
    if k is not None and 0 <= k < n:
        out[k] = 1.0
    return out


def valence_electrons(group: int, block: str, symbol: str) -> int:
    if symbol == "He":
        return 2
    if block == "f":
        return 3
    return group if group <= 12 else group - 10


def features(symbol: str, table) -> list[float]:
    from pymatgen.core import Element

    el = Element(symbol)
    block = el.block
    group = 0 if block == "f" else el.group
    row = table.loc[symbol]
    en = row["en_pauling"]
    rcov = row["covalent_radius_pyykko"]
    ea = row["electron_affinity"]
    ie = el.ionization_energy
    vol = LIQUID_ATOMIC_VOLUME.get(symbol)
    if vol is None and el.molar_volume is not None:
        vol = float(el.molar_volume)
    return (
        one_hot(group, 19)
        + one_hot(el.row - 1, 7)
        + (
            one_hot(EN_BIN_OVERRIDE[symbol], 10)
            if symbol in EN_BIN_OVERRIDE
            else one_hot_bin(None if en is None else float(en), 0.5, 4.0)
        )
        + one_hot_bin(None if rcov is None else float(rcov), 25.0, 250.0)
        + one_hot(valence_electrons(el.group, block, symbol) - 1, 12)
        + one_hot_bin(None if ie is None else math.log(ie), 1.3, 3.3)
        + one_hot_bin(None if ea is None else float(ea), -3.0, 3.7)
        + one_hot(BLOCKS.index(block), 4)
        + one_hot_bin(None if vol is None else math.log(vol), 1.5, 4.3)
    )


def main() -> None:
    from mendeleev.fetch import fetch_table
    from pymatgen.core import Element

    table = fetch_table("elements").set_index("symbol")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = {str(z): features(Element.from_Z(z).symbol, table) for z in range(1, Z_MAX + 1)}
    assert all(len(v) == 92 for v in rows.values())
    out = Path(__file__).resolve().parents[1] / "cgcnn_atom_init.json"
    out.write_text(json.dumps(rows, separators=(",", ":")) + "\n")
    print(f"wrote {out} ({len(rows)} elements x 92 features)")


if __name__ == "__main__":
    main()
