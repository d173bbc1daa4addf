"""TPE baseline (paper Sections 4, 4.4, A.6-A.8): one multi-objective Optuna study per sample.

Search space per task (A.4, A.7, A.8):

- ``free``: a, b, c in [2, 10] Å, α, β, γ in [30°, 150°], fractional coordinates in [0, 1), one
  element per site among those both predictors can embed (no oxidation masks). The number of sites
  and the first (enqueued) trial come from the start structure.
- perovskite tasks: a, b, c in the task's range (Å, whole cell), angles fixed at 90°, each
  fractional coordinate within ±ε of its ideal position; elements per site restricted by oxidation
  number (A: +1/+2, B: +2/+4, X: -1/-2, the union of the "Ours" masks) and to embeddable elements.
  The first trial is enqueued with the lattice of the start perovskite and ideal coordinates; its
  elements are sampled.

Start structures: the same seeded draw from the task's pool (``data.pools``; AFLOW prototypes for the
free task, generated perovskites otherwise) that SMOACS uses, or ``initial_structures`` if given.

Objectives, all minimised: L_bg = max(0, |y - ŷ_bg| - h) (eV), L_f = ŷ_f (eV/atom) (Eq. 13),
L_neutral (Eq. A.1, exact dynamic-programming check) unless the variant drops it, and for
perovskites L_t (Eq. A.2: 0 if 0.8 <= t <= 1.0, t computed as the evaluator does). A trial whose
structure cannot be built or predicted (NaN) is still COMPLETE, with the worst values ``FAILED``.

Selection rule (the proposal of a study): among ``study.best_trials`` (the Pareto front), prefer
trials satisfying every constraint (L_bg == 0, L_f < -0.5, and L_neutral == L_t == 0 where those
objectives exist), then the smallest L_bg + L_f, then the lowest trial number. The same key over
all trials gives the incumbent recorded in the history.

Execution: all studies advance in lockstep (``ask`` every study, build every structure, one batched
call per predictor, ``tell`` every study). Each trial gets a fresh ``TPESampler`` seeded from
(run seed, sample index, number of COMPLETE trials so far), so a run is deterministic and a resumed
run asks what an uninterrupted one would have asked (up to float32 noise, ~1e-6 eV, of predictions in
differently composed batches, which can tip a later TPE split). Studies "sample-<i>" live in an Optuna
storage (``storage``: a journal file path or an Optuna storage URL; None = in memory). On restart a
trial left RUNNING by a kill (asked, never told) is marked FAIL; FAIL trials are ignored by TPE and
by the count, so each study ends with exactly ``trials`` COMPLETE trials.
"""

from __future__ import annotations

import hashlib
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution
from optuna.trial import FrozenTrial, TrialState
from pymatgen.core import Lattice, Structure
from tqdm.auto import tqdm

from benchmark.tasks import Task
from data.elements import SYMBOLS, K
from data.masks import oxidation_mask
from data.pools import get_pool
from data.templates import PerovskiteCell
from evaluation.geometry import lattice_problem
from evaluation.neutrality import check_species
from evaluation.perovskite import role_pattern_assignment, tolerance_factor
from methods.base import Method, Proposal, deterministic
from methods.predictors import get_predictor
from methods.smoacs.method import DEFAULT_POOLS

L_BG, L_F, L_NEUTRAL, L_T = "L_bg", "L_f", "L_neutral", "L_t"
FAILED = {L_BG: 1e3, L_F: 1e3, L_NEUTRAL: 1.0, L_T: 1.0}  # objective values of a failed trial
EF_MAX = -0.5                                                # eV/atom, criterion (B)
TOLERANCE_RANGE = (0.8, 1.0)
ROLE_STATES = {"A": (1, 2), "B": (2, 4), "X": (-1, -2)}      # paper A.7


