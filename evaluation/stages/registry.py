"""The ordered registry of the judge's stages, and what tables, captions and the CLI read from it.

Every module of this package other than ``base`` and ``registry`` is imported once and each :class:`Stage`
subclass it defines (with a ``name``) is registered; so is each entry point of the group
``smoacs_bench.stages``. Adding a stage is adding one file.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import warnings
from dataclasses import replace
from functools import cache
from typing import Any

import pandas as pd

from .base import BUILT_IN, Column, Stage, StageInput, StageUnavailable

ENTRY_POINT_GROUP = "smoacs_bench.stages"
NOTE_PREFIX = "stage_"   # summary.csv: the phrase each stage ran with, or why it did not
SKIP = "skip_stages"     # run option: names of stages left out on purpose (``--skip-stages``)
SKIPPED = "skipped on request (--skip-stages)"


def _stage_classes() -> list[type[Stage]]:
    package = __package__
    path = sys.modules[package].__path__
    found: list[type[Stage]] = []
    for info in sorted(pkgutil.iter_modules(path), key=lambda m: m.name):
        if info.name in ("base", "registry") or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package}.{info.name}")
        found += [obj for obj in vars(module).values()
                  if isinstance(obj, type) and issubclass(obj, Stage) and obj.name and obj.__module__ == module.__name__]
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as err:  # noqa: BLE001 - a broken plugin is reported, the judge goes on
            print(f"stage plugin {ep.name} skipped: {type(err).__name__}: {err}", file=sys.stderr)
            continue
        if isinstance(obj, type) and issubclass(obj, Stage) and obj.name:
            found.append(obj)
    return found


@cache
def stages() -> tuple[Stage, ...]:
    """Every registered stage, each after the stages it requires (then by ``order``, then by name)."""
    classes = {cls.name: cls for cls in _stage_classes()}
    placed: list[str] = []
    pending = sorted(classes.values(), key=lambda c: (c.order, c.name))
    while pending:
        ready = [c for c in pending if all(r in BUILT_IN or r in placed for r in c.requires)]
        if not ready:
            names = ", ".join(f"{c.name} (needs {', '.join(c.requires)})" for c in pending)
            raise ValueError(f"judge stages with unmet or circular requirements: {names}")
        placed.append(ready[0].name)
        pending.remove(ready[0])
    return tuple(classes[n]() for n in placed)


def get_stage(name: str) -> Stage:
    for s in stages():
        if s.name == name:
            return s
    raise KeyError(f"unknown judge stage {name!r}; known: {', '.join(s.name for s in stages())}")


def columns() -> list[Column]:
    """Every column the stages add, in stage order."""
    return [c for s in stages() for c in s.columns]


def rate_columns() -> list[Column]:
    return [c for c in columns() if c.is_rate]


def table_columns() -> list[tuple[str, str]]:
    """(summary key, header) of the stages' rates and pooled distinct counts, for the metric tables."""
    out: list[tuple[str, str]] = []
    for c in columns():
        if c.is_rate:
            out.append((c.name, str(c.header)))
        if c.distinct:
            out.append((f"n_unique_{c.name}", c.distinct))
    return out


def funnel_steps() -> list[tuple[str, str]]:
    """(rate key, short label) of the stages' funnel steps, in funnel order."""
    steps = sorted((c for c in rate_columns() if c.funnel), key=lambda c: c.funnel_rank)
    return [(c.name, str(c.funnel)) for c in steps]


def relaxed_keys() -> tuple[str, ...]:
    """Rates taken over the relaxed proposals."""
    return tuple(c.name for c in rate_columns() if c.over == "relaxed")


def subset_units() -> dict[str, str]:
    """{rate: its count column in summary.csv} for rates over a stage's own subset (not all, not the relaxed)."""
    return {c.name: f"n_{c.over}" for c in rate_columns() if c.over not in ("all", "relaxed")}


def distinct_flags() -> dict[str, str]:
    """{pooled count key: the flag column whose distinct compositions it counts}."""
    return {f"n_unique_{c.name}": c.name for c in columns() if c.distinct}


def identity(options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every stage's settings, the run options it reads (those given: an option a stage gained later leaves the
    identities computed before it as they were), its revision and its columns, keyed by its name: what a run
    folder's stage columns were computed with (a change to any re-computes them)."""
    options = options or {}

    def plain(value: Any) -> Any:   # a settings object (RelaxSettings, ...) by its identity
        return value.identity() if hasattr(value, "identity") else value

    skipped = set(options.get(SKIP) or ())
    return {s.name: {**s.settings(), **{k: plain(options[k]) for k in s.option_keys if options.get(k) is not None},
                     **s.option_settings(options),
                     **({"revision": s.revision} if s.revision else {}),
                     **({"skipped": True} if s.name in skipped else {}),
                     "columns": [c.name for c in s.columns]} for s in stages()}


