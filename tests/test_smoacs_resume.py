"""A killed SMOACS (and SMOACS-relax) run resumes from its checkpoint and proposes exactly what an uninterrupted
run proposes, across batches, copy-and-mutate steps and in-loop relaxations (real MEGNet and CHGNet)."""

import numpy as np
import pytest

from smoacs_bench.data.task import get_task
from smoacs_bench.methods.smoacs import SMOACS
from smoacs_bench.methods.smoacs.relaxing import RelaxingSMOACS
from smoacs_bench.methods.smoacs.resume import FILENAME

pytestmark = pytest.mark.usefixtures("model_dir")
PEROV = get_task("perovskite", 1.5, 0.04)


class Killed(Exception):
    pass


def _killer(base):
    """``base`` that raises after ``kill_after`` optimisation steps in this process (as a kill would)."""

    class Killer(base):
        kill_after = 10 ** 9

        def _extra_loss(self, state, crystals, step, task):
            self.kill_after -= 1
            if self.kill_after < 0:
                raise Killed
            return super()._extra_loss(state, crystals, step, task)

    return Killer


def _same(a, b):
    assert len(a) == len(b)
    for p, q in zip(a, b, strict=True):
        assert p.structure is not None and q.structure is not None
        assert p.structure.species == q.structure.species
        assert np.array_equal(p.structure.lattice.matrix, q.structure.lattice.matrix)
        assert np.array_equal(p.structure.frac_coords, q.structure.frac_coords)
        assert (p.band_gap, p.formation_energy) == (q.band_gap, q.formation_energy)
        assert p.meta == q.meta


def _interrupted(base, options, n, seed, kill_after, storage):
    killer = _killer(base)(**options, storage=str(storage), checkpoint_s=0.0)
    killer.kill_after = kill_after
    with pytest.raises(Killed):
        killer.propose(PEROV, n, seed)
    assert (storage / FILENAME).is_file()
    resumed = base(**options, storage=str(storage), checkpoint_s=0.0)
    props = resumed.propose(PEROV, n, seed)
    assert resumed.seconds_before_resume > 0
    assert not (storage / FILENAME).exists()   # deleted when the run finished
    return resumed, props


@pytest.mark.parametrize("selection", ["final", "best"])
def test_a_killed_smoacs_run_resumes_to_the_uninterrupted_proposals(tmp_path, selection):
    # two batches of 3; copy-and-mutate at steps 6 and 9; killed at step 7 of the second batch
    options = dict(steps=12, batch_size=3, selection=selection, progress=False, device="cpu")
    whole = SMOACS(**options)
    expected = whole.propose(PEROV, 6, 4)
    resumed, props = _interrupted(SMOACS, options, 6, 4, 12 + 7, tmp_path / "state")
    _same(props, expected)
    assert resumed.config()["mutations"] == whole.config()["mutations"]
    for k, v in whole.artifacts()["history"].items():
        assert np.array_equal(resumed.artifacts()["history"][k], v, equal_nan=True), k


def test_a_checkpoint_of_other_settings_is_ignored(tmp_path):
    options = dict(steps=6, progress=False, device="cpu")
    killer = _killer(SMOACS)(**options, storage=str(tmp_path), checkpoint_s=0.0)
    killer.kill_after = 4
    with pytest.raises(Killed):
        killer.propose(PEROV, 2, 0)
    other = SMOACS(**options | {"lr_scale": 0.5}, storage=str(tmp_path), checkpoint_s=0.0)
    with pytest.warns(UserWarning, match="other settings"):
        props = other.propose(PEROV, 2, 0)
    assert other.seconds_before_resume == 0
    _same(props, SMOACS(**options | {"lr_scale": 0.5}).propose(PEROV, 2, 0))


def test_a_killed_smoacs_relax_run_resumes_to_the_uninterrupted_proposals(tmp_path):
    # in-loop relaxations (with reheating and relaxed checkpoints) at steps 3, 6, 9; killed at step 7
    options = dict(steps=10, relax_every=3, relax_steps=20, progress=False, device="cpu")
    whole = RelaxingSMOACS(**options)
    expected = whole.propose(PEROV, 3, 1)
    resumed, props = _interrupted(RelaxingSMOACS, options, 3, 1, 7, tmp_path / "state")
    _same(props, expected)
    assert resumed.config()["relax_log"] == whole.config()["relax_log"]
