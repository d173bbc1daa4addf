"""`smoacs-bench data download` offline: a clear message naming the file and where to put it."""

import urllib.error
import urllib.request

from smoacs_bench.benchmark.cli import main


def test_download_offline_says_where_to_put_the_file(tmp_path, monkeypatch, capsys):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    assert main(["data", "download", "megnet", "--dest", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "mp.2018.6.1.json" in err and "15087992" in err and "SMOACS_DATA_DIR" in err
    assert not list(tmp_path.iterdir())  # no partial file left behind
