"""ALIGNN predictor (pure torch): official state_dict layout, kNN graph, gradients, invariances, loading.

The layout fixture (``alignn/alignn_megnet_state_dict_layout.json``) is found via ``$SMOACS_FIXTURE_DIR``
or ``<parent of $SMOACS_DATA_DIR>/fixtures``; the layout test skips without it. The CGCNN table is a
synthetic random (98, 92) table here (the published table is not shipped).
"""

from __future__ import annotations

import io
import json
import zipfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import find_fixture
from pymatgen.core import Lattice, Structure

from smoacs_bench.methods.predictors import alignn as al
from smoacs_bench.methods.predictors.crystals import SoftCrystals


def _layout_path() -> tuple[Path | None, str]:
    folder, why = find_fixture("alignn", ("alignn_megnet_state_dict_layout.json",))
    return (folder / "alignn_megnet_state_dict_layout.json", "") if folder else (None, why)


@pytest.fixture(scope="module")
def layout() -> dict:
    path, why = _layout_path()
    if path is None:
        pytest.skip(why)
    return json.loads(path.read_text())


def _table(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(98, 92, generator=g) < 0.1).double()  # synthetic sparse 0/1 table, like one-hot bins


def _model(seed: int = 0, dtype=torch.float64) -> al.ALIGNNPredictor:
    """Default-init weights plus random BatchNorm statistics, eval mode."""
    torch.manual_seed(seed)
    m = al.ALIGNNPredictor(_table(seed))
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm1d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 1.5)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.1, 0.1)
    return m.to(dtype)


def _synthetic_state_dict(layout: dict) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    sd = {}
    for key, e in layout["state_dict"].items():
        shape, dtype = e["shape"], getattr(torch, e["dtype"])
        if key in layout["rbf_centers_buffers"]:
            sd[key] = torch.tensor(layout["rbf_centers_buffers"][key], dtype=dtype)
        elif dtype == torch.int64:
            sd[key] = torch.tensor(1000, dtype=dtype)
        elif key.endswith("running_var"):
            sd[key] = torch.rand(shape, generator=g, dtype=dtype) + 0.5
        else:
            sd[key] = 0.05 * torch.randn(shape, generator=g, dtype=dtype)
    return sd


NACL_CONV = Structure(
    Lattice.cubic(5.64), ["Na"] * 4 + ["Cl"] * 4,
    [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5], [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5], [0.5, 0.5, 0.5]],
)


def _perturbed(s: Structure, seed: int, amp: float = 0.03) -> Structure:
    rng = np.random.default_rng(seed)
    return Structure(s.lattice, s.species, s.frac_coords + rng.uniform(-amp, amp, (len(s), 3)))


def _triclinic() -> Structure:
    lat = Lattice.from_parameters(4.1, 4.6, 5.2, 81.0, 97.0, 73.0)
    return Structure(lat, ["Ca", "Ti", "O"], [[0.02, 0.05, 0.01], [0.48, 0.53, 0.47], [0.51, 0.07, 0.55]])


# ------------------------------------------------------------------------------------------------ layout


def test_layout_matches_fixture_and_loads_strictly(layout):
    model = al.ALIGNNPredictor(_table())
    own = model.state_dict()
    assert list(own) == list(layout["state_dict"])  # same keys, same order
    for key, e in layout["state_dict"].items():
        assert list(own[key].shape) == e["shape"], key
        assert str(own[key].dtype) == f"torch.{e['dtype']}", key
        is_param = key in dict(model.named_parameters())
        assert is_param == (e["kind"] == "parameter"), key
    assert sum(p.numel() for p in model.parameters()) == layout["n_parameters"]
    assert sum(t.numel() for t in own.values()) == layout["n_state_dict_numbers"]
    for name, rbf in layout["rbf_expansions"].items():
        mod = model.get_submodule(name)
        assert mod.gamma == pytest.approx(rbf["gamma"], rel=0, abs=1e-12)
        assert mod.centers.numel() == rbf["bins"]
    for key, centers in layout["rbf_centers_buffers"].items():
        assert torch.equal(own[key], torch.tensor(centers, dtype=torch.float32)), key

    sd = _synthetic_state_dict(layout)
    loaded = al.ALIGNNPredictor.from_state_dict(sd, atom_table=_table())  # strict=True inside
    for key, v in loaded.state_dict().items():
        assert torch.equal(v, sd[key]), key
    prefixed = al.ALIGNNPredictor.from_state_dict({f"module.{k}": v for k, v in sd.items()}, atom_table=_table())
    assert torch.equal(prefixed.fc.weight, sd["fc.weight"])
    out = loaded(SoftCrystals.from_structures([NACL_CONV]))
    assert out.shape == (1,) and torch.isfinite(out).all()


