"""MEGNet's band-gap head refitted in domain: nested cross-validation, files, loading by name and by folder."""

from __future__ import annotations

import json
import math

import pytest
import torch

from smoacs_bench.data.reference_crystals import TEXTBOOK_PEROVSKITES, textbook_perovskite
from smoacs_bench.methods.predictors.crystals import SoftCrystals
from smoacs_bench.methods.predictors.finetune import _folds, _weights, finetune, load_finetuned

pytest.importorskip("matgl")


def test_folds_keep_a_formula_together_and_weights_balance_metals_and_gapped():
    groups = ["A", "B", "A", "C", "D", "B", "E"]
    fold = _folds(groups, 3, seed=0)
    for g in set(groups):
        assert len({fold[i] for i, x in enumerate(groups) if x == g}) == 1
    w = _weights(torch.tensor([0.0, 0.0, 0.0, 1.5]))
    assert torch.allclose(w[:3].sum(), w[3:].sum()) and w.mean() == pytest.approx(1.0)


def test_a_refitted_head_moves_toward_its_labels_and_loads_as_a_predictor(tmp_path):
    cells = [textbook_perovskite(a, b, x, lat) for a, b, x, lat in TEXTBOOK_PEROVSKITES][:10]
    gaps = [3.0] * len(cells)                       # far from MEGNet's ≈ 0-2 eV on these
    names = [c.composition.reduced_formula for c in cells]
    f = finetune(cells, gaps, names, tmp_path / "head", folds=2, epochs=(10, 40))
    assert f["n"] == 10 and len(f["epochs_per_fold"]) == 2 and math.isfinite(f["heldout_mae"])
    assert f["heldout_mae"] < f["megnet_mae"]        # held out, yet closer to a constant 3 eV than MEGNet
    record = json.loads((tmp_path / "head" / "finetune.json").read_text())
    assert len(record["heldout"]) == 10 and record["trained"] == "output_proj only"
    refit = load_finetuned(tmp_path / "head")
    crystals = SoftCrystals.from_structures(cells[:2])
    crystals.atom_probs.requires_grad_(True)
    pred = refit(crystals)
    pred.sum().backward()                             # differentiable in the site distributions, as SMOACS needs
    assert crystals.atom_probs.grad is not None and torch.isfinite(pred).all()
    assert (pred - 3.0).abs().mean() < 1.0
    with pytest.raises(FileNotFoundError, match="train megnet-abx3"):
        load_finetuned(tmp_path / "nothing")


def test_the_committed_head_is_registered_by_name():
    from smoacs_bench.methods.predictors import get_predictor

    p = get_predictor("megnet-bandgap-abx3")
    assert p.name == "megnet-bandgap-abx3"
    cells = [textbook_perovskite(a, b, x, lat) for a, b, x, lat in TEXTBOOK_PEROVSKITES][:3]
    assert torch.isfinite(p(SoftCrystals.from_structures(cells))).all()
