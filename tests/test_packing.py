"""Packed run folders: structures/, structures_relaxed/ and relax_state/ kept as one zip each, read as if loose."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import pandas as pd
from pymatgen.core import Lattice, Structure

from smoacs_bench.evaluation.io import read_structure
from smoacs_bench.evaluation.packing import names, pack, read_text, unpack
from smoacs_bench.evaluation.stages import StageInput


def _perovskite(a: float, b: str = "Ti") -> Structure:
    return Structure(Lattice.cubic(a), ["Sr", b, "O", "O", "O"],
                     [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


def _run_folder(tmp_path):
    run = tmp_path / "run"
    (run / "structures").mkdir(parents=True)
    (run / "structures_relaxed").mkdir()
    (run / "relax_state").mkdir()
    crystals = [_perovskite(3.905), _perovskite(4.1, "Zr"), _perovskite(3.95 + 1e-7)]
    for i, s in enumerate(crystals):
        (run / "structures" / f"{i}.cif").write_text(s.to(fmt="cif"))
    (run / "structures_relaxed" / "1.cif").write_text(_perovskite(4.19, "Zr").to(fmt="cif"))
    (run / "relax_state" / "settings.json").write_text(json.dumps({"relax": {}, "indices": [1]}))
    pd.DataFrame({"file": [f"structures/{i}.cif" for i in range(3)]}).to_csv(run / "samples.csv", index=False)
    return run, crystals


def test_a_packed_run_folder_reads_as_the_loose_one(tmp_path):
    run, crystals = _run_folder(tmp_path)
    loose = [read_structure(run / f"structures/{i}.cif")[0] for i in range(3)]
    written = pack(run)
    assert sorted(p.name for p in written) == ["relax_state.zip", "structures.zip", "structures_relaxed.zip"]
    assert not (run / "structures").exists() and not (run / "relax_state").exists()
    packed = [read_structure(run / f"structures/{i}.cif")[0] for i in range(3)]
    assert packed == loose   # the exact bytes: the same crystal to the last digit (the caches' digests agree)
    assert [s.lattice.a for s in packed] == [s.lattice.a for s in loose]
    assert names(run / "structures") == ["0.cif", "1.cif", "2.cif"]
    assert read_structure(run / "structures/7.cif") == (None, f"{run / 'structures/7.cif'}: file not found")
    batch = StageInput(pd.read_csv(run / "samples.csv"), relaxed_dir=run / "structures_relaxed")
    assert abs(batch.relaxed_structure(1).lattice.a - 4.19) < 1e-9 and batch.relaxed_structure(0) is None
    # a later step writes loose files; packing again merges them in, and packing is deterministic
    first = (run / "structures_relaxed.zip").read_bytes()
    (run / "structures_relaxed").mkdir()
    (run / "structures_relaxed" / "0.cif").write_text(_perovskite(3.91).to(fmt="cif"))
    pack(run)
    assert names(run / "structures_relaxed") == ["0.cif", "1.cif"]
    assert (run / "structures_relaxed.zip").read_bytes() != first
    again = tmp_path / "again"
    run2, _ = _run_folder(again)
    pack(run2)
    assert (run2 / "structures.zip").read_bytes() == (run / "structures.zip").read_bytes()
    # unpacking gives the files back for a step that rewrites them (the relaxation's resumable state)
    unpack(run / "relax_state")
    assert json.loads((run / "relax_state" / "settings.json").read_text())["indices"] == [1]
    assert not (run / "relax_state.zip").exists()
    with zipfile.ZipFile(run / "structures.zip") as z:   # plain zip: unzip works without the harness
        assert z.namelist() == ["0.cif", "1.cif", "2.cif"] and z.testzip() is None
    assert read_text(run / "structures" / "0.cif").startswith("# generated using pymatgen")


def test_export_writes_the_cifs_of_a_packed_run(tmp_path):
    run, crystals = _run_folder(tmp_path)
    pack(run)
    out = tmp_path / "cifs"
    done = subprocess.run([sys.executable, "-m", "smoacs_bench.benchmark.cli", "export", str(run), str(tmp_path / "no"),
                           "--cif", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "4 files" in done.stdout and "not a run folder" in done.stderr
    assert sorted(p.name for p in (out / "run" / "structures").iterdir()) == ["0.cif", "1.cif", "2.cif"]
    assert Structure.from_file(out / "run" / "structures_relaxed" / "1.cif").lattice.a == \
        read_structure(run / "structures_relaxed" / "1.cif")[0].lattice.a
