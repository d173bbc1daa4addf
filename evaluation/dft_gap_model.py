"""A band-gap model trained on this project's own DFT labels: active learning across rounds of runs.

MEGNet and the MP-trained composition model (:mod:`.gap_judge`) miss the PBE gap of the ideal cubic cells the
5-site task proposes by more than 1 eV (mean absolute error over the DFT-checked proposals), so a method that
must agree with either still proposes PBE metals. This model is trained on what the judge's DFT stage computed
of earlier proposals (every committed run folder of the task with a converged DFT check) and on the engine's
calibration compounds: one row per reduced formula, the median corrected PBE gap (eV, MP scale; a metal 0), the
same composition features as the cross-judge, LightGBM (a regressor or a metal classifier then a regressor, chosen
by cross-validated MAE grouped by formula, as the cross-judge is). A method using it (SMOACS-relax's ``agree_gap``
``dft-gap``) never counts a formula of its training labels as agreeing, so every crystal it proposes is one whose
DFT gap the model has not seen, and the judge's DFT check of it is out of sample. The labels' DFT time is what the
model cost; its manifest records it (``label_seconds``, one core) with the formulas it was trained on.

Files (``models/dft-gap-perovskite/``): gzip-compressed LightGBM text models, ``labels.csv`` (each formula's label
and cross-validated prediction) and ``manifest.json`` (``sources``: the run folders read); loaded with
:func:`load_dft_gap_model` (``$SMOACS_MODEL_DIR/dft-gap-perovskite`` or the repository's ``models/``). The committed
model is round 1, trained before the runs that use it: the same command run now also reads those runs' own checks,
which makes a second round, a different model for a different row, written to another folder
(``models/dft-gap-perovskite-r2``: SMOACS-relax's ``agree_gap="dft-gap-r2"``).
"""

from __future__ import annotations

import gzip
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .gap_judge import METAL, GapJudge, _features, _fit

FOLDER = "dft-gap-perovskite"
TRAIN_COMMAND = ("smoacs-bench train dft-gap --runs results/runs/perovskite --out models/dft-gap-perovskite")
PARAMS = dict(n_estimators=300, learning_rate=0.05, num_leaves=15, min_child_samples=5, subsample=0.8,
              subsample_freq=1, colsample_bytree=0.7, verbose=-1, n_jobs=1)
CALIBRATION_CSV = Path(__file__).resolve().parents[1] / "results" / "dft_calibration" / "calibration.csv"


