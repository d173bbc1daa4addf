"""Where independent units of work run: in this process, in local processes, or on a Dask cluster.

A :class:`Unit` is one call of a function with its arguments; the benchmark's unit is one call of
:func:`~smoacs_bench.benchmark.runner.run_experiment` (one method run on one task, target and seed, written
to its own folder): :func:`experiment` builds one; ``smoacs-bench reproduce`` plans a table's grid of them.
Units share nothing: each is seeded by its own arguments and writes its own
folder, so they may run in any order and anywhere.

- :class:`InProcess` (the default): one after another, here;
- :class:`LocalProcesses` (``workers=N``): N spawned processes (``concurrent.futures``, ``spawn`` context);
- :class:`DaskCluster` (``scheduler=ADDRESS``): the workers of a ``distributed`` scheduler.

Every executor runs each unit with the same number of torch threads (``threads``, default 1): on the CPU
a reduction split over another number of threads can round differently, so with one setting for every
executor a unit's output (samples.csv, the CIFs) is byte-identical wherever it ran. ``threads=None`` leaves
the process's own setting (faster in-process, reproducible only between runs with the same setting).

Dask workers are daemonic processes by default and cannot start processes of their own: a unit that does
(TPE with ``workers`` > 1) needs workers started with ``distributed.worker.daemon: false``.
"""

from __future__ import annotations

import abc
import multiprocessing
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Unit:
    """One call ``fn(*args, **kwargs)``. ``fn`` must be importable by name (a module-level function) for
    the process and Dask executors; ``key`` names the unit in errors and on the Dask dashboard."""

    fn: Callable[..., Any]
    args: tuple = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    key: str = ""

    def __call__(self) -> Any:
        return self.fn(*self.args, **self.kwargs)


class UnitFailed(RuntimeError):
    """A unit raised; the original exception is the ``__cause__``."""


def run_unit(unit: Unit, threads: int | None = 1) -> Any:
    """Call ``unit`` with ``threads`` torch threads (restored afterwards; None leaves them)."""
    if threads is None:
        return unit()
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return unit()
    finally:
        torch.set_num_threads(before)


def _failed(unit: Unit, err: BaseException) -> UnitFailed:
    failure = UnitFailed(f"unit {unit.key or unit.fn.__name__!r} failed: {type(err).__name__}: {err}")
    failure.__cause__ = err
    return failure


class Executor(abc.ABC):
    """Runs units and returns their results in the order of the units; the first failure raises
    :class:`UnitFailed` (units not yet started are cancelled)."""

    def __init__(self, threads: int | None = 1):
        self.threads = threads

    @abc.abstractmethod
    def map(self, units: Sequence[Unit]) -> list[Any]:
        """The result of every unit, in order."""

    def describe(self) -> str:
        return type(self).__name__


class InProcess(Executor):
    """One unit after another in this process."""

    def map(self, units: Sequence[Unit]) -> list[Any]:
        out = []
        for unit in units:
            try:
                out.append(run_unit(unit, self.threads))
            except Exception as err:  # noqa: BLE001 - re-raised with the unit's name
                raise _failed(unit, err) from err
        return out


class LocalProcesses(Executor):
    """Up to ``workers`` units at once, each in a spawned process (a fresh interpreter: no state is shared
    with this one, as on a cluster)."""

    def __init__(self, workers: int, threads: int | None = 1):
        super().__init__(threads)
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers

    def describe(self) -> str:
        return f"LocalProcesses(workers={self.workers})"

    def map(self, units: Sequence[Unit]) -> list[Any]:
        if not units:
            return []
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(self.workers, len(units)), mp_context=context) as pool:
            futures = [pool.submit(run_unit, unit, self.threads) for unit in units]
            wait(futures, return_when=FIRST_EXCEPTION)
            for unit, future in zip(units, futures, strict=True):
                if future.done() and future.exception() is not None:
                    for f in futures:
                        f.cancel()
                    raise _failed(unit, future.exception())
            return [f.result() for f in futures]


class DaskCluster(Executor):
    """The units as tasks on a Dask ``distributed`` cluster: ``scheduler`` is its address
    (``tcp://host:8786``) or a ``distributed.Client``. Every worker must be able to import the units'
    functions (smoacs-bench installed there) and find the models (``SMOACS_MODEL_DIR`` in its environment)."""

    def __init__(self, scheduler: Any, threads: int | None = 1):
        super().__init__(threads)
        self.scheduler = scheduler

    def describe(self) -> str:
        address = getattr(self.scheduler, "scheduler", None)
        return f"DaskCluster({getattr(address, 'address', self.scheduler)})"

    def map(self, units: Sequence[Unit]) -> list[Any]:
        try:
            from distributed import Client
        except ImportError as err:
            raise ImportError(
                "the Dask executor needs dask.distributed: pip install 'dask[distributed]'"
            ) from err
        if not units:
            return []
        own = not isinstance(self.scheduler, Client)
        client = Client(self.scheduler) if own else self.scheduler
        try:
            batch = uuid.uuid4().hex[:8]
            futures = [
                client.submit(
                    run_unit,
                    unit,
                    self.threads,
                    pure=False,
                    key=f"smoacs-{batch}-{i}-{unit.key or unit.fn.__name__}",
                )
                for i, unit in enumerate(units)
            ]
            out = []
            for unit, future in zip(units, futures, strict=True):
                try:
                    out.append(future.result())
                except Exception as err:  # noqa: BLE001 - re-raised with the unit's name
                    client.cancel(futures)
                    raise _failed(unit, err) from err
            return out
        finally:
            if own:
                client.close()


def get_executor(workers: int | None = None, scheduler: Any = None, threads: int | None = 1) -> Executor:
    """In-process by default; ``workers=N`` local processes; ``scheduler=ADDRESS`` a Dask cluster."""
    if scheduler is not None and workers is not None:
        raise ValueError("give workers (local processes) or scheduler (a Dask cluster), not both")
    if scheduler is not None:
        return DaskCluster(scheduler, threads)
    if workers is not None:
        return LocalProcesses(workers, threads)
    return InProcess(threads)


def run_units(
    units: Sequence[Unit], workers: int | None = None, scheduler: Any = None, threads: int | None = 1
) -> list[Any]:
    """Run ``units`` on the executor :func:`get_executor` picks; their results in order."""
    return get_executor(workers, scheduler, threads).map(units)


def experiment(
    method: str,
    task: str,
    target_bg: float,
    margin: float,
    n_samples: int,
    seed: int,
    out_dir: str | Path,
    method_config: dict[str, Any] | None = None,
    **run_options: Any,
) -> Unit:
    """One :func:`~smoacs_bench.benchmark.runner.run_experiment` call as a unit (its result: the run's
    summary dict). ``run_options``: ``label``, ``force``, ``crossjudge``."""
    from .runner import run_experiment

    return Unit(
        run_experiment,
        (method, task, target_bg, margin, n_samples, seed, str(out_dir)),
        {"method_config": dict(method_config or {}), **run_options},
        key=f"{method}-{task}-bg{target_bg:g}-seed{seed}",
    )
