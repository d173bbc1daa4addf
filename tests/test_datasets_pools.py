"""Dataset loaders, oxidation patterns (A.11) and initial pools, on small files written here and,
where present, a slice of the real perov_5."""

from __future__ import annotations

import csv
import io
import json
import math
import urllib.error
import urllib.request

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from smoacs_bench.data import datasets
from smoacs_bench.data.datasets import (
    MEGNET_FILE,
    MEGNET_URL,
    download_megnet,
    find_dataset,
    load_cdvae_csv,
    load_dataset,
    load_megnet,
    reference_formulas,
    validate_megnet_json,
)
from smoacs_bench.data.masks import pattern_masks
from smoacs_bench.data.neutrality import check_species
from smoacs_bench.data.patterns import oxidation_patterns
from smoacs_bench.data.perovskite import match_sites
from smoacs_bench.data.pools import (
    AflowPool,
    DatasetPerovskitePool,
    DatasetPool,
    PerovskitePool,
    as_ideal_perovskite,
    get_pool,
)
from smoacs_bench.data.templates import PerovskiteCell, random_perovskites


def _cif(structure: Structure) -> str:
    return structure.to(fmt="cif")


def _srtio3(a: float = 3.9) -> Structure:
    return PerovskiteCell(1).structure((a, a, a))


def _rock_salt(a: str, b: str) -> Structure:
    return Structure(Lattice.cubic(4.2), [a, b], [[0, 0, 0], [0.5, 0.5, 0.5]])


def _rutile() -> Structure:
    return Structure.from_spacegroup("P4_2/mnm", Lattice.tetragonal(4.59, 2.96), ["Ti", "O"],
                                     [[0, 0, 0], [0.305, 0.305, 0]])


# --- MEGNet JSON -----------------------------------------------------------------------------


def _megnet_entries() -> list:
    good = {"material_id": "mp-1", "structure": _cif(_srtio3()), "formation_energy_per_atom": -3.4,
            "band_gap": 1.8, "e_above_hull": 0.0}
    return [
        good,
        {"material_id": "mp-2", "structure": _cif(_rock_salt("Na", "Cl")), "formation_energy_per_atom": -2.1,
         "band_gap": 5.0},
        {"material_id": "mp-3", "structure": _cif(_srtio3()), "formation_energy_per_atom": -1.0},
        {"material_id": "mp-4", "structure": "data_broken\n_cell_length_a 3\n", "formation_energy_per_atom": 0.1,
         "band_gap": 0.0},
        {"material_id": "mp-5", "structure": _cif(_srtio3()), "formation_energy_per_atom": float("nan"),
         "band_gap": 1.0},
    ]


@pytest.fixture
def megnet_file(tmp_path):
    path = tmp_path / MEGNET_FILE
    path.write_text(json.dumps(_megnet_entries()))
    return path


def test_load_megnet_reports_and_skips_bad_entries(megnet_file):
    records, problems = load_megnet(megnet_file)
    assert [r.material_id for r in records] == ["mp-1", "mp-2"]
    assert records[0].structure.composition.reduced_formula == "SrTiO3"
    assert records[0].properties["band_gap"] == 1.8 and records[0].properties["e_above_hull"] == 0.0
    assert len(problems) == 3
    assert problems[0] == f"{MEGNET_FILE} entry 2 (mp-3): missing key band_gap"
    assert problems[1].startswith(f"{MEGNET_FILE} entry 3 (mp-4): ")
    assert "formation_energy_per_atom is not finite" in problems[2]
    assert reference_formulas(records) == frozenset({"SrTiO3", "NaCl"})
    records, _ = load_megnet(megnet_file, limit=1)
    assert len(records) == 1


def test_validate_megnet_json(megnet_file, tmp_path):
    with pytest.raises(ValueError, match="5 entries, expected 69239"):
        validate_megnet_json(megnet_file)
    with pytest.raises(ValueError, match=r"entry 2 lacks key band_gap") as err:
        validate_megnet_json(megnet_file, expected_entries=5)
    assert MEGNET_FILE in str(err.value)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json: not readable JSON"):
        validate_megnet_json(bad)
    bad.write_text("{}")
    with pytest.raises(ValueError, match="expected a JSON list"):
        validate_megnet_json(bad)


