"""``smoacs-bench reproduce``: the table specs, one tiny reproduction, reuse, skips and the command line."""

from __future__ import annotations

import argparse
import math

import pandas as pd
import pytest

from smoacs_bench.benchmark.experiments import SPECS, TABLES, estimate_seconds, get_spec, paper_frame
from smoacs_bench.benchmark.reproduce import add_parser, cmd_reproduce, list_tables, reproduce
from smoacs_bench.data.task import TASKS
from smoacs_bench.evaluation.comparison import comparison_figure
from smoacs_bench.evaluation.layouts import LAYOUTS
from smoacs_bench.evaluation.paper import MAIN_SUBSETS, PAPER_FILES


def _parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    add_parser(ap.add_subparsers(dest="command"))
    return ap.parse_args(["reproduce", *argv])


def test_every_spec_is_consistent_and_listed():
    ids = {s.id for s in SPECS}
    assert {
        "table1",
        "table2",
        "table3",
        "table4",
        "tableA2",
        "tableA3",
        "tableA4",
        "tableA5",
        "tableA6",
        "tableA6-pilot",
        "tableA10",
        "tableA11",
        "tableA15",
        "tableA16",
    } <= ids
    for spec in SPECS:
        if not spec.is_sampling:
            assert "heldout" in spec.command
            continue
        assert spec.task in TASKS and spec.layout in LAYOUTS and spec.runs
        if spec.paper is None:   # this project's own tables (SMOACS-relax) say that they are not the paper's
            assert spec.id.startswith("relax") and "not in the paper" in spec.note, spec.id
            continue
        assert spec.paper in {*PAPER_FILES, *MAIN_SUBSETS, "A.11"}
        assert not paper_frame(spec).empty, spec.id  # the published rows are found at the spec's targets
    listed = list_tables()
    assert [row[0] for row in listed] == [s.id for s in SPECS] + ["tuning"]
    assert all(seconds > 0 and text for _, text, seconds in listed)
    assert get_spec("A.10") is get_spec("Table A10") is TABLES["tableA10"] and get_spec("3").id == "table3"
    assert get_spec("A.6-pilot") is TABLES["tableA6-pilot"] and "pilot" in TABLES["tableA6-pilot"].note
    # the measured figures: SMOACS 60 s, TPE 150 s per 256 studies, random search 60 s per 64 (each in two
    # spaces), FTCP 30 s, screening and both reference rows 10 s, cross-judge 12 s per 256
    expected = 9 * (60 + 2 * 150 + 2 * 4 * 60 + 30 + 10 + 10 + 10) + 81 * 12
    assert math.isclose(estimate_seconds(get_spec("table3")), expected)
    assert math.isclose(
        estimate_seconds(get_spec("table3"), samples=64, seeds=1, methods=["tpe"], crossjudge=False), 2 * 3 * 150 / 4
    )   # both TPE rows: the paper's space and SMOACS's


def test_cli_errors_are_one_line(capsys):
    assert cmd_reproduce(_parse(["tableZ9", "--out", "unused"])) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown table 'tableZ9'" in err and "Traceback" not in err
    assert cmd_reproduce(_parse(["table3", "--targets", "1.7"])) == 1
    assert "not among table3's targets" in capsys.readouterr().err
    assert cmd_reproduce(_parse([])) == 1
    assert cmd_reproduce(_parse(["--list"])) == 0
    out = capsys.readouterr().out
    assert all(s.id in out for s in SPECS)


def test_comparison_plot_has_bars_intervals_and_paper_markers():
    rows = [
        {
            "method": m,
            "task": "perovskite",
            "target_bg": 1.5,
            "margin": 0.04,
            "n_samples": 64,
            "seed": 0,
            "success": v,
        }
        for m, v in (("SMOACS(MEGNet)", 0.4), ("TPE(MEGNet)", 0.1), ("FTCP(perov_5)", 0.0))
    ]
    df = pd.concat([pd.DataFrame(rows), paper_frame(get_spec("table3"), [1.5])], ignore_index=True)
    fig = comparison_figure(df)
    ax = fig.axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[:3] == ["SMOACS(MEGNet)", "TPE(MEGNet)", "FTCP(perov_5)"] and "S(Cry) (paper)" in legend
    from matplotlib.collections import LineCollection

    ticks = [c for c in ax.collections if isinstance(c, LineCollection) and c.get_linewidth()[0] == 4]
    assert len(ticks) == 1   # the zero rate of FTCP is drawn, not an invisible bar
    assert "perovskite" in ax.get_title() and "0.04 eV" in ax.get_title()
    assert "(eV)" in ax.get_xlabel() and "success rate" in ax.get_ylabel()


