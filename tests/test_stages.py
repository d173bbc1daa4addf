"""The judge's stages: a new stage is one file; the hull, novelty and S.U.N. stages on real crystals."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from smoacs_bench.evaluation.stages import StageInput, StageUnavailable, get_stage, stages

STAGES_DIR = Path(__file__).resolve().parents[1] / "evaluation" / "stages"
TOY = '''
import pandas as pd

from .base import Column, Stage


class ToyStage(Stage):
    name = "toy"
    requires = ("criteria",)
    columns = (Column("toy_flag", "", "the formula has an O in it", header="toy O rate"),)
    summary = "'toy O rate': proposals whose formula holds oxygen"

    def describe(self, options=None):
        return "toy setting 7"

    def compute(self, batch):
        return pd.DataFrame({"toy_flag": ["O" in str(f) for f in batch.samples["formula"]]})
'''


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "smoacs_bench.benchmark.cli", *args], capture_output=True,
                          text=True, timeout=900)


def _srtio3(a: float = 3.905) -> Structure:
    return Structure(Lattice.cubic(a), ["Sr", "Ti", "O", "O", "O"],
                     [[0, 0, 0], [.5, .5, .5], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]])


def test_a_stage_in_one_new_file_reaches_samples_summary_table_and_caption(tmp_path, model_dir, data_dir):
    toy = STAGES_DIR / "zz_toy_for_test.py"
    out = tmp_path / "run"
    try:
        toy.write_text(TOY)
        done = _cli("run", "--method", "reference", "--task", "perovskite", "--n-samples", "4", "--relax", "chgnet",
                    "--robust-copies", "0", "--no-crossjudge", "--no-progress", "--out", str(out))
        assert done.returncode == 0, done.stderr[-2000:]
        samples = pd.read_csv(out / "samples.csv")
        assert samples["toy_flag"].tolist() == ["O" in f for f in samples["formula"]]
        summary = pd.read_csv(out / "summary.csv").iloc[0]
        assert summary["toy_flag"] == pytest.approx(samples["toy_flag"].mean())
        assert summary["stage_toy"] == "toy setting 7"
        table = _cli("table", "--runs", str(out))
        assert table.returncode == 0, table.stderr[-2000:]
        assert "| toy O rate |" in table.stdout and "proposals whose formula holds oxygen (toy setting 7)" in table.stdout
    finally:
        toy.unlink(missing_ok=True)
    # the same folder without the file: the table no longer shows the stage (the test can fail)
    table = _cli("table", "--runs", str(out))
    assert table.returncode == 0 and "toy O rate" not in table.stdout
    # the committed stages reached the same files
    for col in ("e_hull", "stable", "metastable", "novel", "known_as", "sun", "sun_gap_crossjudge", "stays_both",
                "success_gap_crossjudge", "dft_ok"):
        assert col in samples, col
    assert "| stable |" in table.stdout and "| S.U.N. |" in table.stdout


def test_evaluate_reports_the_energy_above_the_hull_of_cubic_srtio3(tmp_path, model_dir, data_dir):
    cif = tmp_path / "SrTiO3.cif"
    _srtio3().to(filename=str(cif))
    done = _cli("evaluate", str(cif), "--task", "perovskite", "--target-bg", "1.5", "--relax", "chgnet",
                "--robust-copies", "0", "--no-crossjudge", "--out", str(tmp_path / "judged.csv"))
    assert done.returncode == 0, done.stderr[-2000:]
    row = pd.read_csv(tmp_path / "judged.csv").iloc[0]
    assert -0.12 <= row["e_hull"] <= 0.05
    assert row["known_as"].startswith("mp-") and not row["novel"]
    assert "E_hull" in done.stdout and "SrTiO3" in done.stdout


def test_hull_stage_gives_reasons_and_the_batch_goes_on(data_dir):
    hull = get_stage("hull")
    samples = pd.DataFrame({"formula": ["SrTiO3", "RaTiO3", None, "SrTiO3", "SrTiO3"],
                            "relaxed": [True, True, True, False, True],
                            "relax_energy_final": [-8.0, -8.0, float("nan"), -8.0, -9.0],
                            "relax_volume_change": [1.0, 1.0, float("nan"), float("nan"), float("nan")],
                            "relax_reason": ["", "", "", "", "exploded at step 10: atoms closer than 0.5 Å"]})
    out = hull.compute(StageInput(samples, relaxer="chgnet"))
    assert out["e_hull"].notna().tolist() == [True, False, False, False, False]
    assert "no elemental reference energy for Ra" in out["hull_reason"].iloc[1]
    assert out["hull_reason"].iloc[2] == "no structure"
    assert out["stable"].tolist()[:3] == [out["e_hull"].iloc[0] <= 0, False, False]
    assert pd.isna(out["stable"].iloc[3])   # not relaxed: not judged
    # an exploded relaxation's last energy is no phase's: no E_hull, not stable, the reason named
    assert "kept no cell (exploded at step 10" in out["hull_reason"].iloc[4] and out["stable"].iloc[4] is False
    with pytest.raises(StageUnavailable, match="match CHGNet"):
        hull.compute(StageInput(samples, relaxer="sevenn"))


def test_hull_stage_names_a_system_of_too_many_elements_instead_of_building_its_diagram(data_dir):
    """A 135-site proposal of TPE(/N) mixes a dozen elements: its diagram (all 2^14 subsystems, a 14-dimensional
    hull) would stall the render; the row gets the reason and the batch goes on (the A.6 pilot stalled here)."""
    samples = pd.DataFrame({"formula": ["K2Rb2Cs2Mg2Ca2Sr2Ba2Ti2Zr2Hf2Sn2O18F6Cl6", "SrTiO3"],
                            "relaxed": [True, True], "relax_energy_final": [-5.0, -8.0],
                            "relax_volume_change": [1.0, 1.0], "relax_reason": ["", ""]})
    out = get_stage("hull").compute(StageInput(samples, relaxer="chgnet"))
    assert pd.isna(out["e_hull"].iloc[0]) and "14 elements: no hull is computed beyond 8" in out["hull_reason"].iloc[0]
    assert out["stable"].iloc[0] is False and out["e_hull"].notna().iloc[1]


def test_a_missing_hull_reference_says_where_to_put_it_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("SMOACS_DATA_DIR", str(tmp_path))
    samples = pd.DataFrame({"formula": ["SrTiO3"], "relaxed": [True], "relax_energy_final": [-8.0]})
    with pytest.raises(StageUnavailable) as err:
        get_stage("hull").compute(StageInput(samples, relaxer="chgnet"))
    text = str(err.value)
    assert "\n" not in text and "mp_hull" in text and "mp_formation_energies.json" in text and "SMOACS_DATA_DIR" in text


def test_novelty_names_the_known_compound(data_dir):
    samples = pd.DataFrame({"formula": ["SrTiO3", "Sr2Ti2O6", "CsGeIBrF", None]})
    out = get_stage("novelty").compute(StageInput(samples))
    assert out["novel"].tolist()[:3] == [False, False, True] and pd.isna(out["novel"].iloc[3])
    assert out["known_as"].iloc[0].startswith("mp-") and out["known_as"].iloc[0] == out["known_as"].iloc[1]


def test_sun_needs_every_part():
    samples = pd.DataFrame({"success_relaxed": [True, True, True, False, True],
                            "metastable": [True, False, True, True, None],
                            "novel": [True, True, False, True, True],
                            "relaxed": [True, True, True, True, False]})
    out = get_stage("sun").compute(StageInput(samples))
    assert out["sun"].tolist()[:4] == [True, False, False, False] and pd.isna(out["sun"].iloc[4])
    assert out["sun_gap_crossjudge"].isna().all()   # no cross-judge ran: not judged
    agreed = get_stage("sun").compute(StageInput(samples.assign(bg_crossjudge_ok=[False, True, True, True, True])))
    assert agreed["sun"].tolist()[:4] == [True, False, False, False]
    assert agreed["sun_gap_crossjudge"].tolist()[:4] == [False, False, False, False]
    # the funnel is nested: where the second potential ran, S.U.N. needs its agreement too
    second = get_stage("sun").compute(StageInput(samples.assign(success_relaxed_both=[False, True, True, False, None])))
    assert second["sun"].tolist()[:4] == [False, False, False, False]


def test_stages_come_after_what_they_require():
    names = [s.name for s in stages()]
    for s in stages():
        for need in s.requires:
            assert need in names[:names.index(s.name)] or need in ("predict", "criteria", "crossjudge"), (s.name, need)
    assert names[:2] == ["robustness", "relaxation"]   # the judge's own steps after the method, first


def _relaxed_batch(tmp_path, structures, criteria, success):
    """A StageInput as the judge builds it after relaxing ``structures`` with CHGNet (cell only: the sites of an
    ideal perovskite are fixed by symmetry)."""
    from smoacs_bench.evaluation.relax import RelaxSettings, relax_cell

    outcomes = relax_cell(structures, RelaxSettings())
    relaxed_dir = tmp_path / "structures_relaxed"
    relaxed_dir.mkdir()
    for i, o in enumerate(outcomes):
        o.final.to(filename=str(relaxed_dir / f"{i}.cif"))
    samples = pd.DataFrame({"formula": [s.composition.formula.replace(" ", "") for s in structures],
                            "relaxed": True, "stays": True, "success_relaxed": success,
                            "relax_energy_final": [o.energy_final for o in outcomes]})
    return StageInput(samples, [o.final for o in outcomes], criteria, "chgnet", relaxed_dir=relaxed_dir,
                      cache_dir=tmp_path / "cache")


def test_a_stable_cubic_perovskite_stays_distorted_and_under_a_second_potential(tmp_path, model_dir):
    pytest.importorskip("sevenn")
    from smoacs_bench.data.reference_crystals import textbook_perovskite
    from smoacs_bench.data.task import get_task

    crit = get_task("perovskite").criteria(1.5, 0.04)
    kmgf3 = textbook_perovskite("K", "Mg", "F", 3.973)
    batch = _relaxed_batch(tmp_path, [kmgf3, kmgf3.copy()], crit, [True, False])
    out = get_stage("distortion").compute(batch)
    assert out["stays_distorted"].tolist() == [True, False]          # the second is no success: not tried
    assert abs(out["distortion_drop"].iloc[0]) < 0.02 and out["distortion_max_dev"].iloc[0] < crit.coord_eps
    assert pd.isna(out["distortion_drop"].iloc[1])
    cached = sorted((tmp_path / "cache" / "distortion").glob("*.json"))
    assert len(cached) == 1
    again = get_stage("distortion").compute(batch)                      # from the cache, the same numbers
    assert again["distortion_drop"].iloc[0] == out["distortion_drop"].iloc[0]

    def predict(structures):   # the judge's pair stands in: a gap in the window, a low E_f
        return [1.5] * len(structures), [-3.0] * len(structures)

    second = get_stage("second_potential").compute(
        StageInput(batch.samples, batch.structures, crit, "chgnet", predict=predict, cache_dir=tmp_path / "cache"))
    assert second["stays_relax2"].tolist() == [True, True] and second["stays_both"].tolist() == [True, True]
    assert abs(second["relax2_energy_drop"].iloc[0]) < 0.1
    assert second["success_relaxed_both"].tolist() == [True, False]   # the second was no success under CHGNet


def test_the_reference_row_proposes_known_stable_abx3(data_dir, model_dir):
    from smoacs_bench.data.task import get_task
    from smoacs_bench.methods import get_method

    method = get_method("reference", dataset="mp20-abx3")
    proposals = method.propose(get_task("perovskite", 1.5), 4, seed=0)
    assert len(proposals) == 4 and all(p.structure is not None and len(p.structure) == 5 for p in proposals)
    assert all(str(p.meta["source"]).startswith("mp-") for p in proposals)
    assert all(max(p.structure.lattice.abc) - min(p.structure.lattice.abc) < 1e-4 for p in proposals)   # cubic
    assert method._pool_size > 100 and "known compounds" in method.caption_note()


def test_a_stage_column_is_read_by_name_only_in_the_stage_that_defines_it():
    """Outside its stage module (and the registry), a stage column is never indexed or passed by its spelled name:
    other modules import the name from the stage. (calibration.py writes a table of its own measurements.)"""
    import inspect
    import re

    root = Path(__file__).resolve().parents[1]
    owner = {c.name: Path(inspect.getfile(type(s))).resolve() for s in stages() for c in s.columns}
    allowed = {root / "evaluation" / "stages" / "registry.py", root / "evaluation" / "stages" / "base.py",
               root / "benchmark" / "calibration.py"}
    sources = {p.resolve(): p.read_text() for d in ("benchmark", "evaluation", "methods", "data")
               for p in (root / d).rglob("*.py")}
    found = []
    for name, home in owner.items():
        access = re.compile(r"[\[(,]\s*[\"']" + re.escape(name) + r"[\"']\s*[\]),]")
        found += [(name, p.relative_to(root).as_posix()) for p, text in sources.items()
                  if p != home and p not in allowed and access.search(text)]
    assert not found, found
    # the check can fail: a module that reads success_relaxed by its name is caught
    assert re.compile(r"[\[(,]\s*[\"']success_relaxed[\"']\s*[\]),]").search('x = truthy(s, "success_relaxed")')


def test_skipped_stages_leave_their_columns_empty_and_an_unknown_one_is_one_line(tmp_path, model_dir, data_dir):
    cif = tmp_path / "SrTiO3.cif"
    _srtio3().to(filename=str(cif))
    done = _cli("evaluate", str(cif), "--task", "perovskite", "--target-bg", "1.5", "--relax", "chgnet",
                "--robust-copies", "0", "--no-crossjudge", "--skip-stages", "hull,novelty",
                "--out", str(tmp_path / "judged.csv"))
    assert done.returncode == 0, done.stderr[-2000:]
    row = pd.read_csv(tmp_path / "judged.csv").iloc[0]
    assert pd.isna(row["e_hull"]) and pd.isna(row["novel"])
    assert row["relax_energy_final"] < 0 and row["bg_crossjudge"] > 0   # the others still ran
    bad = _cli("evaluate", str(cif), "--task", "perovskite", "--skip-stages", "hull,dtf", "--out",
               str(tmp_path / "x.csv"))
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("--skip-stages: unknown stage dtf; known:")


def test_a_caption_names_the_rows_a_stage_did_not_run_for_when_others_ran():
    from smoacs_bench.evaluation.stages import caption_sentences
    from smoacs_bench.evaluation.stages.registry import NOTE_PREFIX

    col = f"{NOTE_PREFIX}dft"
    rows = pd.DataFrame({"method": ["SMOACS(MEGNet)", "TPE(MEGNet)", "TPE(MEGNet)"],
                         col: ["4 per run, pyscf", "not run: not asked for", "not run: not asked for"]})
    (dft,) = [s for s in caption_sentences(rows) if "pyscf" in s]
    assert "4 per run, pyscf; not run for TPE(MEGNet): not asked for" in dft
    # a stage that ran for no row keeps its reason as it is
    (none,) = [s for s in caption_sentences(rows.assign(**{col: "not run: no engine"})) if "no engine" in s]
    assert "(not run: no engine)" in none
