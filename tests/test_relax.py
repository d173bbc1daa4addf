"""The physical-validity stage: CHGNet relaxation (batched lockstep FIRE), faults, robustness, run folders."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from smoacs_bench.data.reference_crystals import textbook_perovskite, textbook_perovskites
from smoacs_bench.data.task import get_task
from smoacs_bench.evaluation.packing import names
from smoacs_bench.evaluation.relax import (
    RelaxerUnavailable,
    RelaxSettings,
    SerialASE,
    _Eig3,
    compare,
    displacement,
    load_relaxer,
    relax,
    relax_cell,
)
from smoacs_bench.evaluation.robustness import RobustSettings, perturbed_copies

pytest.importorskip("chgnet")


@pytest.fixture(scope="module")
def chgnet():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load_relaxer("chgnet")
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def textbook_relaxed(chgnet):
    crystals = textbook_perovskites()
    return crystals, relax(list(crystals.values()), relaxer=chgnet)


def test_textbook_perovskites_stay(textbook_relaxed):
    crystals, outcomes = textbook_relaxed
    assert len(crystals) == 15
    for (name, s), o in zip(crystals.items(), outcomes, strict=True):
        assert o.converged and o.reason == "", name
        assert o.steps < 30, name
        assert 0.0 <= o.energy_drop <= 0.02, (name, o.energy_drop)
        moved = compare(s, o.final)
        assert moved["match"] and abs(moved["volume_change"]) <= 10.0, (name, moved)
        assert moved["max_disp"] < 1e-3, name   # cubic symmetry: forces vanish, only the cell breathes


@pytest.mark.usefixtures("model_dir")
def test_textbook_verdicts_unchanged_by_relaxation(textbook_relaxed):
    """The judge's structural verdicts (neutral, distances, perovskite geometry, E_f) hold after relaxation."""
    from smoacs_bench.benchmark.physical import _judge_predict
    from smoacs_bench.evaluation.criteria import judge_rows as judged_rows

    crystals, outcomes = textbook_relaxed
    criteria = get_task("perovskite").criteria(1.5, 0.04)
    before = judged_rows(list(crystals.values()), criteria, _judge_predict)
    after = judged_rows([o.final for o in outcomes], criteria, _judge_predict)
    for col in ("neutral", "min_dist_ok", "valid_structure", "tolerance_ok", "angles_ok", "coords_ok", "ef_ok"):
        assert before[col].tolist() == after[col].tolist(), col
    assert before["neutral"].all() and before["perovskite_ok"].sum() >= 10


def test_strained_srtio3_relaxes_back(chgnet):
    reference = relax([textbook_perovskite("Sr", "Ti", "O", 3.905)], relaxer=chgnet)[0]
    v_ref = reference.final.volume
    for volume_factor in (1.5, 0.8):
        start = textbook_perovskite("Sr", "Ti", "O", 3.905, scale=volume_factor ** (1 / 3))
        out = relax([start], relaxer=chgnet)[0]
        assert out.converged, out.reason
        assert abs(out.final.volume / v_ref - 1) < 0.02, (volume_factor, out.final.volume, v_ref)
        assert out.energy_drop > 0.05   # it was strained: relaxation lowers the energy


def test_another_ase_optimiser_runs_in_the_lockstep_loop(chgnet):
    from ase.optimize import BFGS

    start = textbook_perovskite("Sr", "Ti", "O", 3.905, scale=1.2 ** (1 / 3))
    fire, bfgs = relax([start], relaxer=chgnet)[0], relax([start], relaxer=chgnet, optimizer=BFGS)[0]
    assert fire.converged and bfgs.converged, (fire.reason, bfgs.reason)
    assert bfgs.steps != fire.steps   # another optimiser took its own path ...
    assert abs(bfgs.energy_final - fire.energy_final) < 0.002   # ... to the same minimum of this simple cell (eV/atom)


