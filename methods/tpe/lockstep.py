"""Running groups of TPE studies in lockstep: ask every study, predict every structure in one batched
call per model, tell every study; groups one after another or in worker processes.

Each trial draws from a generator seeded from (run seed, sample index, number of COMPLETE trials so far):
Optuna's RandomSampler for the first ``n_startup_trials``, then ``BatchTPE`` (Optuna's TPE vectorised over
the group's studies, engine "batched") or a fresh ``SplitOnceTPESampler`` (engine "optuna"). Predictions run
on one torch thread under deterministic kernels, so a run's output depends on its seed and group size
(which fixes the batches) but not on the number of worker processes.
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import time
import warnings
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from queue import Empty
from typing import Any

import numpy as np
import optuna
import torch
from optuna.trial import FrozenTrial, TrialState
from pymatgen.core import Structure

from smoacs_bench.data.task import Task
from smoacs_bench.evaluation.geometry import lattice_problem
from smoacs_bench.methods.base import deterministic
from smoacs_bench.methods.predictors import Predictor, load_pair

from .batched import BatchTPE, History, n_below, supported
from .config import TPEConfig
from .journal import RoundJournal
from .lean import TrialOps, TrialRecord, draw_params
from .sampler import FixedSampler, SplitOnceTPESampler
from .study import Member, OpenStudy, group_storage, objectives, open_study, trial_seed

PredictorPair = tuple[Predictor, Predictor]


@dataclass
class Job:
    """One group of studies to run in lockstep (picklable: it may go to a worker process)."""

    group: int
    members: list[Member]
    task: Task
    seed: int
    names: list[str]
    identity: dict[str, Any]


@dataclass
class GroupResult:
    trials: dict[int, list[FrozenTrial | TrialRecord]]  # sample index -> COMPLETE trials in trial order
    timings: dict[str, float] = field(default_factory=dict)


def new_timings() -> dict[str, float]:
    return {"sampler_s": 0.0, "predictor_s": 0.0, "objectives_s": 0.0, "predictor_calls": 0, "relax_s": 0.0,
            "relaxations": 0}


_WORKER_PREDICTORS: dict[str, PredictorPair] = {}


def _run_group_in_worker(config: dict[str, Any], job: Job, queue) -> GroupResult:
    """Worker-process entry: the predictors (loaded once per process) run one group."""
    cfg = TPEConfig(**config)
    key = json.dumps([cfg.band_gap_model, cfg.formation_energy_model, cfg.device])
    if key not in _WORKER_PREDICTORS:
        _WORKER_PREDICTORS[key] = load_pair(cfg.band_gap_model, cfg.formation_energy_model, device=cfg.device)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with deterministic():
        return run_group(cfg, _WORKER_PREDICTORS[key], job, queue.put)


def run_jobs(cfg: TPEConfig, predictors: Callable[[], PredictorPair], jobs: list[Job],
             report: Callable[[int], Any]) -> list[GroupResult]:
    """Run every group: in this process (``predictors()`` gives the pair), or in ``cfg.workers``
    spawned processes that load their own pair."""
    workers = min(cfg.workers, len(jobs))
    if workers <= 1:
        return [run_group(cfg, predictors(), job, report) for job in jobs]
    ctx = multiprocessing.get_context("spawn")  # fork + torch/OpenMP threads is unsafe
    config = asdict(cfg) | {"workers": 1, "progress": False}
    with ctx.Manager() as manager, ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        queue = manager.Queue()
        futures = [pool.submit(_run_group_in_worker, config, job, queue) for job in jobs]
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


def run_group(cfg: TPEConfig, predictors: PredictorPair, job: Job, report: Callable[[int], Any]) -> GroupResult:
    """Advance the studies of one group in lockstep until each has ``cfg.trials`` COMPLETE trials: without
    Optuna's per-trial bookkeeping where :func:`lean_applies` (the same trials), else through Optuna's ask/tell."""
    storage, journal = group_storage(cfg.storage, job.group)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # predictions independent of how many processes share the machine
    timings = new_timings()
    try:
        studies = [open_study(storage, m, len(job.names), job.identity, cfg.storage) for m in job.members]
        lean = lean_applies(cfg, studies, storage, journal)
        if not lean:
            for s in studies:   # the start first, unless a trial is done or waits (failed ones do not count)
                if not s.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.WAITING)):
                    s.study.enqueue_trial(s.member.initial)
        records = {s.member.index: sorted(s.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)),
                                          key=lambda t: t.number) for s in studies}
        if batched_engine(cfg):
            for s in studies:
                s.history = History.from_trials(records[s.member.index], len(job.names))
        if journal is not None:
            journal.flush()
        report(sum(min(s.n_complete, cfg.trials) for s in studies))
        ops = TrialOps()
        while active := [s for s in studies if s.n_complete < cfg.trials]:
            if lean:
                run_lean_round(cfg, predictors, active, job, records, ops, journal, timings)
            else:
                run_round(cfg, predictors, active, job.task, job.seed, job.names, timings)
            if journal is not None:
                journal.flush()
            report(len(active))
        if not lean:
            records = {s.member.index: sorted(s.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)),
                                              key=lambda t: t.number) for s in studies}
    finally:
        torch.set_num_threads(threads)
        if journal is not None:
            journal.close()
    return GroupResult(records, timings)


def lean_applies(cfg: TPEConfig, studies: list[OpenStudy], storage, journal: RoundJournal | None) -> bool:
    """Whether the group's trials can be drawn and recorded without Optuna's ask/tell: every draw is the start,
    a RandomSampler's or BatchTPE's (not Optuna's TPESampler), the studies live in memory or in a journal
    folder (not a URL or one Optuna journal file), and each study holds COMPLETE trials only (none failed or
    waiting, so that trial numbers are counts)."""
    draws = cfg.sampler == "random" or (batched_engine(cfg) and cfg.n_startup_trials >= 1
                                        and all(supported(s.member.space.distributions) for s in studies))
    stored = journal is not None or isinstance(storage, optuna.storages.InMemoryStorage)
    return draws and stored and all(s.n_trials == s.n_complete for s in studies)


SAMPLERS = ("tpe", "random")
ENGINES = ("batched", "optuna")
DEFAULT_GAMMA = 0.1


def batched_engine(cfg: TPEConfig) -> bool:
    return cfg.sampler == "tpe" and cfg.engine == "batched"


def make_sampler(cfg: TPEConfig, seed: int) -> optuna.samplers.BaseSampler:
    """The sampler of one trial: Optuna's multi-objective TPE (``cfg.sampler == "tpe"``) or its uniform
    RandomSampler ("random": the random-search baseline in the same harness, budget and selection rule)."""
    if cfg.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    sampler = SplitOnceTPESampler if cfg.split_once else optuna.samplers.TPESampler
    kwargs = {}
    if cfg.gamma != DEFAULT_GAMMA:
        kwargs["gamma"] = functools.partial(n_below, cfg.gamma)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # Optuna deprecates ``gamma`` (and warns that multivariate is experimental)
        return sampler(seed=seed, n_startup_trials=cfg.n_startup_trials, multivariate=cfg.multivariate, **kwargs)


def _batched_params(cfg: TPEConfig, active: list[OpenStudy], seed: int) -> dict[int, dict[str, Any]]:
    """Params of the studies that BatchTPE draws this round (past their startup trials), by position in
    ``active``; studies sharing a search space and a number of trials are drawn together."""
    if not batched_engine(cfg):
        return {}
    groups: dict[tuple[int, int], list[int]] = {}
    for k, s in enumerate(active):
        if s.n_complete >= max(1, cfg.n_startup_trials) and supported(s.member.space.distributions):
            groups.setdefault((s.n_complete, id(s.member.space)), []).append(k)
    engine = BatchTPE(gamma=cfg.gamma, multivariate=cfg.multivariate)
    out = {}
    for ks in groups.values():
        studies = [active[k] for k in ks]
        rngs = [np.random.RandomState(trial_seed(seed, s.member.index, s.n_complete)) for s in studies]
        drawn = engine.sample([s.history for s in studies], studies[0].member.space.distributions, rngs,
                              conditional=lambda i, p, studies=studies: studies[i].member.space.conditional(p))
        out |= dict(zip(ks, drawn, strict=True))
    return out


_CELLS: dict[tuple[str, ...], Structure | None] = {}   # canonical species -> relaxed ideal cell (per process)


def _axis_sites(frac: np.ndarray) -> list[tuple[int, int]] | None:
    """(site, axis) of the three sites an axis permutation of the ideal 5-site cell permutes (the X sites: one
    fractional coordinate unlike the other two, e.g. (1/2, 0, 0) on a), when the other sites are fixed by every
    axis permutation (0, 0, 0 or 1/2, 1/2, 1/2); None for any other cell."""
    out = []
    for i, c in enumerate(np.round(np.asarray(frac, dtype=float) % 1.0, 6)):
        if c[0] == c[1] == c[2]:
            continue
        odd = [j for j in range(3) if c[j] != c[(j + 1) % 3] and c[j] != c[(j + 2) % 3]]
        if len(odd) != 1:
            return None
        out.append((i, odd[0]))
    return out if len(out) == 3 and len({a for _, a in out}) == 3 else None


def _canonical(species: tuple[str, ...], frac: np.ndarray) -> tuple[tuple[str, ...], list[int] | None]:
    """(species with the permutable sites sorted, and for each axis of the original the axis of the canonical
    cell that has its length) or (species, None) where the cell has no such sites. Permuting the X sites of the
    ideal cubic cell is a permutation of its axes, so one relaxation serves every order of the same anions."""
    sites = _axis_sites(frac)
    if sites is None:
        return species, None
    axis_of = dict(sites)
    order = sorted(sites, key=lambda s: species[s[0]])   # canonical: anions sorted over the sites' own order
    canon, axes = list(species), [0, 0, 0]
    for (i, axis), (j, _) in zip(sites, order, strict=True):   # site j's anion sits on site i in the canonical
        canon[i] = species[j]
        axes[axis_of[j]] = axis
    return tuple(canon), axes


def relaxed_cells(structures: list[Structure | None], timings: dict) -> list[Structure | None]:
    """Each ideal cell relaxed by CHGNet, cell only (:func:`~smoacs_bench.evaluation.relax.relax_cell`), from a cubic
    lattice guessed from atomic radii, once per composition for the whole process (the anions' order over the X
    sites is a permutation of the axes: one relaxation, its lengths permuted); None where the relaxation failed."""
    from pymatgen.core import Lattice

    from smoacs_bench.data.mp_reference import ideal_cubic_guess
    from smoacs_bench.evaluation.relax import relax_cell

    keys = [None if st is None else _canonical(tuple(site.specie.symbol for site in st), st.frac_coords)
            for st in structures]
    todo = {}
    for k, st in zip(keys, structures, strict=True):
        if k is not None and k[0] not in _CELLS and k[0] not in todo:
            todo[k[0]] = Structure(Lattice.cubic(ideal_cubic_guess(list(k[0]))), list(k[0]), st.frac_coords)
    if todo:
        t0 = time.perf_counter()
        for k, o in zip(todo, relax_cell(list(todo.values())), strict=True):
            _CELLS[k] = o.final
        timings["relax_s"] += time.perf_counter() - t0
        timings["relaxations"] += len(todo)
    out: list[Structure | None] = []
    for k, st in zip(keys, structures, strict=True):
        cell = None if k is None else _CELLS[k[0]]
        if cell is None or k[1] is None:
            out.append(cell)
        else:
            abc = cell.lattice.abc
            out.append(Structure(Lattice.orthorhombic(*(abc[a] for a in k[1])), st.species, st.frac_coords))
    return out


def score(cfg: TPEConfig, predictors: PredictorPair, spaces: list, params: list[dict[str, Any]], task: Task,
          timings: dict) -> list[tuple[dict[str, float], dict[str, Any]]]:
    """(objective values by name, user attributes) of one round's trials: each trial's structure built from its
    params in its search space (``spaces``), every structure predicted in one call per model."""
    t1 = time.perf_counter()
    structures: list[Structure | None] = []
    for space, p in zip(spaces, params, strict=True):
        try:
            st = space.structure(p)
            structures.append(None if lattice_problem(st) else st)
        except (ValueError, ArithmeticError):
            structures.append(None)
    if cfg.relax_cells:   # the trial's crystal is its relaxed ideal cell (one relaxation per composition)
        structures = relaxed_cells(structures, timings)
    ok = [k for k, st in enumerate(structures) if st is not None]
    bg = np.full(len(params), np.nan)
    ef = np.full(len(params), np.nan)
    t2 = time.perf_counter()
    if ok:
        bg_model, ef_model = predictors
        batch = [structures[k] for k in ok]
        bg[ok] = bg_model.predict_structures(batch, batch_size=cfg.batch_size)
        ef[ok] = ef_model.predict_structures(batch, batch_size=cfg.batch_size)
        timings["predictor_calls"] += 1
    t3 = time.perf_counter()
    results = [objectives(st, b, e, task) for st, b, e in zip(structures, bg, ef, strict=True)]
    if cfg.relax_cells:   # the relaxed lattice, so that the proposal is the cell that was scored
        for st, (_, attrs) in zip(structures, results, strict=True):
            if st is not None:
                attrs["relaxed_abc"] = [float(x) for x in st.lattice.abc]
    timings["objectives_s"] += (t2 - t1) + (time.perf_counter() - t3)
    timings["predictor_s"] += t3 - t2
    return results


def run_round(cfg: TPEConfig, predictors: PredictorPair, active: list[OpenStudy], task: Task, seed: int,
              names: list[str], timings: dict) -> None:
    """One trial of every active study through Optuna: ask all, predict all structures in one call per model,
    tell all."""
    t0 = time.perf_counter()
    asked = []
    batched = _batched_params(cfg, active, seed)
    for k, s in enumerate(active):
        if k in batched:
            s.study.sampler = FixedSampler(batched[k])
        else:
            s.study.sampler = make_sampler(cfg, trial_seed(seed, s.member.index, s.n_complete))
        trial = s.study.ask(s.member.space.distributions)
        for name, dist in s.member.space.conditional(trial.params).items():   # SMOACS's space: the elements
            trial.suggest_categorical(name, dist.choices)
        asked.append(trial)
    params = [t.params for t in asked]      # each access deep-copies
    timings["sampler_s"] += time.perf_counter() - t0
    results = score(cfg, predictors, [s.member.space for s in active], params, task, timings)
    t4 = time.perf_counter()
    for s, trial, p, (values, attrs) in zip(active, asked, params, results, strict=True):
        for key, val in attrs.items():
            trial.set_user_attr(key, val)
        told = [values[n] for n in names]
        s.study.tell(trial, told)
        s.n_complete += 1
        if s.history is not None:
            dists = s.member.space.distributions | s.member.space.conditional(p)
            s.history.add({k: d.to_internal_repr(p[k]) for k, d in dists.items()}, told)
    timings["sampler_s"] += time.perf_counter() - t4


def run_lean_round(cfg: TPEConfig, predictors: PredictorPair, active: list[OpenStudy], job: Job,
                   records: dict[int, list], ops: TrialOps, journal: RoundJournal | None, timings: dict) -> None:
    """One trial of every active study, the same params as :func:`run_round` draws (the start first, then
    RandomSampler's startup draws seeded by :func:`~.study.trial_seed`, then BatchTPE's), each finished trial
    recorded once (:mod:`.lean`)."""
    t0 = time.perf_counter()
    batched = _batched_params(cfg, active, job.seed)
    params = []
    for k, s in enumerate(active):
        if k in batched:
            params.append(batched[k])
        else:
            seed = trial_seed(job.seed, s.member.index, s.n_complete)
            params.append(draw_params(s.member.space, seed, s.member.initial if s.n_complete == 0 else None))
    timings["sampler_s"] += time.perf_counter() - t0
    results = score(cfg, predictors, [s.member.space for s in active], params, job.task, timings)
    t4 = time.perf_counter()
    logs = []
    for s, p, (values, attrs) in zip(active, params, results, strict=True):
        dists = s.member.space.distributions | s.member.space.conditional(p)
        internal = {k: d.to_internal_repr(p[k]) for k, d in dists.items()}
        told = [float(values[n]) for n in job.names]
        first = s.n_complete == 0
        records[s.member.index].append(TrialRecord(
            s.n_complete, {k: d.to_external_repr(internal[k]) for k, d in dists.items()}, told, attrs,
            distributions=dists))
        if journal is not None:
            logs.append(ops.create(s.study._study_id, internal, dists, told, attrs,
                                   {"fixed_params": s.member.initial} if first else None))
        if s.history is not None:
            s.history.add(internal, told)
        s.n_complete += 1
    if logs:
        journal.append_logs(logs)
    timings["sampler_s"] += time.perf_counter() - t4
