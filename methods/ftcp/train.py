"""Training an FTCP model: dataset -> representations -> seeded split -> scaled arrays -> Keras fit.

The MEGNet set (``mp.2018.6.1.json``: formation_energy_per_atom, band_gap) or any CDVAE-format dataset
(perov_5: heat_ref as E_f and the band gap min(dir_gap, ind_gap), both GLLB-SC based) is represented with
``max_elms`` = 4 and ``max_sites`` = 20; a row that cannot be represented is skipped and counted with its
reason. The split is a seeded 80/10/10 permutation of the represented rows, written to ``split.json``.
Training: RMSprop (lr 1e-4, the paper's setting), batch 256, loss as released; each epoch shuffles with
``default_rng([seed, epoch])`` and restarts the latent noise stream from (seed, epoch), and ends with an
atomic checkpoint (weights and optimiser state), so a killed run resumes to the same weights. The
released code's learning-rate callbacks (ReduceLROnPlateau, a step schedule from 5e-4) are not used: the
paper trained with a fixed 1e-4.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from smoacs_bench.data.datasets import (
    SPLIT_FRACTIONS,
    Record,
    load_dataset,
    property_labels,
    records_by_id,
    split_ids,
)
from smoacs_bench.evaluation.io import check_stored_settings

from .backend import keras_module
from .model import (
    build_network,
    get_weights,
    load_weight_arrays,
    save_scalers,
    save_weights,
    set_weights,
    sha256,
)
from .representation import DEFAULT_LAYOUT, Layout, RepresentationError, RowScaler, pad, represent

PROPERTIES = ["formation_energy", "band_gap"]
labels = property_labels   # (E_f eV/atom, gap eV) of a record


@dataclass
class Represented:
    """Represented dataset rows: ids, unscaled matrices (N, 238, 63), labels (N, 2), and what was skipped."""

    ids: list[str]
    matrices: np.ndarray
    y: np.ndarray
    skipped: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)


def represent_records(records: list[Record], layout: Layout = DEFAULT_LAYOUT, progress: bool = False) -> Represented:
    from tqdm.auto import tqdm

    ids, mats, ys, skipped, problems = [], [], [], Counter(), []
    for r in tqdm(records, desc="FTCP representation", disable=not progress, unit="crystal"):
        try:
            y = labels(r)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                m = represent(r.structure, layout)
        except (RepresentationError, ValueError) as exc:
            reason = str(exc)
            skipped[re.sub(r"^\d+ ", "", reason)] += 1     # "5 elements > max_elms = 4" -> one category
            problems.append(f"{r.material_id}: {reason}")
            continue
        ids.append(r.material_id)
        mats.append(m)
        ys.append(y)
    matrices = np.stack(mats) if mats else np.zeros((0, layout.n_rows, layout.n_cols))
    return Represented(ids, matrices, np.asarray(ys, dtype=np.float64).reshape(-1, 2), skipped, problems)


make_split = split_ids   # seeded 80/10/10 split of ids


def load_split_records(folder: str | os.PathLike, split: str, data_path: str | None = None) -> list[Record]:
    """The dataset records of one split (train, val, test) of a trained model folder, in the split's order."""
    config = json.loads((Path(folder) / "config.json").read_text())
    folder_split = json.loads((Path(folder) / "split.json").read_text())[split]
    return records_by_id(config["dataset"], folder_split, config.get("limit"), data_path)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _save_checkpoint(folder: Path, vae, epoch: int, history: list[dict]) -> None:
    keras = keras_module()
    tmp = folder / "checkpoint.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_weights(vae, tmp / "weights.npz")
    opt = [np.asarray(keras.ops.convert_to_numpy(v)) for v in vae.optimizer.variables]
    np.savez(tmp / "optimizer.npz", **{f"v{i:04d}": a for i, a in enumerate(opt)})
    (tmp / "state.json").write_text(json.dumps({"epoch": epoch, "history": history}))
    final = folder / "checkpoint"
    old = folder / "checkpoint.old"
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def _load_checkpoint(folder: Path, vae) -> tuple[int, list[dict]]:
    ck = folder / "checkpoint"
    if not (ck / "state.json").is_file():
        old = folder / "checkpoint.old"     # killed between the two renames
        if (old / "state.json").is_file():
            os.replace(old, ck)
        else:
            return 0, []
    state = json.loads((ck / "state.json").read_text())
    set_weights(vae, load_weight_arrays(ck / "weights.npz"), str(ck / "weights.npz"))
    vae.optimizer.build(vae.trainable_variables)
    with np.load(ck / "optimizer.npz") as d:
        arrays = [d[k] for k in sorted(d.files)]
    if len(arrays) != len(vae.optimizer.variables):
        raise ValueError(f"{ck}: optimiser state does not match the network")
    for v, a in zip(vae.optimizer.variables, arrays, strict=True):
        v.assign(a)
    return int(state["epoch"]), list(state["history"])