@dataclass
class TPEConfig:
    """Settings of one TPE run. ``storage``: journal file path (e.g. ``OUT/tpe_journal.log``) or an
    Optuna storage URL; None keeps the studies in memory (a journal grows by ~8 kB per trial on the
    5-site task, ~170 kB on the 135-site task). ``batch_size``: structures per predictor
    forward pass. ``lockstep=False`` runs one study after another with one predictor call per
    trial (the plain Optuna loop, for benchmarks); both give the same proposals."""

    trials: int = 200
    storage: str | None = None
    batch_size: int = 256
    n_startup_trials: int = 10         # Optuna's default
    multivariate: bool = False         # Optuna's default for multi-objective TPE
    lockstep: bool = True
    band_gap_model: str = "megnet-bandgap"
    formation_energy_model: str = "megnet-eform"
    device: str | None = None          # default: CUDA when available
    pool: str | None = None            # initial pool (data.pools.get_pool); None: the task's default
    progress: bool = True


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

    def structure(self, params: dict[str, Any]) -> Structure:
        a, b, c = params["a"], params["b"], params["c"]
        if self.ideal is None:
            lattice = Lattice.from_parameters(a, b, c, params["alpha"], params["beta"], params["gamma"])
            base = np.zeros((self.n_sites, 3))
        else:
            lattice = Lattice.orthorhombic(a, b, c)
            base = self.ideal
        shift = np.array([[params[f"{q}{i}"] for q in "xyz"] for i in range(self.n_sites)])
        species = [params[f"el{i}"] for i in range(self.n_sites)]
        return Structure(lattice, species, (base + shift) % 1.0)


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


def objective_names(task: Task, neutrality: bool) -> list[str]:
    """The objectives of a study, in order."""
    return [L_BG, L_F] + ([L_NEUTRAL] if neutrality else []) + ([L_T] if task.is_perovskite else [])


def satisfies(values: dict[str, float]) -> bool:
    """All constraints met: L_bg == 0, L_f < -0.5 eV/atom, binary objectives 0 where present."""
    return (values[L_BG] == 0.0 and values[L_F] < EF_MAX
            and values.get(L_NEUTRAL, 0.0) == 0.0 and values.get(L_T, 0.0) == 0.0)


def selection_key(trial: FrozenTrial, names: Sequence[str]) -> tuple[bool, float, int]:
    """Sort key of the selection rule: constraint violators last, then L_bg + L_f, then trial number."""
    v = dict(zip(names, trial.values, strict=True))
    return (not satisfies(v), v[L_BG] + v[L_F], trial.number)


def select_trial(study: optuna.Study, names: Sequence[str]) -> FrozenTrial:
    """The proposal of a study: the Pareto-front trial with the smallest selection key."""
    return min(study.best_trials, key=lambda t: selection_key(t, names))


def trial_seed(seed: int, sample: int, n_complete: int) -> int:
    """Stable 32-bit seed of the sampler for trial ``n_complete`` of study ``sample``."""
    digest = hashlib.blake2b(f"{seed}/{sample}/{n_complete}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little")


@dataclass
class _Study:
    """One sample's study, its search space and its number of COMPLETE trials."""

    index: int
    study: optuna.Study
    space: SearchSpace
    n_complete: int
    source: str  # where the enqueued start came from