# ------------------------------------------------------------------------------------------------ graph


def _reference_edges(s: Structure, k: int = 12, cutoff: float = 8.0) -> list[tuple]:
    """ALIGNN nearest_neighbor_edges(use_canonize=True) + build_undirected_edgedata, with pymatgen neighbours."""
    r = cutoff
    while True:
        nbrs = s.get_all_neighbors(r)
        if min(len(n) for n in nbrs) >= k:
            break
        r = max(s.lattice.abc) if r < max(s.lattice.abc) else 2 * r
    edges = defaultdict(set)
    for i, nl in enumerate(nbrs):
        nl = sorted(nl, key=lambda n: n.nn_distance)
        d = np.array([n.nn_distance for n in nl])
        dk = d[k - 1]
        for n, dist in zip(nl, d, strict=True):
            if dist <= dk + al.TIE_TOL:
                j, img = n.index, tuple(int(round(x)) for x in n.image)
                if j < i:
                    edges[(j, i)].add(tuple(-x for x in img))
                else:
                    edges[(i, j)].add(img)
    out = []
    for (i, j), imgs in edges.items():
        for img in imgs:
            out += [(i, j, img), (j, i, tuple(-x for x in img))]
    return sorted(out)


@pytest.mark.parametrize("which", ["nacl_prim", "triclinic", "big_cell", "nacl_perturbed"])
def test_knn_graph_matches_alignn_construction(which):
    s = {
        "nacl_prim": NACL_CONV.get_primitive_structure(),
        "triclinic": _triclinic(),
        "big_cell": Structure(Lattice.from_parameters(9.0, 9.5, 10.0, 90, 90, 90), ["Fe", "O"],
                              [[0, 0, 0], [0.4, 0.3, 0.2]]),  # < 12 neighbours within 8 Å: radius enlarged
        "nacl_perturbed": _perturbed(NACL_CONV, 3),
    }[which]
    c = SoftCrystals.from_structures([s], dtype=torch.float64)
    g = al.build_knn_graph(c)
    ours = sorted((int(a), int(b), tuple(int(round(x)) for x in im))
                  for a, b, im in zip(g.src, g.dst, g.images.tolist(), strict=True))
    assert ours == _reference_edges(s)
    # the kNN selection from a (complete) radius graph passed to forward gives the same graph
    cand = al.build_neighbor_graph(c, 8.0)
    g2 = al.knn_from_candidates(c, cand)
    assert torch.equal(g2.src, g.src) and torch.equal(g2.dst, g.dst) and torch.equal(g2.images, g.images)


def test_line_graph():
    src = torch.tensor([0, 1, 1, 2])
    dst = torch.tensor([1, 0, 2, 1])
    a, b = al.line_graph(src, dst, 3)
    pairs = sorted(zip(a.tolist(), b.tolist(), strict=True))
    ref = sorted((e1, e2) for e1 in range(4) for e2 in range(4) if dst[e1] == src[e2])
    assert pairs == ref


# ------------------------------------------------------------------------------------------------ gradients


