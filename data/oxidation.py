"""Oxidation-number tables (paper Tables A.7-A.9).

The shipped table ``oxidation_states.csv`` holds, for Z = 1..98, the four columns the paper
prints: ``smact``, ``icsd``, ``common`` and ``ours``. ``ours`` is what masks and the neutrality
check use. :func:`recompute_ours` rebuilds it from the installed pymatgen and smact so that a
test can report where installed versions disagree with the paper; the shipped table stays the paper's.
"""

from __future__ import annotations

import csv
from functools import cache
from importlib import resources

from .elements import SYMBOLS, K

COLUMNS = ("smact", "icsd", "common", "ours")
OxidationTable = dict[str, tuple[int, ...]]


def _parse_set(text: str) -> tuple[int, ...]:
    return tuple(sorted(int(x) for x in text.split()))


@cache
def paper_columns() -> dict[str, OxidationTable]:
    """All four columns of Tables A.7-A.9: ``{column: {symbol: sorted states}}``."""
    out: dict[str, OxidationTable] = {c: {} for c in COLUMNS}
    text = resources.files(__package__).joinpath("oxidation_states.csv").read_text()
    rows = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    for row in rows:
        for c in COLUMNS:
            out[c][row["symbol"]] = _parse_set(row[c])
    if tuple(out["ours"]) != SYMBOLS:
        raise RuntimeError("oxidation_states.csv must list Z = 1..98 in order")
    return out


def ours() -> OxidationTable:
    """The paper's "Ours" oxidation numbers, ``{symbol: sorted tuple}`` for Z = 1..98."""
    return paper_columns()["ours"]


def states_of(symbol: str, table: OxidationTable | None = None) -> tuple[int, ...]:
    """Oxidation numbers of one element (empty tuple for unknown or state-less elements)."""
    return (table or ours()).get(symbol, ())


def all_states(table: OxidationTable | None = None) -> tuple[int, ...]:
    """Every oxidation number that occurs in the table, ascending."""
    return tuple(sorted({s for states in (table or ours()).values() for s in states}))


def open_shell(symbol: str, state: int) -> bool:
    """True where the ion ``symbol`` at ``state`` keeps a partly filled d or f shell: a d-block element (La and Ac
    as group 3) with ``group - state`` d electrons other than 0 or 10, a lanthanide with ``Z - 54 - state`` or an
    actinide with ``Z - 86 - state`` f electrons other than 0 or 14. Main-group ions (lone pairs included) are
    closed-shell."""
    from .elements import z_of

    z = z_of(symbol)
    for first, last, offset in ((21, 30, 18), (39, 48, 36), (72, 80, 68)):   # group = Z - offset
        if first <= z <= last:
            return z - offset - state not in (0, 10)
    if z in (57, 89):
        return 3 - state not in (0, 10)
    if 58 <= z <= 71:
        return z - 54 - state not in (0, 14)
    if 90 <= z <= 98:
        return z - 86 - state not in (0, 14)
    return False


def closed_shell(table: OxidationTable | None = None) -> OxidationTable:
    """``table`` (default ours) without the open-shell ions (:func:`open_shell`): what a closed-shell, U-free PBE
    calculation describes (an open-shell transition-metal ion needs spin order and +U for its gap)."""
    return {sym: tuple(s for s in states if not open_shell(sym, s)) for sym, states in (table or ours()).items()}


def installed_columns() -> dict[str, OxidationTable]:
    """The same columns read from the installed pymatgen and smact (plus pymatgen ``oxidation_states``)."""
    import smact
    from pymatgen.core.periodic_table import Element

    out: dict[str, OxidationTable] = {c: {} for c in ("smact", "icsd", "common", "pymatgen")}
    for z in range(1, K + 1):
        el = Element.from_Z(z)
        sym = el.symbol
        out["icsd"][sym] = tuple(sorted(el.icsd_oxidation_states))
        out["common"][sym] = tuple(sorted(el.common_oxidation_states))
        out["pymatgen"][sym] = tuple(sorted(el.oxidation_states))
        try:
            out["smact"][sym] = tuple(sorted(s for s in smact.Element(sym).oxidation_states if s != 0))
        except (NameError, KeyError, TypeError):  # smact lacks data for this element
            out["smact"][sym] = ()
    return out


def recompute_ours(columns: dict[str, OxidationTable] | None = None) -> OxidationTable:
    """"Ours" as pymatgen icsd ∩ pymatgen oxidation_states ∩ pymatgen common ∩ smact."""
    cols = columns or installed_columns()
    return {
        s: tuple(sorted(set(cols["icsd"][s]) & set(cols["pymatgen"][s]) & set(cols["common"][s]) & set(cols["smact"][s])))
        for s in SYMBOLS
    }


def disagreements(recomputed: OxidationTable, table: OxidationTable | None = None) -> dict[str, tuple]:
    """Elements whose recomputed states differ from the shipped table: ``{symbol: (shipped, recomputed)}``."""
    shipped = table or ours()
    return {s: (shipped[s], recomputed.get(s, ())) for s in SYMBOLS if shipped[s] != recomputed.get(s, ())}
