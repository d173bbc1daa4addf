"""Training Crystalformer and ALIGNN on a dataset, writing the official checkpoint formats.

``smoacs-bench train crystalformer|alignn --dataset DATA --target e_form|bandgap --out DIR`` reads any
CDVAE-format (``train/val/test.csv``) or MEGNet-format (``mp.2018.6.1.json``) dataset, labels each row
with its formation energy (eV/atom) or band gap (eV) (:func:`~smoacs_bench.data.datasets.property_labels`),
skips rows it cannot use (counted with their reasons in ``skipped.txt``), splits the rest 80/10/10 with
the seed (or reuses a ``split.json`` given with ``--split``, e.g. an FTCP model's, so Table 1 rows share
their test crystals) and trains with the official recipe of each model:

- Crystalformer (``params/latticeformer/default.json``): T-Fixup initialisation, AdamW (lr 5e-4, betas
  0.9/0.98, weight decay 1e-5), inverse-square-root decay after 4000 steps, gradient-norm clipping at 1,
  batch 128, L1 loss on standardised targets, 500 epochs, stochastic weight averaging over the last
  ``min(50, epochs // 10)`` epochs (the release averages the last 50 of 500). The checkpoint is a
  Lightning-style ``<data>-<target>-layer4.ckpt`` whose ``state_dict`` holds ``model.*``,
  ``swa_model.module.*``, ``target_mean`` and ``target_std``: what :func:`load_crystalformer` reads.
- ALIGNN (2021 ``train_props``): AdamW (lr 1e-3, weight decay 1e-5), one-cycle schedule, batch 64, MSE,
  300 epochs, no target scaling. The result is a figshare-style ``<data>_<target>_alignn.zip`` holding
  ``config.json`` and ``best_model.pt`` (``{"model": state_dict}``, lowest validation MAE): what
  :func:`load_alignn` reads.

Every epoch ends with an atomic checkpoint (weights, optimiser, schedule, averaged weights, history); a
killed run resumes from it to the same weights, because batches are shuffled with
``default_rng([seed, epoch])`` and nothing else draws random numbers after initialisation.
"""

from __future__ import annotations

import io
import json
import math
import os
import sys
import time
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from smoacs_bench.data.datasets import Record, load_dataset, property_labels, records_by_id, split_ids
from smoacs_bench.evaluation.io import atomic_write_text, check_stored_settings, file_sha256
from smoacs_bench.evaluation.plots import plot_training_curve

from .base import Predictor, deterministic
from .crystals import NUM_ELEMENTS, SoftCrystals

__all__ = [
    "RECIPES",
    "TARGETS",
    "TrainedPredictor",
    "heldout_predictor",
    "heldout_predictor_markdown",
    "load_trained",
    "train_predictor",
    "trained_folders",
]

TARGETS: dict[str, tuple[int, str]] = {"e_form": (0, "eV/atom"), "bandgap": (1, "eV")}  # index in property_labels


@dataclass(frozen=True)
class Recipe:
    """A model's official training settings (``epochs``, ``batch_size`` and ``lr`` can be overridden)."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    betas: tuple[float, float]
    loss: str                 # "l1" or "mse"
    clip_norm: float | None
    schedule: str             # "inverse_sqrt" (Crystalformer) or "onecycle" (ALIGNN)
    standardise: bool         # train on (y - mean) / std, stored as target_mean / target_std


RECIPES: dict[str, Recipe] = {
    "crystalformer": Recipe(500, 128, 5e-4, 1e-5, (0.9, 0.98), "l1", 1.0, "inverse_sqrt", True),
    "alignn": Recipe(300, 64, 1e-3, 1e-5, (0.9, 0.999), "mse", None, "onecycle", False),
}
INVERSE_SQRT_STEPS = 4000   # Crystalformer ``sch_params``: lr * sqrt(4000 / step) after step 4000


# --------------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------------


@dataclass
class Labelled:
    """Usable rows: ids, structures' arrays (lattice Å, frac, Z) and one label each; what was skipped."""

    ids: list[str]
    lattice: list[np.ndarray]
    frac: list[np.ndarray]
    numbers: list[np.ndarray]
    y: np.ndarray
    skipped: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def crystals(self, rows: np.ndarray, dtype=torch.float32, device=None) -> SoftCrystals:
        """One-hot :class:`SoftCrystals` of ``rows`` (indices into ``ids``)."""
        z = np.concatenate([self.numbers[i] for i in rows])
        probs = torch.zeros(len(z), NUM_ELEMENTS, dtype=dtype)
        probs[torch.arange(len(z)), torch.as_tensor(z - 1)] = 1.0
        batch = np.concatenate([np.full(len(self.numbers[i]), k) for k, i in enumerate(rows)])
        return SoftCrystals(
            torch.as_tensor(np.stack([self.lattice[i] for i in rows]), dtype=dtype),
            torch.as_tensor(np.concatenate([self.frac[i] for i in rows]), dtype=dtype),
            probs, torch.as_tensor(batch, dtype=torch.long)).to(device)


