"""The band-gap cross-judge: features, a tiny real training, the stage, and the calibration commands."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from smoacs_bench.data.composition_features import feature_names, featurize


def test_features_are_fraction_weighted_element_statistics():
    v = dict(zip(feature_names(), featurize("SrTiO3"), strict=True))
    assert v["Z_mean"] == pytest.approx((38 + 22 + 3 * 8) / 5)
    assert v["Z_min"] == 8 and v["Z_max"] == 38 and v["Z_range"] == 30
    assert v["n_elements"] == 3 and v["charge_balanced"] == 1.0
    # valence: Sr 5s2, Ti 4s2 3d2, O 2s2 2p4
    assert v["frac_d_valence"] == pytest.approx(0.2 * 2 / (0.2 * 2 + 0.2 * 4 + 0.6 * 6))
    assert np.allclose(featurize("Sr2Ti2O6"), featurize("SrTiO3"), equal_nan=True)
    with pytest.raises(ValueError, match="unreadable formula"):
        featurize("Xx2Q")


def test_charge_balance_of_a_many_element_cell_is_found_without_trying_every_combination():
    """A 135-site TPE(/N) proposal mixes ~20 elements of 2-5 common states each (billions of combinations: the A.6
    pilot's render stalled there); the reachable charges are a small set."""
    v = dict(zip(feature_names(), featurize("CsKRbNaLi" "MgCaSrBa" "TiZrHf" "NbTaV" "CrMoWMnFeCoNi" "O25S3Se3F2Cl2"),
                 strict=True))
    assert v["n_elements"] == 27 and v["charge_balanced"] == 1.0   # one common state per element sums to zero
    assert dict(zip(feature_names(), featurize("NaCl2"), strict=True))["charge_balanced"] == 0.0
    assert dict(zip(feature_names(), featurize("Fe3O4"), strict=True))["charge_balanced"] == 0.0   # no one state fits


def test_a_tiny_judge_trains_predicts_and_reports_bad_formulas(tmp_path, data_dir):
    from smoacs_bench.evaluation.gap_judge import load_gap_judge, train_gap_judge

    manifest = train_gap_judge(tmp_path / "judge", limit=400, progress=False)
    assert manifest["training_formulas"] == 400 and manifest["kind"] in ("regressor", "two-stage")
    assert set(manifest["cv_mae"]) == {"regressor", "two-stage"}
    assert manifest["holdout"]["n_gapped"] > 100 and 0 < manifest["holdout"]["mae_gapped"] < 3
    judge = load_gap_judge(tmp_path / "judge")
    gaps, reasons = judge.predict(["SrTiO3", "Cu", "not a formula!", None])
    assert np.isfinite(gaps[:2]).all() and gaps[1] >= 0 and all(np.isnan(gaps[2:]))
    assert reasons[:2] == ["", ""] and "unreadable formula" in reasons[2] and reasons[3] == "no formula"
    stored = json.loads((tmp_path / "judge" / "manifest.json").read_text())
    assert stored["holdout"] == manifest["holdout"]


def test_a_missing_judge_says_how_to_train_it(tmp_path, monkeypatch):
    from smoacs_bench.evaluation.gap_judge import load_gap_judge

    with pytest.raises(FileNotFoundError, match="smoacs-bench train gap-judge"):
        load_gap_judge(tmp_path)


def test_the_stage_widens_the_window_by_the_judges_in_domain_error(data_dir):
    from smoacs_bench.data.task import get_task
    from smoacs_bench.evaluation.gap_judge import load_gap_judge
    from smoacs_bench.evaluation.stages import StageInput, get_stage

    judge = load_gap_judge()   # the committed model (models/gap-judge-mp20)
    crit = get_task("perovskite").criteria(1.5, 0.04)
    samples = pd.DataFrame({"formula": ["SrTiO3", "KMgF3", None], "band_gap": [0.0, 1.5, None],
                            "ef_ok": [True, True, False], "valid_structure": [True, True, False],
                            "perovskite_ok": [True, True, False]})
    out = get_stage("gap_crossjudge").compute(StageInput(samples, criteria=crit))
    gaps = out["bg_crossjudge"].tolist()
    assert abs(gaps[0] - 1.5) <= 0.04 + judge.mae_in_domain      # SrTiO3's MP PBE gap is 1.83 eV
    assert out["success_gap_crossjudge"].tolist() == [True, False, False]   # KMgF3 is a wide-gap insulator
    assert out["bg_disagreement"].iloc[0] == pytest.approx(gaps[0])
    assert out["bg_crossjudge_reason"].iloc[2] == "no formula"
    # an own-judge success the cross-judge rules out is "exploited"; one it confirms, or cannot judge, is not
    judged = samples.assign(success=[True, True, True])
    assert get_stage("gap_crossjudge").compute(StageInput(judged, criteria=crit))["exploited_gap"].tolist() == \
        [False, True, False]


def test_calibrate_commands_on_a_few_known_compounds(tmp_path, model_dir, data_dir):
    done = subprocess.run([sys.executable, "-m", "smoacs_bench.benchmark.cli", "calibrate", "hull", "predictors",
                           "--limit", "24", "--out", str(tmp_path), "--no-progress"],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    hull = pd.read_csv(tmp_path / "hull_calibration" / "calibration.csv")
    srtio3 = hull[hull["id"] == "SrTiO3"].iloc[0]
    assert -0.12 <= srtio3["e_hull"] <= 0.05 and 3.85 < srtio3["a"] < 4.0
    assert (tmp_path / "hull_calibration" / "offsets.png").is_file()
    audit = (tmp_path / "predictors" / "audit.md").read_text()
    assert "MEGNet (PBE, the judge)" in audit and "gap cross-judge" in audit and "CDVAE" in audit
    assert (tmp_path / "predictors" / "parity.png").is_file()
    assert "predictor audit:" in done.stdout
