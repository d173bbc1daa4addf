"""Screening baseline: enumerate every pattern-neutral ABX3 perovskite, predict, keep the best for the target.

How hard is a task? If simply scoring every composition the oxidation masks allow, in the ideal cubic cell,
matches an optimiser, the optimiser has not earned its rate. For each task pattern ([+2, +4, -2] and
[+1, +2, -1] on A, B, X) every element triple whose "Ours" states admit the pattern (and that both predictors
embed) is built as the ideal cubic perovskite with lattice constant

    a = (2 (r_B + r_X) + √2 (r_A + r_X)) / 2     (Å; pymatgen's Shannon ionic radii of the pattern's states)

(the B-X and A-X contact distances averaged: exact for tolerance factor 1), and predicted with the method's
predictors. Candidates are ranked by the number of criteria they miss (band gap in the window, formation
energy below the threshold, and on perovskite tasks the tolerance factor), then by their distance to meeting
them (eV, eV/atom, t units added), and the ``n_samples`` best distinct reduced formulas are proposed. A triple
without an ionic radius is skipped and counted. On the 3x3x3 task the unit cell is scored and the chosen ones
are proposed as 3 x 3 x 3 supercells (a periodic repeat: the same local environments); on the free task the
same perovskite prototype is screened. Deterministic: every seed proposes the same crystals.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
from pymatgen.core import Composition, Lattice, Species, Structure

from smoacs_bench.data.elements import SYMBOLS
from smoacs_bench.data.masks import oxidation_mask
from smoacs_bench.data.mp_reference import ideal_cubic_guess
from smoacs_bench.data.perovskite import tolerance_factor
from smoacs_bench.data.task import Task
from smoacs_bench.data.templates import IDEAL_FRAC, ROLE_PATTERNS, ROLES

from .base import Method, Proposal
from .predictors import allowed_elements, family_pair, load_pair

_SCORED: dict[tuple, tuple] = {}   # (predictors) -> scored candidates, once per process


@dataclass
class ScreeningConfig:
    predictors: str = "megnet"     # predictor family (band gap, formation energy)
    device: str | None = None
    batch_size: int = 512


def _radius(symbol: str, state: int) -> float | None:
    try:
        r = Species(symbol, state).ionic_radius
    except ValueError:
        return None
    return None if r is None else float(r)


def candidates(allowed: np.ndarray) -> tuple[list[tuple[str, str, str, tuple[int, int, int], float]], int]:
    """Every (A, B, X, pattern, a in Å) the masks allow among ``allowed`` elements, and the number skipped for
    want of an ionic radius."""
    out, skipped = [], 0
    for pattern in ROLE_PATTERNS:
        ox = tuple(pattern[r] for r in ROLES)
        sites = [[SYMBOLS[k] for k in np.flatnonzero(oxidation_mask(o) & allowed)] for o in ox]
        for a_el in sites[0]:
            for b_el in sites[1]:
                for x_el in sites[2]:
                    ra, rb, rx = _radius(a_el, ox[0]), _radius(b_el, ox[1]), _radius(x_el, ox[2])
                    if None in (ra, rb, rx):
                        skipped += 1
                        continue
                    a = (2 * (rb + rx) + math.sqrt(2) * (ra + rx)) / 2
                    out.append((a_el, b_el, x_el, ox, a))
    return out, skipped


def ideal_perovskite(a_el: str, b_el: str, x_el: str, a: float) -> Structure:
    """The 5-site ideal cubic ABX3 (A at the origin, B at the body centre, X at the face centres), a in Å."""
    return Structure(Lattice.cubic(a), [a_el, b_el, x_el, x_el, x_el], IDEAL_FRAC)


class Screening(Method):
    """Enumerate, predict and keep the best pattern-neutral ABX3 perovskites (see the module docstring)."""

    name = "screening"
    display_name = "Screening"
    config_class = ScreeningConfig
    result_neutral = ("progress", "device", "batch_size")

    def __init__(self, predictors: str = "megnet", device: str | None = None, batch_size: int = 512):
        self.cfg = ScreeningConfig(predictors, device, batch_size)
        self._info: dict = {}

    def predictor_names(self) -> tuple[str, ...]:
        return family_pair(self.cfg.predictors)

    def config(self) -> dict:
        return {"predictors": self.cfg.predictors, "selection": "final", **self._info}

    def caption_note(self) -> str:
        i = self._info
        if not i:
            return ""
        return (f"{self.label} scores all {i['scored']} pattern-neutral ABX3 compositions the masks allow "
                f"({i['skipped']} without an ionic radius skipped) as ideal cubic perovskites with a from ionic "
                f"radii, in {i['scoring_s']:.0f} s, and proposes the best distinct formulas for the target "
                f"({i['meeting']} meet every screened criterion); deterministic, so its seeds coincide"
                + ("; on the free task it screens this perovskite prototype." if not i["perovskite_task"] else "."))

    def _formula(self, cand: tuple) -> str:
        """The key that makes two candidates the same proposal (here the reduced formula)."""
        return Composition(f"{cand[0]}{cand[1]}{cand[2]}3").reduced_formula

    def _scored(self) -> tuple:
        from .predictors import registry

        # the registered predictors themselves are part of the key (a test may swap one for a NaN wrapper)
        key = (self.predictor_names(), self.cfg.device, tuple(id(registry.PREDICTORS.get(n))
                                                              for n in self.predictor_names()))
        if key not in _SCORED:
            t0 = time.perf_counter()
            bg_model, ef_model = load_pair(*self.predictor_names(), device=self.cfg.device)
            cands, skipped = candidates(allowed_elements([bg_model, ef_model]))
            structures = [ideal_perovskite(*c[:3], c[4]) for c in cands]
            bg = bg_model.predict_structures(structures, batch_size=self.cfg.batch_size)
            ef = ef_model.predict_structures(structures, batch_size=self.cfg.batch_size)
            t = np.array([_tolerance(c) for c in cands])
            _SCORED[key] = (cands, skipped, structures, bg, ef, t, time.perf_counter() - t0)
        return _SCORED[key]

    def propose(self, task: Task, n_samples: int, seed: int) -> list[Proposal]:
        cands, skipped, structures, bg, ef, t, seconds = self._scored()
        crit = task.criteria()
        lo, hi = crit.target_bg - crit.margin, crit.target_bg + crit.margin
        miss_bg = np.maximum(np.maximum(lo - bg, bg - hi), 0.0)
        miss_ef = np.maximum(ef - crit.ef_max, 0.0) + (ef >= crit.ef_max) * 1e-9   # E_f must be strictly below
        tlo, thi = crit.tolerance_range
        miss_t = np.maximum(np.maximum(tlo - t, t - thi), 0.0) if task.is_perovskite else np.zeros_like(t)
        misses = [miss_bg, miss_ef, miss_t]
        finite = np.isfinite(bg) & np.isfinite(ef) & (np.isfinite(t) | (not task.is_perovskite))
        n_missed = sum((m > 0).astype(int) for m in misses)
        distance = miss_bg + miss_ef + np.nan_to_num(miss_t, nan=10.0)
        formulas = [self._formula(c) for c in cands]
        order = sorted(np.flatnonzero(finite), key=lambda i: (n_missed[i], distance[i], formulas[i]))
        chosen, seen = [], set()
        for i in order:
            if formulas[i] not in seen:
                seen.add(formulas[i])
                chosen.append(i)
            if len(chosen) == n_samples:
                break
        self._info = {"scored": len(cands), "skipped": skipped, "scoring_s": round(seconds, 1),
                      "meeting": int(np.sum(finite & (n_missed == 0))), "perovskite_task": task.is_perovskite,
                      "lattice": "a = (2(rB+rX) + sqrt2(rA+rX))/2, Shannon radii"}
        out = []
        for rank, i in enumerate(chosen):
            st = structures[i].copy()
            if task.cell is not None and task.cell.n > 1:
                st.make_supercell([task.cell.n] * 3)
            meta = {"source": f"screen:{formulas[i]}", "rank": rank, "tolerance_factor": float(t[i])}
            out.append(Proposal(st, float(bg[i]), float(ef[i]), meta))
        for rank in range(len(chosen), n_samples):
            out.append(Proposal(None, meta={"source": "", "rank": rank,
                                            "reason": f"only {len(chosen)} distinct candidates to propose"}))
        return out


def _tolerance(cand: tuple) -> float:
    a_el, b_el, x_el, ox, _ = cand
    t, _why = tolerance_factor([a_el, b_el, x_el, x_el, x_el], list(ROLES), ox)
    return t


# -- SMOACS's whole 5-site space, relaxed -----------------------------------------------------------------------
def smoacs_candidates(allowed: np.ndarray) -> tuple[list[tuple], int]:
    """Every assignment SMOACS's masks allow on the 5-site cell: per task pattern, an A and a B element whose
    "Ours" states hold the pattern's numbers there, and a multiset of three X elements (mixed anions included),
    among ``allowed``; as (species A, B, X, X, X; pattern; a in Å from ionic radii, the X radii averaged, or where
    pymatgen has no ionic radius for a state, from atomic radii: ``data.mp_reference.ideal_cubic_guess``), and the
    number that needed the atomic-radius guess. Duplicate compositions (an element allowed on A and B) are kept
    once."""
    from itertools import combinations_with_replacement

    out, skipped, seen = [], 0, set()
    for pattern in ROLE_PATTERNS:
        ox = tuple(pattern[r] for r in ROLES)
        a_sites, b_sites, x_sites = ([SYMBOLS[k] for k in np.flatnonzero(oxidation_mask(pattern[r]) & allowed)]
                                     for r in ("A", "B", "X"))
        for a_el in a_sites:
            for b_el in b_sites:
                for xs in combinations_with_replacement(x_sites, 3):
                    species = (a_el, b_el, *xs)
                    key = (Composition("".join(species)).alphabetical_formula, species)
                    if key in seen:
                        continue
                    seen.add(key)
                    radii = [_radius(a_el, ox[0]), _radius(b_el, ox[1]), *(_radius(x, ox[2]) for x in xs)]
                    if None in radii:   # the relaxation sets the cell: any sensible start will do
                        skipped += 1
                        a = ideal_cubic_guess(list(species))
                    else:
                        rx = sum(radii[2:]) / 3
                        a = (2 * (radii[1] + rx) + math.sqrt(2) * (radii[0] + rx)) / 2
                    out.append((species, ox, a))
    return out, skipped


@dataclass
class RelaxedScreeningConfig(ScreeningConfig):
    elements: str = ""   # comma-separated symbols the space is restricted to ("" = every element both predictors embed)


class RelaxedScreening(Screening):
    """Screening of SMOACS's whole 5-site space (mixed anions included), each cell relaxed by CHGNet first.

    Every assignment of :func:`smoacs_candidates` is built as the ideal 5-site cell and relaxed with the same
    cell-only relaxation SMOACS-relax uses (the sites sit where forces vanish by symmetry, so only a, b, c move),
    then predicted and ranked as :class:`Screening` ranks (criteria missed, then the distance to meeting them).
    Its cost is one relaxation and one prediction per composition, once for every target and seed (the first
    run of a process pays it; config.json's ``scoring_s`` holds it). Deterministic."""

    name = "screening-relax"
    display_name = "Screening-relax"
    config_class = RelaxedScreeningConfig
    revision = 1   # 1: compositions without an ionic radius start from atomic radii instead of being skipped
    contract_options = {"elements": "Sr,Ba,K,Ti,Zr,Mg,O,F"}   # a tiny space for the shared contract test

    def __init__(self, predictors: str = "megnet", device: str | None = None, batch_size: int = 512,
                 elements: str = ""):
        super().__init__(predictors, device, batch_size)
        self.elements = tuple(e.strip() for e in elements.split(",") if e.strip())

    def config(self) -> dict:
        return super().config() | {"elements": ",".join(self.elements)}

    def _allowed(self, models) -> np.ndarray:
        allowed = allowed_elements(models)
        if self.elements:
            unknown = [e for e in self.elements if e not in SYMBOLS]
            if unknown:
                raise ValueError(f"screening-relax: unknown element(s) {', '.join(unknown)}")
            allowed = allowed & np.isin(np.array(SYMBOLS), self.elements)
        return allowed

    def _formula(self, cand: tuple) -> str:
        return Composition("".join(cand[0])).alphabetical_formula   # distinct compositions, unreduced

    def caption_note(self) -> str:
        i = self._info
        if not i:
            return ""
        return (f"{self.label} relaxes (CHGNet 0.3.0, cell only) and scores all {i['scored']} assignments SMOACS's "
                f"masks allow on the 5-site cell, mixed anions included ({i['skipped']} without an ionic radius "
                f"started from atomic radii; {i['unrelaxed']} whose relaxation failed left out), in "
                f"{i['scoring_s']:.0f} s once for "
                f"every target and seed, and proposes the best distinct compositions ({i['meeting']} meet every "
                "screened criterion); deterministic, so its seeds coincide.")

    def _scored(self) -> tuple:
        key = ("relaxed-cells", self.predictor_names(), self.cfg.device, self.elements)
        if key not in _SCORED:
            from smoacs_bench.evaluation.relax import RelaxSettings, load_relaxer, relax_cell

            t0 = time.perf_counter()
            bg_model, ef_model = load_pair(*self.predictor_names(), device=self.cfg.device)
            cands, skipped = smoacs_candidates(self._allowed([bg_model, ef_model]))
            relaxer, settings = load_relaxer("chgnet"), RelaxSettings()
            kept, structures = [], []
            for k in range(0, len(cands), 256):
                part = cands[k:k + 256]
                cells = [Structure(Lattice.cubic(c[2]), list(c[0]), IDEAL_FRAC) for c in part]
                for cand, outcome in zip(part, relax_cell(cells, settings, relaxer), strict=True):
                    if outcome.final is not None:
                        kept.append(cand)
                        structures.append(outcome.final)
            bg = bg_model.predict_structures(structures, batch_size=self.cfg.batch_size)
            ef = ef_model.predict_structures(structures, batch_size=self.cfg.batch_size)
            t = np.array([tolerance_factor(list(c[0]), list(ROLES), c[1])[0] for c in kept])
            _SCORED[key] = (kept, skipped, structures, bg, ef, t, time.perf_counter() - t0, len(cands) - len(kept))
        return _SCORED[key][:7]

    def propose(self, task: Task, n_samples: int, seed: int) -> list[Proposal]:
        if task.cell is None or task.cell.n != 1:
            return [Proposal(None, meta={"source": "", "reason": "screening-relax covers the 5-site perovskite task"})
                    for _ in range(n_samples)]
        out = super().propose(task, n_samples, seed)
        key = ("relaxed-cells", self.predictor_names(), self.cfg.device, self.elements)
        self._info["unrelaxed"] = _SCORED[key][7]
        self._info["lattice"] = "CHGNet-relaxed (cell only) from ionic radii"
        return out
