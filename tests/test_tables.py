"""Tests for the packaged paper tables and the table renderer."""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pytest

from smoacs_bench.evaluation.captions import caption_for
from smoacs_bench.evaluation.layouts import layout_for_task
from smoacs_bench.evaluation.paper import load_paper_table
from smoacs_bench.evaluation.render import render_table
from smoacs_bench.evaluation.stages import table_columns


def _row(df: pd.DataFrame, method: str, target: float) -> pd.Series:
    hit = df[(df["method"] == method) & df["target_bg"].apply(lambda t: math.isclose(t, target))]
    assert len(hit) == 1, (method, target, len(hit))
    return hit.iloc[0]


# --- packaged CSVs ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("table_id", "n_rows", "n_targets"),
    [
        ("A.2", 32, 8), ("A.3", 32, 8), ("A.4", 32, 8), ("A.5", 32, 8), ("A.6", 24, 8),
        ("A.10", 20, 1), ("A.15", 12, 3), ("A.16", 12, 3), ("2", 12, 3), ("3", 12, 3), ("4", 9, 3),
    ],
)
def test_row_counts(table_id: str, n_rows: int, n_targets: int) -> None:
    df = load_paper_table(table_id)
    assert len(df) == n_rows
    assert df["target_bg"].nunique() == n_targets
    assert (df["source"] == "paper").all()


def test_methods_per_target() -> None:
    assert set(load_paper_table("A.2")["method"]) == {"S(Cry)", "S(ALI)", "TPE", "FTCP"}
    assert set(load_paper_table("A.6")["method"]) == {"S(Cry)", "S(ALI)", "TPE(/N)"}
    assert sorted(load_paper_table("A.10")["margin"].unique()) == [0.01, 0.02, 0.04, 0.08, 0.16]
    assert sorted(load_paper_table("A.2")["target_bg"].unique()) == [0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0]


def test_table_ids_normalized() -> None:
    assert len(load_paper_table("A2")) == len(load_paper_table("Table A.2")) == 32
    with pytest.raises(KeyError):
        load_paper_table("A.99")


def test_published_values() -> None:
    t2 = load_paper_table("2")
    assert (t2["table"] == "2").all()
    assert _row(t2, "S(Cry)", 0.5)["success"] == pytest.approx(0.328)
    assert _row(t2, "TPE", 2.5)["ef_ok"] == pytest.approx(0.098)
    assert _row(load_paper_table("3"), "FTCP", 1.5)["coords_ok"] == pytest.approx(0.320)
    assert _row(load_paper_table("A.4"), "S(ALI)", 4.0)["perovskite_ok"] == pytest.approx(0.605)
    assert _row(load_paper_table("A.2"), "FTCP", 4.0)["neutral"] == pytest.approx(0.691)
    a10 = load_paper_table("A.10")
    tpe = a10[(a10["method"] == "TPE") & (a10["margin"] == 0.16)].iloc[0]
    assert tpe["bg_ok"] == pytest.approx(0.955) and tpe["n_samples"] == 512


def test_table4_missing_cells() -> None:
    tpe = _row(load_paper_table("4"), "TPE(/N)", 1.5)
    assert math.isnan(tpe["neutral"]) and math.isnan(tpe["valid_structure"])
    assert "neutral=N/A" in tpe["note"] and "valid_structure=-" in tpe["note"]
    assert tpe["min_dist_ok"] == pytest.approx(1.0)
    assert _row(load_paper_table("4"), "S(ALI)", 2.5)["success"] == pytest.approx(0.102)


def test_diversity_counts() -> None:
    a3 = load_paper_table("A.3")
    cry = _row(a3, "S(Cry)", 2.0)
    assert (cry["n_unique_success"], cry["n_success"], cry["n_unique_novel_success"]) == (90, 91, 85)
    ftcp = _row(a3, "FTCP", 0.5)
    assert ftcp["n_success"] == 0 and ftcp["unique_rate"] == pytest.approx(0.297)
    a5 = load_paper_table("A.5")
    ali = _row(a5, "S(ALI)", 3.5)
    assert (ali["n_unique_success"], ali["n_success"], ali["n_unique_novel_success"]) == (14, 45, 12)
    assert (a3["n_unique_success"] <= a3["n_success"]).all()
    assert (a3["n_unique_novel_success"] <= a3["n_unique_success"]).all()
    # the diversity tables repeat the success rates of A.2 / A.4
    assert a3["success"].tolist() == load_paper_table("A.2")["success"].tolist()
    assert a5["success"].tolist() == load_paper_table("A.4")["success"].tolist()


