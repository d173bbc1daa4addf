"""PySCF's fine grid: a per-element cutoff resolved per cell (a real tiny calculation), cache keys that stay where the
rule changes nothing, the run option and its calibration, the cross-check that computes the stored checks on it."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

pytest.importorskip("pyscf")

from smoacs_bench.evaluation.dft import DFTResult, DFTSettings, compute_gaps, get_engine  # noqa: E402
from smoacs_bench.evaluation.dft_base import FINE_GRID  # noqa: E402
from smoacs_bench.evaluation.stages import _cache  # noqa: E402
from smoacs_bench.evaluation.stages import dft as stage  # noqa: E402

TINY = DFTSettings(basis="gth-szv", kmesh=1, ke_cutoff=15, smearing=0.0, high_symmetry=False)


def _rocksalt(a: float, species: tuple[str, str]) -> Structure:
    return Structure(Lattice([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]]), list(species),
                     [[0, 0, 0], [0.5, 0.5, 0.5]])


def _cubic(a: float, a_site: str, b_site: str, x: str) -> Structure:
    return Structure(Lattice.cubic(a), [a_site, b_site, x, x, x],
                     [[0.5, 0.5, 0.5], [0, 0, 0], [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5]])


def test_a_cell_with_a_listed_element_is_computed_at_its_cutoff_and_others_as_before():
    lif = _rocksalt(4.03, ("Li", "F"))
    a = 5.43
    si = Structure(Lattice([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]]), ["Si", "Si"],
                   [[0, 0, 0], [0.25, 0.25, 0.25]])
    rule = replace(TINY, element_cutoffs=(("F", 25.0),))
    assert rule.for_cell(lif) == replace(TINY, ke_cutoff=25.0) and rule.for_cell(si) == TINY
    got = compute_gaps([lif, si], rule)
    direct = compute_gaps([lif], replace(TINY, ke_cutoff=25.0)) + compute_gaps([lif, si], TINY)
    assert all(r.converged and r.reason == "" for r in got + direct), [r.reason for r in got + direct]
    assert got[0].band_gap == pytest.approx(direct[0].band_gap, abs=1e-6)      # LiF at 25 Ha
    assert abs(direct[1].band_gap - direct[0].band_gap) > 1e-3                 # not at 15 Ha
    assert got[1].band_gap == pytest.approx(direct[2].band_gap, abs=1e-6)      # Si at 15 Ha


def test_the_fine_grid_keeps_the_cache_keys_of_every_cell_it_does_not_change():
    default, fine = DFTSettings(), stage.dft_settings({"dft_fine_grid": True})
    assert fine.element_cutoffs == FINE_GRID and "element_cutoffs" not in default.identity()
    assert default.for_cell(_cubic(4.2, "Cs", "Mg", "F")) is default       # no rule, nothing resolved
    csmgf3, srtio3, kmgcl3 = _cubic(4.2, "Cs", "Mg", "F"), _cubic(3.9, "Sr", "Ti", "O"), _cubic(5.0, "K", "Mg", "Cl")
    for cell in (csmgf3, kmgcl3):
        assert fine.for_cell(cell).identity() == replace(default, ke_cutoff=140.0).identity()
    assert fine.for_cell(srtio3).identity() == default.identity()          # a stored record is found again
    assert fine.identity() != default.identity()                           # the stage's identity changes
    assert "140 Ha in a cell with F, 140 Ha in a cell with Mg" in fine.describe()
    engine = get_engine("pyscf")
    coarse = engine._cell(csmgf3, default).mesh
    assert all(m > c for m, c in zip(engine._cell(csmgf3, fine.for_cell(csmgf3)).mesh, coarse, strict=True))
    gpaw = DFTSettings.for_engine("gpaw", element_cutoffs=FINE_GRID)
    assert gpaw.for_cell(csmgf3) is gpaw and "element_cutoffs" not in gpaw.identity()


def test_the_stage_finds_stored_records_under_the_resolved_keys_and_computes_the_rest(tmp_path, monkeypatch):
    fine = stage.dft_settings({"dft_fine_grid": True})
    srtio3, csmgf3, rbcaf3 = _cubic(3.9, "Sr", "Ti", "O"), _cubic(4.2, "Cs", "Mg", "F"), _cubic(4.5, "Rb", "Ca", "F")
    old = {"band_gap": 1.66, "direct_gap": 2.0, "converged": True, "seconds": 100.0, "reason": ""}
    _cache.put(tmp_path, _cache.digest(srtio3, DFTSettings().identity()), old)                 # a 70 Ha record
    _cache.put(tmp_path, _cache.digest(csmgf3, DFTSettings().identity()), {**old, "band_gap": 6.2})   # on 70 Ha
    _cache.put(tmp_path, _cache.digest(csmgf3, replace(DFTSettings(), ke_cutoff=140.0).identity()),
               {**old, "band_gap": 6.6})
    asked = []

    def fake(cells, settings, workers=1, progress=False, on_result=None):
        asked.extend(c.composition.reduced_formula for c in cells)
        for j, _ in enumerate(cells):
            on_result(j, DFTResult(band_gap=6.4, converged=True))

    import smoacs_bench.evaluation.dft as dft

    monkeypatch.setattr(dft, "compute_gaps", fake)
    got = stage.cached_or_computed({0: srtio3, 1: csmgf3, 2: rbcaf3}, fine, tmp_path)
    assert asked == ["RbCaF3"]                                  # only the cell without a record on its grid
    assert [got[i]["band_gap"] for i in range(3)] == [1.66, 6.6, 6.4]
    assert _cache.get(tmp_path, _cache.digest(rbcaf3, fine.for_cell(rbcaf3).identity()))["band_gap"] == 6.4


def test_the_fine_grid_option_has_its_own_calibration_and_changes_only_the_dft_stage(tmp_path, monkeypatch):
    from smoacs_bench.benchmark.options import add_physical_args, stage_options
    from smoacs_bench.evaluation.stages.registry import identity

    p = argparse.ArgumentParser()
    add_physical_args(p)
    assert "dft_fine_grid" not in stage_options(p.parse_args(["--dft-subset", "2"]))   # folders stay as they were
    opts = stage_options(p.parse_args(["--dft-subset", "2", "--dft-fine-grid"]))
    assert opts["dft_fine_grid"] is True and stage.calibration_name(stage.dft_settings(opts)) == stage.FINE
    with pytest.raises(SystemExit, match="--dft-fine-grid is PySCF's"):
        stage_options(p.parse_args(["--dft-engine", "gpaw", "--dft-fine-grid"]))
    from smoacs_bench.benchmark.cli import main

    for argv, says in ((["dft", "--engine", "gpaw"], "--fine-grid is PySCF's"), (["hull"], "not hull")):
        with pytest.raises(SystemExit) as err:
            main(["calibrate", *argv, "--fine-grid", "--out", str(tmp_path / "x")])
        assert says in str(err.value)
    monkeypatch.delenv(stage.CALIBRATION_ENV, raising=False)
    monkeypatch.setattr(stage, "CALIBRATION", tmp_path / "correction.json")
    (tmp_path / "correction.json").write_text('{"slope": 1.0, "intercept": 0.3, "loo_mae": 0.26, "n": 13}')
    (tmp_path / "fine-grid").mkdir()
    (tmp_path / "fine-grid" / "correction.json").write_text('{"slope": 0.99, "intercept": 0.35, "loo_mae": 0.25, '
                                                            '"n": 13}')
    text = stage.DFTStage().describe(opts)
    assert "140 Ha in a cell with Mg" in text and "0.990 × PBE + 0.350 eV" in text
    assert "results/dft_calibration/fine-grid" in text
    plain = {"dft_subset": 2}
    assert identity(opts)["dft"]["engine_calibration"] == {"slope": 0.99, "intercept": 0.35, "loo_mae": 0.25}
    assert "engine_calibration" not in identity(plain)["dft"]
    assert {k: v for k, v in identity(opts).items() if k != "dft"} == \
        {k: v for k, v in identity(plain).items() if k != "dft"}


def test_the_fine_grid_crosscheck_reuses_the_stored_records_and_sets_both_grids_beside_gpaw(tmp_path, monkeypatch):
    import smoacs_bench.evaluation.dft as dft
    from smoacs_bench.benchmark import dft_crosscheck as cc

    cal = tmp_path / "fine.json"
    cal.write_text('{"slope": 1.0, "intercept": 0.0, "loo_mae": 0.1, "n": 13}')
    monkeypatch.setenv(stage.CALIBRATION_ENV, str(cal))
    runs = tmp_path / "runs"
    folder = runs / "perovskite" / "screening_bg6.5_m0.5_s0_n3"
    (folder / "structures").mkdir(parents=True)
    cells = [_cubic(3.9, "Sr", "Ti", "O"), _cubic(4.2, "Cs", "Mg", "F")]
    for i, c in enumerate(cells):
        c.to(filename=str(folder / "structures" / f"{i}.cif"))
    pd.DataFrame({"formula": ["SrTiO3", "CsMgF3"], "dft_checked": [True, True], "dft_on": ["proposed"] * 2,
                  "dft_band_gap": [1.66, 6.2], "dft_converged": [True, True], "dft_ok": [False, True],
                  "dft_reason": ["", ""]}).to_csv(folder / "samples.csv", index=False)
    pd.DataFrame({"target_bg": [6.5], "margin": [0.5]}).to_csv(folder / "summary.csv", index=False)
    (folder / "config.json").write_text(json.dumps({"physical": {"key": {"stages": {"dft": {"dft_subset": 2}}}}}))
    read = [Structure.from_file(folder / "structures" / f"{i}.cif") for i in range(2)]
    asked = []

    def fake(structures, settings, workers=1, progress=False, on_result=None):
        asked.extend((s.composition.reduced_formula, settings.for_cell(s).ke_cutoff) for s in structures)
        for j, _ in enumerate(structures):
            on_result(j, DFTResult(band_gap=6.6, converged=True, seconds=150.0))

    monkeypatch.setattr(dft, "compute_gaps", fake)
    monkeypatch.chdir(tmp_path)   # GPAW's cross-check where the fine grid's looks for it
    (tmp_path / "results" / "dft_crosscheck").mkdir(parents=True)
    pd.DataFrame({"task": ["perovskite"] * 2, "folder": [folder.name] * 2, "row": [0, 1], "gap": [1.75, 6.7],
                  "converged": [True, True]}).to_csv(tmp_path / "results" / "dft_crosscheck" / "crosscheck.csv",
                                                     index=False)
    f = cc.crosscheck(tmp_path / "out", "pyscf", runs=runs, progress=False, fine_grid=True)
    # SrTiO3 (neither Mg nor F) has the same settings on both grids: its stored check stands, nothing computed
    assert asked == [("CsMgF3", 140.0)] and f["engine"] == "fine-grid" and f["ok"] == 1
    assert f["same_settings"] == 1 and f["both"] == 1 and f["mae"] == pytest.approx(0.4)
    stored = _cache.get(runs / "perovskite" / ".stage_cache" / "dft",
                        _cache.digest(read[1], replace(DFTSettings(), ke_cutoff=140.0).identity()))
    assert stored["band_gap"] == 6.6   # where the dft stage on the fine grid looks first
    by = {a["kind"]: a for a in f["vs_gpaw"]}
    assert by["Mg"]["default_mae"] == pytest.approx(0.5) and by["Mg"]["mae"] == pytest.approx(0.1)
    assert by["neither"]["mae"] == pytest.approx(0.09)
    text = (tmp_path / "out" / "crosscheck.md").read_text()
    assert "`smoacs-bench calibrate dft-crosscheck --fine-grid --workers 2`" in text
    assert "| perovskite | Mg | 1 | 0.50 | +0.50 | 0.10 | +0.10 |" in text and "verified by PySCF 70 Ha" in text
    assert "1 hold neither Mg nor F, so their stored check is the fine grid's too, and 1 are computed again" in text
    assert json.loads((tmp_path / "out" / "state.json").read_text())   # the computed cell, kept with the cross-check
    asked.clear()
    again = cc.crosscheck(tmp_path / "out", "pyscf", runs=runs, progress=False, fine_grid=True)
    assert asked == [] and again["ok"] == 1
