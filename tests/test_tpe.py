"""TPE baseline on real MEGNet predictors: search space, objectives, determinism, resumption, variants."""

import math

import numpy as np
import optuna
import pytest
import torch
from optuna.trial import TrialState, create_trial
from pymatgen.core import Lattice, Structure

from smoacs_bench.data.perovskite import role_pattern_assignment, tolerance_factor
from smoacs_bench.data.task import get_task
from smoacs_bench.evaluation.criteria import evaluate
from smoacs_bench.methods import get_method
from smoacs_bench.methods.tpe import (
    FAILED,
    L_BG,
    L_F,
    L_NEUTRAL,
    L_T,
    pareto_front,
    role_elements,
    select_trial,
)
from smoacs_bench.methods.tpe.journal import RoundJournal
from smoacs_bench.methods.tpe.sampler import SplitOnceTPESampler

needs_models = pytest.mark.usefixtures("model_dir")
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


def studies(folder, n, group_size=32):
    """The studies of samples 0..n-1 as stored in a run's journal folder (one journal per group)."""
    out = []
    for i in range(n):
        journal = RoundJournal(folder / f"group-{i // group_size:03d}.log")
        storage = optuna.storages.JournalStorage(journal)
        journal.close()  # the log is in memory; release the lock
        out.append(optuna.load_study(study_name=f"sample-{i}", storage=storage))
    return out


def complete(study):
    return sorted(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.number)


@pytest.fixture(scope="module")
def perovskite_run(tmp_path_factory, model_dir):
    journal = tmp_path_factory.mktemp("tpe") / "journal"
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
            # the paper's perovskite rule, written out: one task pattern over A, B, X (sites in template order)
            ox = role_pattern_assignment(species, PEROV.cell.roles)
            tol = tolerance_factor(species, PEROV.cell.roles, ox)[0] if ox else math.nan
            expected = [max(0.0, abs(bg - 1.5) - 0.04), ef, float(ox is None),
                        0.0 if 0.8 <= tol <= 1.0 else 1.0]
            assert t.values == pytest.approx(expected)
        assert p.meta["trial"] in {t.number for t in study.best_trials}


def test_same_seed_same_proposals(perovskite_run):
    _, props, _ = perovskite_run
    again = tpe(trials=10).propose(PEROV, 4, seed=3)  # in memory this time
    for a, b in zip(props, again, strict=True):
        assert a.structure == b.structure and a.band_gap == b.band_gap and a.meta == b.meta


@needs_models
def test_resume_after_a_kill_completes_every_study_exactly(tmp_path, monkeypatch):
    journal = tmp_path / "tpe_journal"
    m = tpe(trials=6, storage=str(journal), group_size=2)
    bg_model = m.predictors[0]
    real, calls = bg_model.predict_structures, []

    def dies_on_round_4(structures, batch_size=256):
        calls.append(len(structures))
        if len(calls) == 4:
            raise RuntimeError("killed")
        return real(structures, batch_size)

    monkeypatch.setattr(bg_model, "predict_structures", dies_on_round_4)
    with pytest.raises(RuntimeError, match="killed"):
        m.propose(PEROV, 3, seed=1)  # group 0 (samples 0, 1) dies in its 4th round; group 1 never starts
    before = []
    for s in studies(journal, 2, group_size=2):  # the round in progress was never written
        assert [t.state for t in s.trials] == [TrialState.COMPLETE] * 3
        before.append([t.params for t in complete(s)])
    assert not (journal / "group-001.log").exists() or (journal / "group-001.log").stat().st_size == 0
    monkeypatch.undo()

    props = tpe(trials=6, storage=str(journal), group_size=2).propose(PEROV, 3, seed=1)
    uninterrupted = tpe(trials=6, group_size=2).propose(PEROV, 3, seed=1)
    for old, new in zip(before, studies(journal, 2, group_size=2), strict=True):
        done = complete(new)
        assert len(done) == 6 and len(new.trials) == 6  # nothing lost, nothing repeated
        assert [t.params for t in done[:3]] == old
        assert len({tuple(sorted(t.params.items())) for t in done}) == 6
    # whole rounds resume: the resumed run is the uninterrupted one, bit for bit
    for a, b in zip(props, uninterrupted, strict=True):
        assert a.structure == b.structure and a.band_gap == b.band_gap and a.meta == b.meta