def test_predictor_margins() -> None:
    a15 = load_paper_table("A.15")
    ftcp = a15[a15["method"] == "FTCP"]
    assert set(ftcp["predictor"]) == {"F-Reg"} and set(ftcp["margin"]) == {0.44}
    a16 = load_paper_table("A.16")
    assert _row(a16, "FTCP", 2.5)["success"] == pytest.approx(0.062)


# --- rendering ---------------------------------------------------------------------------------------------

OURS = [
    {
        "method": "SMOACS(MEGNet)", "task": "free", "target_bg": 1.5, "margin": 0.04, "n_samples": 64,
        "success": 0.40625, "bg_ok": 0.5, "ef_ok": 0.75, "valid_structure": 0.875, "neutral": 1.0,
        "min_dist_ok": 0.875, "unique_rate": 0.96875, "n_success": 26, "n_unique_success": 25,
        "n_unique_novel_success": 20, "novelty_reference": "MEGNet mp.2018.6.1",
    },
    {
        "method": "TPE(MEGNet)", "task": "free", "target_bg": 0.5, "margin": 0.04, "n_samples": 64,
        "success": 0.0, "bg_ok": 0.9, "ef_ok": None, "valid_structure": 0.1, "neutral": 0.1,
        "min_dist_ok": 0.9, "unique_rate": 1.0, "n_success": 0, "n_unique_success": 0,
        "n_unique_novel_success": None, "novelty_reference": "MEGNet mp.2018.6.1",
    },
]


def test_layout_for_task() -> None:
    assert layout_for_task("free") == "table2"
    assert layout_for_task("perovskite") == "table3"
    assert layout_for_task("perovskite3x3x3") == "table4"
    with pytest.raises(KeyError):
        layout_for_task("bulk")


HEADS = "".join(f" {h} |" for _, h in table_columns())   # the judge stages' columns (registry) follow ours
DASHES = " - |" * len(table_columns())


def test_md_rendering() -> None:
    md = render_table(OURS, "table2", "md")
    lines = md.strip().splitlines()
    assert lines[0] == ("| Target BG (eV) | method | success rate | (A)BG | (B) E_f | (C)STR | (a) neut | (b) 0.5Å "
                        "| unique successes | neut (any) | success (cross-judge) |" + HEADS)
    assert "| success (robust) | success (relaxed) | stays | relaxed gap (wide) |" in lines[0]   # the stages' first
    assert len(lines) == 4
    # sorted by target: 0.5 first; every rate with its 95 % Wilson interval; missing E_f shown as "-"
    assert lines[2] == ("| 0.50 ± 0.04 | TPE(MEGNet) | 0.000 (0.00-0.06) | 0.900 (0.81-0.96) | - | 0.100 (0.04-0.19) "
                        "| 0.100 (0.04-0.19) | 0.900 (0.81-0.96) | 0 | - | - |" + DASHES)
    cells = [c.strip() for c in lines[3].strip("|").split("|")]
    assert cells[:4] == ["1.50 ± 0.04", "SMOACS(MEGNet)", "0.406 (0.29-0.53)", "0.500 (0.38-0.62)"]
    assert render_table(OURS, "table2", "md", decimals=2).splitlines()[3].split("|")[3].strip() == "0.41 (0.29-0.53)"


def test_relaxed_rates_use_the_relaxed_count_and_all_zero_seeds_get_pooled_wilson() -> None:
    """success (relaxed) over 16 relaxed of 256: its Wilson interval is for n = 16, not 256; three seeds at 0
    show the pooled Wilson interval over 48, not '0.000 ± 0.000'."""
    from smoacs_bench.evaluation.stats import wilson

    one = dict(OURS[0], seed=0, success_relaxed=0.0625, success_robust=0.25, n_relaxed=16, n_samples=256)
    cells = _cells(render_table([one], "table2", "md"))
    lo, hi = wilson(1, 16)
    assert cells["success (relaxed)"] == f"0.062 ({lo:.2f}-{hi:.2f})"
    lo, hi = wilson(64, 256)
    assert cells["success (robust)"] == f"0.250 ({lo:.2f}-{hi:.2f})"
    runs = [dict(one, seed=k, success_relaxed=0.0) for k in range(3)]
    cells = _cells(render_table(runs, "table2", "md"))
    lo, hi = wilson(0, 48)
    assert cells["success (relaxed)"] == f"0.000 ({lo:.2f}-{hi:.2f})" and hi > 0.05


