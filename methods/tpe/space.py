"""Search spaces of the TPE baseline (paper A.4, A.7, A.8) and how a trial's params become a Structure.

- ``free``: a, b, c in the task's range (Å), α, β, γ in [30°, 150°], fractional coordinates in [0, 1),
  one element per site among those both predictors can embed (no oxidation masks, as in the paper).
- perovskite tasks: a, b, c in the task's range (Å, whole cell), angles fixed at 90°, each fractional
  coordinate within ±ε of its ideal position; elements per site restricted by oxidation number
  (A: +1/+2, B: +2/+4, X: -1/-2, the union of the "Ours" masks, A.7) and to embeddable elements.
- ``smoacs`` (any task, :func:`smoacs_space`): the same geometry, but SMOACS's composition encoding: one
  categorical for the oxidation pattern, then each site's element among those the pattern allows there
  (conditional parameters), so that every proposal is neutral by construction, as SMOACS's are.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution
from pymatgen.core import Lattice, Structure

from smoacs_bench.data.elements import SYMBOLS
from smoacs_bench.data.masks import oxidation_mask, pattern_mask
from smoacs_bench.data.task import Task
from smoacs_bench.data.templates import PerovskiteCell

ROLE_STATES = {"A": (1, 2), "B": (2, 4), "X": (-1, -2)}      # paper A.7


@dataclass(frozen=True)
class SearchSpace:
    """Distributions of one study and how its params become a Structure.

    Parameter names: ``a, b, c`` (Å), ``alpha, beta, gamma`` (degrees, free task only), ``x{i}, y{i},
    z{i}`` (fractional; for perovskites the offset from the ideal position), ``el{i}`` (symbol).
    """

    distributions: dict[str, BaseDistribution]
    n_sites: int
    ideal: np.ndarray | None = None     # (N, 3) ideal fractional coordinates, perovskites only
    roles: tuple[str, ...] | None = None
    # SMOACS's space: [pattern][site] -> the elements that pattern allows there; the categorical ``pattern``
    # is in ``distributions`` and each site's element is the conditional parameter ``el{i}_p{pattern}``
    site_choices: tuple[tuple[tuple[str, ...], ...], ...] | None = None
    # params held fixed (not sampled): :func:`composition_space` holds the geometry
    fixed: tuple[tuple[str, float], ...] = ()

    def conditional(self, params: dict[str, Any]) -> dict[str, CategoricalDistribution]:
        """The parameters sampled after the fixed ones: the elements the chosen pattern allows per site."""
        if self.site_choices is None:
            return {}
        d = int(params["pattern"])
        return {f"el{i}_p{d}": CategoricalDistribution(list(ch)) for i, ch in enumerate(self.site_choices[d])}

    def species(self, params: dict[str, Any]) -> list[str]:
        if self.site_choices is None:
            return [params[f"el{i}"] for i in range(self.n_sites)]
        d = int(params["pattern"])
        return [params[f"el{i}_p{d}"] for i in range(self.n_sites)]

    def structure(self, params: dict[str, Any]) -> Structure:
        params = dict(self.fixed) | dict(params)
        a, b, c = params["a"], params["b"], params["c"]
        if self.ideal is None:
            lattice = Lattice.from_parameters(a, b, c, params["alpha"], params["beta"], params["gamma"])
            base = np.zeros((self.n_sites, 3))
        else:
            lattice = Lattice.orthorhombic(a, b, c)
            base = self.ideal
        shift = np.array([[params[f"{q}{i}"] for q in "xyz"] for i in range(self.n_sites)])
        return Structure(lattice, self.species(params), (base + shift) % 1.0)


def role_elements(allowed: np.ndarray) -> dict[str, list[str]]:
    """Elements per perovskite role: any "Ours" state of the role (A.7) and ``allowed`` (K,) bool."""
    out = {}
    for role, states in ROLE_STATES.items():
        mask = np.logical_or.reduce([oxidation_mask(s) for s in states]) & allowed
        out[role] = [SYMBOLS[k] for k in np.flatnonzero(mask)]
    return out


def perovskite_space(task: Task, allowed: np.ndarray) -> SearchSpace:
    """The search space of a perovskite task (lattice, ±ε coordinate offsets, role elements)."""
    cell: PerovskiteCell = task.cell
    eps = float(task.coord_eps)
    elements = role_elements(allowed)
    dists: dict[str, BaseDistribution] = {q: FloatDistribution(*task.abc_range) for q in "abc"}
    for i, role in enumerate(cell.roles):
        dists |= {f"{q}{i}": FloatDistribution(-eps, eps) for q in "xyz"}
        dists[f"el{i}"] = CategoricalDistribution(elements[role])
    return SearchSpace(dists, cell.n_sites, cell.frac_coords, cell.roles)


def free_space(task: Task, allowed: np.ndarray, n_sites: int) -> SearchSpace:
    """The search space of the free task for ``n_sites`` sites."""
    symbols = [SYMBOLS[k] for k in np.flatnonzero(allowed)]
    dists: dict[str, BaseDistribution] = {q: FloatDistribution(*task.abc_range) for q in "abc"}
    dists |= {q: FloatDistribution(*task.angle_range) for q in ("alpha", "beta", "gamma")}
    for i in range(n_sites):
        dists |= {f"{q}{i}": FloatDistribution(0.0, 1.0) for q in "xyz"}
        dists[f"el{i}"] = CategoricalDistribution(symbols)
    return SearchSpace(dists, n_sites)


def smoacs_space(space: SearchSpace, patterns: np.ndarray, allowed: np.ndarray) -> SearchSpace:
    """``space`` with SMOACS's composition encoding instead of one free element per site: a categorical
    ``pattern`` among the start's oxidation patterns (D, N), then each site's element among those whose
    "Ours" states include that pattern's number there (and the predictors embed). Every structure it
    builds is neutral by construction, as SMOACS's are. Patterns leaving a site without an element drop out."""
    choices = []
    for p in np.asarray(patterns, dtype=int):
        mask = pattern_mask(p, allowed=allowed)
        if mask.any(axis=1).all():
            choices.append(tuple(tuple(SYMBOLS[k] for k in np.flatnonzero(row)) for row in mask))
    if not choices:
        raise ValueError("no oxidation pattern of the start leaves every site an element the predictors embed")
    dists = {k: v for k, v in space.distributions.items() if not k.startswith("el")}
    dists["pattern"] = CategoricalDistribution(list(range(len(choices))))
    return replace(space, distributions=dists, site_choices=tuple(choices))