def test_a_round_cut_short_by_a_kill_is_dropped(tmp_path):
    import gzip

    path = tmp_path / "group-000.log"
    j = RoundJournal(path)
    j.append_logs([{"op_code": 0, "n": 1}])
    j.flush()
    j.append_logs([{"op_code": 0, "n": 2}])
    j.close()  # not flushed: discarded
    rounds = gzip.decompress(path.read_bytes()).decode()   # each round a gzip member: zcat reads the file
    assert rounds == '[{"op_code":0,"n":1}]\n'
    whole = path.stat().st_size
    j = RoundJournal(path)
    j.append_logs([{"op_code": 0, "n": 2}])
    j.flush()
    j.close()
    second = path.read_bytes()[whole:]
    with path.open("ab") as f:
        f.write(second[: len(second) // 2])  # a third round's write cut short
    with pytest.warns(UserWarning, match="cut short"):
        j = RoundJournal(path)
    assert list(j.read_logs(0)) == [{"op_code": 0, "n": 1}, {"op_code": 0, "n": 2}]
    assert path.stat().st_size == whole + len(second)
    with pytest.raises(RuntimeError, match="in use by another run"):
        RoundJournal(path)
    j.close()
    path.write_bytes(gzip.compress(b'[{"op_code":0}]\n') + gzip.compress(b"not json\n"))
    with pytest.raises(ValueError, match="round 2"):
        RoundJournal(path)


def test_a_text_journal_of_an_earlier_version_is_read_and_continued_as_text(tmp_path):
    path = tmp_path / "group-000.log"
    path.write_bytes(b'[{"op_code":0,"n":1}]\n[{"op_code":0,"n":3}')   # the second line cut short by a kill
    with pytest.warns(UserWarning, match="cut short"):
        j = RoundJournal(path)
    j.append_logs([{"op_code": 0, "n": 2}])
    j.flush()
    j.close()
    assert path.read_text() == '[{"op_code":0,"n":1}]\n[{"op_code":0,"n":2}]\n'
    path.write_text('[{"op_code":0}]\nnot json\n[]\n')
    with pytest.raises(ValueError, match="line 2"):
        RoundJournal(path)


def test_split_once_sampler_samples_what_optunas_tpe_samples():
    def objective(t):
        x, y = t.suggest_float("x", -2, 2), t.suggest_float("y", 0, 1)
        el = t.suggest_categorical("el", ["Sr", "Ti", "O", "Ba"])
        return (x - 0.3) ** 2 + y, abs(x) + (el == "O"), float(y > 0.5)

    params = []
    for cls in (optuna.samplers.TPESampler, SplitOnceTPESampler):
        study = optuna.create_study(directions=["minimize"] * 3, sampler=cls(seed=7))
        study.optimize(objective, n_trials=40)
        params.append([t.params for t in study.trials])
    assert params[0] == params[1]


@needs_models
def test_workers_do_not_change_the_output():
    one = tpe(trials=4, group_size=1).propose(PEROV, 2, seed=5)
    m = tpe(trials=4, group_size=1, workers=2)
    two = m.propose(PEROV, 2, seed=5)
    assert m.artifacts()["timings"]["predictor_calls"] == 8  # 2 groups x 4 rounds, in the workers
    for a, b in zip(one, two, strict=True):
        assert a.structure == b.structure and a.band_gap == b.band_gap and a.meta == b.meta


@pytest.mark.parametrize(("name", "n_obj", "label"), [("tpe-n", 3, "TPE(/N)(MEGNet)"), ("tpe+n", 4, "TPE+N(MEGNet)")])
@needs_models
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


@needs_models
def test_free_task_with_given_initial_structures():
    nacl = Structure(Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    sto = Structure(Lattice.cubic(3.9), ["Sr", "Ti", "O", "O", "O"],
                    [[0.5, 0.5, 0.5], [0, 0, 0], [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5]])
    m = tpe(trials=3, initial_structures=[nacl, sto])
    props = m.propose(get_task("free", 1.5), 2, seed=0)
    assert [len(p.structure) for p in props] == [2, 5]
    assert all(len(p.meta["objectives"]) == 3 for p in props)


@needs_models
def test_a_journal_of_other_start_structures_is_refused(tmp_path):
    nacl = Structure(Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    kcl = Structure(Lattice.cubic(6.3), ["K", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    journal = str(tmp_path / "journal")
    tpe(trials=2, storage=journal, initial_structures=[nacl]).propose(get_task("free", 1.5), 1, seed=0)
    other = tpe(trials=3, storage=journal, initial_structures=[kcl, nacl])
    with pytest.raises(ValueError, match="sample-0 started from another structure than this run's 'given:0'"):
        other.propose(get_task("free", 1.5), 2, seed=0)


@needs_models
def test_nan_predictions_give_failed_trials_not_a_crash(monkeypatch):
    m = tpe(trials=2)
    monkeypatch.setattr(m.predictors[1], "predict_structures", lambda structures, batch_size=256:
                        np.full(len(structures), np.nan))
    (p,) = m.propose(PEROV, 1, seed=0)
    assert p.meta["objectives"] == {k: FAILED[k] for k in (L_BG, L_F, L_NEUTRAL, L_T)}
    assert p.band_gap is None and p.meta["reason"] == "prediction is not finite"
    assert not p.failed  # the structure is still proposed; the evaluator marks (A) and (B) unmet


@needs_models
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
    assert select_trial(study, names, PEROV.ef_max).values == ok
    # nothing satisfies: the smallest L_bg + L_f on the front
    assert select_trial(_synthetic([not_neutral, off_target, [0.0, -0.4, 0.0, 0.0]]), names, PEROV.ef_max).values == off_target


def test_pareto_front_matches_optunas_best_trials():
    rng = np.random.default_rng(0)
    values = np.round(rng.random((60, 4)), 1).tolist()  # coarse values: ties and duplicates
    study = _synthetic(values)
    front = pareto_front(study.trials)
    assert sorted(t.number for t in front) == sorted(t.number for t in study.best_trials)
    names = [L_BG, L_F, L_NEUTRAL, L_T]
    assert select_trial(study.trials, names, PEROV.ef_max) == select_trial(study, names, PEROV.ef_max)


@needs_models
def test_cli_run_tpe_keeps_its_journal_in_the_run_folder(tmp_path):
    from smoacs_bench.benchmark.cli import main

    out = tmp_path / "tpe"
    args = ["run", "--method", "tpe", "--task", "perovskite", "--n-samples", "2", "--trials", "3",
            "--seed", "0", "--out", str(out), "--no-progress", "--device", "cpu"]
    assert main(args) == 0
    assert (out / "tpe_journal" / "group-000.log").stat().st_size > 0 and (out / "summary.csv").exists()
    with pytest.raises(SystemExit, match="--trials"):
        main([*args, "--steps", "5"])
    with pytest.raises(SystemExit, match="--workers is not an option of smoacs"):
        main(["run", "--method", "smoacs", "--workers", "2", "--out", str(tmp_path / "smoacs")])


@needs_models
def test_best_selection_meets_at_least_as_many_criteria_as_the_pareto_pick():
    final = tpe(trials=8).propose(PEROV, 3, seed=2)
    best = tpe(trials=8, selection="best").propose(PEROV, 3, seed=2)

    def met(props):
        df = evaluate([p.structure for p in props], [p.band_gap for p in props],
                      [p.formation_energy for p in props], PEROV.criteria())
        cols = ["bg_ok", "ef_ok", "neutral", "min_dist_ok", "tolerance_ok", "angles_ok", "coords_ok"]
        return df[cols].sum(axis=1).to_numpy()

    assert (met(best) >= met(final)).all()
    with pytest.raises(ValueError, match="selection"):
        tpe(selection="median")


@needs_models
@pytest.mark.parametrize(("name", "task_name"), [("tpe", "perovskite"), ("random", "perovskite"), ("tpe", "free"),
                                                 ("random", "free")])
def test_smoacs_space_proposes_only_pattern_neutral_structures(tmp_path, name, task_name):
    """TPE and Random in SMOACS's space (a pattern, then the elements it allows per site) propose only neutral
    crystals, judged by the shared judge on real runs; in the paper's space Random does not."""
    import pandas as pd

    from smoacs_bench.benchmark.runner import run_experiment

    task = get_task(task_name, 1.5, 0.04)
    out = {}
    for space in ("smoacs", "paper"):
        folder = tmp_path / space
        run_experiment(name, task_name, 1.5, 0.04, 8, 0, folder, crossjudge=False,
                       method_config={"trials": 12, "space": space, "progress": False, "group_size": 8})
        out[space] = pd.read_csv(folder / "samples.csv")
    assert out["smoacs"]["neutral"].all() and len(out["smoacs"]) == 8
    studies_ = studies(tmp_path / "smoacs" / "tpe_journal", 8, group_size=8)
    for study in studies_:
        trials = complete(study)
        assert len(trials) == 12
        for t in trials:
            d = t.params["pattern"]
            assert not any(k.startswith("el") and not k.endswith(f"_p{d}") for k in t.params)
    if task.is_perovskite and name == "random":
        assert not out["paper"]["neutral"].all()   # the paper's space: roles' states mixed freely
    label = tpe(name, space="smoacs").label
    assert label.endswith("(MEGNet, SMOACS space)") and label.startswith("TPE" if name == "tpe" else "Random")


@needs_models
@pytest.mark.parametrize("name", ["tpe", "random"])
def test_relaxed_cells_score_and_propose_the_relaxed_ideal_cell(tmp_path, name):
    """TPE-relax / Random-relax (#40): each trial's ideal cell is relaxed by CHGNet (cell only) before scoring,
    once per composition, and the proposal is that relaxed cell: the judge's relaxation moves it no further."""
    import pandas as pd

    from smoacs_bench.benchmark.runner import run_experiment
    from smoacs_bench.evaluation.io import read_structure
    from smoacs_bench.evaluation.relax import RelaxSettings, relax_cell
    from smoacs_bench.methods.tpe import lockstep

    folder = tmp_path / "run"
    run_experiment(name, "perovskite", 1.5, 0.04, 4, 0, folder, crossjudge=False,
                   method_config={"trials": 6, "space": "smoacs", "relax_cells": True, "progress": False,
                                  "group_size": 4})
    samples = pd.read_csv(folder / "samples.csv")
    assert len(samples) == 4 and samples["neutral"].all()
    # the proposal is the very cell the trial was scored on: the judge's predictions are the method's own
    assert "own_band_gap" not in samples or (samples["own_band_gap"] - samples["band_gap"]).abs().max() < 0.05
    crystals = [read_structure(folder / f)[0] for f in samples["file"]]
    again = relax_cell(crystals, RelaxSettings())
    for c, o in zip(crystals, again, strict=True):
        assert o.final is not None and abs(o.final.lattice.a - c.lattice.a) < 2e-3 * c.lattice.a   # already relaxed
        assert c.lattice.a != pytest.approx(4.0)
    assert 0 < len(lockstep._CELLS) <= 4 * 6   # one relaxation per composition
    for c in crystals:   # the ideal sites, whatever offsets the start had: only the composition is searched
        assert np.allclose(np.sort(c.frac_coords.ravel() % 1.0 * 2) % 1.0, 0.0, atol=1e-6)
    label = tpe(name, space="smoacs", relax_cells=True).label
    assert label.endswith("(MEGNet, SMOACS space, relaxed cells)")
    with pytest.raises(ValueError, match="relax_cells needs space=smoacs"):
        tpe(name, relax_cells=True)


def test_a_composition_only_space_holds_the_geometry():
    """TPE-relax's space (#40): the pattern and the elements are sampled; the lattice and the offsets are held."""
    from smoacs_bench.data.elements import SYMBOLS
    from smoacs_bench.data.task import get_task
    from smoacs_bench.methods.tpe.space import composition_space, perovskite_space, smoacs_space

    task = get_task("perovskite", 1.5, 0.04)
    allowed = np.ones(len(SYMBOLS), dtype=bool)
    full = smoacs_space(perovskite_space(task, allowed), task.cell.patterns, allowed)
    comp = composition_space(full)
    assert set(comp.distributions) == {"pattern"} and {"a", "x0"} <= set(full.distributions)
    params = {"pattern": 0} | {f"el{i}_p0": ch[0] for i, ch in enumerate(comp.site_choices[0])}
    s = comp.structure(params)
    assert s.lattice.abc == pytest.approx((4.0, 4.0, 4.0)) and np.allclose(s.frac_coords, full.ideal % 1.0)


def test_one_relaxation_serves_every_order_of_the_anions():
    """Permuting the X sites of the ideal cell permutes its axes: TPE-relax relaxes one canonical order and permutes
    the lengths, which agree with relaxing the given order directly."""
    from pymatgen.core import Lattice, Structure

    from smoacs_bench.data.mp_reference import ideal_cubic_guess
    from smoacs_bench.evaluation.relax import relax_cell
    from smoacs_bench.methods.tpe import lockstep

    ideal = [[0.5, 0.5, 0.5], [0, 0, 0], [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5]]
    orders = [("Cs", "Pb", "I", "Br", "Br"), ("Cs", "Pb", "Br", "I", "Br"), ("Cs", "Pb", "Br", "Br", "I")]
    start = ideal_cubic_guess(list(orders[0]))   # the start relaxed_cells uses: the same for every order
    cells = [Structure(Lattice.cubic(start), list(s), ideal) for s in orders]
    assert len({lockstep._canonical(s, c.frac_coords)[0] for s, c in zip(orders, cells, strict=True)}) == 1
    lockstep._CELLS.clear()
    timings = lockstep.new_timings()
    via_canonical = lockstep.relaxed_cells(cells, timings)
    assert timings["relaxations"] == 1
    direct = relax_cell(cells)
    for got, want, s in zip(via_canonical, direct, orders, strict=True):
        assert [sp.symbol for sp in got.species] == list(s)
        assert got.lattice.abc == pytest.approx(want.final.lattice.abc, rel=2e-3)
        long_axis = s.index("I") - 2   # the I site's bond axis is the longest
        assert max(range(3), key=lambda a: got.lattice.abc[a]) == long_axis


def _through_optuna(monkeypatch):
    """Force Optuna's ask/tell for every group (the path the lean one must reproduce)."""
    from smoacs_bench.methods.tpe import lockstep

    monkeypatch.setattr(lockstep, "lean_applies", lambda *a, **k: False)


@needs_models
@pytest.mark.parametrize("space", ["smoacs", "paper"])
def test_lean_trials_are_optunas_and_either_path_resumes_the_others_journal(tmp_path, monkeypatch, space):
    """Without Optuna's per-trial bookkeeping a run draws, scores and stores the same trials: the same proposals
    and incumbent history as Optuna's ask/tell, a journal Optuna loads, and half a run written by either path
    finished by the other is the uninterrupted run."""
    def run(trials, storage=None, optuna_path=False):
        with monkeypatch.context() as mp:
            if optuna_path:
                _through_optuna(mp)
            m = tpe(trials=trials, space=space, group_size=2, storage=storage)
            return m.propose(PEROV, 3, seed=4), m.artifacts()["history"]

    def same(a, b):
        for x, y in zip(a[0], b[0], strict=True):
            assert x.structure == y.structure and x.band_gap == y.band_gap and x.meta == y.meta
        for k in a[1]:
            np.testing.assert_array_equal(a[1][k], b[1][k])

    lean = run(13)   # 10 startup trials (the start among them), then BatchTPE
    same(lean, run(13, optuna_path=True))
    for first_optuna in (True, False):
        journal = tmp_path / f"journal-{first_optuna}"
        run(6, str(journal), optuna_path=first_optuna)
        same(lean, run(13, str(journal), optuna_path=not first_optuna))
        for study in studies(journal, 3, group_size=2):
            done = complete(study)
            assert [t.number for t in done] == list(range(13)) and len(study.trials) == 13
            fixed = done[0].system_attrs["fixed_params"]   # the start, enqueued (Optuna) or recorded (lean)
            assert fixed and all(done[0].params[k] == v for k, v in fixed.items())
