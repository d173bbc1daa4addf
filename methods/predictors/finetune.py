"""MEGNet's band gap with its final MLP refitted in domain: a differentiable gap a method can optimise.

The multi-fidelity MEGNet (PBE state) is 1.6-1.8 eV low on known 5-site ABX3 (``results/predictors``), so an
optimiser that trusts it lives in its blind spots. Here everything up to the readout stays MEGNet's (frozen);
only ``output_proj`` (160 → 32 → 16 → 1, 5.7k weights, started from MEGNet's own) is refitted on known compounds'
MP PBE gaps (eV), with an L1 loss in MEGNet's normalised units and a pull towards the pretrained weights. The number
of epochs is chosen by an inner cross-validation, and the held-out MAE is that of an outer cross-validation grouped
by formula (nested, so the reported error never saw its own fold).

Files (``folder``): ``head.pt`` (the refitted ``output_proj`` state dict) and ``finetune.json`` (settings,
held-out MAE, training compounds). Load with :func:`load_finetuned` or the registered predictor name
``megnet-bandgap-abx3`` (``$SMOACS_MODEL_DIR/megnet-bandgap-abx3/``, else the repository's ``models/``).
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .megnet import MEGNetPredictor, band_gap_predictor

NAME = "megnet-bandgap-abx3"
TRAIN_COMMAND = "smoacs-bench train megnet-abx3 --out models/megnet-bandgap-abx3"
EPOCHS = (25, 50, 100, 200, 400)
LR = 3e-3
PULL = 1e-3   # weight of the squared distance to the pretrained head's weights


def readout_features(structures: Sequence, base: MEGNetPredictor | None = None, chunk: int = 64) -> torch.Tensor:
    """(N, d) the frozen MEGNet's readout input for each structure (pymatgen)."""
    from .crystals import SoftCrystals

    base = base or band_gap_predictor(state=0, device="cpu")
    out = []
    with torch.no_grad():
        for k in range(0, len(structures), chunk):
            out.append(base.readout_input(SoftCrystals.from_structures(list(structures[k:k + chunk]))).float())
    return torch.cat(out) if out else torch.zeros(0, 160)


def _weights(y_ev: torch.Tensor) -> torch.Tensor:
    """Per-row loss weights giving the gapped and the metallic compounds (MP gap 0) equal total weight: metals are
    most of the known ABX3, and an unweighted fit learns to call everything a metal."""
    gapped = y_ev > 0
    n, g = len(y_ev), int(gapped.sum())
    if g in (0, n):
        return torch.ones_like(y_ev)
    return torch.where(gapped, torch.full_like(y_ev, n / (2 * g)), torch.full_like(y_ev, n / (2 * (n - g))))


def _fit(head0: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int,
         w: torch.Tensor | None = None) -> torch.nn.Module:
    """A copy of ``head0`` trained full-batch on (x, y normalised; ``w`` row weights) for ``epochs``."""
    torch.manual_seed(seed)
    head = copy.deepcopy(head0)
    ref = [p.detach().clone() for p in head0.parameters()]
    for p in head.parameters():
        p.requires_grad_(True)
    opt = torch.optim.Adam(head.parameters(), lr=LR)
    for _ in range(epochs):
        opt.zero_grad()
        err = (head(x).reshape(-1) - y).abs()
        loss = (err * w).mean() if w is not None else err.mean()
        loss = loss + PULL * sum(((p - r) ** 2).sum() for p, r in zip(head.parameters(), ref, strict=True))
        loss.backward()
        opt.step()
    return head.eval()


def _folds(groups: Sequence[str], k: int, seed: int) -> np.ndarray:
    """A fold index per row, every row of a group in the same fold."""
    names = sorted(set(groups))
    order = np.random.default_rng(seed).permutation(len(names))
    fold_of = {names[j]: i % k for i, j in enumerate(order)}
    return np.array([fold_of[g] for g in groups])