def label_records(records: list[Record], target: str, supported: np.ndarray | None = None) -> Labelled:
    """The rows of ``records`` with a finite ``target`` label and only ``supported`` elements (Z - 1 index)."""
    col = TARGETS[target][0]
    out = Labelled([], [], [], [], np.zeros(0))
    ys = []
    for r in records:
        try:
            y = property_labels(r)[col]
            s = r.structure
            if not s.is_ordered:
                raise ValueError("partial occupancy")
            z = np.array([site.specie.Z for site in s], dtype=np.int64)
            if supported is not None and not supported[z - 1].all():
                bad = sorted({str(site.specie) for site in s if not supported[site.specie.Z - 1]})
                raise ValueError(f"element without model features: {', '.join(bad)}")
        except ValueError as exc:
            out.skipped[str(exc).split(":")[0]] += 1
            out.problems.append(f"{r.material_id}: {exc}")
            continue
        out.ids.append(r.material_id)
        out.lattice.append(np.asarray(s.lattice.matrix, dtype=np.float64))
        out.frac.append(np.asarray(s.frac_coords, dtype=np.float64))
        out.numbers.append(z)
        ys.append(y)
    out.y = np.asarray(ys, dtype=np.float64)
    return out


# --------------------------------------------------------------------------------------------------
# the two model families: build, export, load
# --------------------------------------------------------------------------------------------------


def _build(family: str, seed: int) -> Predictor:
    torch.manual_seed(seed)
    if family == "crystalformer":
        from .crystalformer import CrystalformerPredictor, tfixup_init_

        return tfixup_init_(CrystalformerPredictor())
    from .alignn import ALIGNNPredictor

    return ALIGNNPredictor()


def _tag(dataset: str) -> str:
    """A file-name tag of a dataset name or path: ``perov_5``, ``mp.2018.6.1`` -> ``megnet``."""
    name = Path(dataset).name
    name = Path(name).stem if name.endswith((".json", ".csv")) else name
    return "megnet" if name in ("megnet", "mp.2018.6.1") else name


def official_file(family: str, dataset: str, target: str) -> str:
    """Name of the exported checkpoint: ``<data>-<target>-layer4.ckpt`` or ``<data>_<target>_alignn.zip``."""
    return f"{_tag(dataset)}-{target}-layer4.ckpt" if family == "crystalformer" else \
        f"{_tag(dataset)}_{target}_alignn.zip"


