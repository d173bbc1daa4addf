"""The perf/ scripts still run against today's code and committed results (tiny sizes; what they print is not
checked for speed, only that their figure lines come out). A moved file or a renamed function fails here, not in
the hands of the next person measuring."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

PERF = Path(__file__).resolve().parents[1] / "perf"
CASES = {
    "relax_speed": (["--n", "2", "--workers", "1", "--serial-n", "1", "--sizes", "2"], r"CHGNet batch of +\d+: [\d.]+ ms per structure"),
    "relax_optimizers": (["--n", "2"], r"cell first vs FIRE over \d cells"),
    "method_costs": (["--n", "4", "--steps", "4"], r"relaxation / SMOACS = [\d.]+ .*TPE / SMOACS = [\d.]+"),
    "smoacs_step": (["--n-samples", "4", "--repeats", "1"], r"one SMOACS step \(graph rebuilt\): +[\d.]+ ms"),
    "tpe_lockstep": (["--studies", "2", "--trials", "4", "--workers", "1"], r"batched: sampler \d+ %"),
    "neutrality_speed": ([], r"oxidation patterns of 135-site SrTiO3"),
    "perovskite_match": (["--limit", "10"], r"\(D\) perovskite: [\d.]+"),
}


@pytest.mark.usefixtures("model_dir", "data_dir")
@pytest.mark.parametrize("script", sorted(CASES))
def test_perf_script_runs_and_prints_its_figure(script, tmp_path):
    args, expected = CASES[script]
    done = subprocess.run([sys.executable, str(PERF / f"{script}.py"), *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert re.search(expected, done.stdout), done.stdout[-2000:]
