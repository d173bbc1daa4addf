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
    """Directory of pretrained models: $SMOACS_MODEL_DIR (matgl/, cdvae-mp20/, ...); skips without MEGNet."""
    path = _env_dir("SMOACS_MODEL_DIR", "pretrained models")
    if not any((d / "MEGNet-MP-2018.6.1-Eform").is_dir() for d in (path / "matgl", path)):
        pytest.skip(f"no MEGNet models under {path}/matgl")
    return path


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Directory of data sets (perov_5/...): $SMOACS_DATA_DIR."""
    return _env_dir("SMOACS_DATA_DIR", "data sets")