def test_cell_relaxation_of_symmetric_perovskites_is_what_fire_finds(chgnet):
    """Sites on symmetry points: the cell-only quasi-Newton reaches FIRE's energy in fewer potential calls, and FIRE
    started from its result stops at once; a displaced site or a tilted cell is handed back with a reason."""
    ideal = [[0.5, 0.5, 0.5], [0, 0, 0], [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5]]
    cells = [Structure(Lattice.orthorhombic(*abc), species, ideal) for abc, species in (
        ((3.6, 4.3, 3.9), ["Sr", "Ti", "O", "O", "O"]), ((4.6, 4.6, 4.0), ["K", "Mg", "F", "F", "F"]),
        ((5.5, 5.0, 5.2), ["Cs", "Pb", "Cl", "Cl", "Br"]))]
    quasi = relax_cell(cells, relaxer=chgnet)
    fire = relax(cells, relaxer=chgnet)
    for q, f in zip(quasi, fire, strict=True):
        assert q.converged and f.converged
        assert q.energy_final == pytest.approx(f.energy_final, abs=2e-3)
        assert q.steps < f.steps
        assert q.final.lattice.angles == pytest.approx((90, 90, 90))
    again = relax([q.final for q in quasi], relaxer=chgnet)
    assert all(a.converged and a.steps == 0 for a in again)
    moved = cells[0].copy()
    moved.translate_sites([2], [0.05, 0.02, 0.0])
    tilted = Structure(Lattice.from_parameters(3.9, 3.9, 3.9, 90, 90, 80), cells[0].species, ideal)
    out = relax_cell([moved, tilted, None], relaxer=chgnet)
    assert out[0].final is None and "no symmetry" in out[0].reason
    assert out[1].final is None and "orthorhombic" in out[1].reason
    assert out[2].reason == "no structure"
    held = relax_cell([moved], relaxer=chgnet, hold_sites=True)[0]   # a supercell's pre-relaxation: sites held
    assert held.converged and held.final is not None, held.reason
    assert held.final.frac_coords == pytest.approx(moved.frac_coords)
    assert held.final.lattice.abc != pytest.approx(moved.lattice.abc, abs=1e-3)
    assert held.energy_drop > 0


def test_batched_and_serial_agree(chgnet):
    from chgnet.model.dynamics import CHGNetCalculator

    rng = np.random.default_rng(0)
    starts = []
    for a_el, b_el, x_el, a in (("Sr", "Ti", "O", 3.905), ("K", "Mg", "F", 3.973), ("Ba", "Sn", "O", 4.116)):
        s = textbook_perovskite(a_el, b_el, x_el, a, scale=1.04)
        s = Structure(s.lattice, s.species, s.cart_coords + rng.normal(0, 0.05, (len(s), 3)),
                      coords_are_cartesian=True)
        starts.append(s)
    batched = relax(starts, relaxer=chgnet)
    serial = relax(starts, relaxer=SerialASE("chgnet-ase", CHGNetCalculator(model=chgnet.model, device="cpu")))
    for b, s in zip(batched, serial, strict=True):
        assert b.converged and s.converged
        assert abs(b.energy_final - s.energy_final) <= 0.002   # eV/atom (#43)
        assert abs(b.energy_initial - s.energy_initial) <= 1e-4


class _Fake:
    """A relaxer that fails on purpose for structures with a marker element."""

    def __init__(self, inner):
        self.inner = inner

    def efs(self, structures):
        out = self.inner.efs(structures)
        for i, s in enumerate(structures):
            if "Cs" in s.composition:
                e, f, st = out[i]
                out[i] = (math.nan, f, st)
            if "Rb" in s.composition:
                out[i] = "RuntimeError: the potential gave up"
        return out


def test_faults_get_reasons_and_the_batch_goes_on(chgnet):
    crowded = Structure(Lattice.cubic(4.0), ["Sr", "Ti", "O"], [[0, 0, 0], [0.05, 0, 0], [0.5, 0.5, 0.5]])
    batch = [textbook_perovskite("Cs", "Pb", "Br", 5.874), crowded, None,
             textbook_perovskite("Rb", "Ca", "F", 4.452), textbook_perovskite("Sr", "Ti", "O", 3.905)]
    outcomes = relax(batch, relaxer=_Fake(chgnet), settings=RelaxSettings(max_steps=50))
    nan_case, close_case, none_case, raising, fine = outcomes
    assert "non-finite" in nan_case.reason and nan_case.final is None
    assert "closer than 0.5 Å" in close_case.reason and close_case.final is None
    assert none_case.reason == "no structure"
    assert "gave up" in raising.reason
    assert fine.converged and fine.reason == ""


