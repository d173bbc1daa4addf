"""TPE baseline: Optuna multi-objective TPE, one study per sample, studies batched in lockstep."""

from methods.tpe.method import TPE, TPEConfig, TPEExactNeutrality, TPEWithoutNeutrality, trial_seed
from methods.tpe.selection import (
                                   EF_MAX,
                                   FAILED,
                                   L_BG,
                                   L_F,
                                   L_NEUTRAL,
                                   L_T,
                                   objective_names,
                                   pareto_front,
                                   satisfies,
                                   select_trial,
                                   selection_key,
)
from methods.tpe.space import SearchSpace, free_space, perovskite_space, role_elements

__all__ = ["EF_MAX", "FAILED", "L_BG", "L_F", "L_NEUTRAL", "L_T", "SearchSpace", "TPE", "TPEConfig",
           "TPEExactNeutrality", "TPEWithoutNeutrality", "free_space", "objective_names", "pareto_front",
           "perovskite_space", "role_elements", "satisfies", "select_trial", "selection_key", "trial_seed"]
