"""The perovskite matcher's fast paths (grid snap, tabulated deviations) agree with the dense computation."""

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from smoacs_bench.data.perovskite import (
    bottleneck_assignment,
    deviation_matrix,
    match_perovskite,
    periodic_deviation,
    snap_assignment,
)
from smoacs_bench.data.templates import PerovskiteCell


def _dense(frac, ideal):
    return periodic_deviation(frac[:, None, :], ideal[None, :, :]).max(axis=2)


@pytest.mark.parametrize("n", [2, 3])
def test_tabulated_deviations_equal_the_direct_ones_element_for_element(n):
    ideal = PerovskiteCell(n).frac_coords
    frac = np.random.default_rng(n).uniform(-1, 2, (len(ideal), 3))
    assert np.array_equal(deviation_matrix(frac, n), _dense(frac, ideal))


@pytest.mark.parametrize("n,amp", [(2, 0.1), (3, 0.05), (3, 0.24)])
def test_snap_is_the_dense_min_sum_and_bottleneck_assignment(n, amp):
    cell = PerovskiteCell(n)
    rng = np.random.default_rng(7)
    for _ in range(10):
        perm = rng.permutation(cell.n_sites)
        frac = (cell.frac_coords[perm] + rng.uniform(-amp, amp, (cell.n_sites, 3)) / (2 * n) * 2) % 1.0
        snapped = snap_assignment(frac, n)
        assert snapped is not None and np.array_equal(snapped, perm)
        dev = _dense(frac, cell.frac_coords)
        rows, cols = linear_sum_assignment(dev)
        assert np.array_equal(cols[np.argsort(rows)], snapped)
        order, worst = bottleneck_assignment(dev)
        assert np.array_equal(order, snapped)
        assert worst == pytest.approx(dev[np.arange(cell.n_sites), snapped].max())


def test_snap_declines_sites_half_way_or_on_empty_grid_points():
    cell = PerovskiteCell(3)
    frac = cell.frac_coords.copy()
    assert snap_assignment(frac, 3) is not None
    half = frac.copy()
    half[0, 0] += 1 / 12            # exactly half-way between two grid points (spacing 1/6)
    assert snap_assignment(half, 3) is None
    edge = frac.copy()
    edge[0] = [0.0, 1 / 6, 1 / 6]   # parity (0, 1, 1): an edge centre, where no site of the cell sits
    assert snap_assignment(edge, 3) is None
    twice = frac.copy()
    twice[1] = twice[0]             # two sites on one position: not a permutation
    assert snap_assignment(twice, 3) is None


def test_a_shuffled_shifted_distorted_supercell_is_matched_to_its_planted_roles():
    cell = PerovskiteCell(3)
    rng = np.random.default_rng(3)
    perm = rng.permutation(cell.n_sites)
    noise = rng.uniform(-0.01, 0.01, (cell.n_sites, 3))
    frac = (cell.frac_coords[perm] + noise + rng.uniform(0, 1, 3)) % 1.0
    m = match_perovskite(frac, cell)
    assert m.roles == tuple(cell.roles[j] for j in perm)
    assert m.max_dev <= 0.01 + 1e-9
    # a site dragged onto another role's position is found there (the match is not the planted one)
    frac[0] = frac[1] + 0.5 / 3
    m2 = match_perovskite(frac, cell)
    assert len(set(m2.ideal_index)) == cell.n_sites and m2.max_dev > 0.05


def test_the_near_ideal_shortcut_gives_the_general_searchs_match(monkeypatch):
    """5-site cells within 1/8 of their ideal sites skip the 25 candidate translations: same sites, roles,
    deviation and translation as the general search, over site orders, shifts and displacement sizes."""
    from smoacs_bench.data import perovskite as P

    cell = PerovskiteCell(1)
    rng = np.random.default_rng(0)
    cases = []
    for k in range(600):
        frac = (cell.frac_coords[rng.permutation(5)] + rng.normal(0, (0.02, 0.06, 0.1, 0.3)[k % 4], (5, 3))
                + (rng.normal(0, 0.05, 3) if k % 3 == 0 else 0)) % 1.0
        cases.append((frac, P._match_near_ideal(frac, cell) is not None, P.match_perovskite(frac, cell)))
    monkeypatch.setattr(P, "_match_near_ideal", lambda frac, cell: None)
    took = 0
    for frac, fast, m in cases:
        g = P.match_perovskite(frac, cell)
        assert (m.ideal_index == g.ideal_index).all() and m.roles == g.roles
        assert m.max_dev == pytest.approx(g.max_dev, abs=1e-12)
        assert np.abs((m.translation - g.translation + 0.5) % 1 - 0.5).max() < 1e-12
        took += fast
    assert 150 < took < 550   # both paths were exercised


def test_the_unit_cells_candidate_search_as_one_array_is_the_loops_bit_for_bit():
    """5-site cells search their 25 candidate translations as one array (#43: TPE matches every trial): the same
    translation, bit for bit, as the per-candidate loop the supercells use, on displaced cells in any site order
    and setting and on cells on a 1/8 grid (equal deviations, ties between candidates)."""
    from smoacs_bench.data import perovskite as P

    cell = PerovskiteCell(1)
    rng = np.random.default_rng(1)
    cases = [(cell.frac_coords[rng.permutation(5)] + rng.uniform(-eps, eps, (5, 3)) + rng.uniform(0, 1, 3)) % 1.0
             for eps in (0.05, 0.15, 0.3, 0.5) for _ in range(100)]
    cases += [rng.integers(0, 8, (5, 3)) / 8.0 for _ in range(100)] + [np.zeros((5, 3))]
    for frac in cases:
        assert np.array_equal(P._best_unit_translation(frac, cell.frac_coords), P._best_translation(frac, cell))
