"""TPE baseline (paper Sections 4, 4.4, A.6-A.8): one multi-objective Optuna study per sample.

Search spaces: :mod:`.space`; study set-up, storage and objectives: :mod:`.study`; the lockstep
group runner: :mod:`.lockstep`; the rule choosing a study's proposal from its Pareto front:
:mod:`.selection`. A trial whose structure cannot be built or predicted (NaN) is still COMPLETE,
with the worst values ``FAILED``.

Start structures: the same seeded draw from the task's pool (``data.pools``; AFLOW prototypes for the
free task, generated perovskites otherwise) that SMOACS uses, or ``initial_structures`` if given. The
first trial of a study is enqueued from it (perovskites: its lattice and the ideal coordinates, with
sampled elements; free task: the whole structure, clipped into the ranges).

Execution: the studies are cut by sample index into groups of ``group_size`` that advance in
lockstep; groups run one after another, or ``workers`` at a time in separate processes. A run's
output depends on its seed and ``group_size`` but not on ``workers``.

Storage: ``storage`` is a folder holding one ``RoundJournal`` per group (``group-<g>.log``, Optuna's
``JournalStorage`` written once per round; a kill loses at most the round in progress and a resumed
run then asks exactly what an uninterrupted one would have), or an Optuna storage URL or ``*.log``
journal file (trials left RUNNING by a kill are marked FAIL on restart and ignored), or None (in
memory). Each study ends with exactly ``trials`` COMPLETE trials.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import optuna
import torch
from pymatgen.core import Structure
from tqdm.auto import tqdm

from smoacs_bench.data.patterns import oxidation_patterns
from smoacs_bench.data.pools import get_pool
from smoacs_bench.data.task import Task
from smoacs_bench.methods.base import Method, Proposal, deterministic
from smoacs_bench.methods.predictors import allowed_elements, family_pair, load_pair

from .config import TPEConfig
from .lockstep import ENGINES, SAMPLERS, Job, new_timings, run_jobs
from .selection import incumbent_history, proposal
from .study import SPACES, members, objective_names


class TPE(Method):
    """Multi-objective TPE (Optuna) on the predictors' outputs, with the exact neutrality objective."""

    name = "tpe"
    display_name = "TPE"
    config_class = TPEConfig
    budget = "trials"
    state_dir = "tpe_journal"
    result_neutral = ("progress", "workers", "device")
    history_unit = "trial"
    neutrality = True
    revision = 1   # 1: BatchTPE draws by default (engine "batched"; runs stored before are not reused)
    tuning = ({}, {"multivariate": True}, {"n_startup_trials": 20}, {"gamma": 0.25})

    def __init__(self, initial_structures: Sequence[Structure] | None = None, **config: Any):
        self.cfg = self.config_class(**config)
        if self.cfg.predictors:
            self.cfg.band_gap_model, self.cfg.formation_energy_model = family_pair(self.cfg.predictors)
        if self.cfg.group_size < 1 or self.cfg.workers < 1 or self.cfg.trials < 1:
            raise ValueError(f"trials, group_size and workers must be >= 1, got {self.cfg.trials}, "
                             f"{self.cfg.group_size}, {self.cfg.workers}")
        if self.cfg.selection not in ("final", "best"):
            raise ValueError(f"selection must be final or best, got {self.cfg.selection!r}")
        if self.cfg.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {self.cfg.sampler!r}")
        if self.cfg.engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {self.cfg.engine!r}")
        if not 0.0 < self.cfg.gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {self.cfg.gamma}")
        if self.cfg.space not in SPACES:
            raise ValueError(f"space must be one of {', '.join(SPACES)}, got {self.cfg.space!r}")
        if self.cfg.relax_cells and self.cfg.space != "smoacs":
            raise ValueError("relax_cells needs space=smoacs (ideal cells whose sites stay where forces vanish)")
        self.initial_structures = list(initial_structures) if initial_structures is not None else None
        self.device = self.cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self._predictors = None
        self._artifacts: dict[str, Any] = {}
        self._pool_info: dict[str, Any] = {}

    def predictor_names(self) -> tuple[str, ...]:
        return (self.cfg.band_gap_model, self.cfg.formation_energy_model)

    @property
    def label(self) -> str:
        """``TPE(MEGNet)``; ``Random(MEGNet)`` for the random sampler; ``, SMOACS space`` added in SMOACS's space."""
        base = super().label
        if self.cfg.sampler == "random" and self.display_name == "TPE":
            base = "Random" + base[len("TPE"):]
        if self.cfg.space == "smoacs":
            base = base[:-1] + ", SMOACS space)" if base.endswith(")") else base + "(SMOACS space)"
        if self.cfg.relax_cells:
            base = base[:-1] + ", relaxed cells)"
        return base

    def caption_note(self) -> str:
        """Its space, start pool and sampler, from the resolved config."""
        pool = self._pool_info.get("name") or self.cfg.pool or "the task's default pool"
        out = []
        if self.cfg.space == "smoacs":
            out.append(f"{self.label} searches SMOACS's space: one categorical for the oxidation pattern, then each "
                       "site's element among those the pattern allows there (conditional parameters), with the same "
                       "geometry ranges, start structures, evaluations and selection rule as in the paper's space.")
        if self.cfg.relax_cells:
            out.append(f"{self.label}: a trial is a composition (the pattern and each site's element); its ideal "
                       "cubic cell (lattice from atomic radii) is relaxed by CHGNet 0.3.0 (cell only, the sites held "
                       "where forces vanish by symmetry, as SMOACS-relax and screening-relax do; one relaxation per "
                       "composition, cached) before the predictors score it, and the proposal is the relaxed cell.")
        if self.cfg.sampler == "tpe":
            how = ("drawn by BatchTPE, Optuna's multi-objective TPE vectorised over studies (the same distribution, "
                   "other random numbers)" if self.cfg.engine == "batched" else "drawn by Optuna's TPESampler")
            out.append(f"{self.label}: {self.cfg.trials} trials per sample from {pool} (the start is the first "
                       f"trial), {how}, {self.cfg.n_startup_trials} random startup trials.")
        else:
            out.append(f"{self.label}: {self.cfg.trials} uniformly random trials per sample from {pool} "
                       "(the start is the first trial).")
        return " ".join(out)

    def config(self) -> dict[str, Any]:
        return asdict(self.cfg) | {"neutrality": self.neutrality, "device": self.device, "pool_used": self._pool_info}

    def artifacts(self) -> dict[str, Any]:
        return self._artifacts

    @property
    def predictors(self):
        """(band-gap predictor in eV, formation-energy predictor in eV/atom), loaded once."""
        if self._predictors is None:
            self._predictors = load_pair(*self.predictor_names(), device=self.device)
        return self._predictors

    def allowed_elements(self) -> np.ndarray:
        """(K,) bool: elements both predictors can embed."""
        return allowed_elements(self.predictors)

    def _starts(self, task: Task, n_samples: int, seed: int) -> list[tuple[str, Structure, np.ndarray]]:
        """(source, structure, oxidation patterns (D, N)) per sample: ``initial_structures`` in order
        (cycled), else the same seeded draw from the task's pool (``data.pools``) that SMOACS starts from."""
        if self.initial_structures is not None:
            given = self.initial_structures
            out = []
            for i in range(n_samples):
                st = given[i % len(given)]
                if task.is_perovskite:
                    patterns = task.cell.patterns
                else:
                    patterns, _why = oxidation_patterns(st)
                out.append((f"given:{i % len(given)}", st, np.asarray(patterns)))
            return out
        pool = get_pool(self.cfg.pool or task.default_pool)
        self._pool_info = pool.describe()
        return [(d.source, d.crystal.structure, d.crystal.patterns) for d in pool.draw(n_samples, seed)]

    def propose(self, task: Task, n_samples: int, seed: int) -> list[Proposal]:
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        try:
            with deterministic():  # predictions feed the objectives: keep them bit-reproducible
                return self._propose(task, n_samples, seed)
        finally:
            optuna.logging.set_verbosity(verbosity)

    def _propose(self, task: Task, n_samples: int, seed: int) -> list[Proposal]:
        names = objective_names(task, self.neutrality)
        identity = {"method": self.name, "task": task.name, "target_bg": task.target_bg, "margin": task.margin,
                    "seed": seed, "objectives": names, "group_size": self.cfg.group_size}
        for key, default in (("sampler", "tpe"), ("space", "paper"), ("engine", "optuna"), ("gamma", 0.1),
                             ("n_startup_trials", 10), ("multivariate", False), ("relax_cells", False)):   # absent at defaults: older journals
            if getattr(self.cfg, key) != default:
                identity[key] = getattr(self.cfg, key)
        if self.cfg.relax_cells:   # the composition alone is searched (before: the geometry too, unused)
            identity["relax_cells"] = "composition only"
        group = members(task, self._starts(task, n_samples, seed), self.allowed_elements(), self.cfg.space,
                        composition_only=self.cfg.relax_cells)
        size = self.cfg.group_size
        jobs = [Job(g, group[k:k + size], task, seed, names, identity)
                for g, k in enumerate(range(0, len(group), size))]
        bar = tqdm(total=n_samples * self.cfg.trials, desc=f"{self.label} {task.name}", unit="trial",
                   disable=not self.cfg.progress, leave=False, smoothing=0.05)
        t0 = time.perf_counter()
        try:
            results = run_jobs(replace(self.cfg, device=self.device), lambda: self.predictors, jobs, bar.update)
        finally:
            bar.close()
        wall = time.perf_counter() - t0
        trials = {i: ts for r in results for i, ts in r.trials.items()}
        timings = new_timings()
        for r in results:
            for k in timings:
                timings[k] += r.timings[k]
        timings["wall_s"] = wall
        proposals = [proposal(m, trials[m.index], names, task, self.cfg.selection) for m in group]
        self._artifacts = {"history": incumbent_history([trials[m.index] for m in group], names, task.ef_max),
                           "timings": {k: round(v, 3) for k, v in timings.items()}}
        return proposals


@dataclass
class RandomConfig(TPEConfig):
    sampler: str = "random"


class RandomSearch(TPE):
    """Random search in the TPE harness: Optuna's RandomSampler with the same spaces (``space``), start
    structures (the first trial is the start), 200 evaluations per sample and selection rule as TPE."""

    name = "random"
    display_name = "Random"
    config_class = RandomConfig
    tuning = ()      # no hyperparameter
    revision = 0     # Optuna's RandomSampler either way: runs stored before BatchTPE stay valid


class TPEWithoutNeutrality(TPE):
    """TPE(/N) of paper Section 4.4: no neutrality objective (the 3x3x3 task)."""

    name = "tpe-n"
    display_name = "TPE(/N)"
    neutrality = False


class TPEExactNeutrality(TPE):
    """Beyond the paper: TPE with the exact dynamic-programming neutrality objective on any cell size."""

    name = "tpe+n"
    display_name = "TPE+N"
    neutrality = True
