"""TPE baseline on real MEGNet predictors: search space, objectives, determinism, resumption, variants."""

import math

import numpy as np
import optuna
import pytest
import torch
from optuna.trial import TrialState, create_trial
from pymatgen.core import Lattice, Structure

from benchmark.tasks import get_task
from evaluation.criteria import evaluate
from evaluation.neutrality import check_species
from evaluation.perovskite import role_pattern_assignment, tolerance_factor
from methods import get_method
from methods.tpe import FAILED, L_BG, L_F, L_NEUTRAL, L_T, role_elements, select_trial

pytestmark = pytest.mark.usefixtures("model_dir")
PEROV = get_task("perovskite", 1.5, 0.04)
BIG = get_task("perovskite3x3x3", 1.5, 0.04)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny batches: one intra-op thread avoids OpenMP oversubscription when the cores are busy."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tpe(name="tpe", **cfg):
    return get_method(name, progress=False, device="cpu", **cfg)


def studies(path, n):
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    return [optuna.load_study(study_name=f"sample-{i}", storage=storage) for i in range(n)]


def complete(study):
    return sorted(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.number)


@pytest.fixture(scope="module")
def perovskite_run(tmp_path_factory):
    journal = tmp_path_factory.mktemp("tpe") / "journal.log"
    m = tpe(trials=10, storage=str(journal))
    return m, m.propose(PEROV, 4, seed=3), studies(journal, 4)


def test_perovskite_proposals_stay_in_the_search_space(perovskite_run):
    m, props, _ = perovskite_run
    assert len(props) == 4 and not any(p.failed for p in props)
    df = evaluate([p.structure for p in props], [p.band_gap for p in props],
                  [p.formation_energy for p in props], PEROV.criteria())
    assert df["angles_ok"].all() and df["coords_ok"].all()
    allowed = role_elements(m.allowed_elements())
    cell = PEROV.cell
    for p in props:
        assert p.structure.lattice.angles == pytest.approx((90, 90, 90))
        assert all(2.0 <= x <= 10.0 for x in p.structure.lattice.abc)
        dev = np.abs(p.structure.frac_coords - cell.frac_coords) % 1.0
        assert np.minimum(dev, 1 - dev).max() <= 0.15 + 1e-9
        for site, role in zip(p.structure, cell.roles, strict=True):
            assert site.specie.symbol in allowed[role]
    assert "Sr" in allowed["A"] and "Ti" in allowed["B"] and "O" in allowed["X"] and "O" not in allowed["A"]
    hist = m.artifacts()["history"]
    assert all(v.shape == (10, 4) for v in hist.values())
    assert np.all(np.diff(hist["best_l_bg"], axis=0) <= 0)
    assert hist["band_gap"][-1].tolist() == [p.band_gap for p in props]  # the last incumbent is the proposal


def test_objectives_are_the_documented_ones(perovskite_run):
    _, props, stored = perovskite_run
    for study, p in zip(stored, props, strict=True):
        assert study.user_attrs["run"]["objectives"] == [L_BG, L_F, L_NEUTRAL, L_T]
        assert len(study.directions) == 4 and len(complete(study)) == 10
        for t in complete(study):
            bg, ef = t.user_attrs["band_gap"], t.user_attrs["formation_energy"]
            if bg is None:  # a failed trial
                assert t.values == [FAILED[k] for k in (L_BG, L_F, L_NEUTRAL, L_T)]
                continue
            species = [t.params[f"el{i}"] for i in range(5)]
            neut = check_species(species)
            ox = role_pattern_assignment(species, PEROV.cell.roles) or neut.ox_states
            tol = tolerance_factor(species, PEROV.cell.roles, ox)[0] if ox else math.nan
            expected = [max(0.0, abs(bg - 1.5) - 0.04), ef, float(not neut.neutral),
                        0.0 if 0.8 <= tol <= 1.0 else 1.0]
            assert t.values == pytest.approx(expected)
        assert p.meta["trial"] in {t.number for t in study.best_trials}


def test_same_seed_same_proposals(perovskite_run):
    _, props, _ = perovskite_run
    again = tpe(trials=10).propose(PEROV, 4, seed=3)  # in memory this time
    for a, b in zip(props, again, strict=True):
        assert a.structure == b.structure and a.band_gap == b.band_gap and a.meta == b.meta


def test_resume_after_a_kill_completes_every_study_exactly(tmp_path, monkeypatch):
    journal = str(tmp_path / "tpe_journal.log")
    m = tpe(trials=6, storage=journal)
    bg_model = m.predictors[0]
    real, calls = bg_model.predict_structures, []

    def dies_on_round_4(structures, batch_size=256):
        calls.append(len(structures))
        if len(calls) == 4:
            raise RuntimeError("killed")
        return real(structures, batch_size)

    monkeypatch.setattr(bg_model, "predict_structures", dies_on_round_4)
    with pytest.raises(RuntimeError, match="killed"):
        m.propose(PEROV, 2, seed=1)
    before = []
    for s in studies(journal, 2):
        assert [t.state for t in s.trials] == [TrialState.COMPLETE] * 3 + [TrialState.RUNNING]
        before.append([t.params for t in complete(s)])
    monkeypatch.undo()

    props = tpe(trials=6, storage=journal).propose(PEROV, 2, seed=1)
    uninterrupted = tpe(trials=6).propose(PEROV, 2, seed=1)
    for old, new in zip(before, studies(journal, 2), strict=True):
        done = complete(new)
        assert len(done) == 6
        assert [t.state for t in new.trials].count(TrialState.FAIL) == 1
        assert [t.params for t in done[:3]] == old
        assert len({tuple(sorted(t.params.items())) for t in done}) == 6  # no duplicates
    # a resumed run asks what an uninterrupted one asks (per-trial sampler seeds)
    for a, b in zip(props, uninterrupted, strict=True):
        assert a.structure == b.structure and a.meta["objectives"] == b.meta["objectives"]