def _export(family: str, path: Path, model: nn.Module, swa: nn.Module | None, best: dict | None,
            mean: float, std: float, settings: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    if family == "crystalformer":
        sd = {f"model.{k}": v for k, v in model.state_dict().items()}
        avg = swa.module if swa is not None else model
        sd |= {f"swa_model.module.{k}": v for k, v in avg.state_dict().items()}
        sd["swa_model.n_averaged"] = swa.n_averaged.clone() if swa is not None else torch.tensor(0)
        sd["target_mean"] = torch.tensor([mean], dtype=torch.float32)
        sd["target_std"] = torch.tensor([std], dtype=torch.float32)
        params = {"targets": settings["target"], "num_layers": 4, "model_dim": 128, "head_num": 8, "ff_dim": 512,
                  "lattice_range": 2, "domain": "real", "normalize_targets": "scale_bias",
                  "lr": settings["lr"], "batch_size": settings["batch_size"], "n_epochs": settings["epochs"],
                  "swa_epochs": settings["swa_epochs"], "seed": settings["seed"]}
        torch.save({"state_dict": sd, "epoch": settings["epochs"], "hyper_parameters": params}, tmp)
    else:
        folder = path.name.removesuffix(".zip")
        config = {"atom_features": "cgcnn", "neighbor_strategy": "k-nearest", "cutoff": 8.0, "max_neighbors": 12,
                  "use_canonize": True, "target": settings["target"], "dataset": settings["dataset"],
                  "epochs": settings["epochs"], "batch_size": settings["batch_size"],
                  "learning_rate": settings["lr"], "weight_decay": RECIPES["alignn"].weight_decay,
                  "criterion": "mse", "scheduler": "onecycle", "random_seed": settings["seed"],
                  "model": {"name": "alignn", "alignn_layers": 4, "gcn_layers": 4, "atom_input_features": 92,
                            "edge_input_features": 80, "triplet_input_features": 40, "embedding_features": 64,
                            "hidden_features": 256, "output_features": 1, "link": "identity"}}
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
            zf.writestr(f"{folder}/config.json", json.dumps(config, indent=2))
            for name, state in (("best_model.pt", best or model.state_dict()),
                                (f"checkpoint_{settings['epochs']}.pt", model.state_dict())):
                buf = io.BytesIO()
                torch.save({"model": state}, buf)
                zf.writestr(f"{folder}/{name}", buf.getvalue())
    os.replace(tmp, path)


def load_trained(folder: str | os.PathLike, device=None) -> Predictor:
    """The exported model of a training folder, loaded as a frozen predictor by the official loader."""
    folder = Path(folder)
    settings = _read_settings(folder)
    path = folder / settings["file"]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not exported yet (training unfinished? run the same train command again)")
    if settings["family"] == "crystalformer":
        from .crystalformer import load_crystalformer

        model = load_crystalformer(path, device=device)
    else:
        from .alignn import load_alignn

        model = load_alignn(path, device=device)
    model.unit = TARGETS[settings["target"]][1]
    model.name = f"{settings['family']}-{settings['target']}({_tag(settings['dataset'])})"
    return model


def _read_settings(folder: Path) -> dict:
    f = folder / "trainer.json"
    if not f.is_file():
        raise FileNotFoundError(f"{folder}: no trainer.json (not a folder written by `smoacs-bench train "
                                "crystalformer|alignn`)")
    return json.loads(f.read_text())


# --------------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------------


@dataclass
class TrainedPredictor:
    folder: Path
    file: Path
    epochs: int
    n_train: int
    val_mae: float


def _atomic_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1))


def _schedule(recipe: Recipe, optimizer, total_steps: int):
    if recipe.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=optimizer.param_groups[0]["lr"],
                                                   total_steps=max(total_steps, 2))
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, math.sqrt(INVERSE_SQRT_STEPS / max(step, 1))))


def _predict(model: Predictor, data: Labelled, rows: np.ndarray, batch_size: int) -> np.ndarray:
    was = model.training
    model.eval()
    out = []
    with torch.no_grad():
        for k in range(0, len(rows), batch_size):
            out.append(model(data.crystals(rows[k:k + batch_size], device=model.device)).double().cpu().numpy())
    model.train(was)
    return np.concatenate(out) if out else np.zeros(0)