def train(dataset: str, out: str | os.PathLike, epochs: int = 200, batch_size: int = 256, lr: float = 1e-4,
          seed: int = 0, limit: int | None = None, data_path: str | None = None, float16: bool = False,
          progress: bool = True, command: str | None = None, log=print) -> Path:
    """Train (or resume) an FTCP model in ``out``; returns the folder. Deterministic for a seed on the CPU."""
    from tqdm.auto import tqdm

    from smoacs_bench.methods.base import deterministic

    keras = keras_module()
    if epochs < 1 or batch_size < 1 or not lr > 0:
        raise ValueError("epochs and batch size must be >= 1 and the learning rate > 0")
    folder = Path(out)
    layout = Layout()
    records, load_problems = load_dataset(dataset, limit, data_path)
    rep = represent_records(records, layout, progress)
    if len(rep.ids) < 10:
        raise ValueError(f"dataset {dataset!r}: only {len(rep.ids)} representable rows")
    config = {
        "dataset": dataset, "limit": limit, "seed": seed, "lr": lr, "batch_size": batch_size,
        "max_elms": layout.max_elms, "max_sites": layout.max_sites,
        "n_rows": layout.n_rows + 2, "n_cols": layout.n_cols, "latent_dim": 256,
        "coeff_kl": 2.0, "coeff_prop": 10.0, "properties": PROPERTIES, "optimizer": "RMSprop",
    }
    folder.mkdir(parents=True, exist_ok=True)
    old = folder / "config.json"
    check_stored_settings(old, config)
    split_path = folder / "split.json"
    if split_path.is_file():
        split = json.loads(split_path.read_text())
        if sorted(split["train"] + split["val"] + split["test"]) != sorted(rep.ids):
            raise ValueError(f"{split_path}: the split does not match the dataset's representable rows")
    else:
        split = make_split(rep.ids, seed)
        _atomic_write_text(split_path, json.dumps(split))
    _atomic_write_text(old, json.dumps(config | {"epochs": epochs, "float16": float16}, indent=1))
    index = {i: k for k, i in enumerate(rep.ids)}
    tr = np.array([index[i] for i in split["train"]])
    va = np.array([index[i] for i in split["val"]])
    padded = pad(rep.matrices)
    scaler_x = RowScaler.fit(padded[tr])
    y_min, y_max = rep.y[tr].min(axis=0), rep.y[tr].max(axis=0)
    save_scalers(folder, scaler_x, y_min, y_max, PROPERTIES)
    x_all = scaler_x.transform(padded).astype(np.float32)
    y_all = ((rep.y - y_min) / np.where(y_max > y_min, y_max - y_min, 1.0)).astype(np.float32)
    x_tr, y_tr, x_va, y_va = x_all[tr], y_all[tr], x_all[va], y_all[va]
    del padded, x_all

    keras.utils.set_random_seed(seed)
    with deterministic():
        vae = build_network(config)
        vae.compile(optimizer=keras.optimizers.RMSprop(learning_rate=lr))
        start, history = _load_checkpoint(folder, vae)
        if start:
            log(f"resuming {folder} after epoch {start}")
        bar = tqdm(range(start, epochs), desc="FTCP training", unit="epoch", disable=not progress,
                   initial=start, total=epochs)
        for epoch in bar:
            t0 = time.perf_counter()
            perm = np.random.default_rng([seed, epoch]).permutation(len(tr))
            vae.reseed(seed, epoch)
            loss = vae.fit(x_tr[perm], y_tr[perm], batch_size=batch_size, epochs=1, shuffle=False,
                           verbose=0).history["loss"][0]
            vae.reseed(seed + 1_000_003, epoch)
            val = vae.evaluate(x_va, y_va, batch_size=batch_size, verbose=0) if len(va) else float("nan")
            history.append({"epoch": epoch + 1, "loss": float(loss), "val_loss": float(val),
                            "seconds": round(time.perf_counter() - t0, 3)})
            bar.set_postfix(loss=f"{loss:.4g}", val=f"{val:.4g}")
            _save_checkpoint(folder, vae, epoch + 1, history)
    save_weights(vae, folder / "weights.npz.tmp.npz", float16=float16)
    os.replace(folder / "weights.npz.tmp.npz", folder / "weights.npz")
    _atomic_write_text(folder / "history.json", json.dumps(history, indent=0))
    (folder / "skipped.txt").write_text("\n".join(load_problems + rep.problems) + ("\n" if rep.problems else ""))
    files = ["config.json", "weights.npz", "scaler_x.npz", "scaler_y.json", "split.json", "history.json"]
    manifest = {
        "data": {"dataset": dataset, "limit": limit, "rows_read": len(records) + len(load_problems),
                 "represented": len(rep.ids), "skipped": dict(rep.skipped), "unreadable": len(load_problems)},
        "split": {k: len(v) for k, v in split.items()} | {"seed": seed, "fractions": list(SPLIT_FRACTIONS)},
        "epochs": len(history), "float16_weights": float16,
        "command": command or " ".join(sys.argv),
        "keras_backend": keras.backend.backend(), "keras": keras.__version__,
        "sha256": {f: sha256(folder / f) for f in files},
    }
    _atomic_write_text(folder / "manifest.json", json.dumps(manifest, indent=1))
    log(f"FTCP model in {folder}: {len(split['train'])} training crystals, {len(history)} epochs, "
        f"{sum(rep.skipped.values())} rows skipped ({dict(rep.skipped)})")
    return folder


def weights_equal(a, b) -> bool:
    """Whether two networks hold identical weights."""
    return all(np.array_equal(x, y) for x, y in zip(get_weights(a), get_weights(b), strict=True))
