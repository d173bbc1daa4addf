"""FTCP: the representation against the authors' fixture, decoding, a tiny training, the method."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import find_fixture
from pymatgen.core import Lattice, Structure

from smoacs_bench.data.datasets import Record
from smoacs_bench.methods.ftcp.representation import (
    ELEMENTS,
    Layout,
    RepresentationError,
    decode,
    kpoints,
    represent,
    to_structure,
)

FIXTURE_FILES = ("ftcp_unscaled.npz", "ftcp_kpoints_hkl.npz", "ftcp_meta_and_decoding.json")
L = Layout()


@pytest.fixture(scope="module")
def fixture():
    folder, why = find_fixture("ftcp", FIXTURE_FILES)
    if folder is None:
        pytest.skip(why)
    meta = json.loads((folder / "ftcp_meta_and_decoding.json").read_text())
    return folder, np.load(folder / "ftcp_unscaled.npz"), np.load(folder / "ftcp_kpoints_hkl.npz"), meta


def _cif(folder: Path, name: str) -> Structure:
    return Structure.from_str((folder / f"{name}.cif").read_text(), fmt="cif")


def test_element_list_is_the_released_one(fixture):
    _, mats, _, _ = fixture
    assert list(mats["element_list_rows_0_102"]) == list(ELEMENTS)


def test_representation_matches_the_released_code(fixture):
    folder, mats, kp, meta = fixture
    assert len(meta["included"]) == 10
    for name in meta["included"]:
        ref = mats[name]
        m = represent(_cif(folder, name))
        assert m.shape == ref.shape == (238, 63)
        exact = np.r_[0:L.row_abc, L.row_occupancy:L.row_g]          # element and occupancy rows
        assert np.array_equal(m[exact], ref[exact]), name
        assert np.array_equal(m == 0, ref == 0), f"{name}: zero pattern differs"
        hkl, g = kpoints(_cif(folder, name).lattice)
        assert np.array_equal(hkl, kp[name]), f"{name}: hkl selection"
        np.testing.assert_allclose(g, kp[f"{name}__g_hkl"], rtol=0, atol=1e-12)
        np.testing.assert_allclose(m[L.row_abc:L.row_coords], ref[L.row_abc:L.row_coords], rtol=0, atol=1e-9)
        np.testing.assert_allclose(m[L.row_coords:L.row_occupancy], ref[L.row_coords:L.row_occupancy],
                                   rtol=0, atol=1e-12)
        np.testing.assert_allclose(m[L.row_g], ref[L.row_g], rtol=0, atol=1e-12)
        np.testing.assert_allclose(m[L.row_props:], ref[L.row_props:], rtol=1e-10, atol=1e-9)


def test_five_element_perovskites_are_skipped_with_a_reason(fixture):
    folder, _, _, meta = fixture
    assert len(meta["excluded"]) == 2
    for name in meta["excluded"]:
        with pytest.raises(RepresentationError, match="5 elements > max_elms = 4"):
            represent(_cif(folder, name))


def test_decoding_matches_the_released_get_info(fixture):
    folder, mats, _, meta = fixture
    for name in meta["included"]:
        ref = meta["decoded"][name]
        d = decode(mats[name])
        assert d.species == ref["pred_formula_sites"], name
        np.testing.assert_allclose(d.abc, ref["pred_abc"], atol=1e-8)
        np.testing.assert_allclose(d.angles, ref["pred_angles"], atol=1e-8)
        np.testing.assert_allclose(d.frac_coords, ref["pred_site_frac_coords"], atol=1e-8)


def test_represent_then_decode_gives_the_crystal_back(fixture):
    folder, _, _, meta = fixture
    for name in meta["included"]:
        s = _cif(folder, name)
        back = to_structure(decode(represent(s)))
        assert back.composition == s.composition, name
        np.testing.assert_allclose(back.lattice.abc, s.lattice.abc, atol=1e-6)
        np.testing.assert_allclose(back.lattice.angles, s.lattice.angles, atol=1e-6)
        np.testing.assert_allclose(back.frac_coords, s.frac_coords, atol=1e-6)
        assert [x.symbol for x in back.species] == [x.symbol for x in s.species]


def test_an_invalid_decode_gives_a_reason_not_a_crash():
    s = Structure(Lattice.cubic(4.0), ["Sr", "Ti", "O", "O", "O"],
                  [[0, 0, 0], [.5, .5, .5], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]])
    m = represent(s)
    m[L.row_angles, :3] = [90, 90, 200]
    with pytest.raises(ValueError, match="angle"):
        to_structure(decode(m))
    m = represent(s)
    m[L.row_abc, 0] = -1.0
    with pytest.raises(ValueError, match="non-positive"):
        to_structure(decode(m))
    empty = np.zeros_like(m)
    d = decode(empty)                       # nothing occupied: one "H" site, as released
    assert d.species == ["H"]


def test_unrepresentable_rows_are_skipped_and_counted():
    from smoacs_bench.methods.ftcp.train import represent_records

    lat = Lattice.cubic(5.0)
    good = Structure(lat, ["Na", "Cl"], [[0, 0, 0], [.5, .5, .5]])
    five = Structure(lat, ["Na", "K", "Rb", "Cs", "Cl"], [[0, 0, 0], [.5, 0, 0], [0, .5, 0], [0, 0, .5], [.5, .5, .5]])
    big = Structure(Lattice.cubic(12.0), ["Na"] * 21, np.random.default_rng(0).random((21, 3)))
    odd = Structure(lat, ["Rf", "Cl"], [[0, 0, 0], [.5, .5, .5]])
    props = {"heat_ref": -1.0, "ind_gap": 1.0, "dir_gap": 1.2}
    recs = [Record(str(i), s, props) for i, s in enumerate([good, five, big, odd])]
    recs.append(Record("nolabel", good, {"heat_ref": -1.0}))
    rep = represent_records(recs)
    assert rep.ids == ["0"]
    assert rep.y.tolist() == [[-1.0, 1.0]]                 # gap = min(dir_gap, ind_gap)
    assert len(rep.problems) == 4
    text = "\n".join(rep.problems)
    for expected in ("1: 5 elements > max_elms = 4", "2: 21 sites > max_sites = 20", "3: no CGCNN features for Rf",
                     "nolabel: no band-gap column"):
        assert expected in text


def test_missing_model_folder_names_the_train_command(tmp_path):
    from smoacs_bench.methods.ftcp.model import ModelNotFoundError, load_model

    with pytest.raises(ModelNotFoundError, match="smoacs-bench train ftcp"):
        load_model(tmp_path / "nope")


def test_cli_run_without_a_model_is_a_one_line_error(tmp_path):
    from smoacs_bench.benchmark.cli import main

    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exc:
        main(["run", "--method", "ftcp", "--param", f"model={tmp_path / 'nope'}", "--n-samples", "2",
              "--out", str(out), "--no-progress", "--no-crossjudge"])
    message = str(exc.value.code)
    assert len(message.splitlines()) == 1 and "smoacs-bench train ftcp" in message
    assert not out.exists()


def test_keras_backend_defaults_to_torch_without_tensorflow(tmp_path):
    """A keras.json naming TensorFlow (Keras writes one itself) does not break the import without it."""
    home = tmp_path / "keras"
    home.mkdir()
    (home / "keras.json").write_text(json.dumps({"backend": "tensorflow"}))
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"} | {"KERAS_HOME": str(home)}
    code = "from smoacs_bench.methods.ftcp.network import keras; print(keras.backend.backend())"
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    import importlib.util

    expected = "tensorflow" if importlib.util.find_spec("tensorflow") else "torch"
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().splitlines()[-1] == expected


# -- a tiny training: 64 crystals of perov_5, 2 epochs --------------------------------------------------
@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, data_dir):
    from smoacs_bench.methods.ftcp.train import train

    out = tmp_path_factory.mktemp("ftcp") / "model"
    train("perov_5", out, epochs=2, limit=40, data_path=str(data_dir), progress=False, log=lambda *_: None)
    return out


def test_tiny_training_writes_a_complete_folder(tiny_model):
    from smoacs_bench.methods.ftcp.model import sha256

    manifest = json.loads((tiny_model / "manifest.json").read_text())
    assert manifest["epochs"] == 2 and manifest["data"]["dataset"] == "perov_5"
    split = json.loads((tiny_model / "split.json").read_text())
    assert len(split["train"]) + len(split["val"]) + len(split["test"]) == manifest["data"]["represented"]
    assert 60 <= manifest["data"]["represented"] <= 80
    assert manifest["data"]["skipped"]                        # 5-element rows of perov_5 are counted
    for f, digest in manifest["sha256"].items():
        assert sha256(tiny_model / f) == digest


def test_save_load_round_trip_gives_identical_predictions(tiny_model, tmp_path):
    import shutil

    from smoacs_bench.methods.ftcp.model import load_model, save_weights

    a = load_model(tiny_model)
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model, copy)
    save_weights(a.vae, copy / "weights.npz")
    b = load_model(copy)
    x = np.random.default_rng(0).random((3, 240, 63))
    za, zb = a.encode(x), b.encode(x)
    assert np.array_equal(za, zb)
    assert np.array_equal(a.decode(za), b.decode(zb))
    assert np.array_equal(a.predict_from_latent(za), b.predict_from_latent(zb))


def test_training_resumes_to_the_same_weights(tiny_model, tmp_path, data_dir):
    from smoacs_bench.methods.ftcp.model import load_model
    from smoacs_bench.methods.ftcp.train import train, weights_equal

    out = tmp_path / "resumed"
    train("perov_5", out, epochs=1, limit=40, data_path=str(data_dir), progress=False, log=lambda *_: None)
    train("perov_5", out, epochs=2, limit=40, data_path=str(data_dir), progress=False, log=lambda *_: None)
    assert weights_equal(load_model(out).vae, load_model(tiny_model).vae)
    with pytest.raises(ValueError, match="other settings"):
        train("perov_5", out, epochs=2, limit=40, lr=1e-3, data_path=str(data_dir), progress=False)


@pytest.mark.usefixtures("model_dir")
@pytest.mark.parametrize("task", ["perovskite", "free"])
def test_ftcp_passes_the_method_contract(tiny_model, data_dir, task):
    from smoacs_bench.data.task import get_task
    from smoacs_bench.methods.contract import check_method
    from smoacs_bench.methods.ftcp import FTCP

    props = check_method(FTCP, options={"model": str(tiny_model), "progress": False, "device": "cpu",
                                        "data_path": str(data_dir)}, task=get_task(task, 1.5, 0.04))
    for p in props:
        assert set(p.meta["own_predictions"]) == {"formation_energy", "band_gap"}
        assert p.meta["source"]
        if p.band_gap is not None:               # judged with the shared predictors, not the branch
            assert p.band_gap != p.meta["own_predictions"]["band_gap"]
    assert FTCP(model=str(tiny_model)).label == "FTCP(perov_5)"


@pytest.mark.usefixtures("model_dir")
def test_starts_are_the_paper_s_target_selected_crystals(tiny_model, data_dir):
    """Starts meeting the window and E_f threshold by the predictors come first; the rest are the nearest; the
    caption counts both and the neutral fraction; noise goes on the sampled latent, not the mean."""
    from smoacs_bench.data.task import get_task
    from smoacs_bench.methods.ftcp import FTCP

    task = get_task("free", 1.5, 0.5)   # a wide window so that the 40-crystal split has some of each
    opts = {"model": str(tiny_model), "progress": False, "device": "cpu", "data_path": str(data_dir)}
    m = FTCP(**opts)
    sources = m._sources(task, 30, seed=0)
    info = m.config()["sources"]
    k = info["qualifying"]
    assert 0 < k < 30 and info["fallback"] == 30 - k and 0 <= info["neutral_fraction"] <= 1
    meets = [abs(gap - 1.5) <= 0.5 and ef < -0.5 for _, _, ef, gap in sources]
    assert all(meets[:k]) and not any(meets[k:])
    dist = [max(abs(g - 1.5) - 0.5, 0) + max(e + 0.5, 0) for _, _, e, g in sources[k:]]
    assert dist == sorted(dist)   # nearest first
    m.propose(task, 4, 0)
    assert f"{100 * info['neutral_fraction']:.1f} %" in m.caption_note()
    a = [p.structure for p in FTCP(**opts, noise_std=0.0).propose(task, 4, 0)]
    b = [p.structure for p in FTCP(**opts, noise_std=0.0, perturb="mean").propose(task, 4, 0)]
    assert a != b   # the sampled latent is not the mean


@pytest.mark.usefixtures("model_dir")
def test_heldout_report(tiny_model, data_dir):
    from smoacs_bench.methods.ftcp.heldout import heldout, heldout_markdown

    h = heldout(str(tiny_model), "test", str(data_dir))
    assert h.n >= 5
    assert all(np.isfinite(v) and v >= 0 for v in (*h.mae_ftcp, *h.mae_megnet, h.coord_mae, h.abc_mape))
    assert 0 <= h.element_accuracy <= 1 and 0 <= h.site_count_accuracy <= 1
    text = heldout_markdown(h, "perov_5")
    assert "| FTCP(perov_5) property branch |" in text and "heat_ref is not" in text


def test_tensorflow_backend_trains_when_installed():
    """The ``tensorflow`` extra: the same network builds and takes a training step under KERAS_BACKEND=tensorflow."""
    import importlib.util

    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("TensorFlow is not installed (pip install '.[tensorflow]')")
    code = ("import numpy as np\n"
            "from smoacs_bench.methods.ftcp.network import FTCPVAE, keras\n"
            "assert keras.backend.backend() == 'tensorflow'\n"
            "m = FTCPVAE(); m.compile(optimizer=keras.optimizers.RMSprop(1e-4))\n"
            "h = m.fit(np.random.rand(8, 240, 63).astype('float32'), np.random.rand(8, 2).astype('float32'),"
            " batch_size=8, epochs=1, verbose=0)\n"
            "print(h.history['loss'][0])\n")
    env = dict(os.environ, KERAS_BACKEND="tensorflow")
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert np.isfinite(float(res.stdout.strip().splitlines()[-1]))
