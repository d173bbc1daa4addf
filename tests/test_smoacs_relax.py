"""SMOACS-relax (issue #23) on real MEGNet and CHGNet: each idea is an option, and with every idea off it is SMOACS;
the energy term's gradient is the potential's; relaxed proposals are stable under a second relaxation."""

import numpy as np
import pytest
import torch

from smoacs_bench.data.task import get_task
from smoacs_bench.evaluation.relax import RelaxSettings, load_relaxer, relax
from smoacs_bench.methods import get_method
from smoacs_bench.methods.smoacs import CrystalState, initial_crystals

pytestmark = pytest.mark.usefixtures("model_dir")
PEROV = get_task("perovskite", 1.5, 0.04)
OFF = dict(relax_every=0, final_relax=False, smooth_copies=0, energy_weight=0.0, hinge=False, reheat=False,
           geometry_lr_scale=1.0, clamp_bg=True)


def _structures(props):
    return [p.structure for p in props]


def test_with_every_idea_off_it_proposes_exactly_what_smoacs_proposes():
    plain = get_method("smoacs", steps=12, progress=False, device="cpu").propose(PEROV, 6, 3)
    off = get_method("smoacs-relax", steps=12, progress=False, device="cpu", **OFF).propose(PEROV, 6, 3)
    assert _structures(plain) == _structures(off)
    assert [p.band_gap for p in plain] == [p.band_gap for p in off]
    # and an idea switched on changes the run (the options are not inert)
    smooth = get_method("smoacs-relax", steps=12, progress=False, device="cpu",
                        **(OFF | {"smooth_copies": 2})).propose(PEROV, 6, 3)
    assert _structures(smooth) != _structures(plain)


def test_smoothed_loss_without_noise_is_the_plain_loss():
    m = get_method("smoacs-relax", progress=False, device="cpu", smooth_copies=3, smooth_strain=0.0, smooth_disp=0.0)
    plain = get_method("smoacs", progress=False, device="cpu")
    state = CrystalState([d.crystal for d in initial_crystals(PEROV, 4, 0)], m.allowed_elements(), t_start=0.01,
                         abc_range=PEROV.abc_range, angle_range=PEROV.angle_range, coord_eps=PEROV.coord_eps,
                         generator=torch.Generator().manual_seed(0), tolerance=True)
    from smoacs_bench.methods.predictors import build_neighbor_graph

    crystals, _, _ = state.soft(0.01)
    cutoff = m.predictors[0].cutoff
    graph = build_neighbor_graph(crystals.detach(), cutoff)
    gen = torch.Generator().manual_seed(1)
    bg_s, loss_s = m._band_gap_loss(crystals, graph, cutoff, PEROV, gen)
    bg_p, loss_p = plain._band_gap_loss(crystals, graph, cutoff, PEROV, gen)
    assert torch.allclose(loss_s, loss_p, atol=1e-5) and torch.equal(bg_s, bg_p)
    noisy = get_method("smoacs-relax", progress=False, device="cpu", smooth_copies=3, smooth_strain=0.05)
    assert not torch.allclose(noisy._band_gap_loss(crystals, graph, cutoff, PEROV, gen)[1], loss_p, atol=1e-5)


def test_energy_term_gradient_is_the_potentials_finite_difference():
    """d(E/atom)/d(a, b, c) and d(E/atom)/d(coordinates) from CHGNet's stress and forces match central differences."""
    m = get_method("smoacs-relax", progress=False, device="cpu", energy_weight=1.0)
    state = CrystalState([d.crystal for d in initial_crystals(PEROV, 2, 5)], m.allowed_elements(), t_start=0.01,
                         abc_range=PEROV.abc_range, angle_range=PEROV.angle_range, coord_eps=PEROV.coord_eps,
                         generator=torch.Generator().manual_seed(0), tolerance=True)
    with torch.no_grad():
        state.abc.copy_(torch.tensor([[3.9, 4.0, 4.1], [4.3, 4.2, 4.4]]))
        state.coords.add_(0.01 * torch.randn(state.coords.shape, generator=torch.Generator().manual_seed(2)))
    crystals, _, _ = state.soft(0.01)
    term = m._extra_loss(state, crystals, 0, PEROV)
    term.sum().backward()
    g_abc, g_coords = state.abc.grad.clone(), state.coords.grad.clone()
    one_hot, _ = state.discretize()
    base = one_hot.to_structures()
    pot = load_relaxer("chgnet")

    def e_atom(structures):
        return np.array([r[0] / len(s) for r, s in zip(pot.efs(structures), structures, strict=True)])

    h = 1e-3
    for axis in range(3):
        plus, minus = [s.copy() for s in base], [s.copy() for s in base]
        for s_p, s_m in zip(plus, minus, strict=True):
            abc = np.array(s_p.lattice.abc)
            d = np.eye(3)[axis] * h
            s_p.lattice = s_p.lattice.from_parameters(*(abc + d), 90, 90, 90)
            s_m.lattice = s_m.lattice.from_parameters(*(abc - d), 90, 90, 90)
        fd = (e_atom(plus) - e_atom(minus)) / (2 * h)
        assert np.allclose(g_abc[:, axis].numpy(), fd, atol=2e-3, rtol=0.02), (axis, g_abc[:, axis], fd)
    site, axis, h = 2, 0, 1e-4   # an X site of sample 0, moved along a (curvature is large here: a small step)
    plus, minus = base[0].copy(), base[0].copy()
    fp, fm = plus.frac_coords.copy(), minus.frac_coords.copy()
    fp[site, axis] += h
    fm[site, axis] -= h
    plus = plus.__class__(plus.lattice, plus.species, fp)
    minus = minus.__class__(minus.lattice, minus.species, fm)
    fd = (e_atom([plus])[0] - e_atom([minus])[0]) / (2 * h)
    assert float(g_coords[site, axis]) == pytest.approx(fd, abs=2e-3, rel=0.03)


