"""MEGNet predictors on soft crystals vs matgl itself, with real models and real structures."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from pymatgen.core import Lattice, Structure

from smoacs_bench.methods.predictors import (
    BAND_GAP_MODEL,
    FORMATION_ENERGY_MODEL,
    MEGNetPredictor,
    SoftCrystals,
    build_neighbor_graph,
    get_predictor,
    lattice_from_parameters,
    load_matgl_model,
    load_megnet,
)

warnings.filterwarnings("ignore", message="Incompatible model version")
N_PEROV = 24


@pytest.fixture(scope="module")
def matgl_models(model_dir) -> dict:
    return {key: load_matgl_model(name)
            for key, name in (("eform", FORMATION_ENERGY_MODEL), ("bandgap", BAND_GAP_MODEL))}


@pytest.fixture(scope="module")
def predictors(matgl_models) -> dict[str, MEGNetPredictor]:
    return {
        "eform": MEGNetPredictor(copy.deepcopy(matgl_models["eform"]), "megnet-eform", "eV/atom"),
        "bandgap": MEGNetPredictor(copy.deepcopy(matgl_models["bandgap"]), "megnet-bandgap", "eV", state=0),
    }


@pytest.fixture(scope="module")
def structures(data_dir) -> list[Structure]:
    csv = data_dir / "perov_5" / "test.csv"
    if not csv.is_file():
        pytest.skip(f"{csv} missing; set SMOACS_DATA_DIR")
    cifs = pd.read_csv(csv, usecols=["cif"], nrows=N_PEROV)["cif"]
    out = [Structure.from_str(c, fmt="cif") for c in cifs]
    rutile = Structure.from_spacegroup(
        "P4_2/mnm", Lattice.tetragonal(4.594, 2.959), ["Ti", "O"], [[0, 0, 0], [0.305, 0.305, 0]])
    spinel = Structure.from_spacegroup(
        "Fd-3m", Lattice.cubic(8.396), ["Fe", "Fe", "O"],
        [[0.125, 0.125, 0.125], [0.5, 0.5, 0.5], [0.2549, 0.2549, 0.2549]]).get_primitive_structure()
    rng = np.random.default_rng(1)  # triclinic, coordinates outside [0, 1): exercises image bookkeeping
    tric = Structure(Lattice.from_parameters(4.1, 5.3, 4.7, 78, 101, 115), ["Li", "Mn", "O", "O"],
                     rng.uniform(-1.2, 2.2, (4, 3)))
    return [*out, rutile, spinel, tric]


def _matgl(model, s: Structure, key: str) -> float:
    kw = {"state_attr": torch.tensor([0])} if key == "bandgap" else {}
    return float(model.predict_structure(s, **kw))


@pytest.mark.parametrize("key", ["eform", "bandgap"])
def test_one_hot_matches_matgl_predict_structure(key, predictors, matgl_models, structures):
    assert len(structures) >= N_PEROV + 2
    ours = predictors[key].predict_structures(structures)
    ref = np.array([_matgl(matgl_models[key], s, key) for s in structures])
    assert np.isfinite(ref).all() and ref.std() > 0.05  # a real spread of predictions, not a constant
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-4)


@pytest.mark.parametrize("cutoff", [4.0, 5.0])
def test_neighbor_graph_is_matgls_edge_set(cutoff, structures):
    from matgl.config import DEFAULT_ELEMENTS
    from matgl.ext.pymatgen import Structure2Graph

    conv = Structure2Graph(DEFAULT_ELEMENTS, cutoff)
    crystals = SoftCrystals.from_structures(structures, dtype=torch.float64)
    g = build_neighbor_graph(crystals, cutoff)
    ptr = crystals.ptr.tolist()
    for b, s in enumerate(structures):
        ref_g, _, _ = conv.get_graph(s)
        ref = set(zip(ref_g.edge_index[0].tolist(), ref_g.edge_index[1].tolist(),
                      map(tuple, ref_g.pbc_offset.round().long().tolist()), strict=True))
        m = crystals.batch[g.src] == b
        ours = set(zip((g.src[m] - ptr[b]).tolist(), (g.dst[m] - ptr[b]).tolist(),
                       map(tuple, g.images[m].round().long().tolist()), strict=True))
        assert ours == ref, f"structure {b}: {len(ours)} edges vs matgl {len(ref)}"
        assert int(m.sum()) == len(ref)  # no duplicates


def test_batch_equals_single_and_samples_do_not_interact(predictors, structures):
    picks = [structures[0], structures[-3], structures[1], structures[-2], structures[-1]]
    for p in predictors.values():
        crystals = SoftCrystals.from_structures(picks)
        crystals.frac_coords.requires_grad_(True)
        out = p(crystals)
        singles = torch.cat([p(SoftCrystals.from_structures([s])) for s in picks])
        torch.testing.assert_close(out.detach(), singles.detach(), rtol=0, atol=1e-5)
        out[1].backward()
        grad = crystals.frac_coords.grad
        own = crystals.batch == 1
        assert grad[own].abs().sum() > 0
        assert (grad[~own] == 0).all()


def _soft_sample(structures) -> SoftCrystals:
    """Two distorted, partly mixed crystals in float64 (no symmetric point where gradients vanish)."""
    rng = np.random.default_rng(0)
    c = SoftCrystals.from_structures([structures[2], structures[-3]], dtype=torch.float64)
    c.frac_coords = c.frac_coords + torch.as_tensor(rng.normal(0, 0.03, c.frac_coords.shape))
    mix = torch.softmax(torch.as_tensor(rng.normal(0, 1, c.atom_probs.shape)), 1)
    c.atom_probs = 0.8 * c.atom_probs + 0.2 * mix
    return c


@pytest.mark.parametrize("key", ["eform", "bandgap"])
def test_finite_difference_gradients(key, predictors, structures):
    p = copy.deepcopy(predictors[key]).double()
    base = _soft_sample(structures)
    abc0 = base.lattice.norm(dim=2)
    angles0 = torch.tensor([[88.0, 93.0, 91.0], [90.0, 90.0, 90.0]], dtype=torch.float64)
    base.lattice = lattice_from_parameters(abc0, angles0)
    graph = build_neighbor_graph(base, p.cutoff)  # held fixed below
    weights = torch.tensor([1.0, -0.7], dtype=torch.float64)
    rng = np.random.default_rng(3)

    def f(abc, angles, frac, probs):
        c = SoftCrystals(lattice_from_parameters(abc, angles), frac, probs, base.batch)
        return (p(c, graph) * weights).sum()

    x0 = [abc0, angles0, base.frac_coords, base.atom_probs]
    xs = [x.clone().requires_grad_(True) for x in x0]
    f(*xs).backward()
    for k, (name, h) in enumerate([("abc", 1e-5), ("angles", 1e-4), ("frac", 1e-6), ("probs", 1e-6)]):
        v = torch.as_tensor(rng.normal(size=x0[k].shape))
        if name == "probs":
            v = v - v.mean(1, keepdim=True)  # keeps every row summing to one
        plus = [x.clone() for x in x0]
        minus = [x.clone() for x in x0]
        plus[k], minus[k] = x0[k] + h * v, x0[k] - h * v
        with torch.no_grad():
            fd = float((f(*plus) - f(*minus)) / (2 * h))
        ad = float((xs[k].grad * v).sum())
        assert abs(ad) > 1e-4, f"{name}: vanishing directional derivative {ad}"
        assert ad == pytest.approx(fd, rel=1e-5, abs=1e-7), f"{name}: autograd {ad} vs finite difference {fd}"


def test_skin_graph_matches_own_graph(predictors, structures):
    p = predictors["eform"]
    crystals = SoftCrystals.from_structures(structures[:6])
    wide = build_neighbor_graph(crystals, 5.0)
    own = build_neighbor_graph(crystals, p.cutoff)
    assert wide.num_edges > own.num_edges
    torch.testing.assert_close(p(crystals, wide), p(crystals, own), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="cutoff"):
        predictors["bandgap"](crystals, own)


def test_lattice_from_parameters_matches_pymatgen_and_flags_bad_angles():
    rng = np.random.default_rng(7)
    abc = rng.uniform(2, 10, (6, 3))
    angles = rng.uniform(70, 110, (6, 3))
    ours = lattice_from_parameters(torch.as_tensor(abc), torch.as_tensor(angles)).numpy()
    ref = np.stack([Lattice.from_parameters(*a, *g).matrix for a, g in zip(abc, angles, strict=True)])
    np.testing.assert_allclose(ours, ref, atol=1e-10)

    abc_t = torch.tensor([[4.0, 4.0, 4.0], [4.0, 5.0, 6.0]], dtype=torch.float64, requires_grad=True)
    ang_t = torch.tensor([[60.0, 60.0, 150.0], [90.0, 95.0, 100.0]], dtype=torch.float64, requires_grad=True)
    lat = lattice_from_parameters(abc_t, ang_t)
    assert torch.isnan(lat).any((1, 2)).tolist() == [True, False]
    lat[1].sum().backward()  # a failed sample in the batch must not poison the others
    assert torch.isfinite(abc_t.grad).all() and torch.isfinite(ang_t.grad).all()


def test_non_finite_sample_gives_nan_only_for_that_sample(predictors, structures):
    crystals = SoftCrystals.from_structures(structures[:3])
    crystals.lattice[1, 0, 0] = float("nan")
    out = predictors["bandgap"](crystals)
    assert torch.isnan(out).tolist() == [False, True, False]


def test_supported_elements(predictors, structures):
    for p in predictors.values():
        sup = p.supported_elements
        assert sup.shape == (98,) and sup.dtype == torch.bool
        assert int(sup.sum()) == len(p.model.element_types) == 89
        for z in (84, 85, 86, 87, 88, 95, 96, 97, 98):  # Po At Rn Fr Ra Am Cm Bk Cf
            assert not sup[z - 1]
        for z in (1, 8, 22, 83, 89, 94):
            assert sup[z - 1]
    polonium = Structure(Lattice.cubic(3.35), ["Po"], [[0, 0, 0]])
    vals = predictors["eform"].predict_structures([structures[0], polonium])
    assert np.isfinite(vals[0]) and np.isnan(vals[1])


def test_from_and_to_structures_round_trip(structures):
    picks = structures[-3:]
    c = SoftCrystals.from_structures(picks, dtype=torch.float64)
    assert c.num_samples == 3 and c.n_sites.tolist() == [len(s) for s in picks]
    assert torch.all(c.atom_probs.sum(1) == 1)
    for s, t in zip(picks, c.to_structures(), strict=True):
        assert [x.symbol for x in s.species] == [x.symbol for x in t.species]
        np.testing.assert_allclose(s.lattice.matrix, t.lattice.matrix)
        np.testing.assert_allclose(s.frac_coords, t.frac_coords)


def test_missing_model_raises_helpful_error(tmp_path, monkeypatch):
    import matgl

    calls = []

    def offline(name, **kw):
        calls.append(str(name))
        raise RuntimeError("no network in tests")

    from smoacs_bench.data import environment

    monkeypatch.setattr(matgl, "load_model", offline)
    monkeypatch.setenv("SMOACS_MODEL_DIR", str(tmp_path))
    monkeypatch.setenv("SMOACS_OFFLINE", "1")   # no network: fail at once, never ask matgl's hub
    with pytest.raises(FileNotFoundError) as info:
        load_megnet("MEGNet-Bogus-Model")
    msg = str(info.value)
    for part in ("MEGNet-Bogus-Model", "SMOACS_MODEL_DIR", "model.json", "no network", "downloads it by name"):
        assert part in msg
    assert calls == [] and "\n" not in msg
    monkeypatch.setattr(environment, "online", lambda *a, **k: True)   # a network, but the download fails
    with pytest.raises(FileNotFoundError) as info:
        load_megnet("MEGNet-Bogus-Model")
    msg = str(info.value)
    for part in ("MEGNet-Bogus-Model", "SMOACS_MODEL_DIR", "model.json", "download", "no network in tests"):
        assert part in msg
    assert calls == ["MEGNet-Bogus-Model"]


def test_registry(model_dir, monkeypatch):
    monkeypatch.setenv("SMOACS_MODEL_DIR", str(model_dir))
    p = get_predictor("megnet-eform")
    assert (p.name, p.unit, p.cutoff) == ("megnet-eform", "eV/atom", 4.0)
    with pytest.raises(KeyError, match="megnet-bandgap"):
        get_predictor("nope")