def _cells(md: str, row: int = 0) -> dict[str, str]:
    """{header: cell} of a rendered Markdown table's row."""
    lines = md.splitlines()
    heads = [c.strip() for c in lines[0].strip("|").split("|")]
    return dict(zip(heads, [c.strip() for c in lines[2 + row].strip("|").split("|")], strict=True))


def test_unique_successes_are_pooled_over_seeds_and_rates_stay_inside_0_1() -> None:
    runs = [dict(OURS[0], seed=k, success=v, n_unique_success=2, n_unique_success_set=sets)
            for k, (v, sets) in enumerate(((0.01, "O3 Sr1 Ti1;Ba1 O3 Zr1"), (0.0, "O3 Sr1 Ti1"), (0.05, "")))]
    cells = _cells(render_table(runs, "table2", "md"))
    assert cells["unique successes"] == "2"     # summed over seeds it would be 6
    mean, low, high = (float(x) for x in cells["success rate"].replace("(", " ").replace(")", "").replace("-", " ").split())
    assert mean == pytest.approx(0.02, abs=1e-3) and low == 0.0 and 0.02 < high <= 1.0
    without = [{k: v for k, v in r.items() if k != "n_unique_success_set"} for r in runs]
    assert _cells(render_table(without, "table2", "md"))["unique successes"] == "6"   # older summaries: summed


def test_two_all_zero_rows_show_no_difference() -> None:
    from smoacs_bench.evaluation.compare import differences_markdown, paired_differences

    runs = [({"method": m, "task": "perovskite", "target_bg": 1.5, "margin": 0.04, "seed": 0},
             pd.DataFrame({"sample": range(4), "success": [False] * 4})) for m in ("A", "B")]
    text = differences_markdown(paired_differences(runs))
    assert "A − B: no difference (both 0;" in text and "+0.000" not in text


def test_seeds_are_pooled_into_one_row_with_a_t_interval() -> None:
    runs = [dict(OURS[0], seed=k, success=v) for k, v in enumerate((0.40, 0.45, 0.41))]
    md = render_table(runs, "table2", "md")
    row = md.strip().splitlines()[2]
    assert row.count("SMOACS(MEGNet)") == 1 and "| 0.420 ± 0.066 |" in row  # t(2) = 4.30, sd 0.0265
    df = pd.read_csv(io.StringIO(render_table(runs, "table2", "csv")))
    assert df.loc[0, "n_seeds"] == 3 and df.loc[0, "seeds"] == "0,1,2"
    assert df.loc[0, "success_half"] == pytest.approx(4.3027 * 0.026458 / 3 ** 0.5, rel=1e-3)
    best = render_table([dict(OURS[0], selection="best")], "table2", "md")
    assert "| SMOACS(MEGNet) [best] |" in best


def test_wilson_and_paired_bootstrap() -> None:
    from smoacs_bench.evaluation.stats import paired_bootstrap, wilson

    lo, hi = wilson(108, 256)
    assert (round(lo, 3), round(hi, 3)) == (0.363, 0.483)
    assert wilson(0, 64)[0] == 0.0 and wilson(64, 64)[1] == 1.0
    a, b = [1, 1, 0, 1] * 50, [0, 1, 0, 0] * 50
    diff, lo, hi = paired_bootstrap(a, b)
    assert diff == pytest.approx(0.5) and lo < 0.5 < hi and hi - lo < 0.2
    same = paired_bootstrap(a, a)
    assert same == (0.0, 0.0, 0.0)


def test_md_perovskite_columns() -> None:
    md = render_table([dict(OURS[0], task="perovskite", coords_ok=0.25)], "table3", "md")
    header, _, row = md.strip().splitlines()
    assert header.endswith("| (D)PS | (c) tole | (d) angles | (e) coord | unique successes | neut (any) "
                           "| success (cross-judge) |" + HEADS)
    assert row.endswith("| - | - | - | 0.250 (0.16-0.37) | 25 | - | - |" + DASHES)