def train_predictor(
    family: str,
    dataset: str,
    target: str,
    out: str | os.PathLike,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    limit: int | None = None,
    split: str | os.PathLike | None = None,
    data_path: str | None = None,
    device: str | None = None,
    progress: bool = True,
    command: str | None = None,
    log: Callable[[str], None] = print,
    stop_after: int | None = None,
) -> TrainedPredictor | None:
    """Train (or resume) ``family`` ("crystalformer", "alignn") on ``target`` ("e_form", "bandgap") in ``out``.

    ``epochs``, ``batch_size``, ``lr`` default to the official recipe (:data:`RECIPES`). ``split``: a
    ``split.json`` ({"train", "val", "test": [ids]}) to reuse instead of the seeded 80/10/10 split.
    ``stop_after``: return None after that epoch, checkpoint written, as a killed run would (for jobs with
    a time limit; the same call later resumes). ValueError / FileNotFoundError (one line) for bad settings,
    data, or a folder trained with other settings.
    """
    from tqdm.auto import tqdm


    if family not in RECIPES:
        raise ValueError(f"unknown model {family!r}; trainable predictors: {', '.join(RECIPES)}")
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose from {', '.join(TARGETS)}")
    recipe = RECIPES[family]
    epochs = recipe.epochs if epochs is None else int(epochs)
    batch_size = recipe.batch_size if batch_size is None else int(batch_size)
    lr = recipe.lr if lr is None else float(lr)
    if epochs < 1 or batch_size < 1 or not lr > 0:
        raise ValueError("epochs and batch size must be >= 1 and the learning rate > 0")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    folder = Path(out)

    records, load_problems = load_dataset(dataset, limit, data_path)
    supported = None
    if family == "alignn":
        from .alignn import load_cgcnn_table

        supported = load_cgcnn_table()[1].numpy()
    data = label_records(records, target, supported)
    if len(data.ids) < 3:
        raise ValueError(f"dataset {dataset!r}: only {len(data.ids)} usable rows for target {target!r}")
    if split is not None:
        parts = json.loads(Path(split).read_text())
        known = set(data.ids)
        parts = {k: [i for i in parts[k] if i in known] for k in ("train", "val", "test")}
        if not parts["train"]:
            raise ValueError(f"{split}: no training id of this split is a usable row of {dataset!r}")
    else:
        parts = split_ids(data.ids, seed)
    swa_epochs = min(50, epochs // 10) if family == "crystalformer" else 0
    settings = {"family": family, "target": target, "unit": TARGETS[target][1], "dataset": str(dataset),
                "limit": limit, "seed": seed, "epochs": epochs, "batch_size": batch_size, "lr": lr,
                "swa_epochs": swa_epochs, "recipe": asdict(recipe), "split_from": str(split) if split else None,
                "file": official_file(family, dataset, target)}
    settings = json.loads(json.dumps(settings))      # as stored (tuples become lists)
    folder.mkdir(parents=True, exist_ok=True)
    old = folder / "trainer.json"
    check_stored_settings(old, settings)
    split_path = folder / "split.json"
    if split_path.is_file():
        if json.loads(split_path.read_text()) != parts:
            raise ValueError(f"{split_path}: the stored split does not match the dataset's usable rows")
    else:
        _atomic_json(split_path, parts)
    _atomic_json(old, settings)

    index = {i: k for k, i in enumerate(data.ids)}
    tr = np.array([index[i] for i in parts["train"]], dtype=np.int64)
    va = np.array([index[i] for i in parts["val"]], dtype=np.int64)
    mean = float(data.y[tr].mean()) if recipe.standardise else 0.0
    std = float(data.y[tr].std()) if recipe.standardise and len(tr) > 1 else 1.0
    std = std if std > 0 else 1.0
    y_scaled = torch.as_tensor((data.y - mean) / std, dtype=torch.float32)

    steps_per_epoch = math.ceil(len(tr) / batch_size)
    with deterministic():
        model = _build(family, seed).to(dev).train().requires_grad_(True)
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=recipe.betas, weight_decay=recipe.weight_decay)
        scheduler = _schedule(recipe, optimizer, epochs * steps_per_epoch)
        swa = torch.optim.swa_utils.AveragedModel(model) if swa_epochs else None
        loss_fn = nn.L1Loss() if recipe.loss == "l1" else nn.MSELoss()
        state_file = folder / "checkpoint.pt"
        start, history, best, best_mae = 0, [], None, math.inf
        if state_file.is_file():
            state = torch.load(state_file, map_location=dev, weights_only=True)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            if swa is not None and state.get("swa") is not None:
                swa.load_state_dict(state["swa"])
            start, history = int(state["epoch"]), json.loads(state["history"])
            best, best_mae = state.get("best"), float(state.get("best_mae", math.inf))
            log(f"resuming {folder} after epoch {start}")
        bar = tqdm(range(start, epochs), desc=f"{family} {target} training", unit="epoch", disable=not progress,
                   initial=start, total=epochs)
        for epoch in bar:
            t0 = time.perf_counter()
            perm = tr[np.random.default_rng([seed, epoch]).permutation(len(tr))]
            total, count = 0.0, 0
            for k in range(0, len(perm), batch_size):
                rows = perm[k:k + batch_size]
                pred = model(data.crystals(rows, device=dev))
                loss = loss_fn(pred, y_scaled[rows].to(dev))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if recipe.clip_norm:
                    nn.utils.clip_grad_norm_(model.parameters(), recipe.clip_norm)
                optimizer.step()
                scheduler.step()
                total += float(loss.detach()) * len(rows)
                count += len(rows)
            if swa is not None and epoch >= epochs - swa_epochs:
                swa.update_parameters(model)
                with torch.no_grad():   # buffers (gauss_scale, set on the first batch) are not averaged: copy
                    for avg, cur in zip(swa.module.buffers(), model.buffers(), strict=True):
                        avg.copy_(cur)
            val_mae = float(np.mean(np.abs(_predict(model, data, va, 256) * std + mean - data.y[va]))) \
                if len(va) else math.nan
            if family == "alignn" and (best is None or val_mae < best_mae):
                best = {k: v.detach().clone() for k, v in model.state_dict().items()}
                best_mae = val_mae
            history.append({"epoch": epoch + 1, "train_loss": total / max(count, 1), "val_mae": val_mae,
                            "lr": scheduler.get_last_lr()[0], "seconds": round(time.perf_counter() - t0, 3)})
            bar.set_postfix(loss=f"{total / max(count, 1):.4g}", val_mae=f"{val_mae:.4g}")
            tmp = folder / "checkpoint.pt.tmp"
            torch.save({"epoch": epoch + 1, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "swa": swa.state_dict() if swa is not None else None,
                        "history": json.dumps(history), "best": best, "best_mae": best_mae}, tmp)
            os.replace(tmp, state_file)
            if stop_after is not None and epoch + 1 >= stop_after and epoch + 1 < epochs:
                log(f"stopped after epoch {epoch + 1} of {epochs}; run the same command again to resume")
                return None

    final = folder / settings["file"]
    _export(family, final, model.eval(), swa, best, mean, std, settings)
    _atomic_json(folder / "history.json", history)
    loss_label = "training loss (L1, standardised targets)" if recipe.standardise else "training loss (MSE)"
    plot_training_curve(history, folder / "history.png", f"{_FAMILY[family]} on {_tag(dataset)}, {target}",
                        TARGETS[target][1], loss_label)
    (folder / "skipped.txt").write_text("".join(f"{p}\n" for p in load_problems + data.problems))
    manifest = {
        "model": family, "target": target, "unit": TARGETS[target][1], "file": settings["file"],
        "data": {"dataset": str(dataset), "limit": limit, "rows_read": len(records) + len(load_problems),
                 "usable": len(data.ids), "skipped": dict(data.skipped), "unreadable": len(load_problems)},
        "split": {k: len(v) for k, v in parts.items()} | {"seed": seed, "from": settings["split_from"]},
        "epochs": len(history), "target_mean": mean, "target_std": std,
        "val_mae": history[-1]["val_mae"] if history else math.nan,
        "command": command or " ".join(sys.argv), "torch": torch.__version__, "device": str(dev),
        "sha256": {settings["file"]: file_sha256(final)},
    }
    _atomic_json(folder / "manifest.json", manifest)
    log(f"{family} ({target}) in {final}: {len(tr)} training crystals, {len(history)} epochs, validation MAE "
        f"{manifest['val_mae']:.4g} {TARGETS[target][1]}; {sum(data.skipped.values())} rows skipped")
    return TrainedPredictor(folder, final, len(history), len(tr), manifest["val_mae"])


