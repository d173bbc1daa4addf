"""Shared pytest fixtures: where the pretrained models and datasets are (from the environment only)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def _env_dir(var: str, what: str) -> Path:
    value = os.environ.get(var)
    if not value:
        pytest.skip(f"{what}: set {var} (.ci/run points it at ../shared)")
    path = Path(value)
    if not path.is_dir():
        pytest.skip(f"{what} not found at {path} (from {var})")
    return path


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """Directory of pretrained matgl models: $SMOACS_MODEL_DIR."""
    return _env_dir("SMOACS_MODEL_DIR", "pretrained matgl models")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Directory of data sets (perov_5/...): $SMOACS_DATA_DIR."""
    return _env_dir("SMOACS_DATA_DIR", "data sets")
