"""DFT verification: a real tiny PySCF calculation against a stored reference, failures with reasons, the stage."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

pytest.importorskip("pyscf")

from smoacs_bench.evaluation.dft import DFTSettings, compute_gaps  # noqa: E402

# computed once with these settings (PySCF 2.14, gth-szv, 2x2x2, 15 Ha): a coarse setting, so far from Si's PBE gap
TINY = DFTSettings(basis="gth-szv", kmesh=2, ke_cutoff=15, smearing=0.0)
SI_TINY_GAP = 2.4826   # eV
SI_TINY_DIRECT = 2.8348


def _si(a: float = 5.43) -> Structure:
    return Structure(Lattice([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]]), ["Si", "Si"],
                     [[0, 0, 0], [0.25, 0.25, 0.25]])


def test_a_tiny_silicon_calculation_reproduces_its_stored_gap():
    (res,) = compute_gaps([_si()], TINY)
    assert res.converged and res.reason == ""
    assert res.band_gap == pytest.approx(SI_TINY_GAP, abs=2e-3)
    assert res.direct_gap == pytest.approx(SI_TINY_DIRECT, abs=2e-3)
    assert res.n_kpts == 3   # 8 points of the 2x2x2 mesh reduced by the diamond structure's symmetry


def test_the_lattice_scan_finds_the_dft_lattice_constant_and_computes_the_gap_there():
    from dataclasses import replace

    scan = replace(TINY, lattice_scan=3, lattice_range=0.04)
    assert scan.identity()["lattice_scan"] == 3 and "lattice_scan" not in TINY.identity()   # old cache keys stay
    (res,) = compute_gaps([_si(5.75)], scan)
    # at this coarse setting Si's total energy is lowest near a = 5.80 Å (5.6 / 5.8 / 6.0 Å: -7.7240 / -7.7279 /
    # -7.7243 Ha): the parabola through 5.52, 5.75 and 5.98 Å puts it inside the scan
    assert res.converged and res.reason == "" and 1.0 < res.scale < 1.02
    assert 5.75 * res.scale == pytest.approx(5.79, abs=0.03)
    (direct,) = compute_gaps([_si(5.75 * res.scale)], TINY)    # the gap is the scaled cell's
    assert res.band_gap == pytest.approx(direct.band_gap, abs=2e-3) and direct.scale == 1.0
    assert "DFT energies within ±4 %" in scan.describe()


def test_a_length_rule_sets_the_mesh_from_the_cell_and_keeps_the_fixed_meshs_cache_keys():
    from dataclasses import replace

    rule = replace(TINY, klength=8.0)
    assert rule.mesh((3.9, 2.54, 13.9)) == [2, 3, 1] and TINY.mesh((3.9, 2.54, 13.9)) == [2, 2, 2]
    assert DFTSettings(klength=12.0).mesh((3.9, 4.2, 2.54)) == [3, 3, 5]   # 3x3x3 on a cubic perovskite
    assert "klength" not in TINY.identity() and "kmesh" in TINY.identity()   # the fixed mesh's keys stay
    assert rule.identity()["klength"] == 8.0 and "kmesh" not in rule.identity()
    assert "round(8 Å / a)" in rule.describe()
    (res,) = compute_gaps([_si()], rule)   # Si's primitive axes are 3.84 Å: round(8 / 3.84) = 2, the 2x2x2 mesh
    assert res.band_gap == pytest.approx(SI_TINY_GAP, abs=2e-3) and res.n_kpts == 3


def test_a_calculation_past_its_time_limit_is_stopped_with_its_reason():
    from dataclasses import replace

    slow = replace(TINY, kmesh=3, ke_cutoff=40, time_limit=1)   # a few seconds of work, stopped after one
    (res,) = compute_gaps([_si()], slow)
    assert "time limit of 1 s" in res.reason and math.isnan(res.band_gap) and res.seconds < 5
    assert "time_limit" not in slow.identity()                 # a cached result does not depend on it


def test_a_longer_time_limit_computes_a_cached_timeout_again_and_the_default_keeps_stage_identities(tmp_path):
    import argparse

    from smoacs_bench.benchmark.options import stage_options
    from smoacs_bench.evaluation.dft import get_engine
    from smoacs_bench.evaluation.stages import _cache
    from smoacs_bench.evaluation.stages.dft import cached, dft_settings
    from smoacs_bench.evaluation.stages.registry import identity

    def options(limit):
        return stage_options(argparse.Namespace(dft_subset=2, dft_workers=1, dft_time_limit=limit))

    assert options(None) == options(600.0) == {"dft_subset": 2, "dft_workers": 1}   # the default adds no key
    longer = options(1200.0)
    assert longer["dft_time_limit"] == 1200.0 and options(0.0)["dft_time_limit"] == 0.0
    assert identity(options(600.0)) == identity({"dft_subset": 2, "dft_workers": 1})   # committed folders stay
    assert identity(longer)["dft"]["dft_time_limit"] == 1200.0
    with pytest.raises(SystemExit, match="--dft-time-limit must be >= 0"):
        options(-5.0)
    assert dft_settings(longer).time_limit == 1200.0 and dft_settings({}).time_limit == 600.0
    assert "stopped after 1200 s" in dft_settings(longer).describe() and "stopped" not in dft_settings({}).describe()

    # a calculation stopped at the default limit, cached: it stands under that limit or a shorter one, and a
    # longer limit (or none) computes it again; a failure of another kind always stands
    engine, cell = get_engine("pyscf"), _si()
    timeout = {"band_gap": math.nan, "converged": False, "seconds": 600.48,
               "reason": "TimeoutError: stopped after the time limit of 600 s"}
    scf = {"band_gap": math.nan, "converged": False, "seconds": 900.0, "reason": "SCF not converged"}
    key = _cache.digest(cell, dft_settings({}).identity())
    assert key == _cache.digest(cell, dft_settings(longer).identity())   # the limit is not in the cache key
    for record, stands in ((timeout, {600.0: True, 300.0: True, 1200.0: False, 0.0: False}),
                           (scf, {600.0: True, 1200.0: True, 0.0: True})):
        _cache.put(tmp_path, key, record)
        for limit, kept in stands.items():
            got = cached(tmp_path, key, cell, dft_settings(options(limit)), engine)
            assert (got is not None) == kept, (record["reason"], limit)


def test_an_odd_electron_cell_without_inversion_reads_every_band_point_as_without_symmetry():
    # Li (3 valence electrons) and two H in a triclinic cell without inversion: spin-polarised, the 3x3x3 mesh
    # reduced by time reversal to 14 points; PySCF's own get_bands raised IndexError here (one Fock matrix per
    # irreducible point read at 8 band points), which the records of two checks in results/ carried
    from smoacs_bench.evaluation.dft import PySCFEngine

    odd = Structure(Lattice.from_parameters(4.0, 4.3, 4.6, 80, 85, 95), ["Li", "H", "H"],
                    [[0, 0, 0], [0.3, 0.1, 0.2], [0.6, 0.5, 0.75]])
    settings = DFTSettings(basis="gth-szv", kmesh=3, ke_cutoff=15, smearing=0.0)
    (res,) = compute_gaps([odd], settings)
    assert res.reason == "" and res.spin_polarised and res.n_kpts == 14
    plain = PySCFEngine()._run(odd, settings, symmetry=False)        # the full mesh, no symmetry at all
    assert plain.n_kpts == 27
    assert res.band_gap == pytest.approx(plain.band_gap, abs=1e-3) and res.band_gap > 0.5
    assert res.direct_gap == pytest.approx(plain.direct_gap, abs=1e-3)
    # records of such cells from before the fix are computed again; a metal's, an even cell's and new ones stand
    engine = PySCFEngine()
    assert engine.electrons(odd, settings) == 5 and engine.electrons(_si(), settings) == 8
    assert engine.stale({"band_gap": math.nan, "reason": "IndexError: index 8 is out of bounds"}, odd, settings)
    assert engine.stale({"band_gap": 0.9, "reason": ""}, odd, settings)
    assert not engine.stale({"band_gap": 0.0, "reason": ""}, odd, settings)
    assert not engine.stale({"band_gap": 0.9, "reason": ""}, _si(), settings)
    assert not engine.stale(res.record(), odd, settings)


def test_a_cell_a_hair_off_cubic_drops_symmetry_instead_of_a_huge_symmetrised_mesh():
    # a CHGNet-relaxed RbBr of results/ (SMOACS-relax, free task, 2.5 eV): PySCF symmetrised its 31³ FFT mesh to
    # 31 x 47,620 x 48,781 points and the calculation died allocating 1.57 TiB
    from smoacs_bench.evaluation.dft import PySCFEngine

    lattice = Lattice.from_parameters(4.21064234, 4.21064091, 4.21064186, 90.00001616, 90.00002983, 90.00002983)
    near = Structure(lattice, ["Rb", "Br"], [[0.0000326, 0.99999619, 0.99997526], [0.50001508, 0.5000034, 0.49998236]])
    cubic = Structure(Lattice.cubic(4.21064), ["Rb", "Br"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    settings = DFTSettings(klength=12)
    cell = PySCFEngine._cell(near, settings)
    assert not cell.space_group_symmetry and list(cell.mesh) == [31, 31, 31]
    kept = PySCFEngine._cell(cubic, settings)
    assert kept.space_group_symmetry and max(kept.mesh) < 40
    failed = {"band_gap": math.nan, "reason": "MemoryError: Unable to allocate 1.57 TiB for an array"}
    assert PySCFEngine().stale(failed, near, settings)          # computed again, now without symmetry
    assert not PySCFEngine().stale(failed, cubic, settings)     # a memory failure the guard does not explain stands


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

    def fake(structures, settings, workers=1, progress=False, on_result=None):
        from smoacs_bench.evaluation.dft import DFTResult

        calls.append(len(structures))
        out = [DFTResult(band_gap=1.5 + 0.1 * k, direct_gap=2.0, converged=True, seconds=1.0)
               for k in range(len(structures))]
        for k, res in enumerate(out):
            on_result(k, res)
        return out

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


def test_a_run_folder_keeps_its_checks_so_another_draw_without_the_cache_computes_only_new_ones(tmp_path, monkeypatch):
    """The calculation cache is this machine's; a committed run folder holds only its columns. Re-judging it with
    another draw (a larger subset, another table's relaxation) must take its checks from its columns and compute
    only the new draws, and the records it keeps must give the same columns again."""
    from smoacs_bench.data.task import get_task
    from smoacs_bench.evaluation.packing import names, pack
    from smoacs_bench.evaluation.stages import StageInput, identity, run_stages, stages
    from smoacs_bench.evaluation.stages import dft as stage_module
    from smoacs_bench.evaluation.stages.registry import SKIP

    calls = []

    def fake(structures, settings, workers=1, progress=False, on_result=None):
        from smoacs_bench.evaluation.dft import DFTResult

        calls.append(len(structures))
        out = [DFTResult(band_gap=round(s.volume / 100, 4), direct_gap=2.0, converged=True, seconds=3.0)
               for s in structures]
        for k, res in enumerate(out):
            on_result(k, res)
        return out

    monkeypatch.setattr("smoacs_bench.evaluation.dft.compute_gaps", fake)
    monkeypatch.setenv(stage_module.CALIBRATION_ENV, str(tmp_path / "none.json"))
    folder, cache = tmp_path / "runs" / "run0", tmp_path / "runs" / ".stage_cache"
    folder.mkdir(parents=True)
    structures = [_si() for _ in range(6)]
    for k, s in enumerate(structures):
        s.scale_lattice(s.volume * (1 + 0.01 * k))
    samples = pd.DataFrame({"success": [True, True, False, True, False, True], "relaxed": [False] * 6})
    skip = {SKIP: [s.name for s in stages() if s.name != "dft"]}

    def judge(frame, k, previous=None, notes=None, reuse=True):
        options = {**skip, "dft_subset": k}
        batch = StageInput(frame, structures, get_task("free").criteria(1.5, 0.04), options=options,
                           cache_dir=cache, folder=folder)
        added, new_notes = run_stages(batch, previous=previous, previous_notes=notes, reuse=reuse)
        pack(folder)
        return pd.concat([samples, added], axis=1), identity(options), new_notes

    first, ident, notes = judge(samples, 2)
    assert calls == [2] and len(names(folder / "dft_state")) == 2
    # a committed folder as it was before run folders kept their checks: its columns, no state, no cache
    (folder / "dft_state.zip").unlink()
    shutil.rmtree(cache)
    more, ident3, notes3 = judge(first, 3, ident, notes)
    assert calls == [2, 1]                              # the two it held came from its columns
    old = first.index[first["dft_checked"] == True]    # noqa: E712
    assert more.loc[old, "dft_band_gap"].tolist() == first.loc[old, "dft_band_gap"].tolist()
    assert more["dft_checked"].sum() == 3 and len(names(folder / "dft_state")) == 3
    shutil.rmtree(cache)                                # another clone: back to two draws, nothing computed
    again, _, _ = judge(more, 2, ident3, notes3)
    assert calls == [2, 1]
    assert again["dft_band_gap"].equals(first["dft_band_gap"]) and again["dft_ok"].equals(first["dft_ok"])
    # --force recomputes every stage, yet the checks the columns hold are kept first: nothing is calculated again
    (folder / "dft_state.zip").unlink()
    shutil.rmtree(cache, ignore_errors=True)
    forced, _, _ = judge(more, 3, ident3, notes3, reuse=False)
    assert calls == [2, 1] and forced["dft_band_gap"].equals(more["dft_band_gap"])


def test_checks_take_successes_first_then_fill_up_and_skip_what_the_engine_cannot_compute():
    from smoacs_bench.evaluation.stages.dft import POOLS, choose

    none = pd.DataFrame({"success": [False] * 5, "relaxed": [False, True, False, True, True],
                         "success_relaxed": [False] * 5, "relax_volume_change": [float("nan"), 1.0, float("nan"),
                                                                                 -2.0, 0.5]})
    drawn = choose(none, 2)
    assert [p for _, p in drawn] == ["relaxed proposals"] * 2 and {i for i, _ in drawn} <= {1, 3, 4}
    drawn = choose(none.assign(relaxed=False), 9)
    assert sorted(i for i, _ in drawn) == [0, 1, 2, 3, 4] and {p for _, p in drawn} == {"proposals"}
    assert choose(none.assign(relaxed=False), 3) == drawn[:3]        # fewer draws are a prefix of more
    some = none.assign(success=[False, True, False, False, True],
                       success_relaxed=[False, False, False, False, True])
    drawn = choose(some, 4)
    assert drawn[0] == (4, POOLS[0]) and drawn[1] == (1, POOLS[1])   # the relaxed success, then the rest in order
    assert drawn[2] == (3, POOLS[3]) and drawn[3] in [(0, POOLS[4]), (2, POOLS[4])]   # then relaxed, then any
    assert choose(some, 4, usable=[True, True, True, False, False])[0] == (1, POOLS[1])   # row 4: no basis
    assert choose(none.iloc[:0], 3) == []
    # a relaxation that kept no cell (refused at step 0, or exploded with a final energy on record) is not a
    # relaxed draw: own-judge success 1 goes on its proposal
    failed = some.assign(relax_volume_change=[float("nan"), float("nan"), float("nan"), -2.0, 0.5],
                         relax_energy_final=[float("nan"), -2.49, float("nan"), -4.0, -3.0])
    assert choose(failed, 3) == [(4, POOLS[0]), (1, POOLS[2]), (3, POOLS[3])]


def test_rows_with_an_element_the_engine_lacks_are_not_usable():
    from smoacs_bench.evaluation.dft import get_engine
    from smoacs_bench.evaluation.stages.dft import usable_rows

    rows = usable_rows(pd.DataFrame({"formula": ["SrTiO3", "EuSnO3", "not a formula ("]}), get_engine("pyscf"))
    assert rows.tolist() == [True, False, True]   # Eu has no gth-dzvp-molopt-sr basis; unreadable: let it say


def test_a_tables_checks_are_computed_in_one_pool_and_the_stage_finds_them(tmp_path, monkeypatch):
    """prefetch_dft draws exactly what the stage will draw in each run folder and caches it there."""
    from smoacs_bench.benchmark.physical import STAGE_CACHE, prefetch_dft
    from smoacs_bench.data.task import get_task
    from smoacs_bench.evaluation.io import read_structure
    from smoacs_bench.evaluation.stages import StageInput, get_stage
    from smoacs_bench.evaluation.stages import dft as stage_module

    calls = []

    def fake(structures, settings, workers=1, progress=False, on_result=None):
        from smoacs_bench.evaluation.dft import DFTResult

        calls.append((len(structures), workers))
        out = [DFTResult(band_gap=s.volume / 100, direct_gap=2.0, converged=True, seconds=1.0) for s in structures]
        for k, res in enumerate(out):
            on_result(k, res)
        return out

    monkeypatch.setattr("smoacs_bench.evaluation.dft.compute_gaps", fake)
    monkeypatch.setenv(stage_module.CALIBRATION_ENV, str(tmp_path / "none.json"))
    folders, batches = [], []
    for run in range(2):
        folder = tmp_path / "runs" / f"run{run}"
        (folder / "structures").mkdir(parents=True)
        structures = [_si() for _ in range(4)]
        for k, s in enumerate(structures):
            s.scale_lattice(s.volume * (1 + 0.01 * k + 0.1 * run))
            s.to(filename=str(folder / "structures" / f"{k}.cif"))
        samples = pd.DataFrame({"file": [f"structures/{k}.cif" for k in range(4)], "success": [True, False, True, True],
                                "relaxed": [False] * 4})
        samples.to_csv(folder / "samples.csv", index=False)
        folders.append(folder)
        structures = [read_structure(folder / f)[0] for f in samples["file"]]   # as the judge reads a run folder
        batches.append(StageInput(samples, structures, get_task("free").criteria(1.5, 0.04),
                                  options={"dft_subset": 2}, cache_dir=folder.parent / STAGE_CACHE, folder=folder))
    assert prefetch_dft([(f, 2) for f in folders], {"dft_workers": 2}, progress=False) == 4
    assert calls == [(4, 2)]                                          # one pool for the whole table
    assert prefetch_dft([(f, 2) for f in folders], {"dft_workers": 2}, progress=False) == 0
    # each run folder keeps its own checks, packed: a clone without this machine's cache finds them there
    assert all((f / "dft_state.zip").is_file() and not (f / "dft_state").exists() for f in folders)
    shutil.rmtree(tmp_path / "runs" / STAGE_CACHE)
    assert prefetch_dft([(f, 2) for f in folders], {"dft_workers": 2}, progress=False) == 0
    for batch in batches:
        out = get_stage("dft").compute(batch)
        assert out["dft_checked"].sum() == 2 and set(out["dft_pool"][out["dft_checked"] == True]) == {  # noqa: E712
            "own-judge successes"}
    assert calls == [(4, 2)]                                          # the stage computed nothing itself


def test_figure_a1_draws_the_dft_checked_proposals_of_each_method(tmp_path):
    from smoacs_bench.evaluation.physical_plots import plot_dft_parity
    from smoacs_bench.evaluation.stages.dft import parity_points as _dft_points

    samples = pd.DataFrame({"dft_checked": [True, False, "True", True], "dft_on": ["relaxed", "", "proposed", "relaxed"],
                            "band_gap": [1.5, 0.3, 1.52, 1.49], "relax_band_gap": [1.1, None, None, 1.4],
                            "dft_gap_corrected": [0.9, None, 2.0, 3.9], "dft_converged": [True, None, True, False]})
    (points,) = _dft_points(samples, 1.5)
    assert points["band_gap"].tolist() == [1.1, 1.52]     # the judge's gap of the cell DFT computed; not unconverged
    assert points["target_bg"].tolist() == [1.5, 1.5]
    assert _dft_points(samples.drop(columns=["dft_checked"]), 1.5) == []
    path = plot_dft_parity({"A": points, "B": points.assign(dft_gap=[1.5, 1.6])}, tmp_path / "a1.png",
                           margin=0.04, widen=0.2)
    assert path.is_file() and path.stat().st_size > 10_000


def test_a_tables_dft_subset_counts_per_row_and_target_pooled_over_seeds():
    from types import SimpleNamespace

    from smoacs_bench.benchmark.reproduce import dft_per_run

    def run(label, target, seed):   # rows as the specs declare them: no label, a tag
        return SimpleNamespace(row=SimpleNamespace(label=None, method=label.lower(), tag=label.lower()),
                               task="perovskite", target=target, margin=0.04, key=f"{label}-{target}-{seed}")

    runs = [run("SMOACS", t, s) for t in (0.5, 1.5) for s in range(3)] + [run("Screening", 0.5, 0)]
    k = dft_per_run(runs, 8)
    assert k["SMOACS-0.5-0"] == 3 and k["SMOACS-1.5-2"] == 3     # 3 seeds: 9 checks pooled
    assert k["Screening-0.5-0"] == 8                            # one seed: all 8 in its run
    assert dft_per_run(runs, 0) == {}
    assert set(dft_per_run(runs, 8, ["screening"])) == {"Screening-0.5-0"}   # --dft-rows


def test_what_dft_says_of_a_row_pools_its_seeds_per_target(monkeypatch, tmp_path):
    from smoacs_bench.evaluation.stages import dft as stage_module
    from smoacs_bench.evaluation.stages.dft import checks_markdown, checks_table

    monkeypatch.setenv(stage_module.CALIBRATION_ENV, str(tmp_path / "none.json"))

    def run(raw, ok):
        n = len(raw)
        return pd.DataFrame({"dft_checked": [True] * n + [False], "dft_on": ["relaxed"] * n + [""],
                             "dft_pool": ["relaxed successes"] * n + [""], "band_gap": [1.5] * (n + 1),
                             "relax_band_gap": [1.6] * n + [None], "dft_band_gap": raw + [None],
                             "dft_gap_corrected": raw + [None], "dft_converged": [True] * n + [None],
                             "dft_ok": ok + [None], "dft_seconds": [60.0] * n + [None]})

    unconverged = run([1.45], [False]).assign(dft_converged=[False, None])     # its 1.45 eV is no measurement
    df = checks_table({"A": [(run([1.5, 0.2], [True, False]), 1.5), (run([1.3], [False]), 1.5), (unconverged, 1.5),
                             (run([float("nan")], [False]), 2.5)]})
    first = df.iloc[0]
    assert (first["checked"], first["computed"], first["converged"]) == (4, 4, 3)
    assert (first["verified"], first["hit_raw"]) == (1, 2)                       # 1.5 and 1.3 within 0.25
    assert first["judge_mae"] == pytest.approx((0.1 + 1.4 + 0.3) / 3)           # the relaxed cell's 1.6 eV
    assert first["median_raw_gap"] == pytest.approx(1.3)
    assert 0 < first["verified_lo"] < 1 / 3 < first["verified_hi"] < 1
    second = df.iloc[1]
    assert (second["target_bg"], second["checked"], second["computed"], second["verified"]) == (2.5, 1, 0, 0)
    md = checks_markdown(df)
    assert "| 1.50 | A | 4 | 4 | 3 | 1 (0.25" in md and "relaxed successes" in md
    assert "| 2.50 | A | 1 | 0 | 0 | 0 (0.00, 0.00-0.79) | 0 | 0 | - | - | 60 |" in md     # no SCF converged


def test_the_checks_table_orders_numbered_rows_by_value(monkeypatch, tmp_path):
    """Table A.11's λ rows read 0.04, 0.2, 1, 5, 25, not the strings' order (25 before 5)."""
    from smoacs_bench.evaluation.stages import dft as stage_module
    from smoacs_bench.evaluation.stages.dft import checks_markdown

    monkeypatch.setenv(stage_module.CALIBRATION_ENV, str(tmp_path / "none.json"))
    labels = ["SMOACS λ=25", "SMOACS λ=0.2", "SMOACS λ=5", "SMOACS λ=0.04", "SMOACS λ=1"]
    df = pd.DataFrame([{"row": r, "target_bg": 2.0, "checked": 1, "computed": 1, "converged": 1, "verified": 0,
                        "verified_rate": 0.0, "verified_lo": 0.0, "verified_hi": 0.79, "hit_raw": 0,
                        "hit_corrected": 0, "median_raw_gap": 1.0, "judge_mae": 1.0, "seconds_median": 60.0,
                        "pools": ""} for r in labels])
    md = checks_markdown(df)
    assert [line.split(" | ")[1] for line in md.splitlines() if line.startswith("| 2.00")] == [
        "SMOACS λ=0.04", "SMOACS λ=0.2", "SMOACS λ=1", "SMOACS λ=5", "SMOACS λ=25"]


def test_the_correction_leaves_a_metal_a_metal():
    from smoacs_bench.evaluation.stages.dft import corrected_gap

    cal = {"slope": 1.026, "intercept": 0.234}
    assert corrected_gap(0.0, cal) == 0.0 and corrected_gap(0.04, cal) == 0.0    # not 0.23 eV: no gap to correct
    assert corrected_gap(1.5, cal) == pytest.approx(1.773) and corrected_gap(1.5, None) == 1.5


def test_a_render_draws_its_checks_from_its_own_relaxation_not_another_tables(tmp_path, monkeypatch):
    """A run folder another table judged with a smaller relaxation subset has that table's relaxation columns: the
    table's pooled DFT checks are drawn only after its own relaxation is in samples.csv (else the pool computes
    cells the dft stage never draws, and the stage then computes its own), and a folder already current is not
    judged twice."""
    import json

    from smoacs_bench.benchmark import physical
    from smoacs_bench.benchmark.experiments import MethodRun
    from smoacs_bench.benchmark.planning import REUSED, PlannedRun
    from smoacs_bench.benchmark.reproduce import _add_physical
    from smoacs_bench.evaluation.settings import RelaxSettings

    def judged(folder, relax, options):   # what add_physical leaves in config.json
        cfg = {"physical": {"key": physical.physical_key(relax, None, options)}}
        (folder / "config.json").write_text(json.dumps(cfg, default=str))

    runs = []
    for seed, subset in ((0, 8), (1, 64)):   # seed 0: last judged by a table relaxing 8 per run
        folder = tmp_path / f"smoacs_s{seed}"
        folder.mkdir()
        judged(folder, RelaxSettings(subset=subset), {"dft_subset": 0})
        runs.append(PlannedRun(MethodRun("smoacs"), "perovskite", 1.5, 0.04, seed, 16, folder, status=REUSED))
    relax = RelaxSettings(subset=64)
    calls = []

    def fake_add(folder, relax_settings, robust_settings, workers=1, progress=False, stage_options=None):
        calls.append(("judge", folder.name, stage_options["dft_subset"]))
        judged(folder, relax_settings, stage_options)
        return {"status": "added", "wall_s": 0.0}

    def fake_prefetch(entries, stage_options, progress=True):
        for folder, *_ in entries:   # every folder drawn from holds this render's relaxation
            assert physical.dft_inputs_current(folder, relax, None, {**stage_options, "dft_subset": 1})
        calls.append(("prefetch", sorted(Path(e[0]).name for e in entries)))
        return 0

    monkeypatch.setattr(physical, "add_physical", fake_add)
    monkeypatch.setattr(physical, "prefetch_dft", fake_prefetch)
    _add_physical(runs, relax, None, workers=1, progress=False, status=False,
                  stage_options={"dft_subset": 2, "dft_workers": 2})
    assert calls == [("judge", "smoacs_s0", 0), ("prefetch", ["smoacs_s0", "smoacs_s1"]),
                     ("judge", "smoacs_s0", 1), ("judge", "smoacs_s1", 1)]
    assert not physical.dft_inputs_current(tmp_path / "missing", relax, None, {})


def test_a_render_computes_no_dft_for_a_folder_whose_checks_are_current(tmp_path, monkeypatch):
    """The calculation cache is never committed: a fresh clone re-running a table's command must keep the DFT
    columns its folders hold, not recompute their draws (hours) because the cache is empty."""
    import json

    from smoacs_bench.benchmark import physical
    from smoacs_bench.benchmark.experiments import MethodRun
    from smoacs_bench.benchmark.planning import REUSED, PlannedRun
    from smoacs_bench.benchmark.reproduce import _add_physical
    from smoacs_bench.evaluation.settings import RelaxSettings

    relax = RelaxSettings(subset=64)
    options = {"dft_subset": 1, "dft_workers": 2}   # what the render gives each of two seeds for 2 pooled checks
    runs = []
    for seed, note in ((0, "1 per run, successes first"), (1, "not run: no engine"), (2, "")):
        folder = tmp_path / f"smoacs_s{seed}"
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(
            {"physical": {"key": physical.physical_key(relax, None, options)}}, default=str))
        pd.DataFrame({"stage_dft": [note or None]}).to_csv(folder / "summary.csv", index=False)
        runs.append(PlannedRun(MethodRun("smoacs"), "perovskite", 1.5, 0.04, seed, 16, folder, status=REUSED))
    assert physical.dft_current(runs[0].folder, relax, None, options)
    assert not physical.dft_current(runs[0].folder, relax, None, {**options, "dft_subset": 2})
    assert not physical.dft_current(runs[0].folder, RelaxSettings(subset=8), None, options)
    assert not physical.dft_current(runs[1].folder, relax, None, options)   # it did not run then
    assert not physical.dft_current(runs[2].folder, relax, None, options)
    prefetched = []

    def fake_prefetch(entries, stage_options, progress=True):
        prefetched.extend(Path(e[0]).name for e in entries)
        return 0

    monkeypatch.setattr(physical, "add_physical", lambda *a, **k: {"status": "unchanged", "wall_s": 0.0})
    monkeypatch.setattr(physical, "prefetch_dft", fake_prefetch)
    _add_physical(runs[:2], relax, None, workers=1, progress=False, status=False,
                  stage_options={"dft_subset": 2, "dft_workers": 2})
    assert prefetched == ["smoacs_s1"]


def test_the_caption_writes_the_correction_with_one_sign(monkeypatch, tmp_path):
    """'1.026 × PBE + 0.234 eV' and '× PBE − 0.100 eV', never '+ +0.234'."""
    import json

    from smoacs_bench.evaluation.stages import dft as stage_module

    path = tmp_path / "correction.json"
    monkeypatch.setenv(stage_module.CALIBRATION_ENV, str(path))
    for intercept, text in ((0.234, "1.026 × PBE + 0.234 eV"), (-0.1, "1.026 × PBE − 0.100 eV")):
        path.write_text(json.dumps({"slope": 1.026, "intercept": intercept, "loo_mae": 0.26, "n": 13}))
        assert text in stage_module.DFTStage().describe()
