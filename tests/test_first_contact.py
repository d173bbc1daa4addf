"""First contact: help that lists every option, one-line errors without models or network, doctor, Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from smoacs_bench.benchmark.cli import INTERRUPTED, main
from smoacs_bench.methods import METHODS, get_method_class


def _bare_env(tmp_path, **extra):
    """The environment of a new user: no model or data folder, no config file, no network."""
    env = {k: v for k, v in os.environ.items() if k not in ("SMOACS_MODEL_DIR", "SMOACS_DATA_DIR")}
    return env | {"SMOACS_CONFIG": str(tmp_path / "none.toml"), "SMOACS_OFFLINE": "1"} | extra


def test_run_help_lists_every_option_of_every_builtin_method(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for name in METHODS:
        assert f"  {name} (" in text
        for option in get_method_class(name).options():
            assert f"    {option}: " in text, (name, option)


def test_a_bad_option_value_names_the_option_and_its_type(tmp_path):
    with pytest.raises(SystemExit, match="smoacs option lr_atoms expects float | None, got 'abc'"):
        main(["run", "--method", "smoacs", "--param", "lr_atoms=abc", "--out", str(tmp_path / "r")])
    assert not (tmp_path / "r" / "config.json").exists()


@pytest.mark.parametrize("argv", [
    ["run", "--method", "smoacs", "--task", "perovskite", "--n-samples", "2", "--steps", "2", "--no-crossjudge",
     "--relax", "none", "--robust-copies", "0"],
    ["evaluate", "CIF", "--no-crossjudge", "--relax", "none", "--robust-copies", "0"],
])
def test_readme_commands_without_models_or_network_fail_in_one_line(tmp_path, argv):
    from pymatgen.core import Lattice, Structure

    cif = tmp_path / "a.cif"
    Structure(Lattice.cubic(3.9), ["Sr", "Ti", "O", "O", "O"],
              [[0.5, 0.5, 0.5], [0, 0, 0], [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5]]).to(filename=str(cif))
    argv = [str(cif) if a == "CIF" else a for a in argv] + ["--out", str(tmp_path / "out.csv" if argv[0] ==
                                                                         "evaluate" else tmp_path / "run")]
    res = subprocess.run([sys.executable, "-m", "smoacs_bench.benchmark.cli", *argv], env=_bare_env(tmp_path),
                         capture_output=True, text=True, timeout=300)
    err = res.stderr.strip().splitlines()
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert len(err) == 1 and "SMOACS_MODEL_DIR" in err[0], res.stderr[-2000:]


def test_doctor_names_a_missing_model(tmp_path, capsys, monkeypatch):
    (tmp_path / "models" / "matgl" / "MEGNet-MP-2019.4.1-BandGap-mfi").mkdir(parents=True)
    monkeypatch.setenv("SMOACS_MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("SMOACS_CONFIG", str(tmp_path / "none.toml"))
    assert main(["doctor"]) == 1
    out = capsys.readouterr()
    assert "MISSING  MEGNet MEGNet-MP-2018.6.1-Eform" in out.out
    assert "MEGNet MEGNet-MP-2018.6.1-Eform" in out.err


def test_a_config_file_stands_in_for_the_variables(tmp_path, monkeypatch, model_dir):
    from smoacs_bench.data import environment

    cfg = tmp_path / "config.toml"
    cfg.write_text(f'models = "{model_dir}"\ndata = "relative/data"\n')
    monkeypatch.delenv("SMOACS_MODEL_DIR", raising=False)
    monkeypatch.delenv("SMOACS_DATA_DIR", raising=False)
    monkeypatch.setenv("SMOACS_CONFIG", str(cfg))
    assert environment.model_dir() == model_dir
    assert environment.data_dir() == tmp_path / "relative" / "data"


@pytest.mark.usefixtures("model_dir")
def test_ctrl_c_exits_130_with_the_hint_and_a_rerun_completes_identically(tmp_path):
    def command(out):
        return [sys.executable, "-m", "smoacs_bench.benchmark.cli", "run", "--method", "tpe", "--task", "perovskite",
                "--n-samples", "8", "--trials", "300", "--no-crossjudge", "--relax", "none", "--robust-copies", "0",
                "--no-progress", "--out", str(out)]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # SIGINT back to its default in the child: under nohup or `cmd &` it is inherited as ignored
    proc = subprocess.Popen(command(tmp_path / "a"), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    journal = tmp_path / "a" / "tpe_journal"
    deadline = time.time() + 240
    while time.time() < deadline and not (journal.is_dir() and any(journal.iterdir())):
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=240)
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == INTERRUPTED and "Traceback" not in err
    assert not (tmp_path / "a" / "samples.csv").exists()
    for folder in ("a", "b"):   # the interrupted run resumed, and an uninterrupted one
        res = subprocess.run(command(tmp_path / folder), env=env, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr[-2000:]
    assert (tmp_path / "a" / "samples.csv").read_bytes() == (tmp_path / "b" / "samples.csv").read_bytes()


def test_table_names_a_missing_folder_and_says_what_it_wrote(tmp_path, capsys):
    with pytest.raises(SystemExit, match="no run with a summary.csv"):
        main(["table", "--runs", str(tmp_path / "nonexistent")])
    assert "nonexistent: no such folder" in capsys.readouterr().err


@pytest.mark.usefixtures("model_dir")
def test_evaluate_takes_a_folder_of_structures(tmp_path, capsys):
    from smoacs_bench.data.reference_crystals import textbook_perovskites

    folder = tmp_path / "cifs"
    folder.mkdir()
    for name, s in list(textbook_perovskites().items())[:3]:
        s.to(filename=str(folder / f"{name}.cif"))
    (folder / "notes.txt").write_text("not a structure")
    out = tmp_path / "judged.csv"
    assert main(["evaluate", str(folder), "--task", "perovskite", "--out", str(out), "--no-crossjudge",
                 "--relax", "none", "--robust-copies", "0"]) == 0
    import pandas as pd

    assert len(pd.read_csv(out)) == 3
    with pytest.raises(SystemExit, match="no structure files"):
        main(["evaluate", str(tmp_path / "judged.csv").replace("judged.csv", ""), "--out", str(out)])


def test_readme_blocks_are_filled_from_files(tmp_path, capsys):
    (tmp_path / "table3").mkdir()
    (tmp_path / "table3" / "summary.md").write_text("| a | b |\n|---|---|\n| 1 | 2 |\n\n![plot](parity.png) "
                                                    "[MP](https://materialsproject.org) [up](../README.md)\n")
    readme = tmp_path / "README.md"
    readme.write_text("prose\n<!-- include: table3/summary.md -->\nold numbers\n<!-- end include -->\nmore prose\n"
                      "<!-- include: table9/summary.md -->\n<!-- end include -->\n")
    assert main(["readme", str(readme)]) == 1   # one block has no file yet
    text = readme.read_text()
    assert "old numbers" not in text and "| 1 | 2 |" in text and text.startswith("prose\n")
    # the included file's relative links now point from the README's folder; web addresses stay
    assert "![plot](table3/parity.png)" in text and "(https://materialsproject.org)" in text
    assert "[up](table3/../README.md)" in text
    assert "more prose" in text and "table9/summary.md" in capsys.readouterr().out


def test_help_version_and_a_bad_option_answer_without_torch_pymatgen_or_matgl():
    for argv, code in ((["--help"], 0), (["--version"], 0), (["run", "--n-samples", "x"], 2)):
        done = subprocess.run([sys.executable, "-X", "importtime", "-m", "smoacs_bench.benchmark.cli", *argv],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == code, (argv, done.stderr[-500:])
        imported = {line.split("|")[-1].strip().split(".")[0] for line in done.stderr.splitlines()
                    if line.startswith("import time:")}
        assert not imported & {"torch", "pymatgen", "matgl"}, (argv, imported & {"torch", "pymatgen", "matgl"})
        assert "smoacs_bench" in imported   # the check can fail: it sees the package's own imports
    assert "reproduce" in subprocess.run([sys.executable, "-m", "smoacs_bench.benchmark.cli", "--help"],
                                         capture_output=True, text=True, timeout=60).stdout


@pytest.mark.usefixtures("model_dir", "data_dir")
def test_a_plugin_in_the_current_folder_runs_without_pythonpath(tmp_path):
    (tmp_path / "myplug.py").write_text("from smoacs_bench.methods.tpe import RandomSearch\n\n\n"
                                        "class MyRandom(RandomSearch):\n    name = 'my-random'\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    cli = [sys.executable, "-c", "import sys; from smoacs_bench.benchmark.cli import main; sys.exit(main())"]
    done = subprocess.run([*cli, "run", "--method", "myplug:MyRandom", "--task", "perovskite", "--n-samples", "2",
                           "--trials", "3", "--relax", "none", "--robust-copies", "0", "--no-crossjudge", "--out", "r"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-1500:]
    assert (tmp_path / "r" / "samples.csv").is_file()
    missing = subprocess.run([*cli, "run", "--method", "nothere:X", "--out", "r2"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert "put nothere.py (or its package folder) in the current folder, add its folder to PYTHONPATH" \
        in missing.stderr


def test_reproduce_without_models_stops_at_once_with_one_message(tmp_path):
    env = _bare_env(tmp_path)
    done = subprocess.run([sys.executable, "-m", "smoacs_bench.benchmark.cli", "reproduce", "table3", "--samples", "4",
                           "--seeds", "1", "--targets", "1.5", "--relax", "none", "--robust-copies", "0",
                           "--out", str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "the judge's predictors cannot be loaded" in lines[0], lines
    assert not (tmp_path / "out" / "table3" / "table.md").exists()


@pytest.mark.usefixtures("model_dir", "data_dir")
def test_evaluate_of_a_missing_file_relaxes_nothing(tmp_path):
    out = tmp_path / "judged.csv"
    assert main(["evaluate", str(tmp_path / "nonexist.cif"), "--task", "perovskite", "--out", str(out),
                 "--no-crossjudge", "--relax", "chgnet", "--robust-copies", "0"]) == 1
    import pandas as pd

    row = pd.read_csv(out).iloc[0]
    assert not row["relaxed"] and "file not found" in row["reason"]
    assert not (tmp_path / "judged_relaxed").exists()