def run_stages(batch: StageInput, progress: bool = False, previous: dict[str, Any] | None = None,
               previous_notes: dict[str, str] | None = None, reuse: bool = True
               ) -> tuple[pd.DataFrame, dict[str, str]]:
    """Every stage's columns on ``batch`` (each stage sees the columns of the stages before it) and a note per
    stage: its settings phrase, or 'not run: <reason>'. A stage that cannot run leaves its columns empty.

    ``previous`` (:func:`identity` of the options ``batch.samples``' stage columns were computed with) and
    ``previous_notes`` (their notes) keep a stage's columns as they are when its identity is unchanged, it ran
    then, its columns are all there and every stage it requires was kept too: nothing is recomputed for
    nothing. ``reuse=False`` (``--force``) recomputes every stage, but each stage still preserves what the
    columns ``previous`` describes hold (:meth:`Stage.preserve`) before they are replaced."""
    n = len(batch.samples)
    added: list[pd.DataFrame] = []
    notes: dict[str, str] = {}
    current = identity(batch.options) if previous is not None else {}
    previous_notes = previous_notes or {}
    kept: set[str] = set(BUILT_IN)
    samples = batch.samples.drop(columns=[c.name for c in columns() if c.name in batch.samples])
    for s in stages():   # what columns that may be replaced hold, while the folder is as they left it
        if previous and previous.get(s.name):
            s.preserve(batch, previous[s.name])
    for s in stages():
        names = [c.name for c in s.columns]
        note = str(previous_notes.get(s.name) or "")
        if (reuse and previous is not None and previous.get(s.name) == current.get(s.name) and note
                and not note.startswith("not run") and all(c in batch.samples for c in names)
                and all(r in kept for r in s.requires)):
            part = batch.samples[names].copy()
            notes[s.name] = note
            kept.add(s.name)
        else:
            view = replace(batch, samples=samples)
            try:
                if s.name in (batch.options.get(SKIP) or ()):
                    raise StageUnavailable(SKIPPED)
                with warnings.catch_warnings():   # pymatgen's element data warnings are not the judge's business
                    warnings.simplefilter("ignore")
                    part = s.compute(view)
                notes[s.name] = s.describe(batch.options)
            except StageUnavailable as err:
                part = s.empty(n)
                notes[s.name] = f"not run: {err}"
                if progress and not str(err).startswith(("not asked for", SKIPPED)):
                    print(f"judge stage {s.name} not run: {err}", file=sys.stderr)
        part = part.reindex(columns=names)
        part.index = samples.index
        added.append(part)
        samples = pd.concat([samples, part], axis=1)
    return (pd.concat(added, axis=1) if added else pd.DataFrame(index=batch.samples.index)), notes


def summarise(samples: pd.DataFrame, notes: dict[str, str] | None = None) -> dict[str, Any]:
    """summary.csv's entries of the stages: each rate, each pooled distinct count of this run, the notes."""
    from smoacs_bench.evaluation.diversity import combination_key

    out: dict[str, Any] = {}
    for s in stages():
        out.update(s.summarise(samples))
        if notes is not None:
            out[f"{NOTE_PREFIX}{s.name}"] = notes.get(s.name, "")
    for key, flag in distinct_flags().items():
        out[key] = len(distinct_compositions(samples, flag, combination_key)) if flag in samples else float("nan")
    return out


def distinct_compositions(samples: pd.DataFrame, flag: str, key=None) -> set[str]:
    """The distinct elemental combinations (unreduced compositions) of the rows flagged True in ``flag``."""
    if flag not in samples or "formula" not in samples:
        return set()
    ok = samples[flag].astype(str).str.lower().isin(["true", "1", "1.0"])
    formulas = [f for f in samples.loc[ok, "formula"] if isinstance(f, str) and f]
    if key is None:
        from smoacs_bench.evaluation.diversity import combination_key as key
    return {key(f) for f in formulas}


def caption_sentences(rows: pd.DataFrame) -> list[str]:
    """One sentence per stage whose columns the rows carry: what it adds, its settings or why it did not run."""
    out = []
    for s in stages():
        note_col = f"{NOTE_PREFIX}{s.name}"
        if note_col not in rows:
            continue
        notes = list(dict.fromkeys(str(v) for v in rows[note_col].dropna() if str(v).strip() and str(v) != "nan"))
        if notes:
            out.append(s.caption(rows, _naming_rows(rows, note_col, notes)))
    return out


def _naming_rows(rows: pd.DataFrame, note_col: str, notes: list[str]) -> list[str]:
    """``notes``, a 'not run: <reason>' that only some rows carry while others ran naming those rows (a table
    whose DFT checks ``--dft-rows`` limits, for instance)."""
    if "method" not in rows or all(n.startswith("not run") for n in notes):
        return notes
    out = []
    for n in notes:
        if n.startswith("not run"):
            labels = ", ".join(dict.fromkeys(str(m) for m in rows.loc[rows[note_col].astype(str) == n, "method"]))
            n = f"not run for {labels}: {n.removeprefix('not run: ')}"
        out.append(n)
    return out


def notes_of(summary: pd.Series | dict[str, Any]) -> dict[str, str]:
    """{stage: its note} stored in a summary.csv row."""
    return {s.name: str(summary.get(f"{NOTE_PREFIX}{s.name}")) for s in stages()
            if isinstance(summary.get(f"{NOTE_PREFIX}{s.name}"), str)}


def report_lines(samples: pd.DataFrame) -> list[str]:
    """Every stage's console lines on judged files (``evaluate``)."""
    return [line for s in stages() for line in s.report(samples)]


def headline(summary: dict[str, Any]) -> str:
    """The stages' rates in ``summary`` as "header value" pairs, for one console line."""
    return ", ".join(f"{c.header} {float(summary[c.name]):.3f}" for c in rate_columns()
                     if isinstance(summary.get(c.name), int | float) and summary[c.name] == summary[c.name])
