"""DFT verification: the PBE band gap of a seeded few of each run's successes (``--dft-subset k``).

Which proposals: k drawn with a fixed seed among the successes after relaxation; where a run has fewer, the rest
among the relaxed proposals that are own-judge successes ("relaxed": the judge kept a relaxed cell; a relaxation
that failed keeps none), then the own-judge successes as proposed, then (a run
with too few successes, such as the reference crystals) the relaxed proposals, then all it proposed; never a
proposal with an element the engine has no basis for (``dft_pool`` says which pool each came from, ``dft_on``
which cell was computed: "relaxed" = CHGNet's, or "proposed"). Engine and settings:
:mod:`smoacs_bench.evaluation.dft`. ``dft_gap_corrected`` applies the linear correction of the engine's
calibration against MP's PBE gaps (``smoacs-bench calibrate dft``); ``dft_ok``: the corrected gap within the target
± (margin + the correction's leave-one-out MAE). Each calculation is cached by crystal and settings (a killed run
resumes; a crystal is computed once for every run and table): in the task's stage cache (this machine's) and in
the run folder's ``dft_state/`` (packed into ``dft_state.zip``, committed with the folder), where the checks a
folder's columns hold also go before another draw replaces them (:meth:`DFTStage.preserve`): a re-render with
another draw, or after another table re-judged a shared folder, computes no check again, on any machine.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from . import _cache
from .base import Column, Stage, StageInput, StageUnavailable, truthy
from .relaxation import SUCCESS_RELAXED, kept_cell

SEED = 0
CALIBRATION_ENV = "SMOACS_DFT_CALIBRATION"
CALIBRATION = Path(__file__).resolve().parents[2] / "results" / "dft_calibration" / "correction.json"
STATE_DIR = "dft_state"   # in a run folder: the records of its checks, by crystal and settings


def dft_settings(options: dict | None = None):
    """The engine's settings for these run options: the defaults, with ``dft_lattice`` points of a lattice scan,
    the k-mesh's length rule ``dft_klength`` (Å; 0: the fixed mesh) and ``dft_time_limit`` (s per calculation; 0:
    none; absent: the default) and ``dft_fine_grid`` (PySCF's per-element cutoffs, :data:`FINE_GRID`)."""
    from smoacs_bench.evaluation.dft_base import FINE_GRID, DFTSettings

    o = options or {}
    limit = o.get("dft_time_limit")
    return DFTSettings.for_engine(
        o.get("dft_engine") or "pyscf", lattice_scan=int(o.get("dft_lattice") or 0),
        klength=float(o.get("dft_klength") or 0.0), time_limit=DFTSettings.time_limit if limit is None else float(limit),
        element_cutoffs=FINE_GRID if o.get("dft_fine_grid") else ())


FINE = "fine-grid"   # the calibration of PySCF on the fine grid (results/dft_calibration/fine-grid)


def calibration_name(settings) -> str:
    """Which calibration corrects gaps computed with ``settings``: the engine's, or PySCF's on the fine grid."""
    return FINE if settings.engine == "pyscf" and settings.element_cutoffs else settings.engine


def _correction(cal: dict | None) -> dict | None:
    """What of a calibration changes the verdicts (slope, intercept, leave-one-out MAE): a stage identity's part."""
    return None if cal is None else {k: cal.get(k) for k in ("slope", "intercept", "loo_mae")}


def calibration(engine: str = "pyscf") -> dict | None:
    """``engine``'s correction (slope, intercept, loo_mae in eV, the settings it was fitted with), or None: the
    default engine's in results/dft_calibration, another's (or :data:`FINE`'s, PySCF on the fine grid) in its folder
    below it (or the file ``$SMOACS_DFT_CALIBRATION``)."""
    default = CALIBRATION if engine == "pyscf" else CALIBRATION.parent / engine / CALIBRATION.name
    path = Path(os.environ.get(CALIBRATION_ENV) or default)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _flag(samples: pd.DataFrame, col: str) -> np.ndarray:
    return truthy(samples, col).to_numpy()


GAP_CORRECTED = "dft_gap_corrected"
ON_RELAXED, ON_PROPOSED = "relaxed", "proposed"   # dft_on: the cell computed
# where the check is drawn, the first with any row: a run without successes (the reference crystals) is still
# checked, on what it proposed, so every row has a DFT-verified rate
POOLS = ("relaxed successes", "relaxed own-judge successes", "own-judge successes", "relaxed proposals",
         "proposals")
PROPOSED_POOLS = ("own-judge successes", "proposals")


class DFTStage(Stage):
    name = "dft"
    order = 60
    revision = 3   # 1: a metal stays a metal under the correction; 2: the relaxed pools need a relaxed cell;
    # 3: ... one that was stored (an exploded relaxation records a final energy but keeps no cell)
    requires = ("relaxation",)
    option_keys = ("dft_subset", "dft_lattice", "dft_klength", "dft_time_limit", "dft_engine", "dft_fine_grid")
    columns = (
        Column("dft_checked", "", "drawn for a DFT check"),
        Column("dft_on", "", "the cell computed: relaxed (CHGNet's) or proposed"),
        Column("dft_pool", "", "which proposals the check was drawn among (see POOLS)"),
        Column("dft_band_gap", "eV", "PBE band gap (raw)"),
        Column(GAP_CORRECTED, "eV", "PBE band gap with the calibration's linear correction"),
        Column("dft_direct_gap", "eV", "smallest direct PBE gap"),
        Column("dft_converged", "", "the SCF converged"),
        Column("dft_seconds", "s", "wall time of the calculation (one core)"),
        Column("dft_reason", "", "why the calculation gave no gap"),
        Column("dft_ok", "", "the corrected PBE gap within the target ± (margin + the calibration's LOO MAE)",
               header="DFT-verified", over="dft_checked", funnel="DFT-verified", funnel_rank=40),
    )
    summary = ("'DFT-verified': share of the DFT-checked proposals (a seeded few per run, successes after "
               "relaxation first, then the other pools in order; a calculation that failed counts as not verified; "
               "counts per row in dft.md) whose PBE gap, corrected by the engine's calibration, lies within the "
               "target ± (margin + the calibration's leave-one-out MAE)")

    def settings(self) -> dict:
        from smoacs_bench.evaluation.dft import DFTSettings

        cal = calibration()
        return {"dft": DFTSettings().identity(), "seed": SEED, "calibration": _correction(cal)}

    def option_settings(self, options: dict) -> dict:
        """Another engine's calibration (:meth:`settings` holds the default engine's): a change to its
        correction.json re-judges the folders that engine checked."""
        name = calibration_name(dft_settings(options))
        if name == "pyscf":
            return {}
        return {"engine_calibration": _correction(calibration(name))}

    def describe(self, options: dict | None = None) -> str:
        settings = dft_settings(options)
        name = calibration_name(settings)
        cal = calibration(name)
        where = "results/dft_calibration" + ("" if name == "pyscf" else f"/{name}")
        corr = (f"uncalibrated (no {where}/correction.json): the raw gap, window ± margin"
                if cal is None else f"corrected gap = {cal['slope']:.3f} × PBE {'−' if cal['intercept'] < 0 else '+'} "
                f"{abs(cal['intercept']):.3f} eV, window "
                f"widened by its leave-one-out MAE {cal['loo_mae']:.2f} eV (fitted on {cal['n']} known cubic ABX3 against "
                f"MP's PBE gaps, {where})")
        k = int((options or {}).get("dft_subset") or 0)
        drawn = f"{k} per run, successes first ({' > '.join(POOLS)}); " if k else ""
        return f"{drawn}{settings.describe()}; {corr}"

    def compute(self, batch: StageInput) -> pd.DataFrame:
        from smoacs_bench.evaluation.dft import get_engine

        k = int(batch.options.get("dft_subset") or 0)
        if k <= 0:
            raise StageUnavailable("not asked for (--dft-subset 0)")
        settings = dft_settings(batch.options)
        why = get_engine(settings.engine).unavailable()
        if why:
            raise StageUnavailable(why)
        s = batch.samples
        n = len(s)
        pool_of = dict(choose(s, k, usable_rows(s, get_engine(settings.engine))))
        picked = sorted(pool_of)
        on_of = {i: cell_of(p) for i, p in pool_of.items()}
        out = self.empty(n)
        for col in ("dft_checked", "dft_converged", "dft_ok"):
            out[col] = out[col].astype(object)
        out["dft_on"] = ""
        out["dft_pool"] = ""
        out["dft_reason"] = ""
        out["dft_checked"] = False
        cells = {i: (batch.relaxed_structure(i) if on_of[i] == ON_RELAXED else batch.structures[i]) for i in picked}
        folder = None if batch.cache_dir is None else batch.cache_dir / self.name
        records = cached_or_computed(cells, settings, folder, int(batch.options.get("dft_workers") or 1),
                                     bool(batch.options.get("progress")), state_of(batch.folder))
        cal = calibration(calibration_name(settings))
        crit = batch.criteria
        for i in picked:
            rec = records[i]
            out.loc[i, ["dft_checked", "dft_on", "dft_pool"]] = [True, on_of[i], pool_of[i]]
            out.loc[i, "dft_reason"] = rec.get("reason", "")
            out.loc[i, "dft_converged"] = bool(rec.get("converged"))
            out.loc[i, "dft_seconds"] = rec.get("seconds")
            gap = rec.get("band_gap")
            ok = False
            if gap is not None and math.isfinite(gap):
                corrected = corrected_gap(gap, cal)
                out.loc[i, ["dft_band_gap", "dft_direct_gap", GAP_CORRECTED]] = [gap, rec.get("direct_gap"),
                                                                                      corrected]
                window = crit.margin + (0.0 if cal is None else float(cal["loo_mae"]))
                ok = bool(rec.get("converged")) and abs(corrected - crit.target_bg) <= window + 1e-12
            out.loc[i, "dft_ok"] = ok
        return out

    def preserve(self, batch: StageInput, stored: dict) -> int:
        """Before the columns ``batch.samples`` holds (computed with the stage identity ``stored``) are replaced:
        each check they hold goes to the run folder's ``dft_state/`` as a record under the settings it was
        computed with, unless one is there. A record from columns keeps no cycle or k-point count, and no
        ``spin_polarised``: the engine's staleness rule still applies to it. Returns how many were kept."""
        from smoacs_bench.evaluation.dft import DFTResult, DFTSettings

        s, state = batch.samples, state_of(batch.folder)
        if state is None or not int(stored.get("dft_subset") or 0) or "dft_checked" not in s:
            return 0
        if stored.get("dft") != DFTSettings().identity():   # computed with other engine defaults than today's
            return 0
        settings = dft_settings({k: stored[k] for k in self.option_keys if k in stored})
        kept, converged = 0, _flag(s, "dft_converged")
        for i in np.flatnonzero(_flag(s, "dft_checked")):
            row = s.iloc[int(i)]
            cell = batch.relaxed_structure(int(i)) if row.get("dft_on") == ON_RELAXED else batch.structures[int(i)]
            if cell is None:
                continue
            key = _cache.digest(cell, settings.for_cell(cell).identity())
            if _cache.get(state, key) is not None:
                continue
            reason = row.get("dft_reason")
            rec = DFTResult(band_gap=_number(row, "dft_band_gap"), direct_gap=_number(row, "dft_direct_gap"),
                            converged=bool(converged[i]),
                            seconds=_number(row, "dft_seconds"), reason=reason if isinstance(reason, str) else "",
                            scale=math.nan if settings.lattice_scan else 1.0, spin_polarised=None).record()
            _cache.put(state, key, {**rec, "from": "the run's columns"})
            kept += 1
        return kept


def _number(row: pd.Series, col: str) -> float:
    v = pd.to_numeric(row.get(col), errors="coerce")
    return float(v) if pd.notna(v) else math.nan


METAL = 0.05   # eV: a raw PBE gap at or below this (Fermi smearing's noise) is a metal


def corrected_gap(gap: float, cal: dict | None) -> float:
    """The calibration's linear correction of a raw PBE gap (eV). A metal stays a metal (0 eV): the correction was
    fitted on gapped compounds (MP gap > 0.3 eV), and its intercept would otherwise give every metal a gap."""
    if cal is None:
        return gap
    return 0.0 if gap <= METAL else max(0.0, cal["slope"] * gap + cal["intercept"])


def choose(samples: pd.DataFrame, k: int, usable: np.ndarray | None = None) -> list[tuple[int, str]]:
    """``k`` rows to check as (row, pool) in the order drawn: a seeded permutation of the first of :data:`POOLS`,
    then of the next for the rows still missing, and so on (successes first; fewer draws are a prefix of more).
    ``usable`` (bool per row): rows the engine can compute (elements with a basis); the others are never drawn."""
    relaxed, own = kept_cell(samples), _flag(samples, "success")   # no cell kept: its proposal
    ok = np.ones(len(samples), dtype=bool) if usable is None else np.asarray(usable, dtype=bool)
    masks = {POOLS[0]: relaxed & _flag(samples, SUCCESS_RELAXED), POOLS[1]: relaxed & own, POOLS[2]: own,
             POOLS[3]: relaxed, POOLS[4]: np.ones(len(samples), dtype=bool)}
    out: list[tuple[int, str]] = []
    taken: set[int] = set()
    for name in POOLS:
        if len(out) >= k:
            break
        rows = [int(i) for i in np.flatnonzero(masks[name] & ok) if int(i) not in taken]
        for i in np.random.default_rng(SEED).permutation(rows)[:k - len(out)] if rows else []:
            out.append((int(i), name))
            taken.add(int(i))
    return out


def usable_rows(samples: pd.DataFrame, engine) -> np.ndarray:
    """Per row, whether ``engine`` can compute every element of its formula (an unreadable formula: True, the
    calculation will say what failed)."""
    from pymatgen.core import Composition

    known: dict[str, bool] = {}
    out = []
    for f in samples.get("formula", pd.Series([""] * len(samples))).astype(str):
        try:
            els = [e.symbol for e in Composition(f).elements]
        except Exception:  # noqa: BLE001 - a formula pymatgen cannot read: let the engine report it
            out.append(True)
            continue
        for e in els:
            if e not in known:
                known[e] = engine.supports(e)
        out.append(all(known[e] for e in els))
    return np.array(out, dtype=bool)


def stored_checks(samples: pd.DataFrame) -> pd.DataFrame:
    """The DFT checks a judged run's samples hold, one row each: ``row`` (the proposal's index), ``on`` (the cell
    computed: relaxed or proposed), ``gap`` (raw PBE gap, eV; NaN without one), ``converged``, ``ok`` (DFT-verified)
    and ``reason``; empty where the run has no checks."""
    cols = ["row", "on", "gap", "converged", "ok", "reason"]
    if "dft_checked" not in samples:
        return pd.DataFrame(columns=cols)
    idx = np.flatnonzero(_flag(samples, "dft_checked"))
    sub = samples.iloc[idx]
    reason = sub["dft_reason"] if "dft_reason" in sub else pd.Series([""] * len(sub))
    return pd.DataFrame({"row": idx, "on": sub["dft_on"].to_numpy() if "dft_on" in sub else "",
                         "gap": pd.to_numeric(sub.get("dft_band_gap"), errors="coerce").to_numpy(dtype=float),
                         "converged": _flag(samples, "dft_converged")[idx], "ok": _flag(samples, "dft_ok")[idx],
                         "reason": [r if isinstance(r, str) else "" for r in reason]}, columns=cols)


def cell_of(pool: str) -> str:
    """Which cell a draw from ``pool`` computes: the relaxed one, or the proposed one."""
    return ON_PROPOSED if pool in PROPOSED_POOLS else ON_RELAXED


def cached(folder: Path | None, key: str, cell, settings, engine) -> dict | None:
    """The cached record of ``cell`` under ``key`` in ``folder``; None when there is none, the engine calls it
    stale (a known defect of the engine version that computed it) or it was stopped at a shorter time limit than
    ``settings``' (the time limit is not in the cache key)."""
    r = _cache.get(folder, key)
    return None if r is None or engine.stale(r, cell, settings) or settings.stopped_sooner(r) else r


def state_of(run_folder: Path | None) -> Path | None:
    """The run folder's ``dft_state/`` (None without a run folder)."""
    return None if run_folder is None else Path(run_folder) / STATE_DIR


def cached_or_computed(cells: dict, settings, folder: Path | None, workers: int = 1,
                       progress: bool = False, state: Path | None = None) -> dict:
    """``{key: record}`` for ``{key: structure}``: each from the cache in ``folder`` or the run's ``state`` (by
    crystal and settings; not a record the engine calls stale) or computed, ``workers`` processes at once, and
    stored in both (a record from the cache is copied to the state: the run folder keeps its checks)."""
    from smoacs_bench.evaluation.dft import compute_gaps, get_engine

    engine = get_engine(settings.engine)
    digests = {i: None if c is None else _cache.digest(c, settings.for_cell(c).identity()) for i, c in cells.items()}
    records = {}
    for i, d in digests.items():
        if d and (r := cached(folder, d, cells[i], settings, engine) or cached(state, d, cells[i], settings, engine)):
            records[i] = r
            if state is not None and json.dumps(_cache.get(state, d), sort_keys=True) != json.dumps(r, sort_keys=True):
                _cache.put(state, d, r)
    todo = [i for i in cells if i not in records]
    def store(j: int, res) -> None:   # as each finishes: a killed batch keeps what it computed
        i = todo[j]
        records[i] = res.record()
        if digests[i]:
            _cache.put(folder, digests[i], records[i])
            _cache.put(state, digests[i], records[i])

    if todo:
        compute_gaps([cells[i] for i in todo], settings, workers=workers, progress=progress, on_result=store)
    return records


def cpu_seconds(samples: pd.DataFrame) -> float:
    """One-core seconds of the run's DFT checks as measured when computed (a crystal another run had computed
    first is charged again: its cost is part of checking this run)."""
    if "dft_checked" not in samples or "dft_seconds" not in samples:
        return 0.0
    return float(pd.to_numeric(samples.loc[truthy(samples, "dft_checked"), "dft_seconds"], errors="coerce").sum())


def labels(samples: pd.DataFrame) -> pd.DataFrame:
    """The run's DFT checks as labels, one row per checked proposal: ``formula``, ``gap`` (the corrected PBE gap,
    eV; NaN where the calculation failed or its SCF did not converge) and ``seconds`` (one core). A calibration
    table (``smoacs-bench calibrate dft``'s calibration.csv) has the same columns and reads the same way, every row
    checked."""
    if GAP_CORRECTED not in samples:
        return pd.DataFrame(columns=["formula", "gap", "seconds"])
    c = samples[truthy(samples, "dft_checked")] if "dft_checked" in samples else samples
    gap = pd.to_numeric(c[GAP_CORRECTED], errors="coerce").where(truthy(c, "dft_converged"))
    seconds = pd.to_numeric(c["dft_seconds"], errors="coerce") if "dft_seconds" in c else np.nan
    return pd.DataFrame({"formula": c["formula"].astype(str), "gap": gap, "seconds": seconds}).reset_index(drop=True)


HIT = 0.25   # eV: |PBE gap − target| of a "hit" (the verified-success issue's goal), raw and corrected


def checks_table(runs: dict[str, list[tuple[pd.DataFrame, float]]]) -> pd.DataFrame:
    """What DFT says of each row's checked proposals, per (row, target): ``runs`` maps a row label to its runs'
    (samples, target eV). Counts pooled over seeds; 'verified' with its Wilson interval; hits within
    :data:`HIT` of the target by the raw and the corrected PBE gap; the judge's error against the corrected gap
    (on the cell DFT computed); one-core seconds."""
    from smoacs_bench.evaluation.stats import wilson

    from .relaxation import BAND_GAP

    out = []
    for label, items in runs.items():
        by_target: dict[float, list[pd.DataFrame]] = {}
        for samples, target in items:
            if "dft_checked" in samples and truthy(samples, "dft_checked").any():
                by_target.setdefault(float(target), []).append(samples[truthy(samples, "dft_checked")])
        for target, frames in sorted(by_target.items()):
            c = pd.concat(frames, ignore_index=True)
            converged = truthy(c, "dft_converged")
            got = pd.to_numeric(c["dft_band_gap"], errors="coerce").notna()
            # an unconverged SCF's gap is no measurement: hits, median and error count converged checks only
            raw = pd.to_numeric(c["dft_band_gap"], errors="coerce").where(converged)
            corr = pd.to_numeric(c[GAP_CORRECTED], errors="coerce").where(converged)
            relaxed = c["dft_on"].astype(str) == ON_RELAXED
            judge = pd.to_numeric(c["band_gap"].where(~relaxed, c.get(BAND_GAP, c["band_gap"])), errors="coerce")
            ok = int(truthy(c, "dft_ok").sum())
            n = len(c)
            lo, hi = wilson(ok, n)
            out.append({"row": label, "target_bg": target, "checked": n, "computed": int(got.sum()),
                        "converged": int((converged & got).sum()), "verified": ok,
                        "verified_rate": ok / n if n else float("nan"), "verified_lo": lo, "verified_hi": hi,
                        "hit_raw": int(((raw - target).abs() <= HIT).sum()),
                        "hit_corrected": int(((corr - target).abs() <= HIT).sum()),
                        "median_raw_gap": float(raw.median()) if raw.notna().any() else float("nan"),
                        "judge_mae": float((judge - corr).abs().mean()) if corr.notna().any() else float("nan"),
                        "seconds_median": float(pd.to_numeric(c["dft_seconds"], errors="coerce").median()),
                        "pools": ", ".join(sorted(set(c.get("dft_pool", pd.Series(dtype=str)).dropna().astype(str))
                                                  - {""}))})
    return pd.DataFrame(out)


def _num(x: float) -> str:
    """A table cell of a figure in eV; '-' where there is none (no SCF converged)."""
    return "-" if pd.isna(x) else f"{x:.2f}"


def _natural(label: str) -> list:
    """A sort key that orders the numbers in a row label by value ('λ=5' before 'λ=25')."""
    parts = re.split(r"(\d+(?:\.\d+)?)", str(label))
    return [float(p) if i % 2 else p for i, p in enumerate(parts)]


def checks_markdown(df: pd.DataFrame, engine: str = "pyscf") -> str:
    """The checks table as markdown, with what its columns mean (``engine``: whose calibration widened the
    window)."""
    cal = calibration(engine)
    widen = "" if cal is None else f" + {cal['loo_mae']:.2f}"
    head = ["target (eV)", "row", "checked", "computed", "SCF converged", "DFT-verified", f"|raw − target| ≤ {HIT}",
            f"|corrected − target| ≤ {HIT}", "median raw PBE gap (eV)", "judge vs DFT MAE (eV)", "s per check",
            "drawn among"]
    lines = ["| " + " | ".join(head) + " |", "|---:|---|" + "---:|" * (len(head) - 3) + "---|"]
    for r in sorted(df.to_dict("records"), key=lambda r: (r["target_bg"], _natural(r["row"]))):
        lines.append(f"| {r['target_bg']:.2f} | {r['row']} | {r['checked']} | {r['computed']} | {r['converged']} | "
                     f"{r['verified']} ({r['verified_rate']:.2f}, {r['verified_lo']:.2f}-{r['verified_hi']:.2f}) | "
                     f"{r['hit_raw']} | {r['hit_corrected']} | {_num(r['median_raw_gap'])} | {_num(r['judge_mae'])} | "
                     f"{r['seconds_median']:.0f} | {r['pools']} |")
    return ("What DFT says of each row's DFT-checked proposals, pooled over seeds (a seeded few per run, successes "
            f"first; computed: a gap came out (not stopped at the time limit, no failure); hits, median and error count the "
            f"SCF-converged ones only; 'DFT-verified': the corrected PBE gap within the target ± (margin{widen} eV), with its Wilson "
            f"95 % interval; hits: within {HIT} eV of the target by the raw or the corrected PBE gap; judge vs DFT: "
            "the judge's gap of the computed cell against the corrected PBE gap; seconds on one core).\n\n"
            + "\n".join(lines) + "\n")


def parity_points(samples: pd.DataFrame, target: float) -> list[pd.DataFrame]:
    """The DFT-checked rows of a run whose SCF converged as (band_gap: the judge's gap of the computed cell,
    dft_gap: the corrected PBE gap, target_bg), for Figure A.1; empty without any."""
    from .relaxation import BAND_GAP

    if "dft_checked" not in samples or GAP_CORRECTED not in samples:
        return []
    # an unconverged SCF's gap is no measurement
    checked = samples[truthy(samples, "dft_checked") & truthy(samples, "dft_converged")]
    if checked.empty:
        return []
    relaxed = checked["dft_on"].astype(str) == ON_RELAXED
    gap = checked["band_gap"].where(~relaxed, checked.get(BAND_GAP, checked["band_gap"]))
    return [checked.assign(band_gap=gap, target_bg=target, dft_gap=checked[GAP_CORRECTED])[
        ["band_gap", "dft_gap", "target_bg"]]]