def test_csv_rendering_roundtrip() -> None:
    df = pd.read_csv(io.StringIO(render_table(OURS, "table2", "csv")))
    assert list(df.columns[:4]) == ["task", "target_bg", "margin", "method"]
    assert {"success", "bg_ok", "ef_ok", "valid_structure", "neutral", "min_dist_ok"} <= set(df.columns)
    assert df["method"].tolist() == ["TPE(MEGNet)", "SMOACS(MEGNet)"]
    assert df.loc[1, "success"] == 0.40625  # unrounded
    assert math.isnan(df.loc[0, "ef_ok"])
    assert df.loc[1, "n_samples"] == 64


def test_tex_rendering() -> None:
    tex = render_table(OURS, "table3", "tex")
    lines = tex.strip().splitlines()
    assert lines[0] == r"\begin{tabular}{ll" + "r" * (13 + len(table_columns())) + "}"
    assert lines[1] == r"\toprule" and lines[-2] == r"\bottomrule" and lines[-1] == r"\end{tabular}"
    body = [ln for ln in lines if ln.endswith(r"\\")]
    assert len(body) == 3  # header + 2 rows
    assert all(ln.count("&") == 14 + len(table_columns()) for ln in body)
    assert r"E\_f" in body[0] and r"0.5\AA{}" in body[0]
    assert r"1.50 $\pm$ 0.04" in tex and "±" not in tex and "Å" not in tex
    # one \midrule under the header plus one between the two target groups
    assert lines.count(r"\midrule") == 2


def test_diversity_rendering() -> None:
    md = render_table(OURS, "diversity", "md")
    lines = md.strip().splitlines()
    assert lines[0].endswith("| unique rate in success | unique and novel rate in success |")
    assert lines[2].endswith("| 0.000 (0.00-0.06) | 1.000 (0.94-1.00) | - | - |")
    assert lines[3].endswith("| 0.406 (0.29-0.53) | 0.969 (0.89-0.99) | 25/26 | 20/26 |")
    df = pd.read_csv(io.StringIO(render_table(OURS, "diversity", "csv")))
    assert df.loc[1, ["n_success", "n_unique_success", "n_unique_novel_success"]].tolist() == [26, 25, 20]


def test_with_paper_matches_target_only() -> None:
    md = render_table([OURS[0]], "table2", "md", with_paper=True)
    lines = md.strip().splitlines()[2:]
    assert [ln.split("|")[2].strip() for ln in lines] == [
        "SMOACS(MEGNet)", "S(Cry) (paper)", "S(ALI) (paper)", "TPE (paper)", "FTCP (paper)",
    ]
    assert lines[1] == ("|  | S(Cry) (paper) | 0.387 | 0.543 | 0.672 | 0.824 | 0.980 | 0.824 | - | - | - |" + DASHES)
    assert "0.328" not in md  # the 0.5 eV paper rows stay out
    df = pd.read_csv(io.StringIO(render_table([OURS[0]], "table2", "csv", with_paper=True)))
    assert (df["target_bg"] == 1.5).all() and df["source"].tolist() == ["ours"] + ["paper"] * 4


def test_with_paper_other_margin_and_task() -> None:
    # 2.0 eV at margin 0.16 comes from A.10, not from A.2
    md = render_table([dict(OURS[0], target_bg=2.0, margin=0.16)], "table2", "md", with_paper=True)
    assert "| 2.00 ± 0.16 |" in md and "0.316" in md and "0.355" not in md
    # no paper rows for an unpublished target
    assert "(paper)" not in render_table([dict(OURS[0], target_bg=1.7)], "table2", "md", with_paper=True)
    # 3x3x3: TPE(/N) neutrality renders as N/A, its (C)STR as "-"
    big = dict(OURS[0], task="perovskite3x3x3", target_bg=0.5)
    row = [ln for ln in render_table([big], "table4", "md", with_paper=True).splitlines() if "TPE(/N)" in ln][0]
    assert [c.strip() for c in row.strip("|").split("|")][5:7] == ["-", "N/A"]
    # diversity with paper: A.3 rows for the same target
    div = render_table([OURS[0]], "diversity", "md", with_paper=True)
    assert "| 99/99 | 94/99 |" in div and "84/84" not in div


