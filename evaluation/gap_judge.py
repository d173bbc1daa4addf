"""An independent band-gap judge: a composition model trained here on MP-20's PBE band gaps.

Features: :mod:`smoacs_bench.data.composition_features` (Magpie-style statistics of pymatgen's element data).
Model: LightGBM, chosen by cross-validated MAE between one regressor and a two-stage model (a metal / non-metal
classifier, then a regressor trained on gapped compounds). One row per reduced formula (the median MP gap of
its polymorphs), so the folds are grouped by formula; every formula of MP-20's five-site ABX3 is held out of
training entirely and scores the judge in domain (:func:`train_gap_judge`). Saved as gzip-compressed LightGBM text models
with a manifest; loaded by :func:`load_gap_judge` from ``$SMOACS_GAP_JUDGE``, ``$SMOACS_MODEL_DIR/gap-judge-mp20``
or the repository's ``models/gap-judge-mp20``.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FOLDER = "gap-judge-mp20"
ENV = "SMOACS_GAP_JUDGE"
TRAIN_COMMAND = "smoacs-bench train gap-judge --out models/gap-judge-mp20"
METAL = 0.0        # eV: MP's gap of a metal
PARAMS = dict(n_estimators=800, learning_rate=0.05, num_leaves=63, min_child_samples=10, subsample=0.8,
              subsample_freq=1, colsample_bytree=0.7, verbose=-1, n_jobs=1)


def _lgb():
    try:
        import lightgbm
    except ImportError:
        raise FileNotFoundError("the band-gap cross-judge needs lightgbm: pip install lightgbm") from None
    return lightgbm


def _features(formulas) -> tuple[np.ndarray, list[str]]:
    """Feature rows (NaN rows where a formula cannot be read) and a reason per formula ('' when read)."""
    from smoacs_bench.data.composition_features import feature_names, featurize

    width = len(feature_names())
    rows, reasons = [], []
    for f in formulas:
        try:
            if not isinstance(f, str) or not f:
                raise ValueError("no formula")
            rows.append(featurize(f))
            reasons.append("")
        except ValueError as err:
            rows.append(np.full(width, np.nan))
            reasons.append(str(err))
    return (np.vstack(rows) if rows else np.zeros((0, width))), reasons


@dataclass
class GapJudge:
    """A trained judge: ``kind`` 'regressor' or 'two-stage'; ``mae_in_domain`` (eV) on the held-out gapped ABX3."""

    kind: str
    models: list
    manifest: dict[str, Any]

    @property
    def mae_in_domain(self) -> float:
        return float(self.manifest["holdout"]["mae_gapped"])

    @property
    def label(self) -> str:
        return (f"composition LightGBM ({self.kind}) on MP-20 PBE gaps, held-out 5-site ABX3 MAE "
                f"{self.mae_in_domain:.2f} eV on gapped ones")

    def predict_raw(self, X: np.ndarray) -> np.ndarray:
        if self.kind == "regressor":
            return np.clip(self.models[0].predict(X), 0.0, None)
        p = self.models[0].predict(X)   # booster of the classifier: probability of a gap
        return np.where(p > 0.5, np.clip(self.models[1].predict(X), 0.0, None), METAL)

    def predict(self, formulas) -> tuple[list[float], list[str]]:
        """Band gaps (eV; NaN with a reason where the formula cannot be featurised), one per formula."""
        X, reasons = _features(list(formulas))
        out = np.full(len(reasons), np.nan)
        ok = np.array([not r for r in reasons], dtype=bool)
        if ok.any():
            out[ok] = self.predict_raw(X[ok])
        return out.tolist(), reasons


def default_folder() -> Path | None:
    """``$SMOACS_GAP_JUDGE``, else ``$SMOACS_MODEL_DIR/gap-judge-mp20``, else the repository's models/ folder."""
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    from smoacs_bench.data.environment import model_dir

    root = model_dir()
    if root is not None and (root / FOLDER / "manifest.json").is_file():
        return root / FOLDER
    repo = Path(__file__).resolve().parents[1] / "models" / FOLDER
    return repo if (repo / "manifest.json").is_file() else None


_LOADED: dict[str, GapJudge] = {}


def load_gap_judge(folder: str | Path | None = None) -> GapJudge:
    """The trained judge; FileNotFoundError (one line, with the command that trains it) when there is none."""
    path = Path(folder) if folder is not None else default_folder()
    if path is None or not (path / "manifest.json").is_file():
        where = path or f"${ENV}, $SMOACS_MODEL_DIR/{FOLDER} or models/{FOLDER}"
        raise FileNotFoundError(f"no band-gap cross-judge at {where}: train it with `{TRAIN_COMMAND}` (minutes on "
                                "one core) or set $SMOACS_GAP_JUDGE")
    key = str(path.resolve())
    if key not in _LOADED:
        lgb = _lgb()
        manifest = json.loads((path / "manifest.json").read_text())
        models = [lgb.Booster(model_str=gzip.decompress((path / f).read_bytes()).decode()) for f in manifest["files"]]
        _LOADED[key] = GapJudge(manifest["kind"], models, manifest)
    return _LOADED[key]


