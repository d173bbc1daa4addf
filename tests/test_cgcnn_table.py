"""The CGCNN atom-feature table (data/cgcnn_atom_init.json) built from its published definition."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
from pymatgen.core import Element

# (offset, width) of each one-hot category: group, period, electronegativity, covalent radius, valence
# electrons, first ionisation energy, electron affinity, block, atomic volume
CATEGORIES = [(0, 19), (19, 7), (26, 10), (36, 10), (46, 12), (58, 10), (68, 10), (78, 4), (82, 10)]


def _table() -> dict[int, np.ndarray]:
    text = resources.files("smoacs_bench.data").joinpath("cgcnn_atom_init.json").read_text()
    return {int(z): np.asarray(v) for z, v in json.loads(text).items()}


def test_every_element_has_92_one_hot_features():
    table = _table()
    assert sorted(table) == list(range(1, 101))
    for z, v in table.items():
        assert v.shape == (92,) and set(np.unique(v)) <= {0.0, 1.0}
        for off, width in CATEGORIES:
            assert v[off:off + width].sum() <= 1, (z, off)
        for off, width in (CATEGORIES[1], CATEGORIES[7]):          # period and block are always known
            assert v[off:off + width].sum() == 1, (z, off)


def test_categories_follow_the_definition():
    table = _table()
    o, na, fe = table[8], table[11], table[26]
    assert np.argmax(o[0:19]) == 16 and np.argmax(o[19:26]) == 1 and np.argmax(o[78:82]) == 1   # group 16, period 2, p
    assert np.argmax(na[46:58]) == 0 and np.argmax(na[78:82]) == 0                              # 1 valence e, s block
    assert np.argmax(fe[0:19]) == 8 and np.argmax(fe[78:82]) == 2                               # group 8, d block
    # electronegativity rises from Na (0.93) to O (3.44): a higher bin
    assert np.argmax(o[26:36]) > np.argmax(na[26:36])
    assert Element.from_Z(26).symbol == "Fe"


def test_alignn_reads_the_shipped_table():
    from smoacs_bench.methods.predictors.alignn import load_cgcnn_table

    feats, ok = load_cgcnn_table()
    assert feats.shape[1] == 92 and int(ok.sum()) == 98             # Z = 1..98 as ALIGNN embeds them