def test_download_megnet_offline_says_where_to_put_the_file(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.setenv("SMOACS_DATA_DIR", str(tmp_path))
    with pytest.raises(RuntimeError) as err:
        download_megnet()
    msg = str(err.value)
    assert MEGNET_FILE in msg and MEGNET_URL in msg and "$SMOACS_DATA_DIR/" in msg and "by hand" in msg
    assert list(tmp_path.iterdir()) == []  # no partial file left behind


def test_download_megnet_validates_then_renames(tmp_path, monkeypatch):
    payload = json.dumps(_megnet_entries()[:2]).encode()
    calls = []

    def fake_urlopen(url, timeout=None):
        calls.append(url)
        return io.BytesIO(payload)

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    path = download_megnet(tmp_path, expected_entries=2)
    assert path == tmp_path / MEGNET_FILE and [p.name for p in tmp_path.iterdir()] == [MEGNET_FILE]
    assert calls == [MEGNET_URL]
    assert len(load_megnet(path)[0]) == 2
    download_megnet(tmp_path, expected_entries=2)  # a valid file is kept, not downloaded again
    assert len(calls) == 1
    other = tmp_path / "other"
    with pytest.raises(ValueError, match="entries, expected 3"):
        download_megnet(other, expected_entries=3)
    assert list(other.iterdir()) == []


# --- CDVAE CSV --------------------------------------------------------------------------------


def _write_cdvae(path, rows) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["", "material_id", "cif", "formula", "heat_ref", "band_gap"])
        w.writerows(rows)


def test_load_cdvae_csv_reports_bad_rows(tmp_path):
    es = _cif(_rock_salt("Es", "O"))  # Z = 99, outside the K = 98 elements
    rows = [
        [0, "1", _cif(_srtio3()), "SrTiO3", "-0.5", "1.2"],
        [1, "2", "data_broken\n_cell_length_a 3\n", "X", "0.1", "0.0"],
        [2, "3", es, "EsO", "0.2", "0.0"],
        [3, "4", _cif(_rock_salt("Mg", "O")), "MgO", "", "7.0"],
    ]
    path = tmp_path / "val.csv"
    _write_cdvae(path, rows)
    records, problems = load_cdvae_csv(path)
    assert [r.material_id for r in records] == ["1", "4"]
    assert records[0].properties == {"formula": "SrTiO3", "heat_ref": -0.5, "band_gap": 1.2}
    assert records[1].properties["heat_ref"] == ""  # empty stays text
    line_of_row2 = path.read_text().splitlines().index("1,2,\"data_broken") + 1  # CIFs span many lines
    assert problems[0].startswith(f"val.csv row {line_of_row2}: ")
    assert len(problems) == 2 and "unknown element 'Es'" in problems[1]
    assert len(load_cdvae_csv(path, limit=1)[0]) == 1