GEOMETRY_START = 4.0   # Å: the placeholder lattice of a composition-only cell (the relaxation sets the real one)


def composition_space(space: SearchSpace) -> SearchSpace:
    """``space`` (a perovskite space) without its geometry: the lattice and the site offsets are held (the ideal
    cell), so a study searches the composition alone and the relaxation sets the lattice (TPE-relax, as
    SMOACS-relax and screening-relax search ideal cells)."""
    if space.ideal is None:
        raise ValueError("a composition-only space needs a perovskite cell (ideal site coordinates)")
    geometry = {"a", "b", "c"} | {f"{q}{i}" for i in range(space.n_sites) for q in "xyz"}
    fixed = tuple((k, GEOMETRY_START if k in ("a", "b", "c") else 0.0) for k in sorted(geometry))
    return replace(space, distributions={k: v for k, v in space.distributions.items() if k not in geometry},
                   fixed=fixed)


def smoacs_initial_params(space: SearchSpace, initial: dict[str, Any]) -> dict[str, Any]:
    """The enqueued first trial in SMOACS's space: ``initial`` without per-site elements; on the free task
    the start's own elements under its first pattern, where that pattern allows them."""
    out = {k: v for k, v in initial.items() if not k.startswith("el")}
    starts = {int(k[2:]): v for k, v in initial.items() if k.startswith("el")}
    if starts and space.site_choices:
        out["pattern"] = 0
        for i, choices in enumerate(space.site_choices[0]):
            if starts.get(i) in choices:
                out[f"el{i}_p0"] = starts[i]
    return out


def free_initial_params(structure: Structure, task: Task, allowed_symbols: set[str]) -> dict[str, Any]:
    """Enqueued params of a free-task study: the initial structure, clipped into the search ranges."""
    lo, hi = task.abc_range
    alo, ahi = task.angle_range
    p: dict[str, Any] = {q: float(np.clip(v, lo, hi)) for q, v in zip("abc", structure.lattice.abc, strict=True)}
    p |= {q: float(np.clip(v, alo, ahi))
          for q, v in zip(("alpha", "beta", "gamma"), structure.lattice.angles, strict=True)}
    for i, site in enumerate(structure):
        p |= {f"{q}{i}": float(v % 1.0) for q, v in zip("xyz", site.frac_coords, strict=True)}
        if site.specie.symbol in allowed_symbols:
            p[f"el{i}"] = site.specie.symbol
    return p