def finetune(structures: Sequence, gaps: Sequence[float], groups: Sequence[str], folder: str | Path,
             folds: int = 5, seed: int = 0, epochs: Sequence[int] = EPOCHS,
             extra: dict[str, Any] | None = None, balance: bool = True) -> dict[str, Any]:
    """Refit MEGNet's band-gap head on ``structures`` with MP PBE ``gaps`` (eV), ``groups`` (formulas) kept
    together in folds; writes ``folder`` and returns the figures (held-out MAE of the refitted and of the original
    head on the same folds, the epochs chosen)."""
    base = band_gap_predictor(state=0, device="cpu")
    mean, std = float(base.transformer.mean), float(base.transformer.std)
    x = readout_features(structures, base)
    y_ev = torch.tensor(list(gaps), dtype=torch.float32)
    y = (y_ev - mean) / std
    head0 = base.model.output_proj
    fold = _folds(groups, folds, seed)
    w = _weights(y_ev) if balance else None

    def predict(head, rows) -> torch.Tensor:
        with torch.no_grad():
            return head(x[rows]).reshape(-1) * std + mean

    def choose(rows: np.ndarray) -> int:
        """Epochs with the lowest inner cross-validated MAE on ``rows``."""
        inner = _folds([groups[i] for i in rows], folds, seed + 1)
        best = (math.inf, epochs[0])
        for n in epochs:
            err = []
            for f in range(folds):
                tr, va = rows[inner != f], rows[inner == f]
                head = _fit(head0, x[tr], y[tr], n, seed, None if w is None else w[tr])
                err.append(float((predict(head, va) - y_ev[va]).abs().sum()))
            best = min(best, (sum(err) / len(rows), n))
        return best[1]

    held = torch.full_like(y_ev, math.nan)
    chosen = []
    for f in range(folds):
        tr, te = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        n = choose(tr)
        chosen.append(n)
        held[te] = predict(_fit(head0, x[tr], y[tr], n, seed, None if w is None else w[tr]), te)
    original = predict(head0, np.arange(len(y_ev)))
    gapped = y_ev > 0
    figures = {
        "n": int(len(y_ev)), "n_gapped": int(gapped.sum()), "folds": folds, "seed": seed,
        "epochs_per_fold": chosen,
        "heldout_mae": float((held - y_ev).abs().mean()),
        "heldout_mae_gapped": float((held - y_ev)[gapped].abs().mean()),
        "heldout_signed_gapped": float((held - y_ev)[gapped].mean()),
        "megnet_mae": float((original - y_ev).abs().mean()),
        "megnet_mae_gapped": float((original - y_ev)[gapped].abs().mean()),
    }
    final_epochs = choose(np.arange(len(y_ev)))
    head = _fit(head0, x, y, final_epochs, seed, w)
    figures["epochs"] = final_epochs
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(head.state_dict(), folder / "head.pt")
    from smoacs_bench.evaluation.io import atomic_write_text

    record = {"name": NAME, "base": "MEGNet-MP-2019.4.1-BandGap-mfi, PBE state", "trained": "output_proj only",
              "balanced": balance, "lr": LR, "pull": PULL, "epochs_tried": list(epochs), **figures, **(extra or {}),
              "heldout": [None if math.isnan(v) else round(float(v), 4) for v in held.tolist()]}
    atomic_write_text(folder / "finetune.json", json.dumps(record, indent=2))
    return figures


def default_folder() -> Path:
    """``$SMOACS_MODEL_DIR/megnet-bandgap-abx3`` where it holds a head, else the repository's
    ``models/megnet-bandgap-abx3`` (25 kB, committed)."""
    from .megnet import _models_env

    env = _models_env()
    if env and (Path(env) / NAME / "head.pt").is_file():
        return Path(env) / NAME
    return Path(__file__).resolve().parents[2] / "models" / NAME


def load_finetuned(folder: str | Path | None = None, device: torch.device | str | None = None) -> MEGNetPredictor:
    """MEGNet's band gap (PBE state) with the refitted head from ``folder`` (default :func:`default_folder`);
    FileNotFoundError naming the folder and the command that makes it otherwise."""
    folder = Path(folder) if folder is not None else default_folder()
    if not (folder / "head.pt").is_file():
        raise FileNotFoundError(f"no refitted MEGNet head in {folder} (head.pt): make it with `{TRAIN_COMMAND}`")
    p = band_gap_predictor(state=0, device="cpu")
    p.model.output_proj.load_state_dict(torch.load(folder / "head.pt", map_location="cpu", weights_only=True))
    p.model.output_proj.requires_grad_(False)
    p.name = NAME
    return p.to(device) if device is not None else p
