"""DFT verification: a real tiny PySCF calculation against a stored reference, failures with reasons, the stage."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

pytest.importorskip("pyscf")

from smoacs_bench.evaluation.dft import DFTSettings, compute_gaps  # noqa: E402

# computed once with these settings (PySCF 2.14, gth-szv, 2x2x2, 15 Ha): a coarse setting, so far from Si's PBE gap
TINY = DFTSettings(basis="gth-szv", kmesh=2, ke_cutoff=15, smearing=0.0)
SI_TINY_GAP = 2.4826   # eV
SI_TINY_DIRECT = 2.8348


def _si() -> Structure:
    a = 5.43
    return Structure(Lattice([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]]), ["Si", "Si"],
                     [[0, 0, 0], [0.25, 0.25, 0.25]])


def test_a_tiny_silicon_calculation_reproduces_its_stored_gap():
    (res,) = compute_gaps([_si()], TINY)
    assert res.converged and res.reason == ""
    assert res.band_gap == pytest.approx(SI_TINY_GAP, abs=2e-3)
    assert res.direct_gap == pytest.approx(SI_TINY_DIRECT, abs=2e-3)
    assert res.n_kpts == 3   # 8 points of the 2x2x2 mesh reduced by the diamond structure's symmetry


def test_failed_calculations_carry_reasons_and_the_batch_goes_on():
    no_basis = Structure(Lattice.cubic(4.0), ["Pu", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    starved = DFTSettings(basis="gth-szv", kmesh=2, ke_cutoff=15, max_cycle=1)
    results = compute_gaps([no_basis, None, _si()], starved)
    assert "Basis" in results[0].reason and "Pu" in results[0].reason and math.isnan(results[0].band_gap)
    assert results[1].reason == "no structure"
    assert results[2].reason.startswith("SCF not converged") and not results[2].converged


def test_the_stage_checks_a_seeded_few_successes_and_uses_the_cache(tmp_path, monkeypatch):
    from smoacs_bench.data.task import get_task
    from smoacs_bench.evaluation.stages import StageInput, get_stage
    from smoacs_bench.evaluation.stages import dft as stage_module

    calls = []

    def fake(structures, settings, workers=1, progress=False):
        from smoacs_bench.evaluation.dft import DFTResult

        calls.append(len(structures))
        return [DFTResult(band_gap=1.5 + 0.1 * k, direct_gap=2.0, converged=True, seconds=1.0)
                for k in range(len(structures))]

    monkeypatch.setattr("smoacs_bench.evaluation.dft.compute_gaps", fake)
    monkeypatch.setenv(stage_module.CALIBRATION_ENV, str(tmp_path / "none.json"))   # uncalibrated: raw gap
    crit = get_task("free").criteria(1.5, 0.04)
    structures = [_si() for _ in range(6)]
    for k, s in enumerate(structures):
        s.scale_lattice(s.volume * (1 + 0.01 * k))   # distinct crystals
    samples = pd.DataFrame({"success": [True, True, False, True, False, True], "relaxed": [False] * 6})
    batch = StageInput(samples, structures, crit, options={"dft_subset": 2}, cache_dir=tmp_path / "cache")
    out = get_stage("dft").compute(batch)
    checked = out.index[out["dft_checked"] == True].tolist()   # noqa: E712
    assert len(checked) == 2 and all(samples["success"][checked]) and calls == [2]
    assert set(out.loc[checked, "dft_on"]) == {"proposed"}
    assert out.loc[checked, "dft_ok"].tolist() == [True, False]   # 1.5 inside ± 0.04, 1.6 outside
    again = get_stage("dft").compute(batch)                          # cached by crystal: no new calculation
    assert calls == [2] and again["dft_band_gap"].equals(out["dft_band_gap"])
    with pytest.raises(Exception, match="dft-subset 0"):
        get_stage("dft").compute(StageInput(samples, structures, crit))


def test_figure_a1_draws_the_dft_checked_proposals_of_each_method(tmp_path):
    from smoacs_bench.evaluation.physical_plots import plot_dft_parity
    from smoacs_bench.evaluation.stages.dft import parity_points as _dft_points

    samples = pd.DataFrame({"dft_checked": [True, False, "True"], "dft_on": ["relaxed", "", "proposed"],
                            "band_gap": [1.5, 0.3, 1.52], "relax_band_gap": [1.1, None, None],
                            "dft_gap_corrected": [0.9, None, 2.0]})
    (points,) = _dft_points(samples, 1.5)
    assert points["band_gap"].tolist() == [1.1, 1.52]     # the judge's gap of the cell DFT computed
    assert points["target_bg"].tolist() == [1.5, 1.5]
    assert _dft_points(samples.drop(columns=["dft_checked"]), 1.5) == []
    path = plot_dft_parity({"A": points, "B": points.assign(dft_gap=[1.5, 1.6])}, tmp_path / "a1.png",
                           margin=0.04, widen=0.2)
    assert path.is_file() and path.stat().st_size > 10_000
