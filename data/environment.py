"""Where models and data live: one place for every loader.

Resolution order: the environment variables ``SMOACS_MODEL_DIR`` / ``SMOACS_DATA_DIR``, then the ``models`` /
``data`` keys of a config file (``$SMOACS_CONFIG``, default ``~/.config/smoacs-bench/config.toml``; relative
paths are relative to the file)::

    models = "/path/to/shared/models"   # holds matgl/, cdvae-mp20/, crystalformer/, alignn/
    data = "/path/to/shared/data"       # holds perov_5/, mp.2018.6.1.json, ...

Loaders that would download a missing file first ask :func:`online` (a 2-second connection test), so that a
machine without a network fails at once with one line naming the variable, the expected files and how to get
them, instead of retrying a model hub.
"""

from __future__ import annotations

import os
import socket
from functools import cache
from pathlib import Path

MODEL_DIR_ENV = "SMOACS_MODEL_DIR"
DATA_DIR_ENV = "SMOACS_DATA_DIR"
CONFIG_ENV = "SMOACS_CONFIG"
DEFAULT_CONFIG = "~/.config/smoacs-bench/config.toml"


def config_file() -> Path:
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG).expanduser()


@cache
def _config(path: str) -> dict:
    import tomllib

    p = Path(path)
    if not p.is_file():
        return {}
    try:
        return tomllib.loads(p.read_text())
    except (tomllib.TOMLDecodeError, OSError) as err:
        raise ValueError(f"{p}: not a readable TOML config ({err})") from None


def _resolve(env: str, key: str) -> Path | None:
    value = os.environ.get(env)
    if value:
        return Path(value).expanduser()
    cfg_path = config_file()
    value = _config(str(cfg_path)).get(key)
    if not value:
        return None
    p = Path(str(value)).expanduser()
    return p if p.is_absolute() else (cfg_path.parent / p).resolve()


def model_dir() -> Path | None:
    """The models folder: ``$SMOACS_MODEL_DIR``, else ``models`` in the config file, else None."""
    return _resolve(MODEL_DIR_ENV, "models")


def data_dir() -> Path | None:
    """The data folder: ``$SMOACS_DATA_DIR``, else ``data`` in the config file, else None."""
    return _resolve(DATA_DIR_ENV, "data")


def where_to_put(kind: str) -> str:
    """How to tell the package where a folder of ``kind`` ("models" or "data") is, in a phrase."""
    env = MODEL_DIR_ENV if kind == "models" else DATA_DIR_ENV
    return f"set {env} (or '{kind} = \"DIR\"' in {DEFAULT_CONFIG})"


def online(host: str = "github.com", port: int = 443, timeout: float = 2.0) -> bool:
    """Whether ``host`` answers within ``timeout`` seconds (``SMOACS_OFFLINE=1`` forces False)."""
    if os.environ.get("SMOACS_OFFLINE") == "1":
        return False
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