@pytest.mark.usefixtures("model_dir")
def test_tiny_table3_runs_once_reuses_and_skips(tmp_path):
    kwargs = dict(
        samples=4,
        seeds=1,
        methods=["smoacs", "tpe", "ftcp"],
        targets=[1.5],
        progress=False,
        crossjudge=False,
        budget=3,
        options={"ftcp": {"model": str(tmp_path / "no-model")}},
    )
    first = reproduce("table3", tmp_path, **kwargs)
    assert [r.row.tag for r in first.ran] == ["smoacs", "tpe", "tpe-smoacs"], [(r.key, r.reason) for r in first.failed]
    assert first.ran[0].key == "smoacs_bg1.5_m0.04_s0_n4_steps3"
    assert [r.row.method for r in first.skipped] == ["ftcp"]
    for key in ("table_md", "table_csv", "table_tex", "plot", "report", "paired", "summary_md"):
        assert first.files[key].is_file(), key
    table = pd.read_csv(first.files["table_csv"])
    assert {"SMOACS(MEGNet)", "TPE(MEGNet)", "TPE(MEGNet, SMOACS space)"} <= set(table["method"])
    assert (table["source"] == "paper").any() and table["method"].str.endswith("(paper)").any()
    report = first.files["report"].read_text()
    assert "FTCP model folder" in report and "no-model" in report  # the loader's reason
    assert "comparison.png" in report and "Differences in success rate" in first.files["table_md"].read_text()

    configs = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("config.json")}
    assert len(configs) == 3
    second = reproduce("table3", tmp_path, **kwargs)
    assert not second.did_work and len(second.reused) == 3 and len(second.skipped) == 1
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("config.json")} == configs
    assert "reused: 3" in second.files["report"].read_text()