@pytest.mark.parametrize(("name", "n_obj", "label"), [("tpe-n", 3, "TPE(/N)(MEGNet)"), ("tpe+n", 4, "TPE+N(MEGNet)")])
def test_3x3x3_variants(name, n_obj, label):
    m = tpe(name, trials=3)
    props = m.propose(BIG, 2, seed=0)
    assert m.label == label
    for p in props:
        assert len(p.structure) == 135 and len(p.meta["objectives"]) == n_obj
        assert (L_NEUTRAL in p.meta["objectives"]) == (name == "tpe+n")
    df = evaluate([p.structure for p in props], [p.band_gap for p in props],
                  [p.formation_energy for p in props], BIG.criteria())
    assert df["angles_ok"].all() and df["coords_ok"].all()


def test_free_task_with_given_initial_structures():
    nacl = Structure(Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    sto = Structure(Lattice.cubic(3.9), ["Sr", "Ti", "O", "O", "O"],
                    [[0.5, 0.5, 0.5], [0, 0, 0], [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5]])
    m = tpe(trials=3, initial_structures=[nacl, sto])
    props = m.propose(get_task("free", 1.5), 2, seed=0)
    assert [len(p.structure) for p in props] == [2, 5]
    assert all(len(p.meta["objectives"]) == 3 for p in props)


def test_nan_predictions_give_failed_trials_not_a_crash(monkeypatch):
    m = tpe(trials=2)
    monkeypatch.setattr(m.predictors[1], "predict_structures", lambda structures, batch_size=256:
                        np.full(len(structures), np.nan))
    (p,) = m.propose(PEROV, 1, seed=0)
    assert p.meta["objectives"] == {k: FAILED[k] for k in (L_BG, L_F, L_NEUTRAL, L_T)}
    assert p.band_gap is None and p.meta["reason"] == "prediction is not finite"
    assert not p.failed  # the structure is still proposed; the evaluator marks (A) and (B) unmet


def test_free_task_from_the_aflow_pool():
    m = tpe(trials=3)
    props = m.propose(get_task("free", 1.5), 2, seed=0)
    assert all(len(p.structure) <= 10 and len(p.meta["objectives"]) == 3 for p in props)
    assert all(p.meta["source"].startswith("aflow:") for p in props) and m.config()["pool_used"]["name"] == "aflow"


def _synthetic(values_list):
    study = optuna.create_study(directions=["minimize"] * 4)
    for v in values_list:
        study.add_trial(create_trial(values=v))
    return study


def test_selection_prefers_constraint_satisfying_trials():
    names = [L_BG, L_F, L_NEUTRAL, L_T]
    ok_weak = [0.0, -0.55, 0.0, 0.0]   # satisfies, but dominated by ok
    ok = [0.0, -0.6, 0.0, 0.0]         # satisfies every constraint
    not_neutral = [0.0, -3.0, 1.0, 0.0]
    off_target = [0.5, -5.0, 0.0, 0.0]
    study = _synthetic([not_neutral, ok_weak, off_target, ok])
    assert len(study.best_trials) == 3
    assert select_trial(study, names).values == ok
    # nothing satisfies: the smallest L_bg + L_f on the front
    assert select_trial(_synthetic([not_neutral, off_target, [0.0, -0.4, 0.0, 0.0]]), names).values == off_target


def test_cli_run_tpe_keeps_its_journal_in_the_run_folder(tmp_path):
    from benchmark.cli import main

    out = tmp_path / "tpe"
    args = ["run", "--method", "tpe", "--task", "perovskite", "--n-samples", "2", "--trials", "3",
            "--seed", "0", "--out", str(out), "--no-progress", "--device", "cpu"]
    assert main(args) == 0
    assert (out / "tpe_journal.log").stat().st_size > 0 and (out / "summary.csv").exists()
    with pytest.raises(SystemExit, match="--trials"):
        main([*args, "--steps", "5"])


def test_a_dangling_journal_lock_from_a_killed_run_is_removed(tmp_path):
    from methods.tpe import TPE

    journal = tmp_path / "tpe_journal.log"
    lock = tmp_path / "tpe_journal.log.lock"
    lock.symlink_to("somewhere/that/does/not/exist")  # what a killed older run left behind
    with pytest.warns(UserWarning, match="dangling journal lock"):
        storage = TPE(storage=str(journal), device="cpu")._storage()
    assert storage is not None and not lock.is_symlink()
