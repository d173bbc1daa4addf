"""Crystalformer predictor against the authors' fixture (``fixtures/crystalformer``; see its README).

The fixture holds a random-init state dict in the official layout, six crystals (one-hot and soft species)
and the official pure-torch code's outputs and input gradients. Found via ``$SMOACS_FIXTURE_DIR`` (the
fixtures folder or its ``crystalformer`` subfolder), else ``<parent of $SMOACS_DATA_DIR>/fixtures/crystalformer``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import find_fixture
from pymatgen.core import Lattice, Structure

from smoacs_bench.methods.predictors import SoftCrystals
from smoacs_bench.methods.predictors import crystalformer as cfm
from smoacs_bench.methods.predictors.crystalformer import (
    CrystalformerConfig,
    CrystalformerPredictor,
    load_crystalformer,
)

# Tolerances of the fixture README: outputs absolute; gradients relative to max|reference array|.
TOL = {"f64": {"out": 1e-12, "grad": 1e-9, "inter": 1e-10}, "f32": {"out": 1e-6, "grad": 1e-4}}
DTYPES = {"f64": torch.float64, "f32": torch.float32}


def _fixture_dir() -> tuple[Path | None, str]:
    return find_fixture("crystalformer", ("state_dict.pt", "outputs.npz"))


@pytest.fixture(scope="module")
def fx():
    d, why = _fixture_dir()
    if d is None:
        pytest.skip(why)
    return {
        "dir": d,
        "inp": dict(np.load(d / "inputs.npz")),
        "out": dict(np.load(d / "outputs.npz")),
        "state": torch.load(d / "state_dict.pt", weights_only=True),
        "hp": json.loads((d / "hyperparameters.json").read_text()),
    }


def _model(fx, dtype=torch.float64, **kw) -> CrystalformerPredictor:
    m = CrystalformerPredictor(CrystalformerConfig.from_state_dict(fx["state"]), **kw)
    m.load_state_dict(fx["state"], strict=True)
    return m.eval().requires_grad_(False).to(dtype)


@pytest.fixture(scope="module")
def model64(fx):
    return _model(fx)


def _inputs(fx, kind: str, dtype: torch.dtype, grad: bool = True):
    i = fx["inp"]
    lat = torch.tensor(i["lattice"], dtype=dtype, requires_grad=grad)
    frac = torch.tensor(i["frac_coords"], dtype=dtype, requires_grad=grad)
    probs = torch.tensor(i[f"dist_{kind}"], dtype=dtype, requires_grad=grad)
    return lat, frac, probs, torch.tensor(i["batch"])


def test_hyperparameters_and_strict_load(fx):
    arch = fx["hp"]["architecture_relevant"]
    cfg = CrystalformerConfig.from_state_dict(fx["state"])
    assert (cfg.num_layers, cfg.model_dim, cfg.head_num, cfg.ff_dim) == (4, 128, 8, 512)
    assert cfg == CrystalformerConfig()  # the defaults are the MEGNet-checkpoint architecture
    assert (arch["num_layers"], arch["model_dim"], arch["head_num"], arch["ff_dim"]) == (4, 128, 8, 512)
    assert arch["lattice_range"] == cfg.lattice_range and arch["value_pe_dist_real"] == cfg.value_pe_dist_real
    assert arch["scale_real"] == [cfg.scale_real] and arch["gauss_lb_real"] == cfg.gauss_lb_real
    assert arch["positive_func"] == f"elu={cfg.elu_beta}" and arch["value_pe_dist_max"] == cfg.value_pe_dist_max
    assert arch["value_pe_width_scale"] == cfg.value_pe_width_scale and arch["embedding_dim"] == list(cfg.embedding_dim)
    assert arch["domain"] == "real" and arch["pooling"] == "avr" and arch["norm_type"] == "no"
    assert arch["pre_pooling_op"] == "no" and arch["t_fixup_init"] and not arch["exclude_self"]
    assert fx["hp"]["runtime"]["ATOM_FEAT_DIM"] == cfg.atom_feat_dim == 98
    m = CrystalformerPredictor(cfg)
    assert set(m.state_dict()) == set(fx["state"])
    assert {k: list(v.shape) for k, v in m.state_dict().items()} == fx["hp"]["state_dict_keys"]
    res = m.load_state_dict(fx["state"], strict=True)
    assert not res.missing_keys and not res.unexpected_keys
    for k, v in fx["hp"]["gauss_scale_after_first_train_step"].items():
        assert torch.allclose(m.state_dict()[k], torch.tensor(v))
    assert m.supported_elements.shape == (98,) and bool(m.supported_elements.all()) and m.cutoff == 0.0


@pytest.mark.parametrize("tag", ["f64", "f32"])
@pytest.mark.parametrize("kind", ["onehot", "soft"])
def test_outputs_and_gradients_match_fixture(fx, model64, kind, tag):
    model = model64 if tag == "f64" else _model(fx, torch.float32)
    ref, tol = fx["out"], TOL[tag]
    lat, frac, probs, batch = _inputs(fx, kind, DTYPES[tag])
    out = model(lat, frac, probs, batch)
    out.sum().backward()
    assert out.dtype == DTYPES[tag]
    assert np.abs(out.detach().numpy() - ref[f"out_{kind}_{tag}"]).max() <= tol["out"]
    for name, g in (("dist", probs.grad), ("frac", frac.grad), ("lattice", lat.grad)):
        r = ref[f"grad_{name}_{kind}_{tag}"]
        assert np.abs(g.numpy() - r).max() <= tol["grad"] * np.abs(r).max(), name
    if tag == "f64":  # the partial (Cartesian) gradients follow from the total ones
        b = fx["inp"]["batch"]
        lat_np, frac_np = fx["inp"]["lattice"], fx["inp"]["frac_coords"]
        g_pos = np.einsum("sj,sij->si", frac.grad.numpy(), np.linalg.inv(lat_np[b]))  # g_frac = g_pos L^T
        r = ref[f"grad_pos_cart_partial_{kind}_f64"]
        assert np.abs(g_pos - r).max() <= tol["grad"] * np.abs(r).max()
        g_lat = lat.grad.numpy().copy()
        np.add.at(g_lat, b, -np.einsum("si,sj->sij", frac_np, g_pos))
        r = ref[f"grad_lattice_partial_{kind}_f64"]
        assert np.abs(g_lat - r).max() <= tol["grad"] * np.abs(r).max()


@pytest.mark.parametrize("kind", ["onehot", "soft"])
def test_intermediates_f64(fx, model64, kind):
    lat, frac, probs, batch = _inputs(fx, kind, torch.float64, grad=False)
    with torch.no_grad():
        x, b, *_ = model64.encode(lat, frac, probs, batch)
    assert np.abs(x.numpy() - fx["out"][f"encoder_out_{kind}_f64"]).max() <= TOL["f64"]["inter"]
    pooled = torch.zeros(6, x.shape[1], dtype=x.dtype).index_add(0, b, x) / torch.bincount(b)[:, None]
    assert np.abs(pooled.numpy() - fx["out"][f"pooled_{kind}_f64"]).max() <= TOL["f64"]["inter"]


def test_exact_paths_match_fixture(fx):
    """No image pruning, and many checkpointed chunks, give the same numbers as the default path."""
    lat, frac, probs, batch = _inputs(fx, "soft", torch.float64)
    ref = fx["out"]
    for kw in ({"prune_log_weight": None}, {"chunk_elements": 20_000}):
        for t in (lat, frac, probs):
            t.grad = None
        out = _model(fx, **kw)(lat, frac, probs, batch)
        out.sum().backward()
        assert np.abs(out.detach().numpy() - ref["out_soft_f64"]).max() <= TOL["f64"]["out"], kw
        for name, g in (("dist", probs.grad), ("frac", frac.grad), ("lattice", lat.grad)):
            r = ref[f"grad_{name}_soft_f64"]
            assert np.abs(g.numpy() - r).max() <= TOL["f64"]["grad"] * np.abs(r).max(), (kw, name)


def _fd_check(model, lat, frac, probs, batch, which, entries, h=1e-6):
    """Central differences of sum(output) at ``entries`` of input ``which`` vs autograd; max relative error."""
    xs = [lat.clone().requires_grad_(True), frac.clone().requires_grad_(True), probs.clone().requires_grad_(True)]
    model(*xs, batch).sum().backward()
    g = xs[which].grad
    errs = []
    for idx in entries:
        vals = []
        for sign in (1, -1):
            ys = [t.detach().clone() for t in xs]
            ys[which][idx] += sign * h
            with torch.no_grad():
                vals.append(model(*ys, batch).sum().item())
        errs.append(abs((vals[0] - vals[1]) / (2 * h) - g[idx].item()))
    return max(errs) / g.abs().max().item()


def test_finite_difference_gradients_f64(fx, model64):
    """The synthetic triclinic crystal (5 sites, P1: no symmetry zeroes a gradient). Species gradients are
    exact in both modes; geometry gradients are exact with ``basis_grad=True`` (the official backward,
    reproduced by default, drops the derivative of the Gaussian value basis)."""
    i = fx["inp"]
    sel = i["batch"] == 4
    lat = torch.tensor(i["lattice"][4:5])
    frac, probs = torch.tensor(i["frac_coords"][sel]), torch.tensor(i["dist_soft"][sel])
    batch = torch.zeros(int(sel.sum()), dtype=torch.long)
    exact = _model(fx, basis_grad=True)
    rng = np.random.default_rng(0)
    p_idx = [(int(a), int(b)) for a, b in zip(rng.integers(0, 5, 8), rng.integers(0, 98, 8), strict=True)]
    p_idx += [(s, int(np.argmax(i["dist_onehot"][sel][s]))) for s in range(5)]
    for model in (model64, exact):
        assert _fd_check(model, lat, frac, probs, batch, 2, p_idx) < 1e-6
    assert _fd_check(exact, lat, frac, probs, batch, 1, [(s, k) for s in range(5) for k in range(3)]) < 1e-6
    assert _fd_check(exact, lat, frac, probs, batch, 0, [(0, a, k) for a in range(3) for k in range(3)]) < 1e-6
    with torch.no_grad():
        assert torch.equal(model64(lat, frac, probs, batch), exact(lat, frac, probs, batch))


def test_invariance_to_site_order_and_translation(fx, model64):
    lat, frac, probs, batch = _inputs(fx, "soft", torch.float64, grad=False)
    with torch.no_grad():
        ref = model64(lat, frac, probs, batch)
        perm = torch.from_numpy(np.random.default_rng(1).permutation(len(batch)))  # also interleaves crystals
        out_perm = model64(lat, frac[perm], probs[perm], batch[perm])
        shift = torch.from_numpy(np.random.default_rng(2).uniform(-0.7, 0.7, (6, 3)))
        out_shift = model64(lat, frac + shift[batch], probs, batch)  # no wrapping
    assert torch.allclose(out_perm, ref, rtol=0, atol=1e-12)
    assert torch.allclose(out_shift, ref, rtol=0, atol=1e-12)


def test_soft_crystals_interface_structures_and_nan(fx, model64):
    i, ref = fx["inp"], fx["out"]["out_onehot_f64"]
    lat, frac, probs, batch = _inputs(fx, "onehot", torch.float64, grad=False)
    with torch.no_grad():
        out = model64(SoftCrystals(lat, frac, probs, batch), None)
        bad = lat.clone()
        bad[2, 0, 0] = float("nan")
        out_nan = model64(bad, frac, probs, batch)
    assert np.abs(out.numpy() - ref).max() <= TOL["f64"]["out"]
    assert torch.isnan(out_nan[2]) and torch.equal(out_nan[[0, 1, 3, 4, 5]], out[[0, 1, 3, 4, 5]])
    structures = [Structure(Lattice(i["lattice"][b]), [int(z) for z in i["atomic_numbers"][i["batch"] == b]],
                            i["frac_coords"][i["batch"] == b]) for b in range(6)]
    structures.append(Structure(Lattice.cubic(4.0), ["Es", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]))  # Z = 99
    pred = model64.predict_structures(structures, batch_size=4)
    assert pred.shape == (7,) and np.isnan(pred[6])
    assert np.abs(pred[:6] - ref).max() <= TOL["f64"]["out"]


def test_unset_gauss_scale_refuses():
    lat = torch.eye(3)[None] * 4.0
    with pytest.raises(RuntimeError, match="gauss_scale"):
        CrystalformerPredictor()(lat, torch.zeros(1, 3), torch.full((1, 98), 1 / 98), torch.zeros(1, dtype=torch.long))


@pytest.fixture
def no_network(monkeypatch):
    """Record download attempts; never touch the network."""
    calls = []

    def offline(dest_dir):
        calls.append(Path(dest_dir))
        raise OSError("offline (test)")

    def refuse(*a, **k):
        raise AssertionError("network access attempted in a test")

    monkeypatch.setattr(cfm, "_download_weights", offline)
    monkeypatch.setattr(cfm.urllib.request, "urlopen", refuse)
    return calls


def test_official_checkpoint_layout_and_target_normalisation(fx, tmp_path, monkeypatch, no_network):
    state = {f"swa_model.module.{k}": v for k, v in fx["state"].items()}
    state.update({f"model.{k}": torch.zeros_like(v) for k, v in fx["state"].items()})  # the non-SWA copy
    state.update(target_mean=torch.tensor([0.5]), target_std=torch.tensor([2.0]))
    (tmp_path / "crystalformer").mkdir()
    torch.save({"state_dict": state, "epoch": 1}, tmp_path / "crystalformer" / "megnet-bandgap-layer4.ckpt")
    monkeypatch.setenv("SMOACS_MODEL_DIR", str(tmp_path))
    model = load_crystalformer("megnet-bandgap-layer4.ckpt")
    assert (model.name, model.unit) == ("crystalformer-bandgap", "eV") and not model.training
    assert not any(p.requires_grad for p in model.parameters())
    lat, frac, probs, batch = _inputs(fx, "onehot", torch.float32, grad=False)
    with torch.no_grad():
        out = model(lat, frac, probs, batch).double().numpy()
    assert np.abs(out - (2.0 * fx["out"]["out_onehot_f32"] + 0.5)).max() <= 1e-5
    plain = load_crystalformer(fx["dir"] / "state_dict.pt")  # a plain state dict loads too
    assert torch.equal(plain.mlp[-1].weight, fx["state"]["mlp.3.weight"])
    assert not no_network


def test_missing_checkpoint_names_file_folder_and_variable(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("SMOACS_MODEL_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError) as err:
        load_crystalformer("megnet-e_form-layer4.ckpt")
    msg = str(err.value)
    assert "\n" not in msg and "megnet-e_form-layer4.ckpt" in msg
    assert str(tmp_path / "crystalformer") in msg and "SMOACS_MODEL_DIR" in msg
    assert no_network == [tmp_path / "crystalformer"]  # it tried the (patched) download once
    monkeypatch.delenv("SMOACS_MODEL_DIR")
    with pytest.raises(FileNotFoundError, match="SMOACS_MODEL_DIR.*crystalformer") as err:
        load_crystalformer("megnet-bandgap-layer4.ckpt")
    assert "megnet-bandgap-layer4.ckpt" in str(err.value) and len(no_network) == 1
