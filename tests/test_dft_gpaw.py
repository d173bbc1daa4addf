"""GPAW, the second DFT engine: a real tiny plane-wave PAW calculation against a stored reference, failures with
reasons, settings that keep the default engine's cache keys, the option that selects it."""

from __future__ import annotations

import argparse
import json
import math

import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from smoacs_bench.evaluation.dft import DFTSettings, compute_gaps, get_engine

# computed once with these settings (GPAW 26.7.0, Debian's gpaw-data 0.9.20000 setups, PBE, 250 eV, 2x2x2 plus the
# 8 time-reversal-invariant points): near Si's published PBE gap (≈ 0.6 eV), unlike PySCF's tiny gth-szv setting
TINY = DFTSettings.for_engine("gpaw", kmesh=2, pw_cutoff=250)
SI_TINY_GAP = 0.6098   # eV
SI_TINY_DIRECT = 2.4633

needs_gpaw = pytest.mark.skipif(get_engine("gpaw").unavailable() is not None,
                                reason="GPAW is not installed here (`make gpaw`)")


def _si(a: float = 5.43) -> Structure:
    return Structure(Lattice([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]]), ["Si", "Si"],
                     [[0, 0, 0], [0.25, 0.25, 0.25]])


@needs_gpaw
def test_a_tiny_silicon_calculation_reproduces_its_stored_gap():
    (res,) = compute_gaps([_si()], TINY)
    assert res.converged and res.reason == "" and res.spin_polarised is False
    assert res.band_gap == pytest.approx(SI_TINY_GAP, abs=5e-3)
    assert res.direct_gap == pytest.approx(SI_TINY_DIRECT, abs=5e-3)
    assert res.n_kpts == 3   # 8 points of the 2x2x2 mesh reduced by the diamond structure's symmetry