# --------------------------------------------------------------------------------------------------
# held-out MAE (Table 1 row)
# --------------------------------------------------------------------------------------------------


def heldout_predictor(folder: str | os.PathLike, split: str = "test", data_path: str | None = None,
                      device: str | None = None) -> dict:
    """MAE of a trained predictor on its ``split``, beside the shared MEGNet predictor's on the same crystals.

    Returns {"model", "target", "unit", "dataset", "n", "mae", "mae_megnet", "mae_median", "epochs"};
    ``mae_median`` is the MAE of always predicting the training split's median label (the trivial baseline:
    a model no better than it has learned nothing useful).
    """
    from .megnet import (  # the judge's pair (not via the registry)
        band_gap_predictor,
        formation_energy_predictor,
    )

    folder = Path(folder)
    settings = _read_settings(folder)
    parts = json.loads((folder / "split.json").read_text())
    records = records_by_id(settings["dataset"], parts[split] + parts["train"], settings.get("limit"), data_path)
    records, train = records[:len(parts[split])], records[len(parts[split]):]
    data = label_records(records, settings["target"])
    median = float(np.median(label_records(train, settings["target"]).y))
    model = load_trained(folder, device)
    rows = np.arange(len(data.ids))
    pred = _predict(model, data, rows, 256)
    megnet = (band_gap_predictor(device=device) if settings["target"] == "bandgap"
              else formation_energy_predictor(device=device)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        usable = set(data.ids)
        ref = megnet.predict_structures([r.structure for r in records if r.material_id in usable])
    history = json.loads((folder / "history.json").read_text()) if (folder / "history.json").is_file() else []
    return {"model": settings["family"], "target": settings["target"], "unit": settings["unit"],
            "dataset": settings["dataset"], "n": len(rows), "epochs": len(history),
            "mae": float(np.mean(np.abs(pred - data.y))), "mae_megnet": float(np.nanmean(np.abs(ref - data.y))),
            "mae_median": float(np.mean(np.abs(median - data.y)))}


def trained_folders(root: str | os.PathLike | None = None) -> list[Path]:
    """Finished training folders (``trainer.json`` and the exported file) under ``root`` (default: the
    repository's ``models/``, e.g. ``models/crystalformer-perov_5/e_form``), sorted."""
    base = Path(root) if root is not None else Path(__file__).resolve().parents[2] / "models"
    out = []
    for f in sorted(base.glob("**/trainer.json")):
        try:
            if (f.parent / json.loads(f.read_text())["file"]).is_file():
                out.append(f.parent)
        except (OSError, ValueError, KeyError):
            continue
    return out


PAPER_TABLE1 = {"crystalformer": {"e_form": 0.019, "bandgap": 0.198}, "alignn": {"e_form": 0.022, "bandgap": 0.218}}
_FAMILY = {"crystalformer": "Crystalformer", "alignn": "ALIGNN"}


def heldout_predictor_markdown(rows: list[dict], split: str = "test") -> str:
    """Table 1 rows of predictors trained here, with the paper's MEGNet-dataset MAE beside them."""
    data = sorted({r["dataset"] for r in rows})
    lines = [
        f"Table 1 (predictors trained here): MAE on the {split} split of the training data "
        f"({', '.join(data)}), beside the shared MEGNet predictor on the same crystals and the paper's value. "
        "These are models trained by `smoacs-bench train` in this repository, not the paper's published "
        "checkpoints (trained on the MEGNet dataset for 500 / 300 epochs); on perov_5 the labels are heat_ref "
        "and GLLB-SC gaps, which MEGNet (trained on Materials Project PBE data) does not predict, so its MAE "
        "compares it with another quantity. 'Median baseline': the MAE of always predicting the training "
        "split's median label; a model near it has learned little (on perov_5, 96 % of the gaps are 0 eV).",
        "",
        "| model | trained on | epochs | target | test crystals | MAE | median baseline | MEGNet MAE, same crystals "
        "| paper MAE (MEGNet dataset) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        unit = r["unit"]
        paper = PAPER_TABLE1.get(r["model"], {}).get(r["target"])
        lines.append(
            f"| {_FAMILY.get(r['model'], r['model'])}({_tag(r['dataset'])}) | {r['dataset']} | {r['epochs']} | "
            f"{'E_f' if r['target'] == 'e_form' else 'band gap'} | {r['n']} | {r['mae']:.3f} {unit} | "
            f"{r['mae_median']:.3f} {unit} | {r['mae_megnet']:.3f} {unit} | {'' if paper is None else f'{paper:.3f} {unit}'} |")
    return "\n".join(lines) + "\n"
