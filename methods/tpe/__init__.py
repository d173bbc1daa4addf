"""TPE baseline: Optuna multi-objective TPE, one study per sample, studies batched in lockstep."""

from .config import TPEConfig
from .method import TPE, RandomSearch, TPEExactNeutrality, TPEWithoutNeutrality
from .selection import pareto_front, satisfies, select_trial, selection_key
from .space import SearchSpace, free_space, perovskite_space, role_elements
from .study import FAILED, L_BG, L_F, L_NEUTRAL, L_T, objective_names, trial_seed

__all__ = ["FAILED", "L_BG", "L_F", "L_NEUTRAL", "L_T", "RandomSearch", "SearchSpace", "TPE", "TPEConfig",
           "TPEExactNeutrality", "TPEWithoutNeutrality", "free_space", "objective_names", "pareto_front",
           "perovskite_space", "role_elements", "satisfies", "select_trial", "selection_key", "trial_seed"]