def test_captions() -> None:
    cap = caption_for("table2", OURS)
    assert "(B) the formation energy is below -0.5 eV" in cap and "64 samples" in cap and "0.5 Å" in cap
    cap3 = caption_for("table3", [dict(OURS[0], task="perovskite", n_samples=256)])
    assert "tolerance factor t is between 0.8 and 1.0" in cap3 and "256 samples" in cap3
    assert "3 × 3 × 3" in caption_for("table4", [dict(OURS[0], task="perovskite3x3x3")])
    div = caption_for("diversity", OURS)
    assert "MEGNet mp.2018.6.1" in div and "unique rate in success" in div
    # a paragraph in the paper's words, then one bullet per protocol sentence
    paragraph, _, bullets = cap.partition("\n\nProtocol, judge stages and departures from the paper:\n\n")
    assert "\n" not in paragraph and paragraph.endswith("Higher scores are better across all metrics.")
    assert bullets and all(line.startswith("- ") for line in bullets.splitlines())


def test_paired_differences_pair_by_seed_sample_and_start() -> None:
    from smoacs_bench.evaluation.compare import differences_markdown, paired_differences

    def run(method, seed, success, sources):
        summary = {"method": method, "task": "perovskite", "target_bg": 1.5, "margin": 0.04, "seed": seed}
        samples = pd.DataFrame({"sample": range(len(success)), "source": sources, "success": success})
        return summary, samples

    src = [f"generated:0:{i}" for i in range(4)]
    runs = [run("SMOACS(MEGNet)", 0, [True, True, False, True], src),
            run("TPE(MEGNet)", 0, [False, True, False, False], src[:3] + ["elsewhere"]),
            run("SMOACS(MEGNet)", 1, [True, False], src[:2]),
            run("TPE(MEGNet)", 1, [False, False], src[:2])]
    diffs = paired_differences(runs)
    assert len(diffs) == 1
    r = diffs.iloc[0]
    assert (r["method_a"], r["method_b"], r["n_pairs"], r["n_unpaired"]) == ("SMOACS(MEGNet)", "TPE(MEGNet)", 5, 1)
    assert r["difference"] == pytest.approx(2 / 5) and r["lo"] <= r["difference"] <= r["hi"]
    text = differences_markdown(diffs)
    assert "SMOACS(MEGNet) − TPE(MEGNet) = +0.400" in text and "1 samples without a shared start left out" in text
    assert "p = " in text and "Holm" in text


def test_copies_and_unequal_run_sizes_do_not_pair() -> None:
    """A copied SMOACS sample (lineage not its own index) has no shared start; runs of other sizes never pair;
    two seeds or more on both sides make the seed the unit (Welch, as scipy computes it)."""
    from scipy import stats

    from smoacs_bench.evaluation.compare import paired_differences

    def run(method, seed, success, lineage=None):
        summary = {"method": method, "task": "perovskite", "target_bg": 1.5, "margin": 0.04, "seed": seed}
        frame = pd.DataFrame({"sample": range(len(success)), "source": [f"g:{i}" for i in range(len(success))],
                              "success": success})
        if lineage is not None:
            frame["lineage"] = lineage
        return summary, frame

    # sample 1 is a copy of 0: samples 0, 2 and 3 survived uncopied because they were succeeding, so pairing
    # them would favour SMOACS; a run with copies pairs none of its samples
    r = paired_differences([run("SMOACS(MEGNet)", 0, [True, True, True, False], lineage=[0, 0, 2, 3]),
                            run("TPE(MEGNet)", 0, [False, False, True, True])]).iloc[0]
    assert r["kind"] == "samples" and r["n_pairs"] == 0
    r = paired_differences([run("SMOACS(MEGNet)", 0, [True, True, True, False], lineage=[0, 1, 2, 3]),
                            run("TPE(MEGNet)", 0, [False, False, True, True])]).iloc[0]
    assert r["kind"] == "paired" and r["n_pairs"] == 4     # no copies: every sample keeps its own start
    r = paired_differences([run("SMOACS(MEGNet)", 0, [True] * 8), run("TPE(MEGNet)", 0, [False] * 4)]).iloc[0]
    assert r["kind"] == "samples" and r["n_pairs"] == 0
    rates_a, rates_b = [0.5, 0.75, 0.25], [0.25, 0.0, 0.25]
    runs = [run("SMOACS(MEGNet)", s, [i < 4 * v for i in range(4)]) for s, v in enumerate(rates_a)]
    runs += [run("FTCP(perov_5)", s, [i < 4 * v for i in range(4)]) for s, v in enumerate(rates_b)]
    for _, frame in runs[3:]:
        frame["source"] = "elsewhere"
    r = paired_differences(runs).iloc[0]
    want = stats.ttest_ind(rates_a, rates_b, equal_var=False)
    ci = want.confidence_interval(0.95)
    assert r["kind"] == "seeds" and r["p"] == pytest.approx(want.pvalue)
    assert (r["lo"], r["hi"]) == pytest.approx((ci.low, ci.high)) and r["dof"] == pytest.approx(want.df)


