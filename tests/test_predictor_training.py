"""`smoacs-bench train crystalformer|alignn`: official checkpoint formats, resuming, tiny datasets.

The datasets are written by the tests: the first rows of perov_5 as a CDVAE-format folder and as a
MEGNet-format JSON. The exported files are read back by the loaders of the official checkpoints.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import find_fixture

from smoacs_bench.data.datasets import find_dataset, load_cdvae_csv, property_labels
from smoacs_bench.methods.predictors.training import (
    heldout_predictor,
    heldout_predictor_markdown,
    load_trained,
    train_predictor,
)

QUIET = {"progress": False, "log": lambda *_: None}


@pytest.fixture(scope="module")
def tiny_cdvae(tmp_path_factory, data_dir):
    """A CDVAE-format folder: 10 / 3 / 3 perov_5 rows in train / val / test.csv."""
    src = data_dir / "perov_5" / "test.csv"
    csv.field_size_limit(1 << 30)
    with open(src, newline="") as fh:
        rows = list(csv.reader(fh))[:17]
    out = tmp_path_factory.mktemp("tiny") / "perov_tiny"
    out.mkdir()
    for name, part in (("train", rows[1:11]), ("val", rows[11:14]), ("test", rows[14:17])):
        with open(out / f"{name}.csv", "w", newline="") as fh:
            csv.writer(fh).writerows([rows[0], *part])
    return out


@pytest.fixture(scope="module")
def tiny_megnet(tmp_path_factory, data_dir):
    """A MEGNet-format JSON (material_id, structure as CIF, formation_energy_per_atom, band_gap) of 8 rows."""
    records, _ = load_cdvae_csv(data_dir / "perov_5" / "val.csv", limit=8)
    entries = [{"material_id": f"mp-{r.material_id}", "structure": r.structure.to(fmt="cif"),
                "formation_energy_per_atom": property_labels(r)[0], "band_gap": property_labels(r)[1]}
               for r in records]
    path = tmp_path_factory.mktemp("megnet") / "mp.2018.6.1.json"
    path.write_text(json.dumps(entries))
    return path


@pytest.fixture(scope="module")
def crystalformer_run(tiny_cdvae, tmp_path_factory):
    out = tmp_path_factory.mktemp("cry") / "e_form"
    # 20 epochs: weight averaging over the last 2 (min(50, epochs // 10)), as the release's last 50 of 500
    return train_predictor("crystalformer", str(tiny_cdvae), "e_form", out, epochs=20, batch_size=4, **QUIET)


def test_datasets_are_found_by_path(tiny_cdvae, tiny_megnet):
    assert [p.name for p in find_dataset(str(tiny_cdvae))] == ["train.csv", "val.csv", "test.csv"]
    assert find_dataset(str(tiny_megnet)) == [tiny_megnet]
    assert find_dataset(str(tiny_megnet.parent)) == [tiny_megnet]
    with pytest.raises(FileNotFoundError, match="holds neither"):
        find_dataset(str(tiny_megnet.parent.parent))


def test_crystalformer_checkpoint_has_the_official_layout(crystalformer_run, tiny_cdvae):
    from smoacs_bench.methods.predictors.crystalformer import (
        CrystalformerConfig,
        CrystalformerPredictor,
        load_crystalformer,
    )

    assert crystalformer_run.file.name == "perov_tiny-e_form-layer4.ckpt"
    assert (crystalformer_run.folder / "history.png").stat().st_size > 0
    ckpt = torch.load(crystalformer_run.file, weights_only=True)
    sd = ckpt["state_dict"]
    swa = {k.removeprefix("swa_model.module."): v for k, v in sd.items() if k.startswith("swa_model.module.")}
    assert set(swa) == {k.removeprefix("model.") for k in sd if k.startswith("model.")}
    assert int(sd["swa_model.n_averaged"]) == 2
    for layer in range(4):
        key = f"encoder.layers.{layer}.self_attn.gauss_scale"
        assert float(swa[key][0]) > 0 and torch.equal(swa[key], sd[f"model.{key}"])   # set on the first batch
    assert not torch.equal(swa["mlp.3.weight"], sd["model.mlp.3.weight"])            # averaged, not the last
    train = load_cdvae_csv(tiny_cdvae / "train.csv")[0]
    split = json.loads((crystalformer_run.folder / "split.json").read_text())
    labels = {r.material_id: property_labels(r)[0] for r in train + load_cdvae_csv(tiny_cdvae / "val.csv")[0]
              + load_cdvae_csv(tiny_cdvae / "test.csv")[0]}
    y = np.array([labels[i] for i in split["train"]])
    assert float(sd["target_mean"]) == pytest.approx(y.mean(), rel=1e-6)
    assert float(sd["target_std"]) == pytest.approx(y.std(), rel=1e-6)

    # the official loader folds the normalisation into the last layer: same as raw * std + mean
    loaded = load_crystalformer(crystalformer_run.file)
    raw = CrystalformerPredictor(CrystalformerConfig.from_state_dict(swa))
    raw.load_state_dict(swa, strict=True)
    raw.eval()
    structures = [r.structure for r in train[:4]]
    expect = raw.predict_structures(structures) * float(sd["target_std"]) + float(sd["target_mean"])
    np.testing.assert_allclose(loaded.predict_structures(structures), expect, rtol=1e-5, atol=1e-6)
    assert load_trained(crystalformer_run.folder).name == "crystalformer-e_form(perov_tiny)"


def test_training_resumes_to_the_same_weights(crystalformer_run, tiny_cdvae, tmp_path):
    out = tmp_path / "resumed"
    kw = dict(epochs=20, batch_size=4, **QUIET)
    # stopped inside the averaging window (epochs 19 and 20), resumed: the same weights and averages
    assert train_predictor("crystalformer", str(tiny_cdvae), "e_form", out, stop_after=19, **kw) is None
    assert not (out / crystalformer_run.file.name).exists()          # nothing exported from a partial run
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 19
    train_predictor("crystalformer", str(tiny_cdvae), "e_form", out, **kw)
    a = torch.load(crystalformer_run.file, weights_only=True)["state_dict"]
    b = torch.load(out / crystalformer_run.file.name, weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="other settings"):
        train_predictor("crystalformer", str(tiny_cdvae), "e_form", out, epochs=20, batch_size=4, lr=1e-3, **QUIET)


def test_alignn_trains_on_a_megnet_file_and_loads_strictly(tiny_megnet, tmp_path):
    from smoacs_bench.methods.predictors.alignn import load_alignn

    result = train_predictor("alignn", str(tiny_megnet), "bandgap", tmp_path / "al", epochs=1, batch_size=4, **QUIET)
    assert result.file.name == "megnet_bandgap_alignn.zip"
    model = load_alignn(result.file)               # strict load of the figshare-style zip
    folder, why = find_fixture("alignn", ("alignn_megnet_state_dict_layout.json",))
    if folder is not None:
        layout = json.loads((folder / "alignn_megnet_state_dict_layout.json").read_text())["state_dict"]
        assert {k: list(v.shape) for k, v in model.state_dict().items()} == {k: v["shape"] for k, v in layout.items()}
    row = heldout_predictor(result.folder)
    assert row["model"] == "alignn" and row["n"] == 1 and np.isfinite(row["mae"]) and np.isfinite(row["mae_median"])
    assert "ALIGNN(megnet)" in heldout_predictor_markdown([row])


def test_cli_train_and_heldout(crystalformer_run, tiny_cdvae, tmp_path):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "smoacs_bench.benchmark.cli", *args],
                              capture_output=True, text=True)

    bad = cli("train", "crystalformer", "--dataset", str(tiny_cdvae), "--out", str(tmp_path / "x"))
    assert bad.returncode == 1 and "needs --target" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "x").exists()
    bad = cli("train", "megnet", "--dataset", str(tiny_cdvae), "--target", "e_form", "--out", str(tmp_path / "y"))
    assert bad.returncode == 1 and "trainable: ftcp, crystalformer, alignn" in bad.stderr
    shown = cli("heldout", "--model", str(crystalformer_run.folder))
    assert shown.returncode == 0, shown.stderr
    assert "| Crystalformer(perov_tiny) | " in shown.stdout and "not the paper's published" in shown.stdout


def _crystalformer_fixture():
    folder, why = find_fixture("crystalformer", ("state_dict.pt", "inputs.npz"))
    if folder is None:
        pytest.skip(why)
    return torch.load(folder / "state_dict.pt", weights_only=True), dict(np.load(folder / "inputs.npz"))


def test_first_training_batch_sets_gauss_scale_as_the_official_code():
    """The fixture's gauss_scale came from one training-mode pass over its 6 one-hot crystals."""
    from smoacs_bench.methods.predictors.crystalformer import CrystalformerConfig, CrystalformerPredictor
    from smoacs_bench.methods.predictors.crystals import SoftCrystals

    state, inp = _crystalformer_fixture()
    model = CrystalformerPredictor(CrystalformerConfig.from_state_dict(state))
    model.load_state_dict(state, strict=True)
    model = model.double()
    keys = [k for k in state if k.endswith("gauss_scale")]
    for k in keys:
        model.state_dict()[k].zero_()
    crystals = SoftCrystals(*(torch.as_tensor(inp[k]) for k in ("lattice", "frac_coords", "dist_onehot", "batch")))
    with pytest.raises(RuntimeError, match="unset"):
        model.eval()(crystals)
    with torch.no_grad():
        model.train()(crystals)
    for k in keys:
        np.testing.assert_allclose(model.state_dict()[k].numpy(), state[k].double().numpy(), rtol=1e-6, atol=1e-9)


