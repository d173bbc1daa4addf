"""SMOACS with each paper predictor family (random weights: the official ones cannot be had here).

Crystalformer uses the authors' random state dict from the fixture (official key layout), ALIGNN a seeded
random initialisation with the shipped CGCNN table. The run must complete on the perovskite task with
neutrality, angles and coordinates at 1.000 (they hold by construction), label its row S(Cry)/S(ALI) and
take the paper's learning rates for that family (A.7).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import find_fixture

from smoacs_bench.data.task import get_task
from smoacs_bench.evaluation.criteria import evaluate
from smoacs_bench.methods.predictors import registry


def _crystalformer_factory():
    folder, why = find_fixture("crystalformer", ("state_dict.pt",))
    if folder is None:
        pytest.skip(why)
    from smoacs_bench.methods.predictors.crystalformer import load_crystalformer

    def build(device=None):
        return load_crystalformer(folder / "state_dict.pt", device=device)

    return build


def _alignn_factory():
    from smoacs_bench.methods.predictors.alignn import ALIGNNPredictor

    def build(device=None):
        torch.manual_seed(0)
        return ALIGNNPredictor(device=device)

    return build


@pytest.fixture
def random_family(request):
    family = request.param
    factory = _crystalformer_factory() if family == "crystalformer" else _alignn_factory()
    saved = dict(registry.PREDICTORS)
    for name in registry.FAMILIES[family]:
        registry.PREDICTORS[name] = dataclasses.replace(saved[name], factory=factory)
    yield family
    registry.PREDICTORS.clear()
    registry.PREDICTORS.update(saved)


@pytest.mark.parametrize("random_family", ["crystalformer", "alignn"], indirect=True)
def test_smoacs_runs_with_each_predictor_family(random_family):
    from smoacs_bench.methods.smoacs import SMOACS

    task = get_task("perovskite", 1.5, 0.04)
    m = SMOACS(predictors=random_family, steps=3, batch_size=4, progress=False, device="cpu")
    assert m.label == {"crystalformer": "S(Cry)", "alignn": "S(ALI)"}[random_family]
    lrs = m.learning_rates(task)
    paper = {"crystalformer": (0.01, 0.02, 6.0), "alignn": (0.5, 0.002, 0.00008)}[random_family]
    assert (lrs["lr_lattice"], lrs["lr_coords"], lrs["lr_atoms"]) == paper
    props = m.propose(task, 4, 0)
    rows = evaluate([p.structure for p in props], [p.band_gap for p in props],
                    [p.formation_energy for p in props], task.criteria(),
                    reasons=[p.meta.get("reason", "") for p in props])
    assert len(rows) == 4 and rows["formula"].notna().all()
    assert rows["neutral"].mean() == 1.0
    assert rows["angles_ok"].mean() == 1.0 and rows["coords_ok"].mean() == 1.0


def test_predictor_family_shortcut():
    from smoacs_bench.methods.smoacs import SMOACS
    from smoacs_bench.methods.tpe import TPE

    assert SMOACS(predictors="alignn").predictor_names() == ("alignn-bandgap", "alignn-eform")
    assert TPE(predictors="crystalformer").predictor_names() == ("crystalformer-bandgap", "crystalformer-eform")
    assert SMOACS().label == "SMOACS(MEGNet)"
    with pytest.raises(ValueError, match="unknown predictors"):
        SMOACS(predictors="cgcnn")