def test_a_row_without_weights_is_skipped_with_the_loaders_reason(tmp_path, monkeypatch):
    """Crystalformer rows (Table A.15's S(Cry)) without official weights: skipped, not a crash; the
    download is refused here so that the test never fetches anything."""
    from smoacs_bench.benchmark.reproduce import SKIPPED, plan
    from smoacs_bench.methods.predictors import crystalformer

    def offline(dest_dir):
        raise OSError("offline (test)")

    monkeypatch.setenv("SMOACS_MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.setattr(crystalformer, "_download_weights", offline)
    runs = plan(get_spec("tableA15"), tmp_path, samples=4, seeds=1, methods=["smoacs-cry"], targets=[0.5])
    assert len(runs) == 1 and runs[0].status == SKIPPED and runs[0].margin == 0.2
    assert "Crystalformer checkpoint" in runs[0].reason and "offline (test)" in runs[0].reason
    with pytest.raises(ValueError, match="unknown method 'smaocs'"):
        plan(get_spec("table3"), tmp_path, methods=["smaocs"])


def test_table1_is_the_heldout_check_and_reports_why_it_did_not_run(tmp_path, monkeypatch):
    monkeypatch.setenv("SMOACS_FTCP_MODEL", str(tmp_path / "no-model"))
    result = reproduce("table1", tmp_path, progress=False)
    report = result.files["report"].read_text()
    assert not result.runs and "not run by reproduce" in report and "no-model" in report
    assert "smoacs-bench heldout --model models/ftcp-perov_5" in report


def test_per_method_samples_seeds_and_options(tmp_path):
    from smoacs_bench.benchmark.reproduce import plan

    runs = plan(get_spec("table3"), tmp_path, samples={"smoacs": 8, "tpe": 4}, seeds={"smoacs": 2, "tpe": 1},
                methods=["smoacs", "tpe"], targets=[1.5], options={"smoacs": {"selection": "best"}}, progress=False)
    names = [r.folder.name for r in runs]
    assert [n.rsplit("_o", 1)[0] for n in names] == [
        "smoacs_bg1.5_m0.04_s0_n8", "smoacs_bg1.5_m0.04_s1_n8", "tpe_bg1.5_m0.04_s0_n4",
        "tpe-smoacs_bg1.5_m0.04_s0_n4"]   # a method's per-method values reach every row of it
    assert "_o" in names[0] and "_o" not in names[2]            # extra options get their own folders
    assert runs[3].config["space"] == "smoacs"
    neutral = plan(get_spec("table3"), tmp_path, samples=4, seeds=1, methods=["tpe"], targets=[1.5],
                   options={"tpe": {"workers": 2}}, progress=False)
    assert "_o" not in neutral[0].folder.name   # options that leave results alone do not rename the folder
    assert runs[0].config["selection"] == "best" and runs[2].config.get("selection", "final") == "final"

    parsed = _parse(["table3", "--samples", "smoacs=8,tpe=4", "--seeds", "smoacs=2,tpe=1",
                     "--param", "smoacs:selection=best", "--param", "tpe:group_size=16"])
    from smoacs_bench.benchmark.reproduce import _params_arg, _samples_arg, _seeds_arg

    assert _samples_arg(parsed.samples) == {"smoacs": 8, "tpe": 4} and _samples_arg("16") == 16
    assert _seeds_arg(parsed.seeds) == {"smoacs": 2, "tpe": 1} and _seeds_arg("0,2") == [0, 2]
    assert _params_arg(parsed.param) == {"smoacs": {"selection": "best"}, "tpe": {"group_size": 16}}


@pytest.mark.parametrize("argv, message", [
    (["--samples", "smoacs=0"], "--samples must be >= 1"),
    (["--samples", "smoacs=many"], "METHOD=N pairs"),
    (["--seeds", "tpe=x"], "METHOD=N pairs"),
    (["--param", "selection=best"], "METHOD:KEY=VALUE"),
    (["--seeds", "0"], "seed 0 alone: '0,'"),
    (["--dft-lattice", "2"], "--dft-lattice needs at least 3 points"),
    (["--dft-klength", "-12"], "--dft-klength must be >= 0 (Å), got -12"),
    (["--skip-stages", "hull,nope"], "--skip-stages: unknown stage nope"),
])
def test_per_method_argument_errors_are_one_line(capsys, tmp_path, argv, message):
    assert cmd_reproduce(_parse(["table3", *argv, "--out", str(tmp_path / "x")])) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_a_run_is_identified_by_what_changes_its_result():
    from smoacs_bench.benchmark.runner import _settings, run_identity, same_run
    from smoacs_bench.methods import get_method_class

    tpe = get_method_class("tpe")
    expected = _settings("tpe", "perovskite", 1.5, 0.04, 64, 0, {"storage": "new/place/tpe_journal"}, tpe)
    assert expected["method_config"] == {}
    stored = dict(expected, method_config={"trials": 200, "device": "cpu", "workers": 2,   # defaults, neutral
                                           "storage": "old/place/tpe_journal"})
    assert same_run(stored, expected, tpe)
    assert not same_run(dict(stored, method_config={"trials": 100}), expected, tpe)
    assert not same_run(dict(stored, seed=1), expected, tpe)
    assert not same_run({"method": "tpe"}, expected, tpe)
    assert run_identity(get_method_class("smoacs"), {"device": "cuda", "lr_atoms": 0.5}) == {"lr_atoms": 0.5}


def test_tuning_protocol_gives_every_tuned_method_the_same_budget_and_chooses_by_mean_success(tmp_path):
    import json

    from smoacs_bench.benchmark.experiments import PROTOCOL_SEEDS, TUNING_CONFIGS, tuning_spec
    from smoacs_bench.methods.registry import get_method_class

    spec = tuning_spec()
    assert get_spec("tuning").runs == spec.runs and not set(spec.seeds) & set(PROTOCOL_SEEDS)
    per_row: dict[str, int] = {}
    for run in spec.runs:
        per_row[run.tag.rsplit("-t", 1)[0]] = per_row.get(run.tag.rsplit("-t", 1)[0], 0) + 1
        get_method_class(run.method)(**run.config())          # every configuration is a valid set of options
    assert per_row == {"smoacs": TUNING_CONFIGS, "tpe": TUNING_CONFIGS, "tpe-smoacs": TUNING_CONFIGS,
                       "ftcp": TUNING_CONFIGS, "smoacs-relax-all": TUNING_CONFIGS}
    assert get_method_class("random").tuning == () and get_method_class("screening").tuning == ()

    result = reproduce("tuning", tmp_path, samples=4, methods=["smoacs"], targets=[1.5], progress=False,
                       crossjudge=False, budget=3, status=False)
    assert len(result.ran) == TUNING_CONFIGS and {r.seed for r in result.ran} == set(spec.seeds)
    chosen = json.loads(result.files["chosen_json"].read_text())["smoacs"]
    rates = [c["success"]["1.5"] for c in chosen["configs"]]
    best = max(rates)
    assert chosen["chosen"] == rates.index(best)               # the highest mean, ties to the earlier
    assert chosen["options"] == chosen["configs"][chosen["chosen"]]["options"] and "lr_scale" in chosen["options"]
    assert "**chosen**" in result.files["chosen_md"].read_text()


def test_table4_has_both_tpe_rows_at_64_samples_and_tpe_n_takes_tpes_tuned_settings():
    from smoacs_bench.benchmark.tuning import merge_tuned

    spec = get_spec("table4")
    assert [r.tag for r in spec.runs] == ["smoacs", "tpe-n", "tpe-smoacs", "screening", "reference"]
    assert spec.samples == 64 and "not the paper's 256" in spec.note
    tuned = {"tpe": {"multivariate": True}, "tpe-smoacs": {"n_startup_trials": 20}}
    merged = merge_tuned({"tpe-n": {"workers": 2}}, tuned, list(spec.runs))
    assert merged["tpe-n"] == {"multivariate": True, "workers": 2}
    assert merged["tpe-smoacs"] == {"n_startup_trials": 20} and "smoacs" not in merged
    assert dict(next(r for r in spec.runs if r.tag == "tpe-smoacs").options) == {"space": "smoacs"}


def test_a_tables_caption_names_every_departure_from_its_runs_config(tmp_path):
    """The caption is generated from the runs: start pools, copy-and-mutate and its options, the sampler, a
    tuned hyperparameter away from its default, the selection rule, sizes and seeds per row, the interval
    kind, the judge and the cross-judge's offset per method."""
    result = reproduce("table3", tmp_path, samples={"smoacs": 4, "tpe": 3}, seeds=1, methods=["smoacs", "tpe"],
                       targets=[1.5], progress=False, budget=3, status=False,
                       options={"smoacs": {"lr_scale": 0.5}})
    text = result.files["table_md"].read_text()
    for phrase in ("SMOACS(MEGNet) starts from perovskite", "copy-and-mutate step from their released code",
                   "pattern logits copied with noise", "0.05 chance to skip a copy", "lr_scale=0.5 (default 1.0)",
                   "TPE(MEGNet): 3 trials per sample from perovskite", "Selection rule:",
                   "rows (samples × seeds): SMOACS(MEGNet) 4 × 1, TPE(MEGNet) 3 × 1", "Wilson",
                   "judged on the same predictors", "its mean E_f minus MEGNet's on each row's proposals: SMOACS"):
        assert phrase in text, phrase


def test_runs_summary_leaves_resumed_runs_of_unknown_earlier_time_out_of_the_median(tmp_path) -> None:
    import json

    from smoacs_bench.benchmark.experiments import MethodRun
    from smoacs_bench.benchmark.planning import REUSED, PlannedRun
    from smoacs_bench.benchmark.rendering import runs_summary

    runs = []
    for seed, (wall, resumed) in enumerate([(600.0, None), (700.0, None), (50.0, "resumed from tpe_journal/; "
                                            "wall_time_s counts only the resumed part (...)")]):
        folder = tmp_path / f"tpe_s{seed}"
        folder.mkdir()
        config = {"wall_time_s": wall, "physical": {"wall_time_s": 10.0}} | ({"resumed": resumed} if resumed else {})
        (folder / "config.json").write_text(json.dumps(config))
        runs.append(PlannedRun(MethodRun("tpe"), "perovskite", 1.5, 0.04, seed, 64, folder, status=REUSED))
    row = runs_summary(runs).splitlines()[-1]
    assert row.startswith("| tpe | 3 | 64 × 3 | 650 (1 resumed run left out") and row.endswith("| 30 |")


def test_the_estimate_counts_the_judges_relaxation_and_stages():
    from smoacs_bench.benchmark.experiments import RELAX_PER_STRUCTURE, STAGES_PER_RELAXED, judge_seconds

    per = RELAX_PER_STRUCTURE[1] + STAGES_PER_RELAXED[1]   # the 5-site perovskite cell
    assert judge_seconds("perovskite", 16, None, robust=False) == 16 * per          # every proposal relaxed
    assert judge_seconds("perovskite", 256, 8, robust=False) == 8 * per            # a seeded subset
    assert judge_seconds("perovskite", 16, None, relax=False, robust=False) == 0.0
    assert judge_seconds("perovskite3x3x3", 8, 2, robust=False) > 10 * judge_seconds("perovskite", 8, 2, robust=False)


def test_the_megnet_in_domain_margin_of_tables_a15_a16_is_the_audits():
    from pathlib import Path

    import pandas as pd

    from smoacs_bench.benchmark.experiments import MARGIN_MEGNET_IN_DOMAIN, get_spec

    audit = pd.read_csv(Path(__file__).resolve().parents[1] / "results" / "predictors" / "audit.csv")
    gapped = audit[audit["mp_gap"] > 0]
    mae = (gapped["gap: MEGNet (PBE, the judge)"] - gapped["mp_gap"]).abs().mean()
    assert len(gapped) >= 100 and round(mae, 2) == MARGIN_MEGNET_IN_DOMAIN
    for table in ("tableA15", "tableA16"):
        assert MARGIN_MEGNET_IN_DOMAIN in {m for r in get_spec(table).runs for m in (r.margins or ())}


def test_a_tiny_appendix_table_and_its_diversity_table_render_from_the_same_runs(tmp_path):
    """Table A.4 at two of its eight targets, then A.5 (diversity) from the very same run folders."""
    kwargs = dict(samples=4, seeds=1, methods=["smoacs", "screening", "reference"], targets=[1.0, 3.5],
                  progress=False, crossjudge=False, budget=3)
    a4 = reproduce("tableA4", tmp_path, **kwargs)
    assert not a4.failed, [(r.key, r.reason) for r in a4.failed]
    assert sorted(r.key.split("_")[1] for r in a4.ran if r.row.tag == "smoacs") == ["bg1", "bg3.5"]
    table = pd.read_csv(a4.files["table_csv"])
    ours = table[table["source"] == "ours"]
    assert set(ours["target_bg"]) == {1.0, 3.5} and set(ours["n_samples"]) == {4}
    assert {"SMOACS(MEGNet)", "Screening(MEGNet)", "Reference(mp20-abx3)"} <= set(ours["method"])
    assert set(table.loc[table["source"] == "paper", "target_bg"]) == {1.0, 3.5}   # the paper's rows beside
    caption = a4.files["table_md"].read_text()
    assert "Seeds: 0; rows (samples × seeds): SMOACS(MEGNet) 4 × 1" in caption
    assert "smaller than the paper's 256" in caption
    a5 = reproduce("tableA5", tmp_path, **kwargs)
    assert not a5.did_work and len(a5.reused) == len(a4.ran)
    diversity = a5.files["table_md"].read_text()
    assert "| unique rate |" in diversity and "S(Cry) (paper)" in diversity