class TPE(Method):
    """Multi-objective TPE (Optuna) on MEGNet predictions, with the exact neutrality objective."""

    name = "tpe"
    label = "TPE(MEGNet)"
    neutrality = True

    def __init__(self, initial_structures: Sequence[Structure] | None = None, **config: Any):
        self.cfg = TPEConfig(**config)
        self.initial_structures = list(initial_structures) if initial_structures is not None else None
        self.device = self.cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self._predictors = None
        self._artifacts: dict[str, Any] = {}
        self._pool_info: dict[str, Any] = {}

    def config(self) -> dict[str, Any]:
        return asdict(self.cfg) | {"neutrality": self.neutrality, "device": self.device, "pool_used": self._pool_info}

    def artifacts(self) -> dict[str, Any]:
        return self._artifacts

    @property
    def predictors(self):
        """(band-gap predictor in eV, formation-energy predictor in eV/atom), loaded once."""
        if self._predictors is None:
            self._predictors = (get_predictor(self.cfg.band_gap_model, device=self.device).eval(),
                                get_predictor(self.cfg.formation_energy_model, device=self.device).eval())
        return self._predictors

    def allowed_elements(self) -> np.ndarray:
        """(K,) bool: elements both predictors can embed."""
        bg, ef = self.predictors
        return (bg.supported_elements & ef.supported_elements).cpu().numpy().astype(bool)[:K]

    # ----------------------------------------------------------------------------------- set-up
    def _starts(self, task: Task, n_samples: int, seed: int) -> list[tuple[str, Structure]]:
        """(source, structure) per sample: ``initial_structures`` in order (cycled), else the same seeded
        draw from the task's pool (``data.pools``) that SMOACS starts from."""
        if self.initial_structures is not None:
            given = self.initial_structures
            return [(f"given:{i % len(given)}", given[i % len(given)]) for i in range(n_samples)]
        pool = get_pool(self.cfg.pool or DEFAULT_POOLS[task.name])
        self._pool_info = pool.describe()
        return [(d.source, d.crystal.structure) for d in pool.draw(n_samples, seed)]

    def _spaces(self, task: Task, n_samples: int, seed: int) -> list[tuple[str, SearchSpace, dict[str, Any]]]:
        """(source of the start, search space, enqueued initial params) per sample."""
        allowed = self.allowed_elements()
        starts = self._starts(task, n_samples, seed)
        if task.is_perovskite:
            space = perovskite_space(task, allowed)
            zero = {f"{q}{i}": 0.0 for i in range(space.n_sites) for q in "xyz"}
            return [(src, space, dict(zip("abc", map(float, st.lattice.abc), strict=True)) | zero)
                    for src, st in starts]
        symbols = {SYMBOLS[k] for k in np.flatnonzero(allowed)}
        return [(src, free_space(task, allowed, len(st)), free_initial_params(st, task, symbols))
                for src, st in starts]

    def _storage(self):
        """The Optuna storage of this run (None: a fresh in-memory storage per study)."""
        where = self.cfg.storage
        if where is None:
            return None
        if "://" in where:
            return where
        Path(where).parent.mkdir(parents=True, exist_ok=True)
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        # Absolute path: Optuna's lock is a symlink to this path, and a relative target (resolved from the
        # link's own folder) never stats, so a lock left by a killed run was never recognised as stale.
        path = Path(where).resolve()
        lock = path.with_name(path.name + ".lock")
        if lock.is_symlink() and not lock.exists():  # dangling: it cannot be a live lock
            warnings.warn(f"removing a dangling journal lock left by a killed run: {lock}", stacklevel=2)
            lock.unlink()
        return JournalStorage(JournalFileBackend(str(path)))

    def _open_study(self, storage, i: int, source: str, space: SearchSpace, initial: dict[str, Any],
                    names: list[str], identity: dict[str, Any]) -> _Study:
        """Create or load study "sample-<i>", fail its stale RUNNING trials, enqueue the start if needed."""
        study = optuna.create_study(storage=storage, study_name=f"sample-{i}", directions=["minimize"] * len(names),
                                    load_if_exists=True)
        stored = study.user_attrs.get("run")
        if stored is None:
            study.set_user_attr("run", identity)
        elif stored != identity:
            raise ValueError(f"storage {self.cfg.storage!r} holds study sample-{i} of another run: "
                             f"{stored} != {identity}; use a fresh storage path")
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study.tell(t.number, state=TrialState.FAIL)  # asked before a kill, never told
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.WAITING))
        n_complete = sum(t.state == TrialState.COMPLETE for t in trials)
        if not trials:
            study.enqueue_trial(initial)
        return _Study(i, study, space, n_complete, source)

    # ------------------------------------------------------------------------------ optimise
    def propose(self, task: Task, n_samples: int, seed: int) -> list[Proposal]:
        with deterministic():  # predictions feed the objectives: keep them bit-reproducible
            return self._propose(task, n_samples, seed)

    def _propose(self, task: Task, n_samples: int, seed: int) -> list[Proposal]:
        names = objective_names(task, self.neutrality)
        identity = {"method": self.name, "task": task.name, "target_bg": task.target_bg, "margin": task.margin,
                    "seed": seed, "objectives": names}
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        try:
            storage = self._storage()
            studies = [self._open_study(storage, i, *start, names, identity)
                       for i, start in enumerate(self._spaces(task, n_samples, seed))]
            self._timings = {"sampler_s": 0.0, "predictor_s": 0.0, "objectives_s": 0.0, "predictor_calls": 0}
            groups = [studies] if self.cfg.lockstep else [[s] for s in studies]
            total = sum(max(0, self.cfg.trials - s.n_complete) for s in studies)
            bar = tqdm(total=total, desc=f"{self.label} {task.name}", unit="trial", disable=not self.cfg.progress,
                       leave=False)
            for group in groups:
                while active := [s for s in group if s.n_complete < self.cfg.trials]:
                    self._round(active, task, seed, names)
                    bar.update(len(active))
            bar.close()
            proposals = [self._proposal(s, names) for s in studies]
            self._artifacts = {"history": self._history(studies, names),
                               "timings": {k: round(v, 3) for k, v in self._timings.items()}}
        finally:
            optuna.logging.set_verbosity(verbosity)
        return proposals

    def _round(self, active: list[_Study], task: Task, seed: int, names: list[str]) -> None:
        """One trial of every active study: ask all, predict all structures in one call per model, tell all."""
        t0 = time.perf_counter()
        asked = []
        for s in active:
            s.study.sampler = optuna.samplers.TPESampler(
                seed=trial_seed(seed, s.index, s.n_complete), n_startup_trials=self.cfg.n_startup_trials,
                multivariate=self.cfg.multivariate)
            asked.append(s.study.ask(s.space.distributions))
        t1 = time.perf_counter()
        structures: list[Structure | None] = []
        for s, trial in zip(active, asked, strict=True):
            try:
                st = s.space.structure(trial.params)
                structures.append(None if lattice_problem(st) else st)
            except (ValueError, ArithmeticError):
                structures.append(None)
        ok = [k for k, st in enumerate(structures) if st is not None]
        bg = np.full(len(active), np.nan)
        ef = np.full(len(active), np.nan)
        t2 = time.perf_counter()
        if ok:
            bg_model, ef_model = self.predictors
            batch = [structures[k] for k in ok]
            bg[ok] = bg_model.predict_structures(batch, batch_size=self.cfg.batch_size)
            ef[ok] = ef_model.predict_structures(batch, batch_size=self.cfg.batch_size)
            self._timings["predictor_calls"] += 1
        t3 = time.perf_counter()
        results = [self._objectives(st, b, e, task, s.space) for s, st, b, e in zip(active, structures, bg, ef, strict=True)]
        t4 = time.perf_counter()
        for s, trial, (values, attrs) in zip(active, asked, results, strict=True):
            for key, val in attrs.items():
                trial.set_user_attr(key, val)
            s.study.tell(trial, [values[n] for n in names])
            s.n_complete += 1
        t5 = time.perf_counter()
        self._timings["sampler_s"] += (t1 - t0) + (t5 - t4)
        self._timings["objectives_s"] += (t2 - t1) + (t4 - t3)
        self._timings["predictor_s"] += t3 - t2

    def _objectives(self, structure: Structure | None, bg: float, ef: float, task: Task,
                    space: SearchSpace) -> tuple[dict[str, float], dict[str, Any]]:
        """(objective values by name, user attributes) of one trial; failed trials get ``FAILED``."""
        if structure is None or not (math.isfinite(bg) and math.isfinite(ef)):
            why = "unusable lattice" if structure is None else "prediction is not finite"
            return dict(FAILED), {"band_gap": None, "formation_energy": None, "failed": why}
        species = [site.specie.symbol for site in structure]
        neut = check_species(species)
        values = {L_BG: max(0.0, abs(task.target_bg - bg) - task.margin), L_F: float(ef),
                  L_NEUTRAL: 0.0 if neut.neutral else 1.0}
        attrs: dict[str, Any] = {"band_gap": float(bg), "formation_energy": float(ef), "neutral": neut.neutral}
        if task.is_perovskite:
            ox = role_pattern_assignment(species, space.roles) or neut.ox_states
            with warnings.catch_warnings():  # pymatgen warns for every missing ionic radius
                warnings.simplefilter("ignore", UserWarning)
                t = tolerance_factor(species, space.roles, ox)[0] if ox is not None else math.nan
            lo, hi = TOLERANCE_RANGE
            values[L_T] = 0.0 if math.isfinite(t) and lo <= t <= hi else 1.0
            attrs["tolerance_factor"] = t if math.isfinite(t) else None
        return values, attrs

    # ------------------------------------------------------------------------------ results
    def _proposal(self, s: _Study, names: list[str]) -> Proposal:
        trial = select_trial(s.study, names)
        values = dict(zip(names, trial.values, strict=True))
        meta = {"sample": s.index, "source": s.source, "trial": trial.number, "pareto_size": len(s.study.best_trials),
                "constraints_met": satisfies(values), "objectives": values,
                "reason": trial.user_attrs.get("failed", "")}
        try:
            structure = s.space.structure(trial.params)
        except (ValueError, ArithmeticError) as e:
            return Proposal(None, None, None, meta | {"reason": f"structure cannot be built: {e}"})
        return Proposal(structure, trial.user_attrs.get("band_gap"), trial.user_attrs.get("formation_energy"), meta)

    def _history(self, studies: list[_Study], names: list[str]) -> dict[str, np.ndarray]:
        """(trials, samples) arrays of the incumbent (selection key over trials so far): its ŷ_bg (eV),
        ŷ_f (eV/atom), t, L_bg + L_f (``loss``), and the best L_bg so far (``best_l_bg``)."""
        n_rows = max(s.n_complete for s in studies)
        keys = ("band_gap", "formation_energy", "loss", "best_l_bg", "tolerance_factor")
        hist = {k: np.full((n_rows, len(studies)), np.nan) for k in keys}
        for j, s in enumerate(studies):
            best, best_bg = None, math.inf
            done = s.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            for r, t in enumerate(sorted(done, key=lambda t: t.number)):
                if best is None or selection_key(t, names) < selection_key(best, names):
                    best = t
                best_bg = min(best_bg, t.values[0])
                v = dict(zip(names, best.values, strict=True))
                hist["loss"][r, j] = v[L_BG] + v[L_F]
                hist["best_l_bg"][r, j] = best_bg
                for k in ("band_gap", "formation_energy", "tolerance_factor"):
                    val = best.user_attrs.get(k)
                    hist[k][r, j] = np.nan if val is None else val
        return hist


class TPEWithoutNeutrality(TPE):
    """TPE(/N) of paper Section 4.4: no neutrality objective (the 3x3x3 task)."""

    name = "tpe-n"
    label = "TPE(/N)(MEGNet)"
    neutrality = False


class TPEExactNeutrality(TPE):
    """Beyond the paper: TPE with the exact dynamic-programming neutrality objective on any cell size."""

    name = "tpe+n"
    label = "TPE+N(MEGNet)"
    neutrality = True