def test_tfixup_init_has_the_official_scales():
    from smoacs_bench.methods.predictors.crystalformer import CrystalformerPredictor, tfixup_init_

    state, _ = _crystalformer_fixture()
    torch.manual_seed(1)
    fresh = tfixup_init_(CrystalformerPredictor()).state_dict()
    assert fresh.keys() == state.keys()
    for k, v in state.items():
        if v.numel() > 1 and "gauss_scale" not in k and float(v.std()) > 0:
            rel = 0.1 if v.numel() >= 1000 else 0.3             # sampling noise of small tensors
            assert float(fresh[k].std()) == pytest.approx(float(v.std()), rel=rel), k
            if "lattice_pos_weights" not in k and "input_embeddings" not in k:   # uniform: same bound
                assert float(fresh[k].abs().max()) == pytest.approx(float(v.abs().max()), rel=0.02), k


def test_smoacs_runs_with_predictors_trained_here(crystalformer_run, tiny_cdvae, tmp_path):
    """A training folder is a predictor name: labelled with its data, never S(Cry), with the Crystalformer
    learning rates of the paper (A.7), and the constraints that hold by construction hold."""
    from smoacs_bench.data.task import get_task
    from smoacs_bench.evaluation.criteria import evaluate
    from smoacs_bench.methods.smoacs import SMOACS

    gap = train_predictor("crystalformer", str(tiny_cdvae), "bandgap", tmp_path / "gap", epochs=1, batch_size=4,
                          **QUIET)
    task = get_task("perovskite", 1.5, 0.04)
    m = SMOACS(band_gap_model=str(gap.folder), formation_energy_model=str(crystalformer_run.folder), steps=3,
               batch_size=4, progress=False, device="cpu")
    assert m.label == "SMOACS(Crystalformer(perov_tiny))"
    lrs = m.learning_rates(task)
    assert (lrs["lr_lattice"], lrs["lr_coords"], lrs["lr_atoms"]) == (0.01, 0.02, 6.0)
    props = m.propose(task, 4, 0)
    rows = evaluate([p.structure for p in props], [p.band_gap for p in props],
                    [p.formation_energy for p in props], task.criteria())
    assert rows["neutral"].mean() == 1.0 and rows["angles_ok"].mean() == 1.0 and rows["coords_ok"].mean() == 1.0
    with pytest.raises(ValueError, match="predicts formation_energy, not band_gap"):
        SMOACS(band_gap_model=str(crystalformer_run.folder), steps=1, progress=False).propose(task, 1, 0)
