"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """Directory of pretrained matgl models: $SMOACS_MODEL_DIR, default /work/shared/models/matgl."""
    path = Path(os.environ.get("SMOACS_MODEL_DIR", "/work/shared/models/matgl"))
    if not path.is_dir():
        pytest.skip(f"pretrained matgl models not found at {path}; set SMOACS_MODEL_DIR")
    os.environ.setdefault("SMOACS_MODEL_DIR", str(path))  # the predictors look here
    return path


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Directory of data sets (perov_5/...): $SMOACS_DATA_DIR, default /work/shared/data."""
    path = Path(os.environ.get("SMOACS_DATA_DIR", "/work/shared/data"))
    if not path.is_dir():
        pytest.skip(f"data directory not found at {path}; set SMOACS_DATA_DIR")
    return path
