"""SMOACS: gradient-based optimisation of crystals through differentiable property predictors."""

from .method import SMOACS, SMOACSConfig, initial_crystals
from .state import CrystalState, InitialCrystal

__all__ = ["SMOACS", "SMOACSConfig", "CrystalState", "InitialCrystal", "initial_crystals"]