def test_tests_and_intervals_agree_with_scipy() -> None:
    from scipy import stats

    from smoacs_bench.evaluation.stats import cluster_bootstrap, fisher_p, holm, mcnemar_p, wilson

    a = [True] * 30 + [False] * 10 + [True] * 3 + [False] * 57
    b = [True] * 30 + [True] * 10 + [False] * 3 + [False] * 57   # 10 vs 3 discordant pairs
    assert mcnemar_p(b, a) == pytest.approx(stats.binomtest(10, 13, 0.5).pvalue)
    assert fisher_p(a, b) == pytest.approx(stats.fisher_exact([[33, 67], [40, 60]]).pvalue)
    assert holm([0.01, 0.04, 0.03, float("nan")])[:3] == pytest.approx([0.03, 0.06, 0.06])
    lo, hi = wilson(0, 768)
    assert lo == pytest.approx(0, abs=1e-12) and hi == pytest.approx(stats.binomtest(0, 768).proportion_ci(method="wilson").high)
    # clone-correlated samples: 16 lineages of 16 identical copies each; treating 256 clones as independent
    # gives a far narrower interval than resampling lineages
    success = [lineage % 2 == 0 for lineage in range(16) for _ in range(16)]
    lineages = [lineage for lineage in range(16) for _ in range(16)]
    _, naive_lo, naive_hi = cluster_bootstrap(success, range(256))
    rate, lo, hi = cluster_bootstrap(success, lineages)
    assert rate == 0.5 and (hi - lo) > 2.5 * (naive_hi - naive_lo)


def test_a_run_without_successes_gets_a_wilson_interval_over_its_copy_lineages() -> None:
    """A single SMOACS run with no success: every lineage resample gives 0, so the cluster bootstrap is
    [0, 0]; the table instead shows the Wilson interval with the lineages (not the copies) as the unit."""
    from scipy import stats

    from smoacs_bench.evaluation.criteria import Criteria
    from smoacs_bench.evaluation.layouts import to_frame
    from smoacs_bench.evaluation.stats import wilson
    from smoacs_bench.evaluation.summary import lineage_counts, summarize

    def row(success):
        frame = pd.DataFrame({"sample": range(8), "lineage": [0, 0, 0, 3, 4, 4, 6, 7], "success": success,
                              "formula": ["SrTiO3"] * 8})
        return summarize(frame, "SMOACS(MEGNet)", "free", Criteria(target_bg=1.5, margin=0.04))

    zero = to_frame([row([False] * 8)]).iloc[0]
    want = stats.binomtest(0, 5).proportion_ci(method="wilson")       # 5 lineages
    assert zero["success"] == 0 and zero["success_lo"] == pytest.approx(0, abs=1e-12)
    assert zero["success_hi"] == pytest.approx(want.high)
    some = row([True, True, True, False, False, False, True, False])   # a real bootstrap is kept
    got = to_frame([some]).iloc[0]
    assert (got["success_lo"], got["success_hi"]) == (some["success_clo"], some["success_chi"])
    assert got["success_lo"] < got["success"] < got["success_hi"]
    # other rates of the run: Wilson with the lineages as the unit; relaxation rates over the relaxed lineages
    frame = pd.DataFrame({"sample": range(8), "lineage": [0, 0, 0, 3, 4, 4, 6, 7],
                          "relaxed": [True, True, True, True, False, False, False, False]})
    counts = lineage_counts(frame)
    assert counts == {"n_lineages": 5, "n_relaxed_lineages": 2}
    one = dict(some, **counts, ef_ok=0.5, n_relaxed=4, success_relaxed=0.5)
    got = to_frame([one]).iloc[0]
    assert (got["ef_ok_lo"], got["ef_ok_hi"]) == pytest.approx(wilson(2.5, 5))   # 5 lineages, rate 0.5
    assert (got["success_relaxed_lo"], got["success_relaxed_hi"]) == pytest.approx(wilson(1, 2))
    # three seeds with no relaxed success: the pooled Wilson counts relaxed lineages, not relaxed copies
    seeds = to_frame([dict(one, seed=s, success_relaxed=0.0) for s in range(3)]).iloc[0]
    assert seeds["success_relaxed_hi"] == pytest.approx(wilson(0, 6)[1])
    assert lineage_counts(frame.drop(columns="lineage")) == {}


