"""TPE baseline (paper Sections 4, 4.4, A.6-A.8): one multi-objective Optuna study per sample.

Search spaces: ``methods.tpe.space``; objectives and the rule choosing a study's proposal from its
Pareto front: ``methods.tpe.selection``. A trial whose structure cannot be built or predicted (NaN)
is still COMPLETE, with the worst values ``FAILED``.

Start structures: the same seeded draw from the task's pool (``data.pools``; AFLOW prototypes for the
free task, generated perovskites otherwise) that SMOACS uses, or ``initial_structures`` if given. The
first trial of a study is enqueued from it (perovskites: its lattice and the ideal coordinates, with
sampled elements; free task: the whole structure, clipped into the ranges).

Execution: the studies are cut by sample index into groups of ``group_size``. The studies of a group
advance in lockstep: ask every study, build every structure, one batched call per predictor, tell
every study. Groups run one after another, or ``workers`` at a time in separate processes. Each trial
gets a fresh sampler (``SplitOnceTPESampler``: Optuna's TPE, splitting the trials once per trial)
seeded from (run seed, sample index, number of COMPLETE trials so far), and predictions run on one
torch thread under deterministic kernels, so a run's output depends on its seed and ``group_size``
(which fixes the batches) but not on ``workers``.

Storage: ``storage`` is a folder holding one ``RoundJournal`` per group (``group-<g>.log``, Optuna's
``JournalStorage`` written once per round; a kill loses at most the round in progress and a resumed
run then asks exactly what an uninterrupted one would have), or an Optuna storage URL or ``*.log``
journal file (trials left RUNNING by a kill are marked FAIL on restart and ignored), or None (in
memory). Each study ends with
exactly ``trials`` COMPLETE trials.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from queue import Empty
from typing import Any

import numpy as np
import optuna
import torch
from optuna.storages import InMemoryStorage, JournalStorage
from optuna.trial import FrozenTrial, TrialState
from pymatgen.core import Structure
from tqdm.auto import tqdm

from benchmark.tasks import Task
from data.elements import SYMBOLS, K
from data.pools import get_pool
from evaluation.geometry import lattice_problem
from evaluation.neutrality import check_species
from evaluation.perovskite import role_pattern_assignment, tolerance_factor
from methods.base import Method, Proposal, deterministic
from methods.predictors import get_predictor
from methods.smoacs.method import DEFAULT_POOLS
from methods.tpe.journal import RoundJournal
from methods.tpe.sampler import SplitOnceTPESampler
from methods.tpe.selection import (
    FAILED,
    L_BG,
    L_F,
    L_NEUTRAL,
    L_T,
    objective_names,
    satisfies,
    select_trial,
    selection_key,
)
from methods.tpe.space import SearchSpace, free_initial_params, free_space, perovskite_space

TOLERANCE_RANGE = (0.8, 1.0)


@dataclass
class TPEConfig:
    """Settings of one TPE run. ``storage``: a folder for the run's journals (e.g. ``OUT/tpe_journal``)
    or an Optuna storage URL; None keeps the studies in memory (journals take ~8 kB per trial on the
    5-site task, ~170 kB on the 135-site task); a path ending in ``.log`` is one Optuna
    ``JournalFileBackend`` file for all studies (fsync per operation: slower, kept for comparison).
    ``group_size``: studies advanced in lockstep, whose
    structures go to the predictors in one call; 1 is the plain Optuna loop, one study after
    another. ``workers``: processes running groups at once. ``batch_size``: structures per predictor
    forward pass."""

    trials: int = 200
    storage: str | None = None
    group_size: int = 32
    workers: int = 1
    batch_size: int = 256
    n_startup_trials: int = 10         # Optuna's default
    multivariate: bool = False         # Optuna's default for multi-objective TPE
    split_once: bool = True            # SplitOnceTPESampler (same samples, faster); False: Optuna's TPESampler
    band_gap_model: str = "megnet-bandgap"
    formation_energy_model: str = "megnet-eform"
    device: str | None = None          # default: CUDA when available
    pool: str | None = None            # initial pool (data.pools.get_pool); None: the task's default
    progress: bool = True


def trial_seed(seed: int, sample: int, n_complete: int) -> int:
    """Stable 32-bit seed of the sampler for trial ``n_complete`` of study ``sample``."""
    digest = hashlib.blake2b(f"{seed}/{sample}/{n_complete}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little")


@dataclass
class _Member:
    """One sample: its index, where its start came from, its search space and enqueued first params."""

    index: int
    source: str
    space: SearchSpace
    initial: dict[str, Any]

    def fingerprint(self) -> str:
        """Short hash of the start (enqueued params and number of sites), stored with the study."""
        text = json.dumps([self.space.n_sites, self.initial], sort_keys=True)
        return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


@dataclass
class _Job:
    """One group of studies to run in lockstep (picklable: it may go to a worker process)."""

    group: int
    members: list[_Member]
    task: Task
    seed: int
    names: list[str]
    identity: dict[str, Any]


@dataclass
class _Study:
    """One sample's open study and its number of COMPLETE trials."""

    member: _Member
    study: optuna.Study
    n_complete: int


