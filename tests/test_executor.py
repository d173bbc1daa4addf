"""Executors of units of work (benchmark/executor.py): the same files wherever a unit runs."""

from __future__ import annotations

import importlib.util
import operator
from pathlib import Path

import pytest

from smoacs_bench.benchmark.executor import (
    DaskCluster,
    InProcess,
    LocalProcesses,
    Unit,
    UnitFailed,
    experiment,
    get_executor,
    run_units,
)

needs_models = pytest.mark.usefixtures("model_dir")
needs_distributed = pytest.mark.skipif(
    importlib.util.find_spec("distributed") is None,
    reason="the Dask executor needs dask.distributed (pip install 'dask[distributed]')",
)


def test_results_come_back_in_order_and_a_failure_names_its_unit():
    units = [Unit(operator.pow, (2, k), key=f"pow{k}") for k in range(4)]
    assert run_units(units, threads=None) == [1, 2, 4, 8]
    with pytest.raises(UnitFailed, match="'div'.*ZeroDivisionError") as info:
        InProcess(threads=None).map([*units, Unit(operator.truediv, (1, 0), key="div")])
    assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_local_processes_return_the_same_results():
    units = [Unit(operator.pow, (3, k)) for k in range(3)]
    assert LocalProcesses(workers=2, threads=None).map(units) == [1, 3, 9]
    with pytest.raises(UnitFailed, match="ZeroDivisionError"):
        LocalProcesses(workers=1, threads=None).map([Unit(operator.truediv, (1, 0))])


def test_executor_choice():
    assert isinstance(get_executor(), InProcess)
    assert isinstance(get_executor(workers=2), LocalProcesses)
    assert isinstance(get_executor(scheduler="tcp://127.0.0.1:8786"), DaskCluster)
    with pytest.raises(ValueError, match="not both"):
        get_executor(workers=2, scheduler="tcp://127.0.0.1:8786")
    with pytest.raises(ValueError, match="workers must be >= 1"):
        LocalProcesses(0)


def _tiny_units(root: Path) -> list[Unit]:
    """One SMOACS and one TPE run, as small as still exercises them (copy-and-mutate runs at step 1 and 2
    of 3; TPE keeps its journal in the run folder)."""
    common = dict(task="perovskite", target_bg=1.5, margin=0.04, seed=0, crossjudge=False)
    return [
        experiment(
            "smoacs",
            n_samples=3,
            out_dir=root / "smoacs",
            method_config={"steps": 3, "device": "cpu", "progress": False},
            **common,
        ),
        experiment(
            "tpe",
            n_samples=2,
            out_dir=root / "tpe",
            method_config={"trials": 3, "device": "cpu", "progress": False},
            **common,
        ),
    ]


def _outputs(root: Path) -> dict[str, bytes]:
    from smoacs_bench.evaluation.packing import names, read_bytes

    out = {f"{run}/samples.csv": (root / run / "samples.csv").read_bytes() for run in ("smoacs", "tpe")}
    for run in ("smoacs", "tpe"):   # the CIFs, packed in structures.zip
        out.update({f"{run}/structures/{n}": read_bytes(root / run / "structures" / n)
                    for n in names(root / run / "structures")})
    return out


@pytest.fixture(scope="module")
def in_process(tmp_path_factory, model_dir) -> Path:
    root = tmp_path_factory.mktemp("inprocess")
    summaries = InProcess().map(_tiny_units(root))
    assert [s["method"] for s in summaries] == ["SMOACS(MEGNet)", "TPE(MEGNet)"]
    return root


@needs_models
def test_local_processes_write_the_same_files(in_process, tmp_path):
    get_executor(workers=2).map(_tiny_units(tmp_path))
    assert _outputs(tmp_path) == _outputs(in_process)


@needs_models
@needs_distributed
def test_dask_cluster_writes_the_same_files(in_process, tmp_path):
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        executor = get_executor(scheduler=cluster.scheduler_address)
        summaries = executor.map(_tiny_units(tmp_path))
        with pytest.raises(UnitFailed, match="'div'.*ZeroDivisionError"):
            executor.map([Unit(operator.truediv, (1, 0), key="div")])
    assert [s["method"] for s in summaries] == ["SMOACS(MEGNet)", "TPE(MEGNet)"]
    expected = _outputs(in_process)
    assert len(expected) == 2 + 5, sorted(expected)  # two samples.csv, 3 + 2 CIFs
    assert _outputs(tmp_path) == expected


@needs_models
@needs_distributed
def test_dask_workers_run_tpe_with_its_own_worker_processes(in_process, tmp_path):
    """TPE with workers > 1 starts processes, which needs non-daemonic Dask workers
    (``distributed.worker.daemon: false``); the output equals the in-process run with one worker."""
    import dask
    from distributed import LocalCluster

    units = [u for u in _tiny_units(tmp_path) if u.args[0] == "tpe"]
    units[0].kwargs["method_config"] |= {"workers": 2, "group_size": 1}
    reference = [u for u in _tiny_units(tmp_path / "ref") if u.args[0] == "tpe"]
    reference[0].kwargs["method_config"] |= {"group_size": 1}
    InProcess().map(reference)
    with dask.config.set({"distributed.worker.daemon": False}), LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        get_executor(scheduler=cluster.scheduler_address).map(units)
    assert (tmp_path / "tpe" / "samples.csv").read_bytes() == (tmp_path / "ref" / "tpe" / "samples.csv").read_bytes()
    assert len(list((tmp_path / "tpe" / "tpe_journal").glob("group-*.log"))) == 2   # two groups, one per worker