@needs_gpaw
def test_failed_calculations_carry_reasons_and_the_batch_goes_on():
    no_setup = Structure(Lattice.cubic(4.0), ["La", "N"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    lithium = Structure(Lattice.cubic(3.0), ["Li"], [[0, 0, 0]])   # 3 electrons: spin polarised, a metal
    starved = DFTSettings.for_engine("gpaw", kmesh=2, pw_cutoff=250, max_cycle=2)
    out = compute_gaps([no_setup, None, _si(), lithium], starved) + compute_gaps([lithium], TINY)
    assert out[0].reason == "no GPAW PBE setup for La" and math.isnan(out[0].band_gap)
    assert not get_engine("gpaw").supports("La") and get_engine("gpaw").supports("Sr")
    assert out[1].reason == "no structure"
    assert out[2].reason == "SCF not converged in 2 cycles" and not out[2].converged
    assert out[4].converged and out[4].spin_polarised and out[4].band_gap == 0.0


def test_engine_settings_keep_the_default_engines_cache_keys():
    pyscf, gpaw = DFTSettings(), DFTSettings.for_engine("gpaw")
    assert "pw_cutoff" not in pyscf.identity() and pyscf.identity()["basis"] == "gth-dzvp-molopt-sr"
    assert DFTSettings.for_engine("pyscf") == pyscf
    assert gpaw.identity()["engine"] == "gpaw" and gpaw.identity()["pw_cutoff"] == 500.0
    assert not {"basis", "ke_cutoff", "multigrid"} & set(gpaw.identity())
    assert "plane waves to 500 eV" in gpaw.describe() and "PAW" in gpaw.describe()
    with pytest.raises(ValueError, match="unknown DFT engine 'vasp'; known: pyscf, gpaw"):
        get_engine("vasp")


def test_the_dft_engine_option_selects_the_engine_and_its_calibration(tmp_path, monkeypatch):
    from smoacs_bench.benchmark.options import add_physical_args, stage_options
    from smoacs_bench.evaluation.stages import dft as stage

    p = argparse.ArgumentParser()
    add_physical_args(p)
    assert "dft_engine" not in stage_options(p.parse_args([]))   # the default leaves stage identities as they were
    opts = stage_options(p.parse_args(["--dft-engine", "gpaw", "--dft-subset", "2"]))
    assert opts["dft_engine"] == "gpaw" and stage.dft_settings(opts).engine == "gpaw"
    with pytest.raises(SystemExit, match="--dft-lattice needs the pyscf engine"):
        stage_options(p.parse_args(["--dft-engine", "gpaw", "--dft-lattice", "3"]))
    monkeypatch.delenv(stage.CALIBRATION_ENV, raising=False)
    monkeypatch.setattr(stage, "CALIBRATION", tmp_path / "correction.json")
    (tmp_path / "gpaw").mkdir()
    (tmp_path / "gpaw" / "correction.json").write_text('{"slope": 1.1, "intercept": 0.1, "loo_mae": 0.2, "n": 20}')
    assert stage.calibration() is None and stage.calibration("gpaw")["slope"] == 1.1
    text = stage.DFTStage().describe(opts)
    assert "GPAW periodic PBE" in text and "1.100 × PBE + 0.100 eV" in text and "results/dft_calibration/gpaw" in text
    assert "uncalibrated (no results/dft_calibration/correction.json)" in stage.DFTStage().describe({"dft_subset": 2})
    # the engine's calibration keys the stage: a new GPAW correction re-judges the folders GPAW checked
    from smoacs_bench.evaluation.stages.registry import identity

    before = identity(opts)["dft"]
    assert before["engine_calibration"] == {"slope": 1.1, "intercept": 0.1, "loo_mae": 0.2}
    assert "engine_calibration" not in identity({"dft_subset": 2})["dft"]   # PySCF's stays in settings()
    (tmp_path / "gpaw" / "correction.json").write_text('{"slope": 1.2, "intercept": 0.1, "loo_mae": 0.2, "n": 20}')
    assert identity(opts)["dft"] != before and identity(opts)["relaxation"] == identity({})["relaxation"]


def _run_folder(root, cell: Structure, stored_gap: float, stored_ok: bool):
    """A committed-run-like folder holding one DFT check (PySCF's, as the dft stage stores it) of ``cell``."""
    folder = root / "perovskite" / "screening_bg9.0_m0.5_s0_n2"
    (folder / "structures").mkdir(parents=True)
    cell.to(filename=str(folder / "structures" / "1.cif"))
    pd.DataFrame({"formula": ["KF", cell.composition.reduced_formula], "dft_checked": [False, True],
                  "dft_on": ["", "proposed"], "dft_band_gap": [None, stored_gap], "dft_converged": [False, True],
                  "dft_ok": [False, stored_ok], "dft_reason": ["", ""]}).to_csv(folder / "samples.csv", index=False)
    pd.DataFrame({"target_bg": [9.0], "margin": [0.5]}).to_csv(folder / "summary.csv", index=False)
    (folder / "config.json").write_text(json.dumps({"physical": {"key": {"stages": {"dft": {"dft_subset": 1}}}}}))
    return folder


@needs_gpaw
def test_the_crosscheck_computes_each_stored_check_again_and_compares_verdicts(tmp_path, monkeypatch):
    from smoacs_bench.benchmark.dft_crosscheck import crosscheck
    from smoacs_bench.evaluation.stages import dft as stage

    cal = tmp_path / "gpaw_correction.json"
    cal.write_text('{"slope": 1.0, "intercept": 0.3, "loo_mae": 0.2, "n": 13}')
    monkeypatch.setenv(stage.CALIBRATION_ENV, str(cal))
    a = 4.03
    lif = Structure(Lattice([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]]), ["Li", "F"],
                    [[0, 0, 0], [0.5, 0.5, 0.5]])
    _run_folder(tmp_path / "runs", lif, stored_gap=8.8, stored_ok=True)
    # a second folder sharing the crystal: one calculation, two stored checks
    other = _run_folder(tmp_path / "runs2", lif, stored_gap=8.8, stored_ok=True)
    other.rename(tmp_path / "runs" / "perovskite" / "screening_bg9.0_m0.5_s1_n2")
    f = crosscheck(tmp_path / "out", "gpaw", runs=tmp_path / "runs", progress=False)
    assert f["checks"] == 2 and f["distinct"] == 1 and f["computed"] == 1
    df = pd.read_csv(tmp_path / "out" / "crosscheck.csv")
    gap = df["gap"].iloc[0]
    assert 8.5 < gap < 9.5                    # LiF's PBE gap at this lattice (≈ 9.0 eV at 500 eV, 3x3x3)
    assert df["gap_corrected"].iloc[0] == pytest.approx(gap + 0.3)
    assert bool(df["ok"].iloc[0]) == (abs(gap + 0.3 - 9.0) <= 0.7)
    assert f["mae"] == pytest.approx(abs(gap - 8.8)) and f["default_ok"] == 2
    text = (tmp_path / "out" / "crosscheck.md").read_text()
    assert "**perovskite**: 2 stored checks, 1 distinct cells; gpaw computed 1 and failed on 0" in text
    assert "| perovskite | screening | 9.00 |" in text and "not computed yet" not in text
    assert (tmp_path / "out" / "parity.png").stat().st_size > 0
    seconds = json.loads((tmp_path / "out" / "state.json").read_text())
    again = crosscheck(tmp_path / "out", "gpaw", runs=tmp_path / "runs", progress=False)   # from the state: no new run
    assert again["seconds_total"] == f["seconds_total"] and json.loads((tmp_path / "out" / "state.json").read_text()) \
        == seconds


def test_the_crosscheck_needs_a_second_engine_and_says_so(tmp_path, capsys):
    from smoacs_bench.benchmark.cli import main

    with pytest.raises(SystemExit) as err:
        main(["calibrate", "dft-crosscheck", "--out", str(tmp_path)])
    assert "name a second engine (--engine gpaw)" in str(err.value)


@needs_gpaw
def test_a_calculation_runs_its_blas_libraries_on_one_thread():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from smoacs_bench.evaluation.dft_gpaw import _one_thread

    with _one_thread():
        libs = threadpoolctl.threadpool_info()
        # numpy's BLAS and at least one more (scipy's, GPAW's own: loaded before the limit is set)
        assert len(libs) >= 2
        assert all(i["num_threads"] == 1 for i in libs), libs


@needs_gpaw
def test_a_skewed_cell_is_computed_in_its_niggli_cell_with_the_same_gap():
    import numpy as np

    from smoacs_bench.evaluation.dft_gpaw import niggli

    si = _si()
    m = si.lattice.matrix
    skewed = Structure(Lattice(np.array([m[0], m[1] + m[0], m[2] + 2 * m[0] + m[1]])), si.species,
                       si.cart_coords, coords_are_cartesian=True)
    assert niggli(si) is si and niggli(skewed) is not skewed    # an already reduced cell is kept as given
    assert max(niggli(skewed).lattice.abc) == pytest.approx(max(si.lattice.abc), abs=1e-3)
    (a, b) = compute_gaps([si, skewed], TINY)
    assert b.converged and b.band_gap == pytest.approx(a.band_gap, abs=5e-3)
