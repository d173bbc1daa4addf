"""Settings of one TPE run."""

from __future__ import annotations

from dataclasses import dataclass

from smoacs_bench.methods.predictors import DEFAULT_PAIR


@dataclass
class TPEConfig:
    """Settings of one TPE run. ``storage``: a folder for the run's journals (e.g. ``OUT/tpe_journal``)
    or an Optuna storage URL; None keeps the studies in memory (journals, gzip-compressed per round, take
    ~0.5 kB per trial on the free task, ~20x less than the text they hold); a path ending in ``.log`` is one Optuna
    ``JournalFileBackend`` file for all studies (fsync per operation: slower, kept for comparison).
    ``group_size``: studies advanced in lockstep, whose
    structures go to the predictors in one call; 1 is the plain Optuna loop, one study after
    another. ``workers``: processes running groups at once. ``batch_size``: structures per predictor
    forward pass. ``engine``: how TPE draws once a study has ``n_startup_trials`` trials: "batched"
    (:class:`.batched.BatchTPE`, Optuna's algorithm vectorised over the group's studies, same distribution;
    a 256-study run 3.6x faster) or "optuna" (Optuna's ``TPESampler`` per trial); the random sampler is always Optuna's."""

    trials: int = 200                        # trials per study (the budget)
    sampler: str = "tpe"               # "tpe" (Optuna's multi-objective TPE) or "random" (RandomSampler)
    space: str = "paper"               # "paper": one element per site; "smoacs": a pattern, then its elements
    storage: str | None = None
    group_size: int = 32                      # studies advanced in lockstep (one predictor call per round); changes results
    workers: int = 1
    batch_size: int = 256
    n_startup_trials: int = 10         # Optuna's default
    multivariate: bool = False         # Optuna's default for multi-objective TPE
    gamma: float = 0.1                 # fraction of trials in "below": ceil(gamma n), Optuna's multi-objective default
    engine: str = "batched"            # "batched": BatchTPE across a group's studies; "optuna": TPESampler per trial
    split_once: bool = True            # engine "optuna": SplitOnceTPESampler (same samples, faster) or TPESampler
    band_gap_model: str = DEFAULT_PAIR[0]
    formation_energy_model: str = DEFAULT_PAIR[1]
    predictors: str | None = None      # family shortcut (megnet, crystalformer, alignn): sets both models
    device: str | None = None          # default: CUDA when available
    pool: str | None = None            # initial pool (data.pools.get_pool); None: the task's default
    selection: str = "final"           # "final": the Pareto rule; "best": the trial meeting most criteria
    relax_cells: bool = False          # 5-site perovskites: each trial's ideal cell relaxed (CHGNet, cell only) first
    progress: bool = True