def test_methods_without_a_shared_start_get_an_unpaired_comparison() -> None:
    from smoacs_bench.evaluation.compare import differences_markdown, paired_differences
    from smoacs_bench.evaluation.stats import unpaired_bootstrap

    def run(method, success, sources):
        summary = {"method": method, "task": "free", "target_bg": 1.5, "margin": 0.04, "seed": 0}
        return summary, pd.DataFrame({"sample": range(len(success)), "source": sources, "success": success})

    runs = [run("SMOACS(MEGNet)", [True] * 6 + [False] * 2, [f"aflow:{i}" for i in range(8)]),
            run("FTCP(perov_5)", [False] * 7 + [True], [f"mp-{i}" for i in range(8)])]
    r = paired_differences(runs).iloc[0]
    assert not r["paired"] and r["n_pairs"] == 0 and (r["n_a"], r["n_b"]) == (8, 8)
    assert r["difference"] == pytest.approx(6 / 8 - 1 / 8) and r["lo"] < r["difference"] < r["hi"]
    assert "unpaired, 8 vs 8 samples" in differences_markdown(paired_differences(runs))
    assert np.isnan(unpaired_bootstrap([], [True])[0])


def test_rows_of_different_sizes_never_share_a_label() -> None:
    from smoacs_bench.evaluation.layouts import to_frame

    small = dict(OURS[1], n_samples=64, seed=0)
    big = dict(OURS[1], n_samples=256, seed=0)
    labels = set(to_frame([small, big])["method"])
    assert labels == {f"{OURS[1]['method']} (n=64)", f"{OURS[1]['method']} (n=256)"}
    assert set(to_frame([small])["method"]) == {OURS[1]["method"]}


def test_relaxation_columns_are_compared_over_the_relaxed_proposals_and_the_own_method_comes_first() -> None:
    """success (relaxed) is a rate over the proposals the judge relaxed (a seeded subset): an unrelaxed
    proposal is not a failure. The relax tables put SMOACS-relax first, so it is A in every comparison."""
    from scipy import stats

    from smoacs_bench.benchmark.experiments import get_spec
    from smoacs_bench.benchmark.rendering import comparison_order
    from smoacs_bench.evaluation.compare import differences_markdown, paired_differences

    def run(method, tag, seed, relaxed, ok):
        summary = {"method": method, "task": "perovskite", "target_bg": 1.5, "margin": 0.04, "seed": seed,
                   "row_tag": tag}
        n = len(relaxed)
        frame = pd.DataFrame({"sample": range(n), "source": [f"g:{i}" for i in range(n)], "lineage": [0] * n,
                              "success": [False] * n, "relaxed": relaxed,
                              "success_relaxed": [o if r else None for r, o in zip(relaxed, ok, strict=True)]})
        return summary, frame

    half = [True, True, False, False]
    runs = [run("SMOACS(MEGNet)", "smoacs", s, half, [s == 0, False, False, False]) for s in range(3)]
    runs += [run("SMOACS-relax(MEGNet)", "smoacs-relax-all", s, half, [True, s > 0, False, False]) for s in range(3)]
    ordered = comparison_order(runs, get_spec("relax3").compare_against)
    assert ordered[0][0]["row_tag"] == "smoacs-relax-all" and comparison_order(runs, "") == runs
    r = paired_differences(ordered, "success_relaxed").iloc[0]
    a, b = [0.5, 1.0, 1.0], [0.5, 0.0, 0.0]          # per seed, over the 2 relaxed proposals
    want = stats.ttest_ind(a, b, equal_var=False)
    assert r["method_a"] == "SMOACS-relax(MEGNet)" and r["kind"] == "seeds"
    assert r["difference"] == pytest.approx(2 / 3) and r["p"] == pytest.approx(want.pvalue)
    assert "success (relaxed): SMOACS-relax(MEGNet) − SMOACS(MEGNet) = +0.667" in differences_markdown(
        paired_differences(ordered, "success_relaxed"))
    no_relax = [(s, f.drop(columns=["relaxed", "success_relaxed"])) for s, f in runs]
    assert paired_differences(no_relax, "success_relaxed").empty
