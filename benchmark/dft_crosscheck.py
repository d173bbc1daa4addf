"""Every DFT check stored in the committed run folders computed again with a second DFT code: do two codes with
different basis sets and pseudopotentials (PySCF: Gaussians and GTH; GPAW: plane waves and PAW) agree on the gaps
and on which proposals are DFT-verified?

Each checked cell (the one the run's dft stage computed: CHGNet-relaxed or as proposed) is read from its run folder
and computed once per distinct crystal with the second engine at the run's k-mesh rule; its verdict uses the second
engine's own calibration (results/dft_calibration/<engine>), the same target window rule as the dft stage. Results
are cached in ``state.json`` by crystal and settings (a killed cross-check resumes). ``--fine-grid``: the same with
PySCF on its fine grid (140 Ha in a cell with Mg or F), beside GPAW's gaps: does the finer grid close the gap between
the two codes? Units: eV, seconds.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from smoacs_bench.evaluation.stages.dft import FINE  # PySCF on its fine grid: its calibration and folder

RUNS = Path("results/runs")
DEFAULT_OUT = "results/dft_crosscheck"
TIME_LIMIT = 600.0   # s per calculation of the second engine


def checked_cells(runs: Path = RUNS, tasks: list[str] | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """(one record per stored DFT check, skipped lines): a record names its run folder, row, method (the folder's
    name before ``_bg``), target, margin, the run's k-mesh rule, the stored (default engine's) result, and holds the
    cell computed (``_cell``: CHGNet-relaxed or as proposed)."""
    import pandas as pd
    from pymatgen.core import Structure

    from smoacs_bench.evaluation.packing import read_text
    from smoacs_bench.evaluation.stages.dft import ON_RELAXED, stored_checks

    recs, skipped = [], []
    for samples in sorted(runs.glob("*/*/samples.csv")):
        folder = samples.parent
        task = folder.parent.name
        if tasks and task not in tasks:
            continue
        s = pd.read_csv(samples, low_memory=False)
        checks = stored_checks(s)
        if checks.empty:
            continue
        summary = pd.read_csv(folder / "summary.csv").iloc[0]
        config = json.loads((folder / "config.json").read_text())
        key = ((config.get("physical") or {}).get("key") or {}).get("stages", {}).get("dft", {})
        for c in checks.to_dict("records"):
            i = int(c["row"])
            sub = "structures_relaxed" if c["on"] == ON_RELAXED else "structures"
            text = read_text(folder / sub / f"{i}.cif")
            if text is None:
                skipped.append(f"{folder}: row {i}: no {sub} cell stored")
                continue
            cell = Structure.from_str(text, fmt="cif")
            formula = s["formula"].iloc[i] if "formula" in s else cell.composition.reduced_formula
            recs.append({"task": task, "folder": folder.name, "method": folder.name.split("_bg")[0], "row": i,
                         "formula": str(formula), "target_bg": float(summary["target_bg"]),
                         "margin": float(summary["margin"]), "cell": c["on"],
                         "klength": float(key.get("dft_klength") or 0.0),
                         "time_limit": float(key["dft_time_limit"]) if key.get("dft_time_limit") is not None
                         else math.nan, "default_gap": c["gap"],
                         "default_converged": bool(c["converged"]), "default_ok": bool(c["ok"]),
                         "default_reason": c["reason"], "_cell": cell})
    return recs, skipped


def crosscheck(out: Path, engine: str = "gpaw", runs: Path = RUNS, tasks: list[str] | None = None, workers: int = 1,
               progress: bool = True, limit: int | None = None, fine_grid: bool = False) -> dict[str, Any]:
    """Compute every stored check again with ``engine`` (or, ``fine_grid``, with PySCF on its fine grid under each
    run's time limit, reusing what the task's stage cache and the run folder hold); write crosscheck.csv,
    crosscheck.md and parity.png to ``out``; return the headline figures."""
    import pandas as pd

    from smoacs_bench.evaluation.dft import DFTSettings, compute_gaps, get_engine
    from smoacs_bench.evaluation.dft_base import FINE_GRID
    from smoacs_bench.evaluation.io import atomic_write_text, write_csv
    from smoacs_bench.evaluation.stages import _cache
    from smoacs_bench.evaluation.stages.dft import (
        cached,
        calibration,
        calibration_name,
        corrected_gap,
        state_of,
    )

    recs, skipped = checked_cells(runs, tasks)
    if not recs:
        raise FileNotFoundError(f"no stored DFT checks under {runs}" + (f" for task {', '.join(tasks)}" if tasks else ""))
    cells: dict[str, Any] = {}
    out.mkdir(parents=True, exist_ok=True)
    state = out / "state.json"
    done = json.loads(state.read_text()) if state.is_file() else {}
    name, same, eng = engine, {}, get_engine(engine)
    for r in recs:
        # a second engine: TIME_LIMIT; PySCF on the fine grid: the run's own limit, as its dft stage would
        limit_s = TIME_LIMIT if not fine_grid else (
            DFTSettings.time_limit if math.isnan(r["time_limit"]) else r["time_limit"])
        settings = DFTSettings.for_engine(engine, klength=r["klength"], time_limit=limit_s,
                                          element_cutoffs=FINE_GRID if fine_grid else ())
        name = calibration_name(settings)
        cell = r.pop("_cell")
        r["digest"] = _cache.digest(cell, settings.for_cell(cell).identity())
        cells.setdefault(r["digest"], (cell, settings))
        r["same_settings"] = fine_grid and settings.for_cell(cell) == replace(settings, element_cutoffs=())
        if r["same_settings"]:   # nothing to compute again: the stored check is this grid's
            same[r["digest"]] = {"band_gap": r["default_gap"], "converged": r["default_converged"],
                                 "reason": r["default_reason"], "seconds": math.nan}
        elif fine_grid and r["digest"] not in done:   # the stage computes the same cells: its records count
            folder = runs / r["task"] / r["folder"]
            hit = (cached(runs / r["task"] / ".stage_cache" / "dft", r["digest"], cell, settings, eng)
                   or cached(state_of(folder), r["digest"], cell, settings, eng))
            if hit is not None:
                done[r["digest"]] = hit
    if fine_grid:   # what the stage caches held, kept with the cross-check (committed; the caches are not)
        atomic_write_text(state, json.dumps(done))
    # the cells PySCF verified first, then those it computed, then its failures: a partial cross-check holds the
    # checks that decide a verdict
    rank: dict[str, int] = {}
    for r in recs:
        rank[r["digest"]] = min(rank.get(r["digest"], 2), 0 if r["default_ok"] else 1 if r["default_converged"] else 2)
    todo = sorted((d for d in cells if d not in done and d not in same), key=lambda d: rank[d])
    if limit is not None:
        todo = todo[:limit]
    by_settings: dict[str, list[str]] = {}
    for d in todo:
        by_settings.setdefault(json.dumps([cells[d][1].identity(), cells[d][1].time_limit], sort_keys=True),
                               []).append(d)
    task_of = {r["digest"]: r["task"] for r in recs}
    for ds in by_settings.values():   # each result saved as it comes: a killed cross-check resumes
        def store(j: int, res, ds=ds) -> None:
            done[ds[j]] = res.record()
            atomic_write_text(state, json.dumps(done))
            if fine_grid:   # and where the task's dft stage looks first
                _cache.put(runs / task_of[ds[j]] / ".stage_cache" / "dft", ds[j], res.record())

        compute_gaps([cells[d][0] for d in ds], cells[ds[0]][1], workers, progress, on_result=store)
    cal = calibration(name)
    df = pd.DataFrame(recs)
    got = [same.get(d) or done.get(d, {}) for d in df["digest"]]
    df["gap"] = [g.get("band_gap", math.nan) for g in got]
    df["converged"] = [bool(g.get("converged")) for g in got]
    df["seconds"] = [g.get("seconds", math.nan) for g in got]
    df["reason"] = [g.get("reason", "not computed" if not g else "") for g in got]
    df["gap_corrected"] = [corrected_gap(g, cal) if isinstance(g, float) and math.isfinite(g) else math.nan
                           for g in df["gap"]]
    loo = 0.0 if cal is None else float(cal["loo_mae"])
    df["ok"] = df["converged"] & ((df["gap_corrected"] - df["target_bg"]).abs() <= df["margin"] + loo + 1e-12)
    figures = _figures(df, name, cal, skipped)
    figures["describe"] = DFTSettings.for_engine(engine, element_cutoffs=FINE_GRID if fine_grid else ()).describe()
    figures["limit"] = "each run's own time limit per calculation" if fine_grid else \
        f"{TIME_LIMIT:g} s per calculation"
    if fine_grid:
        figures["vs_gpaw"] = _against(df, Path(DEFAULT_OUT) / "crosscheck.csv")
    write_csv(df.drop(columns=["digest"]), out / "crosscheck.csv")
    atomic_write_text(out / "crosscheck.md", _markdown(df, figures))
    _plot(df, figures, out / "parity.png")
    return figures


def _stats(checks) -> dict[str, Any]:
    """The cross-check's figures over the stored checks ``checks`` (one task, or all): verdicts over all, the rest
    over the cells computed again (on the fine grid, a cell the rule leaves as it was is not)."""
    import numpy as np

    same = checks["same_settings"].astype(bool)
    df = checks[~same]
    both = df[df["default_converged"] & df["converged"] & df["default_gap"].notna() & df["gap"].notna()]
    both = both.drop_duplicates("digest")
    d = (both["gap"] - both["default_gap"]).to_numpy(dtype=float)
    distinct = df.drop_duplicates("digest")
    pending = distinct["reason"] == "not computed"
    return {"checks": int(len(checks)), "distinct": int(checks["digest"].nunique()),
            "computed": int(distinct["converged"].sum()),
            "same_settings": int(checks.loc[same, "digest"].nunique()),
            "pending": int(pending.sum()), "failed": int((~distinct["converged"] & ~pending).sum()),
            "both": int(len(both)),
            "mae": float(np.abs(d).mean()) if len(d) else math.nan,
            "signed": float(d.mean()) if len(d) else math.nan,
            "within_025": float((np.abs(d) <= 0.25).mean()) if len(d) else math.nan,
            "corr": float(np.corrcoef(both["gap"], both["default_gap"])[0, 1])
            if len(d) > 2 and both["gap"].std() > 0 and both["default_gap"].std() > 0 else math.nan,
            "metal_disagree": int(((both["gap"] <= 0.05) != (both["default_gap"] <= 0.05)).sum()),
            "seconds_median": float(distinct.loc[distinct["converged"], "seconds"].median()),
            "seconds_total": float(distinct["seconds"].fillna(0).sum()),
            "default_ok": int(checks["default_ok"].sum()), "ok": int(checks["ok"].sum()),
            "both_ok": int((checks["default_ok"] & checks["ok"]).sum())}


def _figures(df, engine: str, cal: dict | None, skipped: list[str]) -> dict[str, Any]:
    return {"engine": engine, **_stats(df), "tasks": {t: _stats(g) for t, g in df.groupby("task", sort=True)},
            "cal": None if cal is None else {k: cal[k] for k in ("slope", "intercept", "loo_mae", "n")},
            "skipped": skipped}


def _against(df, path: Path) -> list[dict[str, Any]]:
    """Both PySCF grids against GPAW (the cross-check in ``path``) on the distinct cells all three converged, by
    what the cell holds (Mg; F without Mg; neither): MAE of each against GPAW, eV."""
    import pandas as pd
    from pymatgen.core import Composition

    if not path.is_file():
        return []
    g = pd.read_csv(path, usecols=["task", "folder", "row", "gap", "converged"])
    g = g.rename(columns={"gap": "gpaw_gap", "converged": "gpaw_converged"})
    m = df.merge(g, on=["task", "folder", "row"], how="inner").drop_duplicates("digest")
    m = m[m["default_converged"] & m["converged"] & (m["gpaw_converged"].astype(str).str.lower() == "true")
          & m[["default_gap", "gap", "gpaw_gap"]].notna().all(axis=1)]

    def kind(formula: str) -> str:
        els = {e.symbol for e in Composition(formula).elements}
        return "Mg" if "Mg" in els else "F, no Mg" if "F" in els else "neither"

    m = m.assign(kind=[kind(f) for f in m["formula"]])
    out = []
    for (task, k), sub in m.groupby(["task", "kind"], sort=True):
        out.append({"task": task, "kind": k, "n": int(len(sub)),
                    "default_mae": float((sub["default_gap"] - sub["gpaw_gap"]).abs().mean()),
                    "mae": float((sub["gap"] - sub["gpaw_gap"]).abs().mean()),
                    "default_signed": float((sub["gpaw_gap"] - sub["default_gap"]).mean()),
                    "signed": float((sub["gpaw_gap"] - sub["gap"]).mean())})
    return out


def _markdown(df, f: dict[str, Any]) -> str:
    from smoacs_bench.evaluation.dft_base import FINE_GRID

    eng = f["engine"]
    cal = f["cal"]
    fine = eng == FINE
    corr = ("uncalibrated: the raw gap, window ± margin" if cal is None else
            f"its own calibration, corrected gap = {cal['slope']:.3f} × PBE {cal['intercept']:+.3f} eV, window widened "
            f"by its leave-one-out MAE {cal['loo_mae']:.2f} eV (results/dft_calibration/{eng})")
    command = ("smoacs-bench calibrate dft-crosscheck --fine-grid --workers 2" if fine else
               f"smoacs-bench calibrate dft-crosscheck --engine {eng} --workers 2")
    title = ("**Every stored DFT check computed again by PySCF on the fine grid**" if fine else
             "**Every stored DFT check computed again with a second DFT code**")
    lines = [f"{title} (generated by the command below)", "",
             f"Command: `{command}`. {'Fine grid' if fine else 'Second engine'}: "
             f"{f['describe']}; here on the cell each stored check computed (CHGNet-relaxed or "
             f"as proposed), each run's k-mesh rule, {f['limit']}; "
             f"verdict by {corr}. The stored checks are the default engine's (PySCF) in the run folders under "
             "results/runs; one calculation per distinct crystal" + (" (a cell without "
             f"{' or '.join(sorted({el for el, _ in FINE_GRID}))} has the same settings on both grids: its stored "
             "check counts)." if fine else "."), "",
             *[line for task, t in f["tasks"].items() for line in _task_lines(task, t, eng)],
             *(["", "Both PySCF grids against GPAW (results/dft_crosscheck) on the distinct cells all three "
                "converged:", "", "| task | cell holds | cells | PySCF 70 Ha vs GPAW: MAE (eV) | mean GPAW − PySCF | "
                "fine grid vs GPAW: MAE (eV) | mean GPAW − fine |", "|---|---|---:|---:|---:|---:|---:|",
                *[f"| {a['task']} | {a['kind']} | {a['n']} | {a['default_mae']:.2f} | {a['default_signed']:+.2f} | "
                  f"{a['mae']:.2f} | {a['signed']:+.2f} |" for a in f.get("vs_gpaw") or []]]
               if fine and f.get("vs_gpaw") else []),
             *([f"- Skipped: {len(f['skipped'])} checks without a stored cell."] if f["skipped"] else []), "",
             "Per task, method and target (checks counted as stored: a crystal two tables share counts in each run "
             "folder that holds it):", "",
             f"| task | method | target (eV) | checks | both computed | gap MAE (eV) | verified by {_base(eng)} | "
             f"verified by {eng} | by both |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for (task, method, target), g in df.groupby(["task", "method", "target_bg"], sort=True):
        both = g[g["default_converged"] & g["converged"] & g["default_gap"].notna() & g["gap"].notna()]
        mae = (both["gap"] - both["default_gap"]).abs().mean() if len(both) else math.nan
        lines.append(f"| {task} | {method} | {target:.2f} | {len(g)} | {len(both)} | "
                     f"{'-' if math.isnan(mae) else f'{mae:.2f}'} | {int(g['default_ok'].sum())} | {int(g['ok'].sum())} | "
                     f"{int((g['default_ok'] & g['ok']).sum())} |")
    verified = df[df["default_ok"] | df["ok"]].drop_duplicates(["digest", "target_bg", "margin"])
    lines += ["", "Every cell either engine verifies (distinct per crystal and window):", "",
              f"| task | method | target (eV) | formula | cell | {_base(eng)} gap | " + eng + " gap | " + eng + " corrected | "
              "verified by |", "|---|---|---:|---|---|---:|---:|---:|---|"]
    for r in verified.sort_values(["task", "target_bg", "method", "formula"]).to_dict("records"):
        by = " and ".join(n for n, v in ((_base(eng), r["default_ok"]), (eng, r["ok"])) if v)
        lines.append(f"| {r['task']} | {r['method']} | {r['target_bg']:.2f} | {r['formula']} | {r['cell']} | "
                     f"{_num(r['default_gap'])} | {_num(r['gap'])} | {_num(r['gap_corrected'])} | {by} |")
    lines += ["", f"![{eng} vs {_base(eng)} band gap of every stored check](parity.png)", ""]
    return "\n".join(lines)


def _base(eng: str) -> str:
    """The stored checks' label beside ``eng``'s."""
    return "PySCF 70 Ha" if eng == FINE else "PySCF"


def _task_lines(task: str, t: dict[str, Any], eng: str) -> list[str]:
    pending = (f"; {t['pending']} not computed yet (the same command goes on, the cells PySCF verified first)"
               if t["pending"] else "")
    from smoacs_bench.evaluation.dft_base import FINE_GRID

    listed = " nor ".join(sorted({el for el, _ in FINE_GRID}, key=lambda e: e != "Mg"))
    kept = (f"; {t['same_settings']} hold neither {listed}, so their stored check is the fine grid's too, and "
            f"{t['distinct'] - t['same_settings']} are computed again" if t.get("same_settings") else "")
    return [f"- **{task}**: {t['checks']} stored checks, {t['distinct']} distinct cells{kept}; {eng} computed "
            f"{t['computed']} and failed on {t['failed']} (median {_num(t['seconds_median'], 0)} s, "
            f"{t['seconds_total'] / 3600:.2f} CPU hours){pending}.",
            f"  Gaps, on the {t['both']} cells both engines converged: MAE {t['mae']:.2f} eV, mean signed "
            f"{t['signed']:+.2f} eV ({eng} − {_base(eng)}), {100 * t['within_025']:.0f} % within 0.25 eV, correlation "
            f"{t['corr']:.3f}; {t['metal_disagree']} where one engine finds a metal (≤ 0.05 eV) and the other a gap. "
            f"DFT-verified: {t['default_ok']} checks by {_base(eng)}, {t['ok']} by {eng}, {t['both_ok']} by both."]


def _num(x: Any, digits: int = 2) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{float(x):.{digits}f}"


def _plot(df, f: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    moved = ~df["same_settings"].astype(bool)   # the cells computed again
    both = df[moved & df["default_converged"] & df["converged"]].drop_duplicates("digest")
    fig, ax = plt.subplots(figsize=(5, 4.5))
    top = max(1.0, float(max(both["gap"].max(), both["default_gap"].max())) + 0.3) if len(both) else 7.0
    ax.plot([0, top], [0, top], color="k", lw=0.8)
    for k, (task, g) in enumerate(both.groupby("task")):
        ax.scatter(g["default_gap"], g["gap"], s=14, color=f"C{k}", alpha=0.7, label=f"{task} ({len(g)})")
    ax.set_xlabel(f"{_base(f['engine'])} PBE gap (eV), as stored")
    ax.set_ylabel(f"{f['engine']} PBE gap (eV)")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    what = "Mg, F cells on two grids" if f["engine"] == FINE else "two codes"
    ax.set_title(f"Stored checks, {what}: MAE {f['mae']:.2f} eV, {f['both_ok']} of {f['default_ok']} "
                 "verified checks confirmed", fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
