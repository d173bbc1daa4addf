"""Predictor smoothness check: real MEGNet forward passes over strained textbook perovskites."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from smoacs_bench.benchmark.smoothness import (
    JUMP_COLUMNS,
    SCAN_COLUMNS,
    _missing_weights,
    add_parser,
    jumps,
    run_smoothness,
    scan,
    strain_grid,
)

warnings.filterwarnings("ignore", message="Incompatible model version")

# MEGNet's hard 5 Å cutoff: in an ideal cubic ABX3 cell the A-X shell at sqrt(1.5) a reaches it at this a.
A_CUTOFF_AX = 5.0 / math.sqrt(1.5)   # 4.0825 Å


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def written(model_dir, tmp_path_factory):
    """A small run: MEGNet band gap on 2 crystals over ±1 % in 0.25 % steps, plus two predictors that
    cannot be loaded (an unknown name, a trained-model folder whose checkpoint was never exported)."""
    root = tmp_path_factory.mktemp("smoothness")
    unexported = root / "unexported"
    unexported.mkdir()
    (unexported / "trainer.json").write_text(json.dumps(
        {"family": "crystalformer", "target": "e_form", "dataset": "perov_5", "file": "missing.ckpt"}))
    out = root / "out"
    result = run_smoothness(out, ["megnet-bandgap", "no-such-predictor", str(unexported)], strain=0.01,
                            step=0.0025, progress=False, crystals=["SrTiO3", "KMnF3"])
    return out, result, str(unexported)


def test_strain_grid():
    g = strain_grid(0.03, 0.0005)
    assert len(g) == 121 and g[0] == -0.03 and g[-1] == 0.03 and g[60] == 0.0
    assert len(strain_grid(0.01, 0.003)) == 7    # floor(0.01 / 0.003) = 3 steps each side
    for bad in ((0.0, 0.001), (0.01, 0.0), (0.01, 0.02), (float("nan"), 0.001)):
        with pytest.raises(ValueError):
            strain_grid(*bad)


def test_scan_frame_and_files(written):
    out, result, _ = written
    df = pd.read_csv(out / "scan.csv")
    assert list(df.columns) == SCAN_COLUMNS
    assert len(df) == 2 * 9                       # 2 crystals x 9 strains, MEGNet only
    assert set(df["predictor"]) == {"megnet-bandgap"}
    assert set(df["property"]) == {"band_gap"} and set(df["unit"]) == {"eV"}
    assert set(df["crystal"]) == {"SrTiO3", "KMnF3"}
    assert np.allclose(df["a"], df["a0"] * (1 + df["strain"]))
    kmnf3 = df[df["crystal"] == "KMnF3"]
    assert np.allclose(kmnf3["a0"], 4.19) and np.isclose(kmnf3["strain"].min(), -0.01)
    assert df["value"].notna().all()
    for key in ("scan", "jumps", "markdown", "figure"):
        assert result[key].is_file() and result[key].stat().st_size > 0
    assert (out / "smoothness.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob("*.tmp*"))


def test_jumps_are_the_largest_consecutive_difference(written):
    out, result, _ = written
    df = pd.read_csv(out / "scan.csv")
    jump_df = pd.read_csv(out / "jumps.csv")
    assert list(jump_df.columns) == JUMP_COLUMNS
    assert sorted(jump_df["scope"]) == ["crystal", "crystal", "predictor"]
    per_crystal = {}
    for crystal, g in df.groupby("crystal"):
        g = g.sort_values("strain")
        d = np.abs(np.diff(g["value"].to_numpy()))
        i = int(np.argmax(d))
        row = jump_df[(jump_df["scope"] == "crystal") & (jump_df["crystal"] == crystal)].iloc[0]
        assert row["max_jump"] == pytest.approx(d[i], rel=1e-9)
        assert row["a_from"] == pytest.approx(g["a"].iloc[i]) and row["a_to"] == pytest.approx(g["a"].iloc[i + 1])
        assert row["strain_from"] == pytest.approx(g["strain"].iloc[i])
        assert row["step_A"] == pytest.approx(g["a"].iloc[i + 1] - g["a"].iloc[i])
        assert row["range"] == pytest.approx(np.ptp(g["value"].to_numpy()))
        per_crystal[crystal] = d[i]
    top = jump_df[jump_df["scope"] == "predictor"].iloc[0]
    assert top["max_jump"] == pytest.approx(max(per_crystal.values()))
    assert top["crystal"] == max(per_crystal, key=per_crystal.get)
    assert result["largest"]["megnet-bandgap"] == pytest.approx(top["max_jump"])
    # jumps() on the frame itself agrees with the file
    again = jumps(df)
    assert again["max_jump"].to_numpy() == pytest.approx(jump_df["max_jump"].to_numpy())


def test_unavailable_predictors_are_skipped_with_a_reason(written):
    out, result, unexported = written
    skipped = result["skipped"]
    assert set(skipped) == {"no-such-predictor", unexported}
    assert "unknown predictor" in skipped["no-such-predictor"]
    assert "not exported" in skipped[unexported]
    assert all("\n" not in r for r in skipped.values())
    md = (out / "jumps.md").read_text()
    assert "| megnet-bandgap | band gap |" in md
    assert f"- no-such-predictor: {skipped['no-such-predictor']}" in md
    assert f"- {unexported}: " in md
    assert "SrTiO3, KMnF3" in md and "−1.00 % to +1.00 %" in md and "0.25 % of a0" in md


def test_missing_official_weights_are_found_without_download(tmp_path, monkeypatch):
    monkeypatch.setenv("SMOACS_MODEL_DIR", str(tmp_path))
    for name in ("crystalformer-bandgap", "crystalformer-eform", "alignn-bandgap", "alignn-eform"):
        assert str(tmp_path) in _missing_weights(name)
    assert _missing_weights("megnet-bandgap") == ""
    assert list(tmp_path.iterdir()) == []          # nothing created: no download was attempted
    (tmp_path / "alignn").mkdir()
    (tmp_path / "alignn" / "mp_gappbe_alignn.zip").write_bytes(b"")
    assert _missing_weights("alignn-bandgap") == ""


def test_no_loadable_predictor_is_one_line_exit_1(tmp_path, capsys):
    import argparse

    ap = argparse.ArgumentParser()
    add_parser(ap.add_subparsers(dest="command"))
    args = ap.parse_args(["smoothness", "--predictors", "nope1,nope2", "--out", str(tmp_path / "o"),
                          "--no-progress"])
    assert args.func(args) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("smoacs-bench smoothness: no predictor could be loaded") and "\n" not in err
    assert not (tmp_path / "o").exists()


def test_megnet_band_gap_of_kmnf3_jumps_where_a_shell_crosses_the_cutoff(model_dir):
    """Measured: MEGNet's band gap of KMnF3 (a0 = 4.190 Å) falls from 2.83 to -0.01 eV between a = 4.0823 and
    4.0825 Å (at 0.00005 relative steps), where the A-X shell at sqrt(1.5) a crosses the 5 Å cutoff."""
    df = scan(["megnet-bandgap"], strain=0.03, step=0.0005, crystals=["KMnF3"])
    assert len(df) == 121 and df.attrs["skipped"] == {}
    top = jumps(df).query("scope == 'predictor'").iloc[0]
    assert top["max_jump"] > 0.2
    assert top["max_jump"] > 2.0                    # measured 2.84 eV across one 0.002 Å step
    assert top["a_from"] < A_CUTOFF_AX < top["a_to"]
    assert top["step_A"] == pytest.approx(4.19 * 0.0005)