# -- training --------------------------------------------------------------------------------------------------
def _fit(kind: str, X: np.ndarray, y: np.ndarray, seed: int, params: dict | None = None) -> list:
    """LightGBM boosters: one regressor, or a metal / non-metal classifier and a regressor on the gapped rows."""
    lgb = _lgb()
    params = PARAMS if params is None else params
    if kind == "regressor":
        return [lgb.LGBMRegressor(random_state=seed, **params).fit(X, y).booster_]
    gapped = y > METAL
    clf = lgb.LGBMClassifier(random_state=seed, **params).fit(X, gapped.astype(int)).booster_
    reg = lgb.LGBMRegressor(random_state=seed, **params).fit(X[gapped], y[gapped]).booster_
    return [clf, reg]


def _metrics(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    err = pred - y
    gapped = y > METAL
    out = {"n": int(len(y)), "n_gapped": int(gapped.sum()), "mae": float(np.abs(err).mean()),
           "mae_gapped": float(np.abs(err[gapped]).mean()) if gapped.any() else math.nan,
           "signed_gapped": float(err[gapped].mean()) if gapped.any() else math.nan}
    for w in (0.04, 0.25, 0.5):
        out[f"within_{w:g}_gapped"] = float((np.abs(err[gapped]) <= w).mean()) if gapped.any() else math.nan
    return out


def train_gap_judge(out: str | Path, seed: int = 0, folds: int = 3, limit: int | None = None,
                    progress: bool = True, command: str = "") -> dict[str, Any]:
    """Train, validate and save the judge in ``out``; returns the manifest."""
    import pandas as pd
    from pymatgen.core import Composition

    from smoacs_bench.data.mp_reference import mp20_abx3, mp20_formulas

    from .io import atomic_write_text

    t0 = time.perf_counter()
    mp = mp20_formulas()
    table = mp.groupby("reduced").agg(gap=("mp_pbe_band_gap_eV", "median")).reset_index()
    abx3 = mp20_abx3()
    abx3["reduced"] = [Composition(str(s).replace(" ", "")).reduced_formula for s in abx3["species_at_sites"]]
    held = set(abx3["reduced"])
    train = table[~table["reduced"].isin(held)].reset_index(drop=True)
    if limit:
        train = train.sample(n=min(limit, len(train)), random_state=seed).reset_index(drop=True)
    X, reasons = _features(train["reduced"])
    keep = np.array([not r for r in reasons], dtype=bool)
    X, y = X[keep], train["gap"].to_numpy(dtype=float)[keep]
    if progress:
        print(f"gap judge: {len(y)} training formulas ({len(held)} ABX3 formulas held out), {X.shape[1]} features")
    fold = np.random.default_rng(seed).integers(0, folds, len(y))
    cv: dict[str, float] = {}
    for kind in ("regressor", "two-stage"):
        errors = []
        for k in range(folds):
            models = _fit(kind, X[fold != k], y[fold != k], seed)
            errors.append(np.abs(GapJudge(kind, models, {}).predict_raw(X[fold == k]) - y[fold == k]))
        cv[kind] = float(np.concatenate(errors).mean())
        if progress:
            print(f"gap judge: {kind} cross-validated MAE {cv[kind]:.3f} eV ({folds} folds, one row per formula)")
    kind = min(cv, key=cv.get)
    models = _fit(kind, X, y, seed)
    judge = GapJudge(kind, models, {})
    # in domain: one MP entry per ABX3 formula (the lowest formation energy among its polymorphs)
    dom = abx3.sort_values("mp_formation_energy_eV_per_atom").drop_duplicates("reduced")
    Xd, rd = _features(dom["reduced"])
    ok = np.array([not r for r in rd], dtype=bool)
    holdout = _metrics(judge.predict_raw(Xd[ok]), dom["mp_pbe_band_gap_eV"].to_numpy(dtype=float)[ok])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = [f"{name}.txt.gz" for name in (["regressor"] if kind == "regressor" else ["classifier", "regressor"])]
    for booster, name in zip(models, files, strict=True):   # LightGBM's text format, gzip-compressed
        tmp = out / f".{name}.part"
        tmp.write_bytes(gzip.compress(booster.model_to_string().encode(), mtime=0))
        os.replace(tmp, out / name)
    manifest = {"kind": kind, "files": files, "cv_mae": cv, "folds": folds, "seed": seed,
                "training_formulas": int(len(y)), "held_out_formulas": len(held), "holdout": holdout,
                "features": "smoacs_bench.data.composition_features (Magpie-style, pymatgen element data)",
                "params": PARAMS, "data": "mp20_reference/mp20_formulas.csv.gz (median PBE gap per reduced formula)",
                "command": command or TRAIN_COMMAND, "seconds": round(time.perf_counter() - t0, 1),
                "limit": limit}
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=2))
    atomic_write_text(out / "predictions_abx3.csv", pd.DataFrame({
        "reduced": dom["reduced"].to_numpy()[ok], "mp_gap": dom["mp_pbe_band_gap_eV"].to_numpy()[ok],
        "judge_gap": judge.predict_raw(Xd[ok])}).to_csv(index=False))
    _LOADED.pop(str(out.resolve()), None)
    return manifest