def test_finite_difference_gradients_float64():
    model = _model()
    with torch.no_grad():  # make the geometry dependence O(1e-3..1e-2), not O(1e-5), so the check is sharp
        model.edge_embedding[1].layer[0].weight.mul_(20.0)
        model.angle_embedding[1].layer[0].weight.mul_(20.0)
    c0 = SoftCrystals.from_structures([_triclinic()], dtype=torch.float64)
    rng = torch.Generator().manual_seed(5)
    probs = torch.softmax(2.0 * torch.randn(3, 98, generator=rng, dtype=torch.float64), 1)
    graph = al.build_knn_graph(c0)  # fixed

    def f(lat, frac, p):
        return model(SoftCrystals(lat, frac, p, c0.batch), graph).sum()

    inputs = [c0.lattice.clone(), c0.frac_coords.clone(), probs]
    leaves = [x.clone().requires_grad_(True) for x in inputs]
    grads = torch.autograd.grad(f(*leaves), leaves)
    eps = 1e-6
    errors = []
    for idx, (x, gx) in enumerate(zip(inputs, grads, strict=True)):
        flat = range(x.numel()) if idx < 2 else range(0, x.numel(), 7)  # every 7th distribution entry
        for t in flat:
            plus, minus = [v.clone() for v in inputs], [v.clone() for v in inputs]
            plus[idx].view(-1)[t] += eps
            minus[idx].view(-1)[t] -= eps
            fd = (f(*plus) - f(*minus)).item() / (2 * eps)
            errors.append(abs(fd - gx.view(-1)[t].item()) / gx.abs().max().item())
        assert gx.abs().max() > 1e-4
        assert max(errors) < 1e-6, (idx, max(errors))  # observed: 4e-8 lattice, 9e-9 frac, 9e-10 probs
        errors = []
    assert grads[1].sum(0).abs().max() < 1e-15  # translation invariance of the coordinate gradient


# ------------------------------------------------------------------------------------------------ invariances


def test_invariances_eval_mode():
    model = _model(seed=2)
    s = _perturbed(NACL_CONV, 7)
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(98) * 0.2, size=len(s))

    def run(structs, p_list):
        c = SoftCrystals.from_structures(structs, dtype=torch.float64)
        c.atom_probs = torch.as_tensor(np.concatenate(p_list), dtype=torch.float64)
        with torch.no_grad():
            return model(c)

    base = run([s], [probs])
    # translation of all sites (not wrapped, and wrapped)
    shifted = Structure(s.lattice, s.species, s.frac_coords + np.array([0.31, -0.77, 1.42]))
    wrapped = Structure(s.lattice, s.species, (s.frac_coords + np.array([0.31, -0.77, 1.42])) % 1.0)
    # permutation of sites
    perm = rng.permutation(len(s))
    permuted = Structure(s.lattice, [s.species[i] for i in perm], s.frac_coords[perm])
    # 2x1x1 supercell (same per-site distributions on both copies)
    sc = s.copy()
    sc.make_supercell([2, 1, 1])
    sc_probs = np.concatenate([np.repeat(probs[i:i + 1], 2, axis=0) for i in range(len(s))])
    assert [str(x) for x in sc.species[::2]] == [str(x) for x in s.species]  # pymatgen keeps images adjacent
    outs = run([s, shifted, wrapped, permuted, sc], [probs, probs, probs, probs[perm], sc_probs])
    assert torch.allclose(outs, base.expand(5), rtol=0, atol=1e-10), (outs - base).tolist()
    # batch independence
    single = torch.cat([run([x], [p]) for x, p in [(shifted, probs), (sc, sc_probs)]])
    assert torch.allclose(single, outs[[1, 4]], rtol=0, atol=1e-12)


def test_self_loops_doubled_like_alignn():
    """Primitive NaCl: a site's 12 Na-Na (own images) neighbours enter twice, the 6 Na-Cl once."""
    c = SoftCrystals.from_structures([NACL_CONV.get_primitive_structure()], dtype=torch.float64)
    g = al.build_knn_graph(c)
    assert torch.bincount(g.src).tolist() == [30, 30]
    assert int((g.src == g.dst).sum()) == 48