def test_step_cap_is_reported(chgnet):
    start = textbook_perovskite("Sr", "Ti", "O", 3.905, scale=1.3)
    out = relax([start], relaxer=chgnet, settings=RelaxSettings(max_steps=3))[0]
    assert not out.converged and out.steps == 3 and "not converged in 3 steps" in out.reason
    assert out.final is not None


def test_unavailable_relaxer_is_one_line():
    with pytest.raises(RelaxerUnavailable, match="cannot import"):
        load_relaxer("no_such_module_xyz:make")
    with pytest.raises(RelaxerUnavailable, match="unknown relaxer"):
        load_relaxer("bogus")


def test_displacement_removes_rigid_shift_and_wraps():
    s = textbook_perovskite("Sr", "Ti", "O", 4.0)
    shifted = Structure(s.lattice, s.species, (s.frac_coords + [0.3, -0.2, 0.99]) % 1.0)
    assert displacement(s, shifted) == pytest.approx((0.0, 0.0), abs=1e-9)
    moved = s.copy()
    moved.translate_sites([1], [0.05, 0, 0], frac_coords=True, to_unit_cell=True)
    max_d, rms_d = displacement(s, moved)
    assert max_d == pytest.approx(0.2 * 0.8, rel=1e-6)   # 0.2 Å minus the 1/5 mean shift
    assert 0 < rms_d < max_d