def test_with_relaxation_in_the_loop_proposals_are_stable_under_a_second_relaxation():
    m = get_method("smoacs-relax", steps=12, relax_every=4, relax_steps=30, progress=False, device="cpu")
    props = m.propose(PEROV, 4, 0)
    log = m.config()["relax_log"]
    assert log["in_loop_relaxations"] > 0 and log["final_relaxations"] == 4
    again = relax(_structures(props), RelaxSettings())
    for p, o in zip(props, again, strict=True):
        assert p.meta["final_relax_converged"], p.meta
        assert o.converged and o.energy_drop <= 0.02, (o.energy_drop, o.reason)
        assert "unrelaxed_band_gap" in p.meta


def test_a_supercell_relaxes_its_cell_first_and_proposes_a_stable_crystal():
    """3x3x3: SMOACS's cells are far from the potential's scale and the sites hold different elements, so FIRE
    alone explodes or stalls; the cell relaxes first with the sites held, then FIRE, and the proposal stays."""
    m = get_method("smoacs-relax", steps=2, relax_every=0, progress=False, device="cpu")
    props = m.propose(get_task("perovskite3x3x3", 1.5, 0.04), 1, 0)
    log = m.config()["relax_log"]
    assert log["cell_prerelaxations"] == 1 and log["final_relaxations"] == 1
    assert props[0].meta["final_relax_converged"], props[0].meta
    again = relax(_structures(props), RelaxSettings())[0]
    assert again.converged and again.energy_drop <= 0.02, (again.energy_drop, again.reason)


def test_a_copied_sample_drops_the_checkpoints_of_the_lineage_it_replaced():
    m = get_method("smoacs-relax", progress=False, device="cpu")
    state = object()
    m._ckpts[id(state)] = ["a", "b", "c"]
    m._copied(state, [(0, 2)])
    assert m._ckpts[id(state)] == [None, "b", "c"]


def test_agreement_with_the_composition_gap_model_ranks_and_decides_success():
    """agree_gap: a crystal counts as a success (and is kept, not reheated) only where the composition model trained
    on MP-20's PBE gaps is within ± agree_window of the target; its miss adds to the distance like a criterion's."""
    from smoacs_bench.data.reference_crystals import textbook_perovskites
    from smoacs_bench.evaluation.gap_judge import load_gap_judge

    cells = textbook_perovskites()
    structures = [cells["SrTiO3"], cells["KMgF3"], None]
    second, _ = load_gap_judge().predict(["SrTiO3", "KMgF3"])
    task = get_task("perovskite", round(second[0], 2), 0.04)      # SrTiO3's second gap is the target
    assert abs(second[1] - task.target_bg) > 1.0                  # KMgF3's is far from it
    plain = get_method("smoacs-relax", progress=False, device="cpu")
    agree = get_method("smoacs-relax", progress=False, device="cpu", agree_gap="gap-judge", agree_window=0.25)
    (p_sto, p_kmf, p_none), bg, ef = plain._score(structures, task)
    (a_sto, a_kmf, a_none), bg2, ef2 = agree._score(structures, task)
    assert np.array_equal(bg, bg2, equal_nan=True) and np.array_equal(ef, ef2, equal_nan=True)   # own predictions
    assert a_sto == p_sto and p_sto[1] == p_kmf[1] == 1           # agrees: as without it (off: always agrees)
    off = abs(second[1] - task.target_bg) - 0.25
    assert a_kmf[:2] == (0, 0) and a_kmf[2] == p_kmf[2] and a_kmf[3] == pytest.approx(p_kmf[3] - off)
    assert a_sto > a_kmf and a_none == p_none == (-1, -1, -1, -np.inf)
    # disagreement ranks below agreement whatever the criteria: a kept crystal is one both models put near the target
    assert (0, 1, 0, -5.0) > (0, 0, 4, 0.0)
    assert "within ± 0.25 eV of the target" in agree.caption_note() and "within ±" not in plain.caption_note()
    with pytest.raises(ValueError, match="agree_gap"):
        get_method("smoacs-relax", agree_gap="alignn")


