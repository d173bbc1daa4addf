"""FTCP: the Fourier-transformed crystal properties VAE (Ren et al., Matter 2022), in Keras 3.

:mod:`.representation` (the crystal matrix, as released), :mod:`.network` (the VAE), :mod:`.model` (a
trained model folder), :mod:`.train` (dataset -> model), :mod:`.method` (sampling as in the paper).
Importing this package does not import Keras; :mod:`.backend` picks torch unless the user chose a backend.
"""

from .method import FTCP, FTCPConfig

__all__ = ["FTCP", "FTCPConfig"]
