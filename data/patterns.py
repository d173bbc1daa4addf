"""Oxidation-number patterns of an initial structure (paper Section 3.1 and A.11).

A pattern gives every site an oxidation number so that the structure sums to zero. A site of
element e may take the states of e in the paper's ``smact`` ∩ ``icsd`` columns (Table A.7, read from
the shipped table so results do not depend on installed library versions), restricted to states whose
"Ours" mask is non-empty: whatever element an argmax then picks inside the mask keeps neutrality.
Sites of one element may take different states (Fe3O4: Fe +2, +3, +3).

How patterns are chosen (deterministic): a pattern is a multiset of states per element (Fe{2,3,3}),
expanded to sites in site order with each element's states ascending. Multisets are ranked by

1. the number of sites whose state is not in the "Ours" column of their own element (fewer first),
2. the number of distinct (element, state) pairs (fewer first),
3. the per-element sorted states, elements in order of first appearance (lexicographic),

and the first ``max_patterns`` are kept. They are found by a k-best dynamic programme over the
reachable charge sums of the element groups, never by enumerating states site by site. Within one
element, all multisets are considered when there are at most ``_FULL_ENUMERATION`` of them; for an
element with more sites (a supercell) only multisets of at most two distinct states are considered
(mixed valence as in Fe3O4), which keeps a 135-site cell in the millisecond range.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Sequence
from functools import cache

import numpy as np
from pymatgen.core import Structure

from .oxidation import all_states, ours, paper_columns

_FULL_ENUMERATION = 5000  # multisets per element above which only <= 2 distinct states are tried

Cost = tuple[int, int]  # (sites outside "Ours", distinct (element, state) pairs)
Choice = tuple[Cost, tuple[tuple[int, ...], ...]]  # cost and per-element sorted states


@cache
def candidate_states(symbol: str) -> tuple[int, ...]:
    """States a site of ``symbol`` may take in a pattern: smact ∩ icsd with a non-empty "Ours" mask."""
    cols = paper_columns()
    usable = set(all_states(ours()))
    return tuple(sorted(set(cols["smact"].get(symbol, ())) & set(cols["icsd"].get(symbol, ())) & usable))


def _species_of(structure_or_species: Structure | Sequence) -> tuple[list[str] | None, str]:
    """Element symbols of the sites, or (None, reason)."""
    if isinstance(structure_or_species, Structure):
        if not structure_or_species.is_ordered:
            return None, "structure is disordered (partial occupancies)"
        items = [site.specie for site in structure_or_species]
    else:
        items = list(structure_or_species)
    symbols = [sp if isinstance(sp, str) else getattr(sp, "symbol", None) for sp in items]
    bad = [sp for sp, sym in zip(items, symbols, strict=True) if not isinstance(sym, str)]
    if bad:
        return None, f"site species {bad[0]!r} is not an element"
    return symbols, ""


def _group_choices(symbol: str, n: int, k: int) -> dict[int, list[Choice]]:
    """The k best multisets of ``n`` states of one element, per total charge."""
    states = candidate_states(symbol)
    common = set(ours().get(symbol, ()))
    if math.comb(n + len(states) - 1, len(states) - 1) <= _FULL_ENUMERATION:
        multisets = itertools.combinations_with_replacement(states, n)
    else:
        singles = ((s,) * n for s in states)
        pairs = ((a,) * c + (b,) * (n - c) for a, b in itertools.combinations(states, 2) for c in range(1, n))
        multisets = itertools.chain(singles, pairs)
    by_total: dict[int, list[Choice]] = {}
    for ms in multisets:
        cost = (sum(s not in common for s in ms), len(set(ms)))
        by_total.setdefault(sum(ms), []).append((cost, (ms,)))
    return {t: heapq.nsmallest(k, v) for t, v in by_total.items()}


def _add(a: Choice, b: Choice) -> Choice:
    return (a[0][0] + b[0][0], a[0][1] + b[0][1]), a[1] + b[1]


def oxidation_patterns(structure_or_species: Structure | Sequence, max_patterns: int = 10
                       ) -> tuple[np.ndarray, str]:
    """Up to ``max_patterns`` neutral site-wise patterns, (D, N) int, best first (see module doc).

    ``structure_or_species`` is a Structure or a sequence of site elements (symbols, Element or
    Species). Returns an empty (0, N) array and a reason when no pattern exists.
    """
    symbols, reason = _species_of(structure_or_species)
    n_sites = len(structure_or_species)
    empty = np.zeros((0, n_sites), dtype=int)
    if symbols is None:
        return empty, reason
    if not symbols:
        return empty, "structure has no sites"
    missing = sorted({s for s in symbols if not candidate_states(s)})
    if missing:
        return empty, f"no usable oxidation state (smact ∩ icsd with an 'Ours' mask) for {', '.join(missing)}"

    order = list(dict.fromkeys(symbols))  # elements by first appearance
    counts = {s: symbols.count(s) for s in order}
    groups = [_group_choices(s, counts[s], max_patterns) for s in order]
    # charge that the remaining groups can still add, to drop partial sums that cannot return to 0
    lo_rest = [sum(min(g) for g in groups[i + 1:]) for i in range(len(groups))]
    hi_rest = [sum(max(g) for g in groups[i + 1:]) for i in range(len(groups))]

    partial: dict[int, list[Choice]] = {0: [((0, 0), ())]}
    for i, group in enumerate(groups):
        nxt: dict[int, list[Choice]] = {}
        for q, plist in partial.items():
            for t, clist in group.items():
                if not -hi_rest[i] <= q + t <= -lo_rest[i]:
                    continue
                nxt.setdefault(q + t, []).extend(_add(p, c) for p in plist for c in clist)
        partial = {q: heapq.nsmallest(max_patterns, v) for q, v in nxt.items()}
    best = partial.get(0, [])
    if not best:
        return empty, "no assignment of smact ∩ icsd oxidation states sums to zero"

    site_of = {s: [i for i, x in enumerate(symbols) if x == s] for s in order}
    out = np.zeros((len(best), n_sites), dtype=int)
    for d, (_, multisets) in enumerate(best):
        for s, ms in zip(order, multisets, strict=True):
            out[d, site_of[s]] = ms
    return out, ""
