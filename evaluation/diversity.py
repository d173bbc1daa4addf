"""Diversity of proposals (paper Tables A.3, A.5).

An "elemental combination" is the multiset of site elements, as in the authors' scoring (the
sorted list of per-site elements), i.e. the unreduced composition. Novelty compares the
*reduced* formula against a reference set of reduced formulas (the MEGNet dataset in the paper).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pymatgen.core import Composition


def combination_key(formula: str) -> str:
    """Canonical key of an elemental combination: alphabetical unreduced formula, e.g. 'O3 Sr1 Ti1'."""
    return Composition(formula).alphabetical_formula


def reduced_key(formula: str) -> str:
    """Reduced formula, e.g. 'SrTiO3'."""
    return Composition(formula).reduced_formula


def reference_formulas(formulas: Iterable[str]) -> frozenset[str]:
    """Reduced formulas of a reference dataset, for novelty."""
    return frozenset(reduced_key(f) for f in formulas)


def unique_rate(formulas: Sequence[str | None]) -> float:
    """Unique elemental combinations / number of proposals (unreadable proposals count in the denominator)."""
    if not formulas:
        return float("nan")
    keys = {combination_key(f) for f in formulas if f}
    return len(keys) / len(formulas)


def diversity_counts(formulas: Sequence[str | None], success: Sequence[bool],
                     reference: frozenset[str] | None = None) -> dict:
    """``n_success``, ``n_unique_success`` and ``n_unique_novel_success`` (None without a reference)."""
    ok = [f for f, s in zip(formulas, success, strict=True) if s and f]
    keys = {combination_key(f): f for f in ok}
    out = {"n_success": int(sum(bool(s) for s in success)), "n_unique_success": len(keys),
           "n_unique_novel_success": None}
    if reference is not None:
        out["n_unique_novel_success"] = sum(reduced_key(f) not in reference for f in keys.values())
    return out
