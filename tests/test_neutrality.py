"""Exact neutrality by dynamic programming."""

import itertools

import numpy as np

from smoacs_bench.data.elements import SYMBOLS
from smoacs_bench.data.neutrality import check_species, format_ox_states, neutral_assignment
from smoacs_bench.data.oxidation import ours


def perovskite(a, b, x, n=1):
    return [a] * n**3 + [b] * n**3 + [x] * (3 * n**3)


def test_paper_examples():
    assert check_species(perovskite("Sr", "Ti", "O")).neutral
    assert check_species(perovskite("Cs", "Pb", "I")).neutral
    assert not check_species(["Ti", "Al", "O"]).neutral  # +4 +3 -2 cannot balance
    fe3o4 = check_species(["Fe"] * 3 + ["O"] * 4)
    assert fe3o4.neutral and fe3o4.ox_states == (2, 3, 3, -2, -2, -2, -2)
    assert format_ox_states(["Fe"] * 3 + ["O"] * 4, fe3o4.ox_states) == "Fe+2 Fe+3 Fe+3 O-2 O-2 O-2 O-2"


def test_135_site_supercell_and_a_single_swap():
    species = perovskite("Sr", "Ti", "O", n=3)
    res = check_species(species)
    assert len(species) == 135 and res.neutral and sum(res.ox_states) == 0
    swapped = ["K"] + species[1:]  # one Sr(+2) -> K(+1): total charge -1 whatever the states
    assert not check_species(swapped).neutral


def test_missing_states_give_a_reason():
    res = check_species(["He", "O"])
    assert not res.neutral and "He" in res.reason
    assert not check_species([]).neutral


def test_dp_agrees_with_brute_force_on_random_compositions():
    rng = np.random.default_rng(42)
    tab = ours()
    with_states = [s for s in SYMBOLS if tab[s]]
    anions = [s for s in with_states if min(tab[s]) < 0]
    n_neutral = 0
    for _ in range(500):
        n_sites = int(rng.integers(1, 7))
        species = [str(rng.choice(anions if rng.random() < 0.5 else with_states)) for _ in range(n_sites)]
        brute = any(sum(c) == 0 for c in itertools.product(*(tab[s] for s in species)))
        res = check_species(species)
        assert res.neutral == brute, species
        if res.neutral:
            n_neutral += 1
            assert sum(res.ox_states) == 0
            assert all(o in tab[s] for s, o in zip(species, res.ox_states, strict=True))
    assert 50 < n_neutral < 450  # the sample exercises both outcomes


def test_raw_site_states():
    assert neutral_assignment([[1, 3], [-2], [-1, -2]]) is not None
    assert neutral_assignment([[2], [2]]) is None
    assert neutral_assignment([[5], [-2, -3]]) is None and neutral_assignment([[5], [-2, -3], [0]]) is None
    big = neutral_assignment([[2, 3]] * 60 + [[-2]] * 75)  # 2^60 combinations
    assert big is not None and sum(big) == 0
