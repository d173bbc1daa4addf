"""Table captions in the paper's words, with the thresholds of the tasks the rows come from.

The criteria's numbers (E_f threshold, distance, tolerance window, angles, ε) are read from the task
(:class:`~smoacs_bench.data.task.Task`), never written here; so are the task's own phrases.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from smoacs_bench.data.task import TASKS, Task

from .layouts import missing, to_frame


def _num(x: float) -> str:
    return repr(float(x))


def _deg(x: float) -> str:
    return f"{float(x):g}°"


def _criteria_c(task: Task) -> str:
    return ("(C) is achieved when two criteria are met simultaneously: (a) the structure is electrically neutral "
            f"(neut), and (b) all interatomic distances are greater than {_num(task.min_dist)} Å "
            f"({_num(task.min_dist)}Å).")


def _criteria_d(task: Task) -> str:
    lo, hi = task.tolerance_range
    alo, ahi = task.judged_angle_range
    return ("(D) is achieved when three criteria are met simultaneously: (c) the tolerance factor t is between "
            f"{_num(lo)} and {_num(hi)} (tole), (d) crystal axis angles are from {_deg(alo)} to {_deg(ahi)} "
            f"(angles), and (e) coordinates are within ± {_num(task.coord_eps)} of typical perovskite structure "
            "coordinates (coord).")


def _ab(task: Task) -> str:
    return ("(A) the band gap is optimized within the target range, (B) the formation energy is below "
            f"{_num(task.ef_max)} eV")


def _samples_phrase(df: pd.DataFrame) -> str:
    ns = sorted({int(n) for n in df["n_samples"] if not missing(n)})
    if not ns:
        return "Each proposed material is evaluated with all evaluation metrics and the results are averaged."
    count = f"{ns[0]} samples" if len(ns) == 1 else f"{', '.join(map(str, ns[:-1]))} or {ns[-1]} samples per row"
    return f"Each proposed material is evaluated with all evaluation metrics and the results are averaged over {count}."


def _margins_phrase(df: pd.DataFrame) -> str:
    ms = sorted({float(m) for m in df["margin"] if not missing(m)})
    return " or ".join(f"± {m:.2f} eV" for m in ms) if ms else "± margin"


def _caption_task(layout: str, df: pd.DataFrame) -> Task:
    """The task whose thresholds and phrases the caption uses: the layout's own task when it is a
    perovskite one, else the largest perovskite task among the rows, else the first task of the rows."""
    present = [t for t in TASKS.values() if t.name in set(df["task"])]
    own = [t for t in TASKS.values() if t.table_layout == layout]
    perov = [t for t in own + present if t.is_perovskite]
    if perov:
        return max(perov, key=lambda t: t.supercell)
    return (present or own or list(TASKS.values()))[0]


def caption_for(
    layout: str, summaries: pd.DataFrame | Iterable[Mapping[str, Any]], with_paper: bool = False
) -> str:
    """One-paragraph caption in the paper's words: criteria, sample count and (diversity) novelty reference."""
    df = to_frame(summaries)
    task = _caption_task(layout, df)
    target = f"The target range is the target band gap {_margins_phrase(df)}."
    if layout == "diversity":
        refs = sorted({r for r in df["novelty_reference"] if r})
        novelty = (
            f"absent from the reference set ({'; '.join(refs)})" if refs else
            "absent from a reference database (no novelty reference was given, so novelty is not reported)"
        )
        parts = [
            "The diversity of the proposed materials. The 'success rate' is the same success rate as in the "
            f"{'perovskite' if task.is_perovskite else 'band-gap'} table. The 'unique rate' refers to the "
            "probability of materials with unique elemental combinations, regardless of the success. The 'unique "
            "rate in success' represents the proportion of materials with unique elemental combinations among the "
            "successfully optimized materials (k/n; '-' when there is no success). The 'unique and novel rate "
            "in success' indicates the proportion of materials whose elemental combinations are unique and "
            f"{novelty} among the successfully optimized materials.",
            _samples_phrase(df),
        ]
    elif task.is_perovskite:
        parts = [
            f"Experiments on optimizing various band gaps while {task.caption_subject}. The \"success rate\" is the "
            f"probability of simultaneously satisfying four criteria: {_ab(task)}, (C) the crystal structure is "
            f"valid, and (D) approximating a valid perovskite structure. {_criteria_c(task)} {_criteria_d(task)}",
            target,
            _samples_phrase(df),
        ]
        if task.table_layout == layout and task.caption_note:
            parts.append(task.caption_note)
    else:
        parts = [
            "Experiments on optimizing band gaps. The success rate is the probability of simultaneously "
            f"satisfying three conditions: {_ab(task)}, and (C) the crystal structure is valid. {_criteria_c(task)}",
            target,
            _samples_phrase(df),
        ]
    if layout != "diversity":
        parts.append("Higher scores are better across all metrics.")
    if with_paper or any(str(m).startswith("S(") for m in df["method"]):
        parts.append("S(Cry) and S(ALI) denote SMOACS utilizing the Crystalformer and ALIGNN models, "
                     "respectively.")
    if with_paper:
        parts.append("Rows marked (paper) reproduce the published values; '-' marks a value that is not "
                     "available.")
    return " ".join(parts)
