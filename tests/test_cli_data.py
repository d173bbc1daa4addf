"""The CLI without models: offline download message, one-line input errors, exit codes, file modes."""

import urllib.error
import urllib.request

import pytest

from smoacs_bench.benchmark.cli import main


def test_download_offline_says_where_to_put_the_file(tmp_path, monkeypatch, capsys):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    assert main(["data", "download", "megnet", "--dest", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "mp.2018.6.1.json" in err and "15087992" in err and "SMOACS_DATA_DIR" in err
    assert not list(tmp_path.iterdir())  # no partial file left behind


@pytest.mark.parametrize(("args", "message"), [
    (["--n-samples", "0"], "--n-samples must be >= 1"),
    (["--margin", "-0.5"], "--margin must be > 0 eV"),
    (["--target-bg", "-1"], "--target-bg must be >= 0 eV"),
    (["--method", "nonexistent"], "unknown method 'nonexistent'; choose from smoacs, smoacs-relax, tpe"),
    (["--method", "smoacs", "--trials", "5"], "--trials: smoacs counts steps: use --steps"),
    (["--method", "smoacs", "--param", "lr_foo=1"], "smoacs has no option lr_foo"),
])
def test_run_rejects_bad_input_in_one_line_and_leaves_no_folder(tmp_path, args, message):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as info:
        main(["run", "--out", str(out), *args])
    text = str(info.value)
    assert message in text and "\n" not in text
    assert not out.exists()


def test_evaluate_exits_non_zero_when_nothing_could_be_judged(tmp_path, capsys):
    bad = tmp_path / "bad.cif"
    bad.write_text("not a crystal\n")
    assert main(["evaluate", str(bad), "--out", str(tmp_path / "j.csv"), "--no-crossjudge"]) == 1
    assert "0 judged, 1 unreadable" in capsys.readouterr().out


def test_result_files_follow_the_umask(tmp_path):
    import os

    from smoacs_bench.evaluation.io import atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "x.csv", "a\n")
    finally:
        os.umask(old)
    assert (tmp_path / "x.csv").stat().st_mode & 0o777 == 0o644