def test_relax_tables_pick_the_full_method_alone_and_name_every_ablation():
    from smoacs_bench.benchmark.experiments import estimate_seconds, get_spec, select_runs
    from smoacs_bench.benchmark.tuning import merge_tuned

    main, ablations = get_spec("relax3"), get_spec("relax3-ablations")
    assert [r.tag for r in main.runs] == ["smoacs", "tpe-smoacs", "smoacs-relax-all", "screening-relax", "tpe-relax",
                                          "random-relax", "reference-mp"]
    # TPE-relax takes TPE-in-SMOACS-space's tuned settings: the same tuning budget as the row it extends
    assert merge_tuned({}, {"tpe-smoacs": {"n_startup_trials": 20}}, list(main.runs))["tpe-relax"] == {
        "n_startup_trials": 20}
    assert main.samples == 256 and len(main.seeds) == 3
    v2 = get_spec("relax3-v2")   # v1 beside the v2 variants, each with v1's tuned settings
    assert [r.tag for r in v2.runs] == ["smoacs-relax-all", "smoacs-relax-abx3", "smoacs-relax-agree",
                                        "smoacs-relax-closed", "smoacs-relax-dftfit", "smoacs-relax-dftfit2",
                                        "reference-mp"]
    assert merge_tuned({}, {"smoacs-relax-all": {"lr_scale": 0.5}}, list(v2.runs))["smoacs-relax-agree"] == {
        "lr_scale": 0.5}
    tags = [r.tag for r in ablations.runs]
    assert len(tags) == len(set(tags)) > 4 and tags[0] == "smoacs-relax-all"
    assert [r.tag for r in select_runs(ablations, ["smoacs-relax-all"])] == ["smoacs-relax-all"]
    assert len(select_runs(ablations, ["smoacs-relax"])) == len(tags)
    assert all(r.label for r in ablations.runs[1:])
    # every ablation takes the full method's tuned settings (its own --param still wins); other rows do not
    tuned = {"smoacs-relax-all": {"lr_scale": 0.5}, "smoacs": {"lr_scale": 2.0}}
    merged = merge_tuned({"smoacs-relax-geom": {"lr_scale": 0.25}}, tuned, list(ablations.runs) + [main.runs[0]])
    assert merged["smoacs-relax-final"] == {"lr_scale": 0.5} and merged["smoacs-relax-all"] == {"lr_scale": 0.5}
    assert merged["smoacs-relax-geom"] == {"lr_scale": 0.25} and merged["smoacs"] == {"lr_scale": 2.0}
    # its cost figure is its own, not SMOACS's
    one = estimate_seconds(main, samples=64, seeds=1, methods=["smoacs-relax-all"], targets=[1.5])
    base = estimate_seconds(main, samples=64, seeds=1, methods=["smoacs"], targets=[1.5])
    assert one > 3 * base
    # TPE-relax and Random-relax carry their own measured figures (their cells' relaxations), above plain TPE's
    cost = {m: estimate_seconds(main, samples=256, seeds=1, methods=[m], targets=[1.5])
            for m in ("tpe-smoacs", "tpe-relax", "random-relax")}
    assert cost["tpe-relax"] > 2 * cost["tpe-smoacs"] and cost["random-relax"] < cost["tpe-relax"]
    # on the 3x3x3 task its measured figure (FIRE on 135 sites) is two orders of magnitude above SMOACS's
    three = get_spec("relax333")
    cost = {m: estimate_seconds(three, samples=8, seeds=1, methods=[m], targets=[1.5]) for m in ("smoacs-relax-all",
                                                                                                  "smoacs")}
    assert cost["smoacs-relax-all"] > 50 * cost["smoacs"]


def test_closed_shell_space_proposes_only_ions_the_closed_shell_dft_check_describes():
    from smoacs_bench.data.oxidation import closed_shell, open_shell
    # d0 / d10 / f0 / f14 and main-group ions stay; Fe3+ (d5), Co2+ (d7), Mn2+ (d5), Hg+ (s1), Ce3+ (f1) go
    assert not any(open_shell(s, q) for s, q in [("Ti", 4), ("Zn", 2), ("Hg", 2), ("Nb", 5), ("La", 3), ("Ce", 4),
                                                   ("Lu", 3), ("Pb", 2), ("Bi", 3), ("Cs", 1), ("O", -2)])
    assert all(open_shell(s, q) for s, q in [("Fe", 3), ("Co", 2), ("Mn", 2), ("Hg", 1), ("Ce", 3), ("Mo", 4)])
    table = closed_shell()
    assert table["Fe"] == () and table["Mn"] == (7,) and table["Ti"] == (4,)
    opts = dict(OFF | {"steps": 12, "progress": False, "device": "cpu"})
    plain = get_method("smoacs-relax", **opts).propose(PEROV, 16, 0)
    closed = get_method("smoacs-relax", closed_shell=True, **opts).propose(PEROV, 16, 0)
    never = {sym for sym, states in table.items() if not states}     # no closed-shell state at all: Fe, Co, Ni, Cu..
    seen = {el.symbol for p in plain for el in p.structure.composition}
    kept = {el.symbol for p in closed for el in p.structure.composition}
    assert seen & never                                    # the unrestricted space does propose them
    assert not kept & never, kept & never