@dataclass
class _GroupResult:
    trials: dict[int, list[FrozenTrial]]  # sample index -> COMPLETE trials in trial order
    timings: dict[str, float] = field(default_factory=dict)


def _timings() -> dict[str, float]:
    return {"sampler_s": 0.0, "predictor_s": 0.0, "objectives_s": 0.0, "predictor_calls": 0}


_WORKER_METHODS: dict[str, TPE] = {}


def _run_group_in_worker(name: str, config: dict[str, Any], job: _Job, queue) -> _GroupResult:
    """Worker-process entry: the method (models loaded once per process) runs one group."""
    key = f"{name}/{json.dumps(config, sort_keys=True, default=str)}"
    if key not in _WORKER_METHODS:
        from methods import get_method

        _WORKER_METHODS[key] = get_method(name, **config)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with deterministic():
        return _WORKER_METHODS[key]._run_group(job, queue.put)


class TPE(Method):
    """Multi-objective TPE (Optuna) on MEGNet predictions, with the exact neutrality objective."""

    name = "tpe"
    label = "TPE(MEGNet)"
    history_unit = "trial"
    neutrality = True

    def __init__(self, initial_structures: Sequence[Structure] | None = None, **config: Any):
        self.cfg = TPEConfig(**config)
        if self.cfg.group_size < 1 or self.cfg.workers < 1:
            raise ValueError(f"group_size and workers must be >= 1, got {self.cfg.group_size}, {self.cfg.workers}")
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

    def _members(self, task: Task, n_samples: int, seed: int) -> list[_Member]:
        """One ``_Member`` per sample: start source, search space, enqueued initial params."""
        allowed = self.allowed_elements()
        starts = self._starts(task, n_samples, seed)
        if task.is_perovskite:
            space = perovskite_space(task, allowed)
            zero = {f"{q}{i}": 0.0 for i in range(space.n_sites) for q in "xyz"}
            return [_Member(i, src, space, dict(zip("abc", map(float, st.lattice.abc), strict=True)) | zero)
                    for i, (src, st) in enumerate(starts)]
        symbols = {SYMBOLS[k] for k in np.flatnonzero(allowed)}
        return [_Member(i, src, free_space(task, allowed, len(st)), free_initial_params(st, task, symbols))
                for i, (src, st) in enumerate(starts)]

    def _group_storage(self, group: int) -> tuple[Any, RoundJournal | None]:
        """(Optuna storage, journal backend to flush after each round or None) of one group."""
        where = self.cfg.storage
        if where is None:
            return InMemoryStorage(), None
        if "://" in where:
            return where, None
        if where.endswith(".log"):  # Optuna's own journal file (absolute: its symlink lock needs it)
            from optuna.storages.journal import JournalFileBackend

            Path(where).parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(Path(where).resolve()))), None
        folder = Path(where)
        if folder.is_file():
            raise ValueError(f"TPE storage {where!r} is a file; give a folder (one journal per group of studies) "
                             "or an Optuna storage URL")
        backend = RoundJournal(folder / f"group-{group:03d}.log")
        return JournalStorage(backend), backend

    def _open_study(self, storage, member: _Member, job: _Job) -> _Study:
        """Create or load study "sample-<i>", fail its stale RUNNING trials, enqueue the start if needed."""
        i = member.index
        study = optuna.create_study(storage=storage, study_name=f"sample-{i}",
                                    directions=["minimize"] * len(job.names), load_if_exists=True)
        stored = study.user_attrs.get("run")
        if stored is None:
            study.set_user_attr("run", job.identity)
            study.set_user_attr("start", member.fingerprint())
        elif stored != job.identity:
            raise ValueError(f"storage {self.cfg.storage!r} holds study sample-{i} of another run: "
                             f"{stored} != {job.identity}; use a fresh storage folder")
        elif study.user_attrs.get("start", member.fingerprint()) != member.fingerprint():
            raise ValueError(f"storage {self.cfg.storage!r} holds study sample-{i} started from another structure "
                             f"than this run's {member.source!r} (other initial structures, or a draw of another "
                             "size from a finite pool); use a fresh storage folder")
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study.tell(t.number, state=TrialState.FAIL)  # asked before a kill, never told (URL storages)
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.WAITING))
        n_complete = sum(t.state == TrialState.COMPLETE for t in trials)
        if not trials:
            study.enqueue_trial(member.initial)
        return _Study(member, study, n_complete)

    # ------------------------------------------------------------------------------ optimise
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
        members = self._members(task, n_samples, seed)
        size = self.cfg.group_size
        jobs = [_Job(g, members[k:k + size], task, seed, names, identity)
                for g, k in enumerate(range(0, len(members), size))]
        bar = tqdm(total=n_samples * self.cfg.trials, desc=f"{self.label} {task.name}", unit="trial",
                   disable=not self.cfg.progress, leave=False, smoothing=0.05)
        t0 = time.perf_counter()
        try:
            results = self._run_jobs(jobs, bar.update)
        finally:
            bar.close()
        wall = time.perf_counter() - t0
        trials = {i: ts for r in results for i, ts in r.trials.items()}
        timings = _timings()
        for r in results:
            for k in timings:
                timings[k] += r.timings[k]
        timings["wall_s"] = wall
        proposals = [self._proposal(m, trials[m.index], names) for m in members]
        self._artifacts = {"history": self._history([trials[m.index] for m in members], names),
                           "timings": {k: round(v, 3) for k, v in timings.items()}}
        return proposals

    def _run_jobs(self, jobs: list[_Job], report: Callable[[int], Any]) -> list[_GroupResult]:
        """Run every group: in this process, or in ``workers`` spawned processes."""
        workers = min(self.cfg.workers, len(jobs))
        if workers <= 1:
            return [self._run_group(job, report) for job in jobs]
        ctx = multiprocessing.get_context("spawn")  # fork + torch/OpenMP threads is unsafe
        config = asdict(self.cfg) | {"workers": 1, "progress": False, "device": self.device}
        with ctx.Manager() as manager, ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            queue = manager.Queue()
            futures = [pool.submit(_run_group_in_worker, self.name, config, job, queue) for job in jobs]
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_EXCEPTION)
                try:
                    while True:
                        report(queue.get_nowait())
                except Empty:
                    pass
                for f in done:
                    if f.exception() is not None:
                        pool.shutdown(cancel_futures=True)
                        raise f.exception()
            return [f.result() for f in futures]

    def _run_group(self, job: _Job, report: Callable[[int], Any]) -> _GroupResult:
        """Advance the studies of one group in lockstep until each has ``trials`` COMPLETE trials."""
        storage, journal = self._group_storage(job.group)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # predictions independent of how many processes share the machine
        timings = _timings()
        try:
            studies = [self._open_study(storage, m, job) for m in job.members]
            if journal is not None:
                journal.flush()
            report(sum(min(s.n_complete, self.cfg.trials) for s in studies))
            while active := [s for s in studies if s.n_complete < self.cfg.trials]:
                self._round(active, job.task, job.seed, job.names, timings)
                if journal is not None:
                    journal.flush()
                report(len(active))
            done = {s.member.index: sorted(s.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)),
                                           key=lambda t: t.number) for s in studies}
        finally:
            torch.set_num_threads(threads)
            if journal is not None:
                journal.close()
        return _GroupResult(done, timings)

    def _round(self, active: list[_Study], task: Task, seed: int, names: list[str], timings: dict) -> None:
        """One trial of every active study: ask all, predict all structures in one call per model, tell all."""
        t0 = time.perf_counter()
        asked = []
        for s in active:
            sampler = SplitOnceTPESampler if self.cfg.split_once else optuna.samplers.TPESampler
            s.study.sampler = sampler(
                seed=trial_seed(seed, s.member.index, s.n_complete), n_startup_trials=self.cfg.n_startup_trials,
                multivariate=self.cfg.multivariate)
            asked.append(s.study.ask(s.member.space.distributions))
        t1 = time.perf_counter()
        structures: list[Structure | None] = []
        for s, trial in zip(active, asked, strict=True):
            try:
                st = s.member.space.structure(trial.params)
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
            timings["predictor_calls"] += 1
        t3 = time.perf_counter()
        results = [self._objectives(st, b, e, task, s.member.space)
                   for s, st, b, e in zip(active, structures, bg, ef, strict=True)]
        t4 = time.perf_counter()
        for s, trial, (values, attrs) in zip(active, asked, results, strict=True):
            for key, val in attrs.items():
                trial.set_user_attr(key, val)
            s.study.tell(trial, [values[n] for n in names])
            s.n_complete += 1
        t5 = time.perf_counter()
        timings["sampler_s"] += (t1 - t0) + (t5 - t4)
        timings["objectives_s"] += (t2 - t1) + (t4 - t3)
        timings["predictor_s"] += t3 - t2

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
    def _proposal(self, member: _Member, trials: list[FrozenTrial], names: list[str]) -> Proposal:
        trial = select_trial(trials, names)
        values = dict(zip(names, trial.values, strict=True))
        meta = {"sample": member.index, "source": member.source, "trial": trial.number,
                "constraints_met": satisfies(values), "objectives": values, "reason": trial.user_attrs.get("failed", "")}
        try:
            structure = member.space.structure(trial.params)
        except (ValueError, ArithmeticError) as e:
            return Proposal(None, None, None, meta | {"reason": f"structure cannot be built: {e}"})
        return Proposal(structure, trial.user_attrs.get("band_gap"), trial.user_attrs.get("formation_energy"), meta)

    def _history(self, trials: list[list[FrozenTrial]], names: list[str]) -> dict[str, np.ndarray]:
        """(trials, samples) arrays of the incumbent (selection key over trials so far): its ŷ_bg (eV),
        ŷ_f (eV/atom), t, L_bg + L_f (``loss``), and the best L_bg so far (``best_l_bg``)."""
        n_rows = max(len(ts) for ts in trials)
        keys = ("band_gap", "formation_energy", "loss", "best_l_bg", "tolerance_factor")
        hist = {k: np.full((n_rows, len(trials)), np.nan) for k in keys}
        for j, done in enumerate(trials):
            best, best_bg = None, math.inf
            for r, t in enumerate(done):
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
