"""The contract every registered method passes (methods/contract.py); plugins can run the same checks."""

from __future__ import annotations

import pytest

from smoacs_bench.methods import METHODS, get_method_class
from smoacs_bench.methods.contract import check_declarations, check_failures_carry_reasons, check_method


@pytest.mark.parametrize("name", sorted(METHODS))
def test_declarations(name):
    check_declarations(get_method_class(name))  # model-free


@pytest.mark.usefixtures("model_dir")
@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_contract(name):
    props = check_method(get_method_class(name))
    assert any(not p.failed for p in props)


@pytest.mark.usefixtures("model_dir")
@pytest.mark.parametrize("tag", ["tpe-relax", "random-relax"])
def test_relaxed_cell_rows_pass_the_contract(tag):
    """relax3's TPE-relax and Random-relax rows (a registered method with options) pass the same contract."""
    from smoacs_bench.benchmark.experiments import TABLES
    from smoacs_bench.methods.contract import small_options

    row = next(r for r in TABLES["relax3"].runs if r.tag == tag)
    cls = get_method_class(row.method)
    options = small_options(cls, 2) | row.config() | {"group_size": 3}
    props = check_method(cls, options=options)
    assert all(p.structure is not None for p in props)
    assert cls(**options).label.endswith("SMOACS space, relaxed cells)")


@pytest.mark.usefixtures("model_dir")
@pytest.mark.parametrize("name", ["smoacs", "tpe", "ftcp", "reference", "screening"])
def test_failed_samples_carry_a_reason(name):
    check_failures_carry_reasons(get_method_class(name))


def test_a_method_without_reasons_breaks_the_contract():
    """The contract is not vacuous: a method whose failures say nothing is caught."""
    from smoacs_bench.methods.base import Method, Proposal

    class Silent(Method):
        name = "silent"

        def propose(self, task, n_samples, seed):
            return [Proposal(None) for _ in range(n_samples)]

    with pytest.raises(AssertionError, match="without a reason"):
        check_method(Silent, options={})


class _Textbook:
    """Proposes textbook perovskites; subclasses decide what numbers they report with them."""

    def structures(self, n):
        from smoacs_bench.data.reference_crystals import textbook_perovskites

        return list(textbook_perovskites().values())[:n]


def _plugin(kind):
    from smoacs_bench.methods.base import Method, Proposal

    class Plugin(_Textbook, Method):
        name = f"plugin-{kind}"

        def propose(self, task, n_samples, seed):
            out = []
            for s in self.structures(n_samples):
                if kind == "bare":
                    out.append(Proposal(s))
                else:   # claims every crystal hits the target with a very low formation energy
                    out.append(Proposal(s, band_gap=task.target_bg, formation_energy=-3.0))
            return out

    return Plugin


@pytest.mark.usefixtures("model_dir")
def test_the_judge_predicts_every_proposal_from_its_structure(tmp_path, monkeypatch):
    """A plugin returning bare structures gets the built-in judge's verdicts; one reporting wrong numbers is
    judged on the true ones, its own numbers kept aside (own_* columns) and flagged in run.log."""
    import pandas as pd

    from smoacs_bench.benchmark import runner
    from smoacs_bench.benchmark.judge import default_predict
    from smoacs_bench.data.task import get_task
    from smoacs_bench.evaluation.criteria import evaluate

    classes = {"bare": _plugin("bare"), "liar": _plugin("liar")}
    monkeypatch.setattr(runner, "get_method_class", lambda name: classes[name])
    frames = {}
    for name in classes:
        runner.run_experiment(name, "perovskite", 1.5, 0.04, 6, 0, tmp_path / name, crossjudge=False)
        frames[name] = pd.read_csv(tmp_path / name / "samples.csv")
    structures = _Textbook().structures(6)
    bg, ef = default_predict(structures)
    builtin = evaluate(structures, bg, ef, get_task("perovskite", 1.5, 0.04).criteria())
    for name, df in frames.items():
        assert df["band_gap"].tolist() == pytest.approx(bg, abs=1e-9), name
        assert df["formation_energy"].tolist() == pytest.approx(ef, abs=1e-9), name
        assert df["success"].tolist() == builtin["success"].tolist(), name
        assert df["bg_ok"].tolist() == builtin["bg_ok"].tolist(), name
    assert not any(c.startswith("own_") for c in frames["bare"])
    assert (frames["liar"]["own_band_gap"] == 1.5).all() and (frames["liar"]["own_formation_energy"] == -3.0).all()
    assert not frames["liar"]["bg_ok"].all()   # the claim that all six hit 1.5 eV is not believed
    log = (tmp_path / "liar" / "run.log").read_text()
    assert "differ from the judge's" in log and "sample 0: band gap reported 1.500 eV" in log
    assert "differ from the judge's" not in (tmp_path / "bare" / "run.log").read_text()


@pytest.mark.usefixtures("model_dir")
def test_third_party_warnings_go_to_run_log_not_the_console(tmp_path, monkeypatch, capfd):
    """pymatgen warns when the evaluator looks up a radius it lacks (Sn2+ in KSnF3): the warning lands in
    run.log, the console stays quiet."""
    from pymatgen.core import Lattice, Structure

    from smoacs_bench.benchmark import runner
    from smoacs_bench.methods.base import Method, Proposal

    class Tin(Method):
        name = "tin"

        def propose(self, task, n_samples, seed):
            s = Structure(Lattice.cubic(4.3), ["K", "Sn", "F", "F", "F"],
                          [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
            return [Proposal(s) for _ in range(n_samples)]

    monkeypatch.setattr(runner, "get_method_class", lambda name: Tin)
    runner.run_experiment("tin", "perovskite", 1.5, 0.04, 2, 0, tmp_path / "sn", crossjudge=False)
    err = capfd.readouterr().err
    assert "Warning" not in err and "radius" not in err, err
    assert "No ionic radius for Sn2+" in (tmp_path / "sn" / "run.log").read_text()


def test_run_help_names_every_registered_method(capsys):
    from smoacs_bench.benchmark.cli import main

    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert all(name in text for name in METHODS), [n for n in METHODS if n not in text]
