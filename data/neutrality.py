"""Exact charge-neutrality check by dynamic programming over reachable charge sums (paper A.9).

A structure is neutral if some assignment of allowed oxidation numbers to its sites sums to
zero. Enumerating assignments is exponential (4.3e40 for 135 two-state sites); the set of
reachable partial sums is not: it spans at most ``N * (max - min)`` integers. Partial sums are
kept as bits of a Python integer, so adding a site is a handful of shift-and-or operations.
The per-site bitsets are kept to walk back from zero and recover one neutral assignment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .oxidation import OxidationTable, ours


def neutral_assignment(site_states: Sequence[Sequence[int]]) -> list[int] | None:
    """One assignment (one state per site) summing to zero, or None if there is none.

    ``site_states[i]`` are the allowed oxidation numbers of site i. Sites with no allowed state
    make the structure non-neutral. An empty structure is not neutral.
    """
    states = [sorted(set(int(s) for s in ss)) for ss in site_states]
    if not states or any(not ss for ss in states):
        return None
    lows = [ss[0] for ss in states]
    target = -sum(lows)  # sum of (s - low) over sites must reach this
    if target < 0:
        return None
    mask = (1 << (target + 1)) - 1  # sums above the target can never come back down: drop them
    reach = [1]  # reach[i]: bitset of sums of (s - low) over the first i sites
    for ss, lo in zip(states, lows, strict=True):
        prev, nxt = reach[-1], 0
        for s in ss:
            nxt |= prev << (s - lo)
        reach.append(nxt & mask)
    if not (reach[-1] >> target) & 1:
        return None
    out = [0] * len(states)
    rem = target
    for i in range(len(states) - 1, -1, -1):
        for s in states[i]:
            step = s - lows[i]
            if step <= rem and (reach[i] >> (rem - step)) & 1:
                out[i] = s
                rem -= step
                break
    return out


def is_neutral(site_states: Sequence[Sequence[int]]) -> bool:
    """Whether some assignment of the allowed states sums to zero."""
    return neutral_assignment(site_states) is not None


@dataclass(frozen=True)
class Neutrality:
    """Result of a neutrality check: ``ox_states`` is one neutral assignment (site order) or None."""

    neutral: bool
    ox_states: tuple[int, ...] | None
    reason: str = ""


def check_species(species: Sequence[str], table: OxidationTable | None = None) -> Neutrality:
    """Neutrality of a list of site element symbols under ``table`` (the paper's "Ours" by default).

    The assignment is canonical: within each element, states are non-decreasing in site order.
    """
    tab = table or ours()
    if not species:
        return Neutrality(False, None, "structure has no sites")
    missing = sorted({s for s in species if not tab.get(s)})
    if missing:
        return Neutrality(False, None, f"no oxidation state in the table for {', '.join(missing)}")
    found = neutral_assignment([tab[s] for s in species])
    if found is None:
        return Neutrality(False, None, "no assignment of allowed oxidation states sums to zero")
    by_el: dict[str, list[int]] = {}
    for s, ox in zip(species, found, strict=True):
        by_el.setdefault(s, []).append(ox)
    for v in by_el.values():
        v.sort(reverse=True)
    return Neutrality(True, tuple(by_el[s].pop() for s in species))


def format_ox_states(species: Sequence[str], ox: Sequence[int] | None) -> str:
    """``"Fe+2 Fe+3 Fe+3 O-2 ..."``, empty for None."""
    if ox is None:
        return ""
    return " ".join(f"{s}{o:+d}" for s, o in zip(species, ox, strict=True))
