"""A trained FTCP model folder: network weights, the scalers fitted on its training split, and its manifest.

Folder layout (written by :func:`~.train.train`)::

    config.json       architecture, representation layout, property names, training settings
    weights.npz       the network's weights in ``model.weights`` order (float32, or float16 with --float16)
    scaler_x.npz      per-row min/max of the training matrices (240 rows)
    scaler_y.json     min/max of each property on the training split
    split.json        material ids of the train/val/test split (seeded 80/10/10)
    manifest.json     data, split, epochs, command, sha256 of every file
    history.json      loss, validation loss and seconds per epoch
    checkpoint/       the last epoch's weights and optimiser state (for resuming; not needed to sample)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from smoacs_bench.evaluation.io import file_sha256

from .backend import keras_module
from .representation import Layout, RowScaler

TRAIN_HINT = "smoacs-bench train ftcp --dataset perov_5 --epochs 200 --out DIR"
MODEL_ENV = "SMOACS_FTCP_MODEL"
COMMITTED = "ftcp-perov_5"


def default_model_folder() -> Path | None:
    """``$SMOACS_FTCP_MODEL``, else the repository's committed ``models/ftcp-perov_5`` (a source checkout or
    editable install), else None."""
    if os.environ.get(MODEL_ENV):
        return Path(os.environ[MODEL_ENV])
    repo = Path(__file__).resolve().parents[2] / "models" / COMMITTED
    return repo if (repo / "config.json").is_file() else None


class ModelNotFoundError(FileNotFoundError):
    """The model folder is missing or incomplete."""


sha256 = file_sha256   # hex SHA-256 of a file


def build_network(config: dict):
    from .network import FTCPVAE

    vae = FTCPVAE(n_rows=config["n_rows"], n_cols=config["n_cols"], n_props=len(config["properties"]),
                  latent_dim=config["latent_dim"], coeff_kl=config["coeff_kl"], coeff_prop=config["coeff_prop"],
                  seed=config["seed"])
    vae(np.zeros((1, config["n_rows"], config["n_cols"]), dtype="float32"))   # build the variables
    return vae


def get_weights(vae) -> list[np.ndarray]:
    keras = keras_module()
    return [np.asarray(keras.ops.convert_to_numpy(w)) for w in vae.weights]


def set_weights(vae, arrays: list[np.ndarray], where: str) -> None:
    weights = vae.weights
    if len(arrays) != len(weights):
        raise ValueError(f"{where}: {len(arrays)} arrays for {len(weights)} weights (another architecture?)")
    for w, a in zip(weights, arrays, strict=True):
        if tuple(w.shape) != a.shape:
            raise ValueError(f"{where}: weight {w.path} has shape {tuple(w.shape)}, file has {a.shape}")
        w.assign(a.astype(w.dtype) if hasattr(a, "astype") else a)


def save_weights(vae, path: Path, float16: bool = False) -> None:
    arrays = get_weights(vae)
    out = {}
    for i, a in enumerate(arrays):
        if float16 and a.dtype == np.float32:
            a = a.astype(np.float16)
        out[f"w{i:04d}"] = a
    np.savez(path, **out)


def load_weight_arrays(path: Path) -> list[np.ndarray]:
    with np.load(path) as d:
        keys = sorted(d.files)
        return [d[k].astype(np.float32) if d[k].dtype == np.float16 else d[k] for k in keys]


@dataclass
class FTCPModel:
    """A loaded model: the network plus what is needed to represent, scale and decode crystals."""

    folder: Path
    config: dict
    vae: object
    scaler_x: RowScaler
    y_min: np.ndarray
    y_max: np.ndarray

    @property
    def layout(self) -> Layout:
        return Layout(self.config["max_elms"], self.config["max_sites"])

    @property
    def properties(self) -> list[str]:
        return list(self.config["properties"])

    @property
    def trained_on(self) -> str:
        return self.config["dataset"]

    def scale_y(self, y: np.ndarray) -> np.ndarray:
        return (y - self.y_min) / np.where(self.y_max > self.y_min, self.y_max - self.y_min, 1.0)

    def unscale_y(self, y: np.ndarray) -> np.ndarray:
        return y * np.where(self.y_max > self.y_min, self.y_max - self.y_min, 1.0) + self.y_min

    def _numpy(self, t) -> np.ndarray:
        return np.asarray(keras_module().ops.convert_to_numpy(t), dtype=np.float64)

    def encode(self, scaled: np.ndarray, batch: int = 256) -> np.ndarray:
        """z_mean (N, latent) of scaled (N, R, C) matrices."""
        return np.concatenate([self._numpy(self.vae.encode(scaled[i:i + batch].astype(np.float32)))
                               for i in range(0, len(scaled), batch)]) if len(scaled) else np.zeros((0, 0))

    def encode_stats(self, scaled: np.ndarray, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """(z_mean, z_log_var), each (N, latent), of scaled (N, R, C) matrices."""
        means, log_vars = [], []
        for i in range(0, len(scaled), batch):
            m, lv = self.vae.encoder(scaled[i:i + batch].astype(np.float32), training=False)
            means.append(self._numpy(m))
            log_vars.append(self._numpy(lv))
        return np.concatenate(means), np.concatenate(log_vars)

    def decode(self, z: np.ndarray, batch: int = 256) -> np.ndarray:
        """Unscaled (N, R, C) matrices of latent points."""
        out = [self._numpy(self.vae.decode(z[i:i + batch].astype(np.float32))) for i in range(0, len(z), batch)]
        return self.scaler_x.inverse(np.concatenate(out))

    def predict_from_latent(self, z: np.ndarray) -> np.ndarray:
        """Property branch on latent points, in the properties' units (N, n_props)."""
        y = self._numpy(self.vae.regression(z.astype(np.float32), training=False))
        return self.unscale_y(y)


def save_scalers(folder: Path, scaler_x: RowScaler, y_min: np.ndarray, y_max: np.ndarray, names: list[str]) -> None:
    scaler_x.save(folder / "scaler_x.npz")
    (folder / "scaler_y.json").write_text(json.dumps(
        {"properties": names, "min": [float(v) for v in y_min], "max": [float(v) for v in y_max]}, indent=1))


def load_model(folder: str | os.PathLike) -> FTCPModel:
    """Load a model folder; ModelNotFoundError naming the train command when it is missing or incomplete."""
    folder = Path(folder)
    needed = ("config.json", "weights.npz", "scaler_x.npz", "scaler_y.json")
    if not folder.is_dir():
        raise ModelNotFoundError(f"FTCP model folder {folder} not found; train one with `{TRAIN_HINT}` "
                                 f"or use the repository's models/{COMMITTED}")
    missing = [f for f in needed if not (folder / f).is_file()]
    if missing:
        raise ModelNotFoundError(f"FTCP model folder {folder} lacks {', '.join(missing)} (training not finished?); "
                                 f"run `{TRAIN_HINT}` (it resumes)")
    config = json.loads((folder / "config.json").read_text())
    vae = build_network(config)
    set_weights(vae, load_weight_arrays(folder / "weights.npz"), str(folder / "weights.npz"))
    sy = json.loads((folder / "scaler_y.json").read_text())
    return FTCPModel(folder, config, vae, RowScaler.load(folder / "scaler_x.npz"),
                     np.asarray(sy["min"], dtype=np.float64), np.asarray(sy["max"], dtype=np.float64))
