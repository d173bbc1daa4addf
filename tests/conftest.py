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


def find_fixture(name: str, files: tuple[str, ...]) -> tuple[Path | None, str]:
    """The folder of the authors' fixture ``name`` holding ``files``: $SMOACS_FIXTURE_DIR/<name> (or the
    variable itself), else <parent of $SMOACS_DATA_DIR>/fixtures/<name>; (None, why) when not found."""
    env = os.environ.get("SMOACS_FIXTURE_DIR")
    if env:
        tried = [Path(env) / name, Path(env)]
    elif os.environ.get("SMOACS_DATA_DIR"):
        tried = [Path(os.environ["SMOACS_DATA_DIR"]).resolve().parent / "fixtures" / name]
    else:
        return None, "set SMOACS_FIXTURE_DIR or SMOACS_DATA_DIR (fixtures are at <SMOACS_DATA_DIR>/../fixtures)"
    for d in tried:
        if all((d / f).is_file() for f in files):
            return d, ""
    return None, f"{name} fixture ({', '.join(files)}) not found in {[str(d) for d in tried]}"