def test_nonfinite_sample_gives_nan_others_unaffected():
    model = _model(seed=3)
    c = SoftCrystals.from_structures([_triclinic(), NACL_CONV], dtype=torch.float64)
    ref = model(c)
    c.lattice = c.lattice.clone()
    c.lattice[0, 0, 0] = float("nan")
    out = model(c)
    assert torch.isnan(out[0]) and torch.allclose(out[1], ref[1], atol=1e-12)


# ------------------------------------------------------------------------------------------------ loading


def test_missing_checkpoint_error_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("SMOACS_MODEL_DIR", str(tmp_path))

    def offline(url, dest):
        raise OSError("network is unreachable\n(errno 101)")

    monkeypatch.setattr(al, "_download", offline)
    with pytest.raises(FileNotFoundError) as info:
        al.load_alignn("mp_e_form_alignnn", atom_table=_table())
    msg = str(info.value)
    assert "\n" not in msg
    assert str(tmp_path / "alignn") in msg and "SMOACS_MODEL_DIR" in msg and "mp_e_form_alignn.zip" in msg


def test_missing_atom_table_error(tmp_path):
    missing = tmp_path / "cgcnn_atom_init.json"
    with pytest.raises(FileNotFoundError, match="cgcnn_atom_init.json"):
        al.ALIGNNPredictor(atom_table=missing)
    missing.write_text(json.dumps({str(z): [float(z % 2)] * 92 for z in range(1, 101)}))
    table, ok = al.load_cgcnn_table(missing)
    assert table.shape == (98, 92) and bool(ok.all())


def test_load_from_figshare_style_zip(tmp_path, monkeypatch):
    torch.manual_seed(4)
    src = al.ALIGNNPredictor(_table())
    buf = io.BytesIO()
    torch.save({"model": src.state_dict(), "epoch": 3}, buf)
    folder = tmp_path / "alignn"
    folder.mkdir()
    with zipfile.ZipFile(folder / "mp_gappbe_alignn.zip", "w") as zf:
        zf.writestr("mp_gappbe_alignnn/checkpoint_3.pt", buf.getvalue())
        zf.writestr("mp_gappbe_alignnn/config.json", json.dumps({"cutoff": 8.0, "max_neighbors": 12}))
    monkeypatch.setenv("SMOACS_MODEL_DIR", str(tmp_path))
    monkeypatch.setattr(al, "_download", lambda url, dest: pytest.fail("must not download"))
    model = al.load_alignn("mp_gappbe_alignnn", atom_table=_table())
    assert model.unit == "eV" and model.k == 12
    c = SoftCrystals.from_structures([_triclinic()])
    assert torch.allclose(model(c), src(c))
    preds = model.predict_structures([_triclinic(), NACL_CONV])
    assert preds.shape == (2,) and np.isfinite(preds).all()


def test_large_batches_run_in_checkpointed_groups_with_the_same_result():
    """Eval mode splits a batch whose line graph exceeds ``max_line_edges``: same outputs and gradients."""
    structs = [_perturbed(NACL_CONV, 1), _triclinic(), _perturbed(NACL_CONV, 2), _triclinic()]

    def grads(budget):
        model = _model(seed=4)
        model.max_line_edges = budget
        c = SoftCrystals.from_structures(structs, dtype=torch.float64)
        c.atom_probs = torch.as_tensor(rng.dirichlet(np.ones(98), size=c.atom_probs.shape[0]))
        leaves = [c.lattice.requires_grad_(True), c.frac_coords.requires_grad_(True),
                  c.atom_probs.requires_grad_(True)]
        graph = model.neighbor_graph(c.detach())
        groups = al._sample_groups(c, graph, budget)
        out = model(c, graph)
        out.sum().backward()
        return out.detach(), [x.grad for x in leaves], groups

    rng = np.random.default_rng(3)
    whole, g_whole, none = grads(None)
    rng = np.random.default_rng(3)
    split, g_split, groups = grads(1)            # every crystal alone
    assert none is None and groups == [(0, 1), (1, 2), (2, 3), (3, 4)]
    assert torch.allclose(split, whole, rtol=0, atol=1e-12)
    for a, b in zip(g_split, g_whole, strict=True):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)