def test_find_dataset(tmp_path, monkeypatch):
    monkeypatch.delenv("SMOACS_DATA_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match="SMOACS_DATA_DIR"):
        find_dataset("perov_5")
    monkeypatch.setenv("SMOACS_DATA_DIR", str(tmp_path))
    (tmp_path / "tiny").mkdir()
    _write_cdvae(tmp_path / "tiny" / "test.csv", [[0, "1", _cif(_srtio3()), "SrTiO3", "0", "1"]])
    _write_cdvae(tmp_path / "tiny" / "val.csv", [[0, "2", _cif(_rock_salt("Mg", "O")), "MgO", "0", "1"]])
    assert [p.name for p in find_dataset("tiny")] == ["val.csv", "test.csv"]
    assert [r.material_id for r in load_dataset("tiny")[0]] == ["2", "1"]
    with pytest.raises(FileNotFoundError, match=r"'mp_20'.*train.csv.*mp_20"):
        find_dataset("mp_20")
    with pytest.raises(FileNotFoundError, match=MEGNET_FILE):
        find_dataset("megnet")
    (tmp_path / MEGNET_FILE).write_text(json.dumps(_megnet_entries()))
    assert find_dataset("megnet") == [tmp_path / MEGNET_FILE]
    assert len(load_dataset("megnet")[0]) == 2


@pytest.fixture
def perov5_rows(data_dir, monkeypatch):
    monkeypatch.setenv("SMOACS_DATA_DIR", str(data_dir))
    try:
        files = find_dataset("perov_5")
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    test = [f for f in files if f.name == "test.csv"] or files
    return load_cdvae_csv(test[0], limit=50)


def test_real_perov5_slice_and_its_perovskites(perov5_rows):
    records, problems = perov5_rows
    assert len(records) + len(problems) == 50 and len(records) >= 45
    assert all(len(r.structure) == 5 and "heat_ref" in r.properties for r in records)
    pool = DatasetPerovskitePool(records)
    print(f"perovskites among the first 50 perov_5 test rows: {len(pool)}")
    assert len(pool) > 0
    cell = PerovskiteCell(1)
    for _, c in pool.draw(len(pool), seed=0):
        match, dev = match_sites(c.structure, cell)
        assert list(match) == [0, 1, 2, 3, 4] and dev <= 0.05
        assert np.abs(c.structure.frac_coords - cell.frac_coords).max() <= 0.05  # no wrapped coordinates
        assert c.roles == cell.roles and np.array_equal(c.patterns, cell.patterns)


def test_as_ideal_perovskite_shifts_origin_and_reorders():
    cell = PerovskiteCell(1)
    ideal = cell.structure((4.0, 4.0, 4.0), ["Ba", "Ti", "O", "O", "O"])
    shifted = Structure(ideal.lattice, ideal.species[::-1], (ideal.frac_coords[::-1] + 0.5) % 1.0)
    out = as_ideal_perovskite(shifted)
    assert [s.symbol for s in out.species] == ["Ba", "Ti", "O", "O", "O"]
    assert np.allclose(out.frac_coords, cell.frac_coords)
    tilted = Structure(Lattice.from_parameters(4, 4, 4, 90, 90, 92), ideal.species, ideal.frac_coords)
    assert as_ideal_perovskite(tilted) is None


# --- oxidation patterns ----------------------------------------------------------------------


def _rows(patterns: np.ndarray) -> set[tuple[int, ...]]:
    return {tuple(int(x) for x in p) for p in patterns}


def test_patterns_paper_examples():
    pats, reason = oxidation_patterns(["Ru", "N"])
    assert reason == "" and _rows(pats) == {(2, -2), (3, -3)}
    assert tuple(pats[0]) == (3, -3)  # +3/-3 are in "Ours" for Ru and N: ranked first
    rutile = _rutile()
    assert [s.symbol for s in rutile.species] == ["Ti", "Ti", "O", "O", "O", "O"]
    assert (4, 4, -2, -2, -2, -2) in _rows(oxidation_patterns(rutile)[0])
    assert (4, -2, -2) in _rows(oxidation_patterns(["Ti", "O", "O"])[0])
    assert (2, 4, -2, -2, -2) in _rows(oxidation_patterns(_srtio3())[0])
    fe3o4 = oxidation_patterns(["Fe"] * 3 + ["O"] * 4)[0]
    assert _rows(fe3o4) == {(2, 3, 3, -2, -2, -2, -2)}


def test_patterns_none_and_bounds():
    pats, reason = oxidation_patterns(_rock_salt("He", "O"))
    assert pats.shape == (0, 2) and "He" in reason
    pats, reason = oxidation_patterns(["Na", "Na"])
    assert pats.shape == (0, 2) and "sums to zero" in reason
    pats, _ = oxidation_patterns(["Mn", "Cr", "S", "S", "S", "N"])
    assert 1 < len(pats) <= 10 and len(_rows(pats)) == len(pats)
    assert len(oxidation_patterns(["Mn", "Cr", "S", "S", "S", "N"], max_patterns=3)[0]) == 3
    assert np.array_equal(pats, oxidation_patterns(["Mn", "Cr", "S", "S", "S", "N"])[0])
    for species in (["Ru", "N"], ["Fe"] * 3 + ["O"] * 4, ["Mn", "Cr", "S", "S", "S", "N"], ["Cu", "O"]):
        pats, _ = oxidation_patterns(species)
        assert (pats.sum(axis=1) == 0).all()
        assert pattern_masks(pats).shape == (len(pats), len(species), 98)


def test_patterns_of_a_135_site_supercell():
    cell = PerovskiteCell(3)
    structure = cell.structure((12.0, 12.0, 12.0))
    pats, reason = oxidation_patterns(structure)  # timed in perf/neutrality_speed.py, not here
    assert reason == "" and pats.shape[1] == 135 and (pats.sum(axis=1) == 0).all()
    assert tuple(cell.patterns[0]) in _rows(pats)
    mixed = cell.structure((12.0, 12.0, 12.0), ["Ca"] * 27 + ["Mn"] * 27 + ["N"] * 81)
    pats, _ = oxidation_patterns(mixed)
    assert len(pats) == 10 and (pats.sum(axis=1) == 0).all() and pattern_masks(pats).shape == (10, 135, 98)


# --- pools -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def aflow() -> AflowPool:
    return AflowPool()


def test_aflow_pool(aflow):
    print(f"AFLOW pool: {len(aflow)} of 288 prototypes; {aflow.describe()}")
    assert len(aflow) > 30
    assert aflow.describe()["n_entries_read"] == 288
    assert len({s for s, _ in aflow.entries}) == len(aflow)
    for source, c in aflow.entries:
        species = [sp.symbol for sp in c.structure.species]
        assert source.startswith("aflow:") and len(species) <= 10
        assert check_species(species).neutral
        assert len(c.patterns) >= 1 and pattern_masks(c.patterns).shape[:2] == (len(c.patterns), len(species))
        assert c.roles is None and c.ideal_coords is None


def test_draws_are_deterministic_copies(aflow):
    a, b = aflow.draw(20, seed=3), aflow.draw(20, seed=3)
    assert [d.source for d in a] == [d.source for d in b]
    assert all(x.crystal.structure == y.crystal.structure for x, y in zip(a, b, strict=True))
    assert [d.source for d in aflow.draw(20, seed=4)] != [d.source for d in a]
    assert len({d.source for d in a}) == 20  # no replacement while n <= size
    many = aflow.draw(len(aflow) + 5, seed=0)
    assert len(many) == len(aflow) + 5 and len({d.source for d in many}) < len(many)
    a[0].crystal.structure.replace_species({a[0].crystal.structure.species[0]: "U"})
    assert aflow.draw(20, seed=3)[0].crystal.structure == b[0].crystal.structure


def test_perovskite_pools():
    pool = PerovskitePool(1)
    drawn = pool.draw(4, seed=7)
    expected = random_perovskites(4, 7)
    assert [d.source for d in drawn] == [f"generated:7:{i}" for i in range(4)]
    assert all(d.crystal.structure == s for d, s in zip(drawn, expected, strict=True))
    assert drawn[0].crystal.roles == ("A", "B", "X", "X", "X")
    big = get_pool("perovskite3x3x3").draw(2, seed=0)
    assert len(big[0].crystal.structure) == 135 and big[0].crystal.patterns.shape == (2, 135)
    assert all(6.0 <= x <= 30.0 for x in big[0].crystal.structure.lattice.abc)
    assert get_pool("perovskite").describe()["patterns"] == [[2, 4, -2], [1, 2, -1]]
    with pytest.raises(ValueError, match="unknown pool"):
        get_pool("nope")


def test_dataset_pool_filters(tmp_path):
    big = _srtio3().make_supercell([2, 1, 1], in_place=False).make_supercell([1, 2, 1], in_place=False)
    records = [datasets.Record(mid, s) for mid, s in [
        ("ok", _srtio3()), ("he", _rock_salt("He", "O")), ("charged", _rock_salt("Na", "Na")), ("big", big),
    ]]
    pool = DatasetPool(records, "dataset:toy")
    assert [s for s, _ in pool.entries] == ["ok"]
    info = pool.describe()
    assert info["size"] == 1 and info["rejected"] == {"more than 10 sites": 1, "not neutral": 2}
    assert math.isclose(pool.draw(3, 0)[0].crystal.structure.lattice.a, 3.9)


def test_get_pool_from_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("SMOACS_DATA_DIR", str(tmp_path))
    (tmp_path / MEGNET_FILE).write_text(json.dumps(_megnet_entries()))
    pool = get_pool("dataset:megnet")
    assert sorted(s for s, _ in pool.entries) == ["mp-1", "mp-2"] and pool.describe()["load_problems"] == 3
    assert len(get_pool("dataset-perovskite:megnet")) == 1
