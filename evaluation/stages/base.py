"""The judge's stage interface: a stage adds columns to a run's rows and says how they read in a table.

A stage is one module under ``evaluation/stages/`` (or an entry point of the group ``smoacs_bench.stages``)
holding a :class:`Stage` subclass. It declares the columns it adds (name, unit, one-line meaning, and for a rate
the table header and the rows it is taken over), the stages it needs, the settings that key its cache, and
computes its columns from a :class:`StageInput`. The registry (:mod:`.registry`) finds it; samples.csv,
summary.csv, the tables, their captions and plots read its columns from there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

# the judge's steps that run with the method (samples.csv's own-judge columns), in order: a stage may name them in
# ``requires``
BUILT_IN = ("predict", "criteria", "crossjudge")
RELAXED_ROWS = "relaxed"   # samples.csv's flag of the proposals the judge relaxed (the relaxation stage's)
RELAXED_COUNT = f"n_{RELAXED_ROWS}"   # summary.csv: how many proposals a run relaxed


@dataclass(frozen=True)
class Column:
    """One column a stage adds. ``unit``: "" for a flag or a text; ``header``: shown in the metric tables
    (as a rate with its interval) when set; ``over``: the rows a rate is taken over, "all" or the flag column
    that marks them ("relaxed": the proposals the judge relaxed; a stage may add its own flag);
    ``distinct``: also count the distinct compositions flagged, pooled over seeds (``n_unique_<name>``)."""

    name: str
    unit: str
    meaning: str
    header: str | None = None
    over: str = "all"
    distinct: str | None = None   # the table header of the pooled distinct count
    funnel: str | None = None     # a step of the verification funnel (plots), its short label
    funnel_rank: int = 50         # the step's place in the funnel (after own judge, robust, relaxed)

    @property
    def is_rate(self) -> bool:
        return self.header is not None


@dataclass
class StageInput:
    """What a stage sees: the rows so far (the criteria and the relaxation columns), the judged structures
    (None where unreadable), the task's criteria, the relaxer that relaxed the ``relaxed`` rows (None when no
    relaxation ran), the judge's predictors (``predict(structures) -> (band gaps eV, formation energies
    eV/atom)``), the folder of the relaxed cells (``<row>.cif``), a folder where a stage may cache its work
    (shared by the runs of a task: a crystal's record is found by its digest) and the run folder."""

    samples: pd.DataFrame
    structures: list = field(default_factory=list)
    criteria: Any = None
    relaxer: str | None = None
    options: dict[str, Any] = field(default_factory=dict)   # the stages' run options (e.g. dft_subset)
    predict: Callable[[list], tuple[Sequence[float], Sequence[float]]] | None = None
    relaxed_dir: Path | None = None
    cache_dir: Path | None = None
    folder: Path | None = None      # the run folder (a stage may keep resumable state there)

    def relaxed_structure(self, row: int):
        """The relaxed cell of ``row`` (None when there is none)."""
        from smoacs_bench.evaluation.packing import read_text

        text = None if self.relaxed_dir is None else read_text(Path(self.relaxed_dir) / f"{row}.cif")
        if text is None:
            return None
        from pymatgen.core import Structure

        return Structure.from_str(text, fmt="cif")

    def relaxed_rows(self) -> list[int]:
        if RELAXED_ROWS not in self.samples:
            return []
        flags = self.samples[RELAXED_ROWS].astype(str).str.lower().isin(["true", "1", "1.0"])
        return [int(i) for i in flags.to_numpy().nonzero()[0]]


def truthy(samples: pd.DataFrame, col: str) -> pd.Series:
    """A flag column as booleans (True, "True", 1 read as True; missing values and a missing column as False)."""
    if col not in samples:
        return pd.Series(False, index=samples.index)
    return samples[col].astype(str).str.lower().isin(["true", "1", "1.0"])


class StageUnavailable(RuntimeError):
    """Raised by :meth:`Stage.compute` when the stage cannot run here (a missing reference, an absent extra):
    its columns stay empty and the message (one line) goes to the caption."""


class Stage:
    """One step of the judge. Subclasses set the class attributes and implement :meth:`compute`."""

    name: ClassVar[str] = ""
    order: ClassVar[int] = 100          # position after the built-in steps; ties go by name
    requires: ClassVar[tuple[str, ...]] = ()
    columns: ClassVar[tuple[Column, ...]] = ()
    summary: ClassVar[str] = ""         # one sentence for the caption, before the settings
    option_keys: ClassVar[tuple[str, ...]] = ()   # run options (StageInput.options) that change its columns
    revision: ClassVar[int] = 0         # bumped when its computation changes: stored columns are then recomputed

    def settings(self) -> dict[str, Any]:
        """What keys this stage's cache: a change re-computes its columns."""
        return {}

    def option_settings(self, options: dict[str, Any]) -> dict[str, Any]:
        """What else keys this stage's cache under these run options (e.g. the calibration of an engine an option
        chose): added to its identity beside :meth:`settings` and the options themselves; default nothing."""
        return {}

    def describe(self, options: dict | None = None) -> str:
        """The settings in a phrase, for the caption (after :attr:`summary`); ``options``: the run options."""
        return ""

    def compute(self, batch: StageInput) -> pd.DataFrame:
        """The stage's columns for every row of ``batch.samples`` (same index, every declared column)."""
        raise NotImplementedError

    def preserve(self, batch: StageInput, stored: dict[str, Any]) -> int:
        """Called before the stage's columns in ``batch.samples`` (computed with its identity ``stored``) may be
        recomputed, while the run folder is as they left it: a stage may keep what they hold
        (e.g. costly results, in the run folder's state). Returns how many items it kept."""
        return 0

    def rows_of(self, samples: pd.DataFrame, column: Column) -> pd.DataFrame:
        if column.over == "all":
            return samples
        if column.over not in samples:
            return samples.iloc[0:0]
        return samples[samples[column.over].astype(str).str.lower().isin(["true", "1", "1.0"])]

    def summarise(self, samples: pd.DataFrame) -> dict[str, float]:
        """Rates of the rate columns over their rows (a row the stage could not judge counts as a failure);
        NaN when the stage left the column empty on every such row."""
        out: dict[str, float] = {}
        for flag in {c.over for c in self.columns if c.is_rate and c.over not in ("all", RELAXED_ROWS)}:
            rows = self.rows_of(samples, Column(flag, "", "", over=flag))
            out[f"n_{flag}"] = int(len(rows))
        for col in self.columns:
            if not col.is_rate:
                continue
            rows = self.rows_of(samples, col)
            values = rows[col.name] if col.name in rows else pd.Series(dtype=object)
            if not len(rows) or values.isna().all():
                out[col.name] = float("nan")
            else:
                out[col.name] = float(values.astype(str).str.lower().isin(["true", "1", "1.0"]).mean())
        return out

    def caption(self, rows: pd.DataFrame, notes: list[str]) -> str:
        """The caption's sentence on this stage for table ``rows`` (summary rows), given the distinct phrases it
        ran with (:meth:`describe`) or why it did not."""
        heads = [f"'{c.header}'" for c in self.columns if c.is_rate] + [f"'{c.distinct}'" for c in self.columns
                                                                         if c.distinct]
        text = self.summary or f"{', '.join(heads)}: stage {self.name}."
        return f"{text.rstrip('.')} ({'; '.join(notes)})."

    def report(self, samples: pd.DataFrame) -> list[str]:
        """Lines for the console after judging a handful of files (``evaluate``); none by default."""
        return []

    def empty(self, n: int) -> pd.DataFrame:
        """Every declared column empty (NaN), for a stage that could not run."""
        return pd.DataFrame({c.name: [float("nan")] * n for c in self.columns})
