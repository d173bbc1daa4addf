"""Keras backend choice for FTCP: torch unless the user chose one.

Keras picks its backend at its first import and defaults to TensorFlow (a bare ``import keras`` fails
without it). :func:`keras_module` sets ``KERAS_BACKEND=torch`` first, unless ``KERAS_BACKEND`` is set or
``~/.keras/keras.json`` (``$KERAS_HOME``) names a backend that is installed. Keras writes that file itself,
naming TensorFlow, at its first import, so a file naming a backend that cannot be imported is ignored.
TensorFlow comes with the ``tensorflow`` extra.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path


def _configured_backend() -> str | None:
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    try:
        chosen = json.loads((home / "keras.json").read_text()).get("backend")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(chosen, str) or importlib.util.find_spec(chosen) is None:
        return None
    return chosen


def keras_module():
    """The ``keras`` module, imported with the torch backend unless the user chose another."""
    if "keras" not in sys.modules and _configured_backend() is None:
        os.environ["KERAS_BACKEND"] = "torch"
    import keras

    return keras