def test_cell_filter_matrix_functions_match_scipy():
    from scipy.linalg import expm_frechet, logm

    fast, rng = _Eig3(), np.random.default_rng(0)
    cases = [np.eye(3), np.diag([1.1, 1.1, 0.9]), np.array([[1, 0.1, 0], [0, 1, 0], [0, 0, 1.0]])]  # repeated, shear
    cases += [np.eye(3) + rng.normal(0, scale, (3, 3)) for scale in (1e-9, 0.01, 0.2) for _ in range(50)]
    for k, f in enumerate(cases):
        log = fast.logm(f)
        assert np.abs(log - np.real(logm(f))).max() < 1e-10
        assert np.abs(fast.expm(log) - f).max() < 1e-10
        direction = np.zeros((3, 3))
        direction[k % 3, (k // 3) % 3] = 1.0
        want = expm_frechet(log, direction, compute_expm=False)
        assert np.abs(fast.expm_frechet(log, direction, compute_expm=False) - want).max() < 1e-10


def test_perturbed_copies_are_seeded_and_small():
    s = textbook_perovskite("Sr", "Ti", "O", 3.905)
    settings = RobustSettings(copies=4, displacement=0.02, strain=0.005)
    a, b = perturbed_copies(s, settings, 7), perturbed_copies(s, settings, 7)
    assert all(x == y for x, y in zip(a, b, strict=True))
    assert perturbed_copies(s, settings, 8)[0] != a[0]
    for c in a:
        assert abs(c.volume / s.volume - 1) < 0.1
        assert 0 < displacement(s, c)[0] < 0.2


@pytest.mark.usefixtures("model_dir", "data_dir")
def test_fresh_run_has_physical_columns_and_relax_is_idempotent(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "smoacs_bench.benchmark.cli", "run", "--method", "smoacs", "--task", "perovskite",
           "--n-samples", "3", "--steps", "3", "--relax", "chgnet", "--max-steps", "15", "--robust-copies", "2",
           "--no-crossjudge", "--no-progress", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    samples = pd.read_csv(out / "samples.csv")
    from smoacs_bench.evaluation.stages import get_stage

    for col in (*get_stage("relaxation").columns, *get_stage("robustness").columns):
        assert col.name in samples, col.name
    assert samples["relaxed"].all() and (samples["relax_steps"] <= 15).all()
    assert names(out / "structures_relaxed") == ["0.cif", "1.cif", "2.cif"]   # packed: structures_relaxed.zip
    assert not (out / "structures").exists() and (out / "structures.zip").is_file()
    summary = pd.read_csv(out / "summary.csv").iloc[0]
    assert summary["n_relaxed"] == 3 and 0.0 <= summary["success_relaxed"] <= 1.0
    note = summary["stage_relaxation"]
    assert "CHGNet 0.3.0" in note and "at most 15 steps" in note
    assert "2 copies" in summary["stage_robustness"]
    config = json.loads((out / "config.json").read_text())
    assert config["physical"]["key"]["stages"]["relaxation"]["relax"]["max_steps"] == 15
    stamp = (out / "samples.csv").stat().st_mtime_ns
    again = subprocess.run([sys.executable, "-m", "smoacs_bench.benchmark.cli", "relax", str(out), "--max-steps", "15",
                            "--robust-copies", "2", "--no-progress"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "nothing to do" in again.stdout
    assert (out / "samples.csv").stat().st_mtime_ns == stamp


def test_relaxations_resume_from_finished_chunks(tmp_path, monkeypatch, chgnet):
    from smoacs_bench.evaluation import relax_runs as physical

    structures = [textbook_perovskite("Sr", "Ti", "O", 3.905, scale=1 + 0.01 * i) for i in range(10)]
    settings = RelaxSettings(max_steps=20)
    state = tmp_path / "state"
    first = physical.run_relaxations(structures, list(range(10)), settings, state, progress=False)
    chunks = sorted(state.glob("chunk_*.json"))
    assert len(chunks) == 2          # 8 + 2 structures
    chunks[1].unlink()               # as if killed during the second chunk
    calls = []
    real = physical._relax_chunk
    monkeypatch.setattr(physical, "_relax_chunk", lambda s, c: calls.append(len(s)) or real(s, c))
    second = physical.run_relaxations(structures, list(range(10)), settings, state, progress=False)
    assert calls == [2]
    for i in range(10):
        a, b = first[i], second[i]
        assert (a["converged"], a["steps"], a["energy_final"]) == (b["converged"], b["steps"], b["energy_final"])
        assert Structure.from_dict(a["final"]) == Structure.from_dict(b["final"])
    # a packed run folder (relax_state.zip) resumes the same way: nothing is relaxed again
    from smoacs_bench.evaluation.packing import pack

    pack(tmp_path, ("state",))
    assert not state.exists() and (tmp_path / "state.zip").is_file()
    third = physical.run_relaxations(structures, list(range(10)), settings, state, progress=False)
    assert calls == [2] and [r["energy_final"] for r in third.values()] == [r["energy_final"] for r in second.values()]


def test_two_draws_of_one_run_relax_each_crystal_once_and_a_changed_crystal_again(tmp_path, monkeypatch, chgnet):
    """Two tables relaxing different subsets of one run folder (8 and 64 of 256): the second draw relaxes only
    the samples the first did not; a sample whose crystal changed is relaxed again, not taken from the state."""
    from smoacs_bench.evaluation import relax_runs as physical

    structures = [textbook_perovskite("Sr", "Ti", "O", 3.905, scale=1 + 0.01 * i) for i in range(4)]
    settings, state = RelaxSettings(max_steps=20), tmp_path / "state"
    first = physical.run_relaxations(structures, [0, 1, 2], settings, state, progress=False)
    calls = []
    real = physical._relax_chunk
    monkeypatch.setattr(physical, "_relax_chunk", lambda s, c: calls.append(len(s)) or real(s, c))
    stats: dict = {}
    second = physical.run_relaxations(structures, [1, 3], settings, state, progress=False, stats=stats)
    assert calls == [1] and set(second) == {1, 3}      # only sample 3 is new
    assert stats["structures"] == 1 and stats["seconds"] > 0
    # the cost per structure is of relaxing, not of taking stored relaxations again (then the earlier call's)
    from smoacs_bench.benchmark import physical as physical_stage

    assert physical_stage._relax_seconds(stats, {}, None) == round(stats["seconds"], 3)
    assert physical_stage._relax_seconds({"structures": 0}, {"relax_s_per_structure": 0.7}, 64) == 0.7
    assert physical_stage._relax_seconds({"structures": 0}, {"wall_time_s": 70.0, "robust_wall_time_s": 6.0}, 64) == 1.0
    assert physical_stage._relax_seconds({}, {}, float("nan")) is None
    assert physical_stage.relax_cost({"relax_s_per_structure": 0.5, "wall_time_s": 3.0}, 64) == 32.0
    assert physical_stage.relax_cost({"wall_time_s": 70.0, "robust_wall_time_s": 6.0}, None) == 64.0
    assert second[1]["energy_final"] == first[1]["energy_final"]
    calls.clear()
    again = physical.run_relaxations(structures, [0, 1, 2, 3], settings, state, progress=False)
    assert calls == [] and again[2]["energy_final"] == first[2]["energy_final"]
    structures[2] = textbook_perovskite("Ba", "Ti", "O", 4.0)
    changed = physical.run_relaxations(structures, [0, 1, 2, 3], settings, state, progress=False)
    assert calls == [1] and changed[2]["energy_final"] != first[2]["energy_final"]
    calls.clear()
    judged_otherwise = RelaxSettings(max_steps=20, subset=2, stay_drop=0.05, wide_margin=0.5)
    physical.run_relaxations(structures, [0, 1, 2, 3], judged_otherwise, state, progress=False)
    assert calls == []                                   # draw size and judging thresholds: same relaxations
    physical.run_relaxations(structures, [0, 1, 2, 3], RelaxSettings(max_steps=21), state, progress=False)
    assert calls == [4]                                  # other relaxer settings: nothing reused
    # a state written before records carried their crystal's digest: trusted by the draw that wrote it only,
    # which adds the digests; then any draw may use them

    def strip():
        for f in state.glob("chunk_*.json"):
            f.write_text(json.dumps({k: {x: y for x, y in v.items() if x != "crystal"}
                                     for k, v in json.loads(f.read_text()).items()}))
    state = tmp_path / "legacy"
    physical.run_relaxations(structures, [0, 1, 2, 3], settings, state, progress=False)
    strip()
    calls.clear()
    physical.run_relaxations(structures, [0, 1, 2, 3], settings, state, progress=False)
    assert calls == []
    assert all("crystal" in r for f in state.glob("chunk_*.json") for r in json.loads(f.read_text()).values())
    physical.run_relaxations(structures, [1, 2], settings, state, progress=False)
    assert calls == []
    strip()
    physical.run_relaxations(structures, [0, 1], settings, state, progress=False)   # not the draw that wrote it
    assert calls == [2]


def test_runs_of_a_task_share_relaxations_of_equal_crystals(tmp_path, monkeypatch, chgnet):
    """The reference row proposes the same crystals under every target: relaxed once, reused by the others."""
    from smoacs_bench.evaluation import relax_runs as physical

    structures = [textbook_perovskite("Sr", "Ti", "O", 3.905, scale=1 + 0.01 * i) for i in range(3)]
    settings, shared = RelaxSettings(max_steps=20), tmp_path / ".relax_cache"
    first = physical.run_relaxations(structures, [0, 1, 2], settings, tmp_path / "a" / "state", progress=False,
                                     shared=shared)
    calls = []
    real = physical._relax_chunk
    monkeypatch.setattr(physical, "_relax_chunk", lambda s, c: calls.append(len(s)) or real(s, c))
    second = physical.run_relaxations(structures, [0, 1, 2], settings, tmp_path / "b" / "state", progress=False,
                                      shared=shared)
    assert calls == [] and all(first[i]["energy_final"] == second[i]["energy_final"] for i in range(3))
    other = physical.run_relaxations(structures, [0, 1, 2], RelaxSettings(max_steps=21), tmp_path / "c" / "state",
                                     progress=False, shared=shared)
    assert calls == [3] and len(other) == 3   # other settings: relaxed again


@pytest.mark.parametrize("args, message", [
    (["--relax", "bogus"], "unknown relaxer 'bogus'"),
    (["--relax", "no_such_module_xyz:make"], "cannot import"),
    ([], "no config.json"),
])
def test_cli_relax_errors_are_one_line(tmp_path, args, message):
    folder = tmp_path / "notarun"
    folder.mkdir()
    done = subprocess.run([sys.executable, "-m", "smoacs_bench.benchmark.cli", "relax", str(folder), *args],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert message in done.stderr


def test_the_relaxers_device_comes_from_the_environment_and_is_not_in_the_identity(monkeypatch, chgnet):
    from smoacs_bench.evaluation.relax import DEVICE_ENV, load_relaxer, relax_device

    monkeypatch.delenv(DEVICE_ENV, raising=False)
    assert relax_device() == "cpu" and load_relaxer("chgnet").device == "cpu"
    monkeypatch.setenv(DEVICE_ENV, "cuda")
    assert relax_device() == "cuda"
    assert "device" not in RelaxSettings().identity()   # a relaxation cached on one device serves the other
