"""The plugin example (examples/random_search_plugin): installed the way a user installs it, found through its
entry point and as ``module:Class``, held to the method contract, run by the runner and tabled beside SMOACS."""

from __future__ import annotations

import importlib
import inspect
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from smoacs_bench.evaluation.packing import names
from smoacs_bench.methods.contract import check_declarations, check_failures_carry_reasons, check_method
from smoacs_bench.methods.registry import ENTRY_POINT_GROUP, get_method_class, plugin_methods

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "random_search_plugin"
ENTRY = "random-search"
TARGET = "smoacs_random_search.method:RandomSearch"
needs_models = pytest.mark.usefixtures("model_dir")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The example pip-installed (no dependencies, no network) into a folder put on sys.path; that
    folder. It is built from a copy, so no build/ or egg-info lands in the example."""
    tmp = tmp_path_factory.mktemp("plugin")
    source, target = tmp / "src", tmp / "site"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--disable-pip-version-check",
            "--target",
            str(target),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        pytest.fail(f"pip install of the example failed:\n{done.stdout}\n{done.stderr}")
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(target))
        importlib.invalidate_caches()
        yield target
        for name in [m for m in sys.modules if m.split(".")[0] == "smoacs_random_search"]:
            del sys.modules[name]


def test_found_through_its_entry_point(installed):
    assert plugin_methods()[ENTRY] == TARGET, f"no {ENTRY!r} in the entry-point group {ENTRY_POINT_GROUP}"
    cls = get_method_class(ENTRY)
    assert cls.name == ENTRY and cls.budget == "trials"
    assert Path(inspect.getfile(cls)).is_relative_to(installed)  # the installed copy, not the source tree


def test_found_as_module_and_class(installed):
    assert get_method_class(TARGET) is get_method_class(ENTRY)


def test_declarations(installed):
    check_declarations(get_method_class(ENTRY))  # model-free


@needs_models
def test_method_contract(installed):
    props = check_method(get_method_class(ENTRY))
    assert any(not p.failed for p in props)


@needs_models
def test_failed_samples_carry_a_reason(installed):
    check_failures_carry_reasons(get_method_class(ENTRY))


@needs_models
def test_run_is_judged_and_tabled_beside_smoacs(installed, tmp_path, capsys):
    from smoacs_bench.benchmark.cli import main
    from smoacs_bench.benchmark.runner import run_experiment

    common = dict(task="perovskite", target_bg=1.5, margin=0.04, n_samples=4, seed=0, crossjudge=False)
    rs = run_experiment(
        ENTRY, out_dir=tmp_path / "random", method_config={"trials": 8, "device": "cpu"}, **common
    )
    run_experiment(
        "smoacs",
        out_dir=tmp_path / "smoacs",
        method_config={"steps": 3, "device": "cpu", "progress": False},
        **common,
    )
    assert rs["method"] == "Random(MEGNet)" and rs["n_samples"] == 4
    samples = pd.read_csv(tmp_path / "random" / "samples.csv")
    assert list(samples["sample"]) == [0, 1, 2, 3]
    assert samples["formula"].notna().all() and samples["success"].notna().all()
    assert not samples["reason"].fillna("").str.contains("evaluation failed").any()
    assert samples["coords_ok"].all() and samples["angles_ok"].all()  # proposals stay in the search space
    assert names(tmp_path / "random" / "structures") == [f"{i}.cif" for i in range(4)]

    capsys.readouterr()
    assert (
        main(["table", "--runs", str(tmp_path / "random"), str(tmp_path / "smoacs"), "--format", "md"]) == 0
    )
    text = capsys.readouterr().out
    rows = [line for line in text.splitlines() if line.startswith("|")]
    assert any("Random(MEGNet)" in r for r in rows) and any("SMOACS(MEGNet)" in r for r in rows)
    assert "Random(MEGNet) − SMOACS(MEGNet)" in text  # the paired comparison under the table