def collect_labels(roots: list[str | Path], calibration: str | Path | None = CALIBRATION_CSV
                   ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(one row per reduced formula: ``formula``, ``gap`` (median corrected PBE gap, eV), ``n`` records; and a
    summary: run folders read, records, DFT seconds of every checked crystal, skipped folders with reasons).
    ``roots``: folders of run folders (each with a samples.csv carrying the dft stage's columns); ``calibration``:
    the engine's calibration.csv (its compounds are labels too), None for none."""
    from .stages.dft import labels

    records, seconds, folders, skipped = [], 0.0, [], []

    def take(checks: pd.DataFrame, source: str) -> None:
        nonlocal seconds
        # a crystal checked twice in one run was computed once: its time counts once
        seconds += float(checks.drop_duplicates("formula")["seconds"].fillna(0.0).sum())
        ok = checks[checks["gap"].notna()]
        records.extend({"formula": f, "gap": float(g), "source": source} for f, g in zip(ok["formula"], ok["gap"],
                                                                                         strict=True))

    for root in roots:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: no such folder of run folders")
        for f in sorted(root.glob("*/samples.csv")):
            try:
                checks = labels(pd.read_csv(f, low_memory=False))
            except (OSError, ValueError) as err:
                skipped.append(f"{f}: unreadable ({type(err).__name__})")
                continue
            if checks.empty:
                continue
            folders.append(f.parent.name)
            take(checks, f.parent.name)
    if not records:
        raise ValueError(f"no converged DFT check in the run folders under {', '.join(str(r) for r in roots)}: run a "
                         "table there with --dft-subset first")
    if calibration is not None and Path(calibration).is_file():
        take(labels(pd.read_csv(calibration)), "dft_calibration")
    from pymatgen.core import Composition

    def reduced(record: dict) -> str | None:
        try:
            comp = Composition(record["formula"])
            if not comp.valid:   # pymatgen reads an unknown symbol as a dummy species
                raise ValueError("not an element")
            return comp.reduced_formula
        except Exception:  # noqa: BLE001 - pymatgen raises several types for an unreadable formula
            skipped.append(f"{record['source']}: unreadable formula {record['formula']!r}")
            return None

    frame = pd.DataFrame(records)
    frame["formula"] = [reduced(r) for r in records]
    frame = frame[frame["formula"].notna()]
    table = frame.groupby("formula").agg(gap=("gap", "median"), n=("gap", "size")).reset_index()
    return table, {"run_folders": len(folders), "sources": folders, "records": len(records),
                   "label_seconds": round(seconds, 1), "skipped": skipped}


def train_dft_gap(out: str | Path, roots: list[str | Path], seed: int = 0, folds: int = 5,
                  progress: bool = True, command: str = "", calibration: str | Path | None = CALIBRATION_CSV
                  ) -> dict[str, Any]:
    """Train, cross-validate (grouped by formula: one row each) and save the model in ``out``; the manifest."""
    from .io import atomic_write_text

    t0 = time.perf_counter()
    table, summary = collect_labels(roots, calibration)
    X, reasons = _features(table["formula"])
    keep = np.array([not r for r in reasons], dtype=bool)
    table, X = table[keep].reset_index(drop=True), X[keep]
    y = table["gap"].to_numpy(dtype=float)
    if len(y) < 2 * folds:
        raise ValueError(f"{len(y)} labelled formulas are too few for {folds}-fold cross-validation")
    if progress:
        for line in summary["skipped"]:
            print(f"dft-gap: skipped {line}")
        print(f"dft-gap: {len(y)} formulas from {summary['records']} converged DFT records in "
              f"{summary['run_folders']} run folders and the calibration ({summary['label_seconds'] / 3600:.2f} "
              f"CPU hours of DFT)")
    fold = np.random.default_rng(seed).permutation(len(y)) % folds
    cv, preds = {}, {}
    for kind in ("regressor", "two-stage"):
        pred = np.zeros(len(y))
        for k in range(folds):
            models = _fit(kind, X[fold != k], y[fold != k], seed, PARAMS)
            pred[fold == k] = GapJudge(kind, models, {}).predict_raw(X[fold == k])
        cv[kind], preds[kind] = float(np.abs(pred - y).mean()), pred
        if progress:
            print(f"dft-gap: {kind} cross-validated MAE {cv[kind]:.3f} eV ({folds} folds, one row per formula)")
    kind = min(cv, key=cv.get)
    err = preds[kind] - y
    gapped = y > METAL
    holdout = {"n": int(len(y)), "n_gapped": int(gapped.sum()), "mae": float(np.abs(err).mean()),
               "mae_gapped": float(np.abs(err[gapped]).mean()) if gapped.any() else math.nan,
               "metal_share": float((~gapped).mean()), "baseline_mae": float(np.abs(y - y.mean()).mean()),
               "within_0.25": float((np.abs(err) <= 0.25).mean())}
    models = _fit(kind, X, y, seed, PARAMS)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = [f"{name}.txt.gz" for name in (["regressor"] if kind == "regressor" else ["classifier", "regressor"])]
    for booster, name in zip(models, files, strict=True):
        tmp = out / f".{name}.part"
        tmp.write_bytes(gzip.compress(booster.model_to_string().encode(), mtime=0))
        os.replace(tmp, out / name)
    manifest = {"kind": kind, "files": files, "cv_mae": cv, "folds": folds, "seed": seed, "holdout": holdout,
                "training_formulas": int(len(y)), "formulas": table["formula"].tolist(),
                "label_seconds": summary["label_seconds"], "label_records": summary["records"],
                "run_folders": summary["run_folders"], "roots": [str(r) for r in roots],
                "calibration": None if calibration is None else _shown(calibration),
                "sources": summary["sources"], "skipped": summary["skipped"],
                "features": "smoacs_bench.data.composition_features (Magpie-style, pymatgen element data)",
                "target": "the dft stage's corrected PBE gap (eV, MP scale; a metal 0), median per reduced formula",
                "params": PARAMS, "command": command or TRAIN_COMMAND, "seconds": round(time.perf_counter() - t0, 1)}
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=2))
    atomic_write_text(out / "labels.csv", table.assign(cv_pred=preds[kind]).to_csv(index=False))
    return manifest


def _shown(path: str | Path) -> str:
    """``path`` relative to the repository when inside it (a manifest names no machine's folders)."""
    try:
        return str(Path(path).resolve().relative_to(Path(__file__).resolve().parents[1]))
    except ValueError:
        return str(path)


def default_folder(name: str = FOLDER) -> Path | None:
    """``$SMOACS_MODEL_DIR/<name>``, else the repository's ``models/<name>`` (``name``: a round's folder)."""
    from smoacs_bench.data.environment import model_dir

    root = model_dir()
    if root is not None and (root / name / "manifest.json").is_file():
        return root / name
    repo = Path(__file__).resolve().parents[1] / "models" / name
    return repo if (repo / "manifest.json").is_file() else None


class DFTGapModel:
    """The trained model: :meth:`predict` gives NaN for a formula it was trained on (never 'agrees')."""

    def __init__(self, folder: Path):
        from .gap_judge import load_gap_judge

        self.model = load_gap_judge(folder)   # the same files and manifest layout as the cross-judge's
        self.manifest = self.model.manifest
        self.seen = set(self.manifest["formulas"])

    def predict(self, formulas) -> np.ndarray:
        from pymatgen.core import Composition

        formulas = list(formulas)
        gaps, _ = self.model.predict(formulas)
        out = np.asarray(gaps, dtype=float)
        for i, f in enumerate(formulas):
            try:
                if Composition(f).reduced_formula in self.seen:
                    out[i] = math.nan
            except Exception:  # noqa: BLE001 - unreadable formula: already NaN
                out[i] = math.nan
        return out


_LOADED: dict[str, DFTGapModel] = {}


def load_dft_gap_model(folder: str | Path | None = None, name: str = FOLDER) -> DFTGapModel:
    """The trained model in ``folder``, else the round ``name`` (:func:`default_folder`); FileNotFoundError (one
    line, with the command that trains it) when there is none."""
    path = Path(folder) if folder is not None else default_folder(name)
    if path is None or not (path / "manifest.json").is_file():
        raise FileNotFoundError(f"no DFT-trained gap model at {path or 'models/' + name}: train it with "
                                f"`{TRAIN_COMMAND.replace(FOLDER, name)}`")
    key = str(path.resolve())
    if key not in _LOADED:
        _LOADED[key] = DFTGapModel(path)
    return _LOADED[key]
