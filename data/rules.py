"""A task's neutrality rule and perovskite match applied to one crystal: the one function that the
evaluator, TPE's objectives and any method's own selection all call (:func:`judge_neutrality`).

Rules (``Criteria.neutrality``):

- ``"any"`` (free task): some assignment of the "Ours" oxidation numbers sums to zero (exact DP).
- ``"pattern"`` (perovskite tasks): the A, B and X sites (roles from the origin-free template match,
  :func:`~.perovskite.match_perovskite`) take the charges of one single task pattern
  ([+2, +4, -2] or [+1, +2, -1]) and the "Ours" table allows each site's element that charge; on an
  n x n x n cell the same pattern holds over every site. A crystal that fits no pattern, or does not
  have the template's number of sites, is not neutral under this rule.

Either way ``neutral_any`` reports the generic DP, and the tolerance factor uses the pattern's ionic
radii (no fallback: a crystal that fits no pattern gets t = NaN with a reason).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .neutrality import check_species
from .oxidation import OxidationTable
from .perovskite import PerovskiteMatch, match_perovskite, role_pattern_assignment, tolerance_factor
from .task import Criteria

RULES = ("any", "pattern")


@dataclass(frozen=True)
class NeutralityVerdict:
    """Neutrality of one crystal under a task's rule. ``ox_states`` is the assignment that makes it
    neutral under that rule (None if none); ``match`` the perovskite match (None on the free task or
    when the crystal has the wrong number of sites)."""

    neutral: bool
    ox_states: tuple[int, ...] | None
    reason: str
    neutral_any: bool
    match: PerovskiteMatch | None = None

    @property
    def roles(self) -> tuple[str, ...] | None:
        return self.match.roles if self.match is not None else None


def judge_neutrality(species: Sequence[str], frac_coords: np.ndarray | None, criteria: Criteria,
                     table: OxidationTable | None = None) -> NeutralityVerdict:
    """The task's neutrality rule for a crystal of ``species`` at ``frac_coords`` (fractional, (N, 3);
    only needed by the pattern rule, which matches the sites to the perovskite template)."""
    generic = check_species(species, table)
    if criteria.neutrality == "any":
        ox = tuple(generic.ox_states) if generic.ox_states is not None else None
        return NeutralityVerdict(generic.neutral, ox, generic.reason, generic.neutral)
    if criteria.neutrality != "pattern":
        raise ValueError(f"unknown neutrality rule {criteria.neutrality!r}; known: {', '.join(RULES)}")
    also = "" if generic.neutral else f"; {generic.reason}"  # why no assignment at all exists, when none does
    cell = criteria.perovskite
    if cell is None:
        raise ValueError("the pattern neutrality rule needs a perovskite template (Criteria.perovskite)")
    if len(species) != cell.n_sites:
        return NeutralityVerdict(False, None, f"{len(species)} sites, a {cell.n}x{cell.n}x{cell.n} perovskite "
                                 f"has {cell.n_sites}: no task pattern applies{also}", generic.neutral)
    match = match_perovskite(np.asarray(frac_coords, dtype=float), cell)
    ox = role_pattern_assignment(species, match.roles, table)
    if ox is None:
        return NeutralityVerdict(False, None, "no task oxidation pattern ([+2,+4,-2] or [+1,+2,-1] on A, B, X) "
                                 "fits the sites' elements" + also, generic.neutral, match)
    return NeutralityVerdict(True, tuple(ox), "", generic.neutral, match)


def pattern_tolerance_factor(species: Sequence[str], verdict: NeutralityVerdict) -> tuple[float, str]:
    """Goldschmidt t from the pattern's ionic radii, or (NaN, reason) when no pattern fits (or no
    radius exists). Needs a verdict of the pattern rule."""
    if verdict.match is None or verdict.ox_states is None:
        return math.nan, "tolerance factor needs a task oxidation pattern"
    with warnings.catch_warnings():  # pymatgen warns for every missing ionic radius
        warnings.simplefilter("ignore", UserWarning)
        return tolerance_factor(species, verdict.match.roles, verdict.ox_states)
