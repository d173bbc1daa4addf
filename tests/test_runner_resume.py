"""The runner says in config.json when a run resumed from saved state, and how much of its wall time that
covers: the time a method reports from before the resume is added; where a method cannot know it, the run says
that its time counts only the resumed part (real judge on a real perovskite)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar

import pytest
from pymatgen.core import Lattice, Structure

from smoacs_bench.benchmark.runner import run_experiment
from smoacs_bench.methods.base import Method, Proposal

pytestmark = pytest.mark.usefixtures("model_dir")
CSPBI3 = Structure(Lattice.cubic(6.3), ["Cs", "Pb", "I", "I", "I"],
                   [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


@dataclass
class StatefulConfig:
    storage: str | None = None
    before: float = 0.0


class Stateful(Method):
    """Proposes CsPbI3; keeps state in ``storage``; reports ``before`` s spent before a resume when it is > 0."""

    name: ClassVar[str] = "stateful-test"
    config_class = StatefulConfig
    state_dir = "state"
    result_neutral = ("progress", "before")

    def __init__(self, **config):
        self.cfg = StatefulConfig(**config)
        if self.cfg.before:
            self.seconds_before_resume = self.cfg.before

    def propose(self, task, n_samples, seed):
        return [Proposal(CSPBI3.copy()) for _ in range(n_samples)]


def _config(folder, **options):
    run_experiment(f"{__name__}:Stateful", "perovskite", 1.5, 0.04, 2, 0, folder, options or None,
                   crossjudge=False, force=False)
    return json.loads((folder / "config.json").read_text())


def test_the_runner_says_when_a_run_resumed_and_what_its_wall_time_covers(tmp_path):
    assert "resumed" not in _config(tmp_path / "fresh")   # no saved state: nothing to say
    (tmp_path / "journal" / "state").mkdir(parents=True)
    (tmp_path / "journal" / "state" / "log").write_text("saved")
    config = _config(tmp_path / "journal")
    assert "counts only the resumed part" in config["resumed"]
    (tmp_path / "known" / "state").mkdir(parents=True)
    config = _config(tmp_path / "known", before=120.0)
    assert "120.0 s of wall_time_s were spent before the resume" in config["resumed"]
    assert config["wall_time_s"] >= 120.0
