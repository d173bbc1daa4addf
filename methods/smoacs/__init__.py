"""SMOACS: gradient-based optimisation of crystals through differentiable property predictors."""

from .method import SMOACS, SMOACSConfig, initial_crystals
from .relaxing import RelaxingSMOACS, RelaxingSMOACSConfig
from .state import CrystalState, InitialCrystal

__all__ = ["SMOACS", "SMOACSConfig", "RelaxingSMOACS", "RelaxingSMOACSConfig", "CrystalState", "InitialCrystal", "initial_crystals"]
