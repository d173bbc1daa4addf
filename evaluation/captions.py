"""Table captions in the paper's words, with the thresholds of the tasks the rows come from.

The criteria's numbers (E_f threshold, distance, tolerance window, angles, ε) are read from the task
(:class:`~smoacs_bench.data.task.Task`), never written here; so are the task's own phrases.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from smoacs_bench.data.task import TASKS, Task

from .layouts import missing, row_label, to_frame


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


NEUTRALITY_RULES = {
    "pattern": "(a) neutral = the A, B and X sites (matched to the ideal perovskite positions whatever the "
               "origin) take the charges of one task pattern, [+2, +4, -2] or [+1, +2, -1], allowed by the "
               "paper's 'Ours' table; 'neut (any)' reports any neutral 'Ours' assignment (exact DP) instead",
    "any": "(a) neutral = some assignment of the paper's 'Ours' oxidation numbers sums to zero (exact DP)",
}
SELECTIONS = {
    "final": "'final' (SMOACS: the last step; TPE: the Pareto-front trial meeting most constraints, then the "
             "smallest L_bg + L_f)",
    "best": "'best' (the step or trial meeting the most criteria by the method's own predictors, then the "
            "smallest loss)",
}


def _protocol(df: pd.DataFrame, task: Task) -> list[str]:
    """Sentences naming the protocol of our rows: neutrality rule, selection, predictors, judges, seeds,
    samples, intervals, and the cross-judge's offset."""
    ours = df[df["source"] == "ours"]
    if ours.empty:
        return []
    out = [f"Protocol: {NEUTRALITY_RULES.get(task.neutrality, task.neutrality)}."]
    sels = [x for x in dict.fromkeys(ours["selection"].fillna("final"))]
    out.append("Selection rule: " + "; ".join(SELECTIONS.get(x, x) for x in sels) + ".")
    preds = sorted({p for p in ours.get("predictors", pd.Series(dtype=str)).dropna() if p})
    out.append("Every row is judged on the same predictors, and SMOACS and TPE optimise with them"
               + (f" ({'; '.join(preds)})" if preds else "") + ": MEGNet band gap (PBE fidelity) and MEGNet "
               "formation energy (MP-2018.6.1), not the paper's Crystalformer/ALIGNN.")
    if "method_note" in ours:   # one note per row label; notes that differ by target keep the first target's
        by_label: dict[str, list[str]] = {}
        for r in ours.to_dict("records"):
            note = r.get("method_note")
            if isinstance(note, str) and note.strip():
                by_label.setdefault(row_label(r), [])
                if note not in by_label[row_label(r)]:
                    by_label[row_label(r)].append(note)
        for notes in by_label.values():
            out.append(notes[0] if len(notes) == 1 else notes[0].rstrip(".") + " (the figures of the first target; "
                       "each run's config.json has its own).")
    if "judge_offset" in ours and ours["judge_offset"].notna().any():
        offs = ours.assign(label=[row_label(r) for r in ours.to_dict("records")]).groupby(
            "label", sort=False)["judge_offset"].apply(lambda s: pd.to_numeric(s, errors="coerce").mean()).dropna()
        out.append("'success (cross-judge)' re-judges (B) with an independent model, CDVAE's DimeNet++ trained on "
                   "MP-20 formation energies; its mean E_f minus MEGNet's on each row's proposals: "
                   + ", ".join(f"{k} {v:+.2f}" for k, v in offs.items()) + " eV/atom.")
        gaps = ours.assign(label=[row_label(r) for r in ours.to_dict("records")])
        gaps = gaps.assign(gap=gaps["success"].astype(float) - gaps["success_crossjudge"].astype(float))
        per = gaps.groupby("label", sort=False)["gap"].mean().dropna()
        if len(per):
            out.append("Exploitation gap (own-judge success minus cross-judged success, mean over rows): "
                       + ", ".join(f"{k} {v:+.3f}" for k, v in per.items()) + ".")
    from .stages import caption_sentences

    out.extend(caption_sentences(ours))
    if ours.filter(like="_set").notna().any().any():
        out.append("'unique' counts are distinct compositions pooled over a row's seeds.")
    seeds = sorted({int(x) for v in ours.get("seeds", pd.Series(dtype=str)).dropna() for x in str(v).split(",")
                    if x.strip().lstrip("-").isdigit()})
    n_seeds = sorted({int(v) for v in ours.get("n_seeds", pd.Series(dtype=float)).dropna()})
    if seeds:
        sizes = ours.assign(label=[row_label(r) for r in ours.to_dict("records")])
        per_row = list(dict.fromkeys(f"{r['label']} {int(r['n_samples'])} × {int(r.get('n_seeds') or 1)}"
                                     for r in sizes.to_dict("records") if not missing(r["n_samples"])))
        dof = sorted({n - 1 for n in n_seeds if n > 1})
        out.append(f"Seeds: {', '.join(map(str, seeds))}; rows (samples × seeds): {', '.join(per_row)}. "
                   "Intervals are 95 %: over seeds, mean ± t-interval"
                   + (f" ({' or '.join(map(str, dof))} degrees of freedom)" if dof else "")
                   + "; for a single run, a success rate with copy lineages (SMOACS's copy-and-mutate) resamples "
                   "whole lineages (cluster bootstrap; with no success, or all, the Wilson interval over its lineages), "
                   "other rates are Wilson intervals; a Wilson interval counts copy lineages, not copies, where a "
                   "run has them.")
    small = sorted({int(n) for n in ours["n_samples"] if not missing(n) and int(n) < 256})
    if small:
        out.append(f"Rows with {', '.join(map(str, small))} samples per seed are smaller than the paper's 256.")
    return out


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
    """The caption: a paragraph in the paper's words (criteria, sample count; diversity: the novelty reference), then
    a bulleted list of the protocol, the judge's stages and the departures from the paper, generated from the
    runs' config."""
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
    notes = _protocol(df, task)   # the protocol, the stages and every departure from the paper: one bullet each
    if with_paper or any(str(m).startswith("S(") for m in df["method"]):
        notes.append("S(Cry) and S(ALI) denote SMOACS utilizing the Crystalformer and ALIGNN models, "
                     "respectively.")
    if with_paper:
        notes.append("Rows marked (paper) reproduce the published values; '-' marks a value that is not "
                     "available.")
    text = " ".join(parts)
    return text + ("\n\nProtocol, judge stages and departures from the paper:\n\n" + "\n".join(f"- {n}" for n in notes)
                   if notes else "")
