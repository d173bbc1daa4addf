"""Cost per success: distinct compositions pooled over a row's runs at each funnel step, per hour of wall time."""

from __future__ import annotations

import pandas as pd

from smoacs_bench.evaluation.cost import cost_markdown, cost_table, plot_cost


def _run(formulas, success, relaxed_success):
    return pd.DataFrame({"formula": formulas, "success": success, "relaxed": [True] * len(formulas),
                         "success_relaxed": relaxed_success})


def test_distinct_successes_per_hour_pool_runs_and_charge_a_shared_cost_once(tmp_path):
    a1 = _run(["SrTiO3", "BaZrO3", "KNbO3"], [True, True, False], [True, False, False])
    a2 = _run(["TiSrO3", "CsPbI3"], [True, True], [True, True])   # SrTiO3 again (same elements), and a new one
    b = _run(["KCaF3"], [True], [False])
    table = cost_table({"A": [(a1, 1800.0, 900.0), (a2, 0.0, 900.0)], "B": [(b, 3600.0, 0.0)]}).set_index("row")
    assert table.loc["A", "own judge"] == 3 and table.loc["A", "relaxed"] == 2
    assert table.loc["A", "hours"] == 1.0 and table.loc["A", "own judge per hour"] == 3.0
    assert table.loc["B", "relaxed"] == 0 and table.loc["B", "relaxed per hour"] == 0.0
    assert "S.U.N." not in table or table["S.U.N."].isna().all()   # a step no run carries stays empty
    md = cost_markdown(table.reset_index())
    assert "| A | 2 | 1800 | 1800 | 3 (3.0) | 2 (2.0) |" in md
    assert plot_cost(table.reset_index(), tmp_path / "cost.png").stat().st_size > 5_000


def test_dft_checks_are_charged_at_their_measured_seconds():
    a = _run(["SrTiO3", "BaZrO3"], [True, True], [True, False]).assign(
        dft_checked=[True, False], dft_seconds=[1800.0, 999.0], dft_ok=[True, None])
    table = cost_table({"A": [(a, 1800.0, 0.0)]}).set_index("row")
    assert table.loc["A", "dft_s"] == 1800.0 and table.loc["A", "hours"] == 1.0   # the unchecked row's 999 s not
    assert "DFT (s, one core)" in cost_markdown(table.reset_index())
    assert "DFT (s, one core)" not in cost_markdown(cost_table({"A": [(_run(["KF"], [True], [True]), 1.0, 0.0)]}))


def test_a_rows_trained_model_charges_its_data_once_per_row():
    a = _run(["SrTiO3", "BaZrO3"], [True, True], [True, False])
    b = _run(["KCaF3"], [True], [True])
    table = cost_table({"A": [(a, 1800.0, 0.0), (a, 1800.0, 0.0)], "B": [(b, 3600.0, 0.0)]},
                       {"A": 3600.0}).set_index("row")
    assert table.loc["A", "model_s"] == 3600.0 and table.loc["A", "hours"] == 2.0   # once, not per run
    assert table.loc["A", "own judge per hour"] == 1.0 and table.loc["B", "model_s"] == 0.0
    md = cost_markdown(table.reset_index())
    assert "model's data (s, one core)" in md and "| A | 2 | 3600 | 0 | 3600 |" in md
    assert "model's data" not in cost_markdown(cost_table({"B": [(b, 3600.0, 0.0)]}))
