"""The gap model trained on the judge's own DFT labels: what it reads from run folders, a tiny real training, and
SMOACS-relax agreeing with it only on formulas it has not seen."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

# (formula, corrected PBE gap or None for a failed calculation, converged, seconds)
RUN_A = [("SrTiO3", 1.9, True, 100.0), ("SrTiO3", 1.9, True, 100.0), ("CsPbBr3", 2.2, True, 50.0),
         ("CsSnI3", None, False, 600.0), ("BaSnO3", 0.4, True, 80.0), ("KMgF3", 7.0, True, 60.0),
         ("RbCaF3", 6.6, True, 70.0), ("CsCaCl3", 5.6, True, 40.0), ("KTaO3", 2.2, True, 90.0)]
RUN_B = [("SrTiO3", 2.1, True, 120.0), ("CaSiTeS2", 0.0, True, 30.0), ("AgGeBr2Cl", 0.0, True, 30.0),
         ("CsGeI3", 0.9, True, 50.0), ("BaZrO3", 3.3, True, 90.0), ("CsCdF3", 3.8, True, 80.0),
         ("NaNbO3", 2.0, True, 110.0), ("KZnF3", 4.2, True, 85.0)]


def _run_folder(root, name, rows, unchecked=2):
    folder = root / name
    folder.mkdir(parents=True)
    records = [{"formula": f, "dft_checked": True, "dft_gap_corrected": g, "dft_converged": ok, "dft_seconds": s}
               for f, g, ok, s in rows]
    records += [{"formula": "LiNbO3", "dft_checked": False, "dft_gap_corrected": None, "dft_converged": None,
                 "dft_seconds": None}] * unchecked
    pd.DataFrame(records).to_csv(folder / "samples.csv", index=False)


def test_labels_are_the_converged_checks_one_row_per_formula_with_their_dft_time(tmp_path):
    from smoacs_bench.evaluation.dft_gap_model import collect_labels

    _run_folder(tmp_path, "a_bg1.5_s0", RUN_A)
    _run_folder(tmp_path, "b_bg1.5_s1", RUN_B)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "samples.csv").write_bytes(b"formula,dft_checked\n\xff\xfeSrTiO3,\xc3True\n")
    _run_folder(tmp_path, "d_bad_formula", [("Qq2", 1.0, True, 5.0)], unchecked=0)
    (tmp_path / "c_without_dft").mkdir()
    pd.DataFrame({"formula": ["SrTiO3"], "band_gap": [1.5]}).to_csv(tmp_path / "c_without_dft" / "samples.csv")
    table, summary = collect_labels([tmp_path], calibration=None)
    gaps = dict(zip(table["formula"], table["gap"], strict=True))
    assert gaps["SrTiO3"] == pytest.approx(1.9)            # median of 1.9, 1.9, 2.1
    assert "CsSnI3" not in gaps and "LiNbO3" not in gaps    # failed, and never checked
    assert gaps["CaSiTeS2"] == 0.0 and len(gaps) == 14
    assert summary["run_folders"] == 3 and summary["records"] == 17   # the bad formula's folder is read
    assert len(summary["skipped"]) == 2 and "broken" in summary["skipped"][0] and "'Qq2'" in summary["skipped"][1]
    # DFT time: every checked crystal once per run (SrTiO3 twice in run A was one calculation), failures included
    assert summary["label_seconds"] == pytest.approx(sum(s for _, _, _, s in RUN_A[1:]) + sum(s for *_, s in RUN_B)
                                                     + 5.0)
    with pytest.raises(ValueError, match="no converged DFT check"):
        collect_labels([tmp_path / "c_without_dft"], calibration=None)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        collect_labels([tmp_path / "missing"], calibration=None)


def test_a_tiny_model_trains_and_never_agrees_on_what_it_was_trained_on(tmp_path):
    from smoacs_bench.evaluation import dft_gap_model as dgm

    _run_folder(tmp_path / "runs", "a", RUN_A)
    _run_folder(tmp_path / "runs", "b", RUN_B)
    m = dgm.train_dft_gap(tmp_path / "model", [tmp_path / "runs"], folds=3, progress=False, calibration=None)
    assert m["training_formulas"] == 14 and set(m["cv_mae"]) == {"regressor", "two-stage"}
    assert m["holdout"]["mae"] == pytest.approx(min(m["cv_mae"].values()))
    assert json.loads((tmp_path / "model" / "manifest.json").read_text())["formulas"] == sorted(m["formulas"])
    model = dgm.load_dft_gap_model(tmp_path / "model")
    gaps = model.predict(["SrTiO3", "Sr2Ti2O6", "CaTiO3", "KCaF3", "Qq"])
    assert np.isnan(gaps[:2]).all()                         # trained on (any multiple of the formula)
    assert np.isfinite(gaps[2:4]).all() and np.isnan(gaps[4])
    assert gaps[3] > gaps[2]                                # a fluoride's gap above a titanate's, as in its labels
    with pytest.raises(FileNotFoundError, match="smoacs-bench train dft-gap"):
        dgm.load_dft_gap_model(tmp_path / "nothing")


def test_smoacs_relax_agrees_with_the_committed_dft_model_only_out_of_sample():
    from smoacs_bench.data.reference_crystals import textbook_perovskites
    from smoacs_bench.evaluation.dft_gap_model import load_dft_gap_model
    from smoacs_bench.methods.registry import get_method

    model = load_dft_gap_model()
    cells = textbook_perovskites()
    seen = [f for f in cells if f in model.seen]
    unseen = [f for f in cells if f not in model.seen]
    assert seen and unseen                                  # SrTiO3 is a calibration compound
    m = get_method("smoacs-relax", progress=False, device="cpu", agree_gap="dft-gap")
    second = m._second_gaps([cells[seen[0]], cells[unseen[0]]], [0, 1])
    assert np.isnan(second[0]) and np.isfinite(second[1])
    assert second[1] == pytest.approx(model.predict([unseen[0]])[0])
    assert "trained on the judge's own DFT labels" in m.caption_note()
    assert m.config()["agree_model"]["training_formulas"] == model.manifest["training_formulas"]


def test_the_train_command_needs_labelled_runs_and_says_so_in_one_line(tmp_path, capsys):
    from smoacs_bench.benchmark.cli import main

    assert main(["train", "dft-gap", "--out", str(tmp_path / "m")]) == 1
    assert "needs --runs" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["train", "dft-gap", "--runs", str(tmp_path / "empty"), "--out", str(tmp_path / "m")]) == 1
    err = capsys.readouterr().err
    assert "no converged DFT check" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    _run_folder(tmp_path / "runs", "a", RUN_A)
    _run_folder(tmp_path / "runs", "b", RUN_B)
    assert main(["train", "dft-gap", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "m"),
                 "--no-progress"]) == 0
    assert "cross-validated MAE" in capsys.readouterr().out and (tmp_path / "m" / "labels.csv").is_file()
