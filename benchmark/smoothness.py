"""Predictor smoothness check: predictions of textbook perovskites under small isotropic lattice strain.

A property predictor used as an optimisation objective should change smoothly with the lattice. MEGNet does
not: it counts neighbours inside a hard 5 Å cutoff, so its band gap can jump by eV when a neighbour shell
crosses the cutoff (for an ideal cubic ABX3 cell at a = 5 / sqrt(1.5) = 4.0825 Å, the A-X shell at
sqrt(1.5) a). :func:`scan` predicts every textbook perovskite (``data.reference_crystals``) on a fine grid of
isotropic strains, :func:`jumps` reports the largest change between consecutive strain points,
:func:`smoothness_figure` plots the curves and :func:`run_smoothness` writes all of it to a folder
(``smoacs-bench smoothness``, via :func:`add_parser`).

Strain is relative: the cell of lattice constant a0 is scaled to a = a0 (1 + strain), fractional coordinates
kept; strains run from -N step to +N step with N = floor(strain / step), so the defaults (±3 % in 0.05 %
steps) give 121 points per crystal, 0.0019 to 0.0029 Å apart for these cells.
"""

from __future__ import annotations

import argparse
import inspect
import math
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from pymatgen.core import Lattice, Structure

from smoacs_bench.data.reference_crystals import TEXTBOOK_PEROVSKITES, textbook_perovskites
from smoacs_bench.evaluation.io import atomic_write_text, write_csv
from smoacs_bench.evaluation.plots import FONTS, _save_png
from smoacs_bench.methods.predictors.registry import PREDICTORS, _spec, family_label, get_predictor

SCAN_COLUMNS = ["predictor", "property", "unit", "crystal", "a0", "strain", "a", "value"]
JUMP_COLUMNS = ["scope", "predictor", "property", "unit", "crystal", "max_jump", "a_from", "a_to",
                "strain_from", "strain_to", "step_A", "median_jump", "range"]
UNITS = {"band_gap": "eV", "formation_energy": "eV/atom"}
SHORT = {"band_gap": "band gap", "formation_energy": "E_f"}


# -- predictors ------------------------------------------------------------------------------------------------
def _missing_weights(name: str) -> str:
    """Why a registered predictor's official weights are absent (''; also when it cannot tell).

    The loaders download missing official checkpoints (creating folders under $SMOACS_MODEL_DIR); this looks
    for the files where they would look first, so an offline machine skips the predictor without touching
    the network or the model folder."""
    spec = PREDICTORS.get(name)
    if spec is None:
        return ""
    try:
        bound = inspect.getclosurevars(spec.factory).nonlocals
    except (TypeError, ValueError):
        return ""
    if spec.family == "Crystalformer" and "checkpoint" in bound:
        from smoacs_bench.methods.predictors.crystalformer import MODEL_DIR_ENV, MODEL_SUBDIR

        env = _models_env()
        if not env:
            return f"official weights {bound['checkpoint']} not found: {MODEL_DIR_ENV} is not set"
        path = Path(env) / MODEL_SUBDIR / bound["checkpoint"]
        return "" if path.is_file() else f"official weights not found at {path} (not downloaded here)"
    if spec.family == "ALIGNN" and "name" in bound:
        from smoacs_bench.methods.predictors.alignn import _ALIASES, MODEL_DIR_ENV

        env = _models_env()
        folder = Path(env) / "alignn" if env else Path.home() / ".cache" / "smoacs_bench" / "alignn"
        model = bound["name"]
        names = [model] + [alias for alias, canonical in _ALIASES.items() if canonical == model]
        if any((folder / n).exists() or (folder / f"{n}.zip").exists() for n in names):
            return ""
        return f"official weights not found at {folder}/{model}.zip (not downloaded here)"
    return ""


def _one_line(err: BaseException) -> str:
    text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    return " ".join(f"{type(err).__name__}: {text}".split())


def _label(name: str) -> str:
    """Display name: a registered name as is, a trained-model folder as its family, data and property."""
    if name in PREDICTORS:
        return name
    try:
        spec = _spec(name)
    except KeyError:
        return name
    return f"{family_label([name])} {SHORT[spec.prop]}"


# -- scan --------------------------------------------------------------------------------------------------------
def strain_grid(strain: float = 0.03, step: float = 0.0005) -> np.ndarray:
    """Relative strains -N step .. +N step, N = floor(strain / step) (rounded to 12 decimals)."""
    if not (math.isfinite(strain) and math.isfinite(step)) or strain <= 0 or step <= 0:
        raise ValueError(f"strain and step must be positive numbers, got strain={strain}, step={step}")
    if step > strain:
        raise ValueError(f"step ({step}) must not exceed strain ({strain})")
    n = int(math.floor(strain / step + 1e-9))
    return np.round(np.arange(-n, n + 1) * step, 12)


def _crystals(crystals: Mapping[str, Structure] | Iterable[str] | None) -> dict[str, Structure]:
    every = textbook_perovskites()
    if crystals is None:
        return every
    if isinstance(crystals, Mapping):
        return dict(crystals)
    picked = {}
    for formula in crystals:
        if formula not in every:
            raise ValueError(f"unknown crystal {formula!r}; textbook perovskites: {', '.join(every)}")
        picked[formula] = every[formula]
    return picked


def _strained(s: Structure, strain: float) -> Structure:
    return Structure(Lattice(s.lattice.matrix * (1.0 + strain)), s.species, s.frac_coords)


def _scan(predictor_names: Sequence[str], strain: float, step: float,
          crystals: Mapping[str, Structure] | Iterable[str] | None, device: Any = None,
          progress: bool = False) -> tuple[pd.DataFrame, dict[str, str]]:
    """(scan frame, {skipped predictor: one-line reason})."""
    strains = strain_grid(strain, step)
    cells = _crystals(crystals)
    keys = [(formula, s, e) for formula, s in cells.items() for e in strains]
    structures = [_strained(s, e) for _, s, e in keys]
    frames, skipped = [], {}
    for name in dict.fromkeys(predictor_names):
        t0 = time.perf_counter()
        reason = _missing_weights(name)
        if not reason:
            try:
                prop = _spec(name).prop
                model = get_predictor(name, device=device).eval()
                values = model.predict_structures(structures)
            except Exception as err:  # noqa: BLE001 - one predictor's failure is reported, the rest go on
                reason = _one_line(err)
        if reason:
            skipped[name] = reason
            if progress:
                print(f"[smoothness] {name}: skipped ({reason})", file=sys.stderr, flush=True)
            continue
        frames.append(pd.DataFrame({
            "predictor": name,
            "property": prop,
            "unit": UNITS[prop],
            "crystal": [k[0] for k in keys],
            "a0": [cells[k[0]].lattice.a for k in keys],
            "strain": [k[2] for k in keys],
            "a": [round(s.lattice.a, 10) for s in structures],
            "value": np.asarray(values, dtype=float),
        }))
        if progress:
            print(f"[smoothness] {name}: {len(structures)} structures in {time.perf_counter() - t0:.1f} s",
                  file=sys.stderr, flush=True)
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=SCAN_COLUMNS)
    return df[SCAN_COLUMNS], skipped


def scan(predictor_names: Sequence[str], strain: float = 0.03, step: float = 0.0005,
         crystals: Mapping[str, Structure] | Iterable[str] | None = None, device: Any = None) -> pd.DataFrame:
    """Predictions of every crystal at every strain, one row per (predictor, crystal, strain).

    ``predictor_names``: registered names or trained-model folders; each is predicted in one call over all
    crystals and strains. A predictor that cannot be loaded or run is left out, its one-line reason in
    ``df.attrs["skipped"]`` ({name: reason}). ``crystals``: None for every textbook perovskite, formulas of
    some of them, or {name: Structure}. Columns: predictor, property ("band_gap" | "formation_energy"),
    unit, crystal, a0 (Å), strain (relative), a (Å), value (NaN where the model cannot embed an element).
    """
    df, skipped = _scan(predictor_names, strain, step, crystals, device)
    df.attrs["skipped"] = skipped
    return df


# -- jumps -------------------------------------------------------------------------------------------------------
def _crystal_jump(g: pd.DataFrame) -> dict[str, Any]:
    g = g.sort_values("strain")
    v, a, e = g["value"].to_numpy(float), g["a"].to_numpy(float), g["strain"].to_numpy(float)
    d = np.abs(np.diff(v))
    finite = np.isfinite(d)
    row = {"max_jump": np.nan, "a_from": np.nan, "a_to": np.nan, "strain_from": np.nan, "strain_to": np.nan,
           "step_A": np.nan, "median_jump": np.nan,
           "range": float(np.nanmax(v) - np.nanmin(v)) if np.isfinite(v).any() else np.nan}
    if finite.any():
        i = int(np.flatnonzero(finite)[np.argmax(d[finite])])
        row.update(max_jump=float(d[i]), a_from=float(a[i]), a_to=float(a[i + 1]), strain_from=float(e[i]),
                   strain_to=float(e[i + 1]), step_A=round(float(a[i + 1] - a[i]), 10),
                   median_jump=float(np.median(d[finite])))
    return row


def jumps(df: pd.DataFrame) -> pd.DataFrame:
    """Largest absolute change between consecutive strain points, per (predictor, crystal) and per predictor.

    One row per (predictor, crystal) with ``scope`` "crystal", then one per predictor with ``scope``
    "predictor" (the crystal holding its largest jump, and that crystal's numbers). Columns: max_jump (unit
    of the property), between a_from and a_to (Å) = strain_from and strain_to, step_A (a_to - a_from, Å),
    median_jump (the median change per step, for scale) and range (max - min of the values of that crystal).
    NaN values (an element the model cannot embed) are left out; a crystal without two consecutive values
    has NaN numbers."""
    rows = []
    for (name, crystal), g in df.groupby(["predictor", "crystal"], sort=False):
        rows.append({"scope": "crystal", "predictor": name, "property": g["property"].iat[0],
                     "unit": g["unit"].iat[0], "crystal": crystal, **_crystal_jump(g)})
    per_crystal = pd.DataFrame(rows, columns=JUMP_COLUMNS)
    best = []
    for _name, g in per_crystal.groupby("predictor", sort=False):
        if g["max_jump"].notna().any():
            best.append({**g.loc[g["max_jump"].idxmax()].to_dict(), "scope": "predictor"})
        else:
            best.append({**g.iloc[0].to_dict(), "scope": "predictor", "crystal": "", "range": np.nan})
    return pd.concat([per_crystal, pd.DataFrame(best, columns=JUMP_COLUMNS)], ignore_index=True)


def largest_jumps(jump_df: pd.DataFrame) -> pd.DataFrame:
    """The per-predictor rows of :func:`jumps`, indexed by predictor."""
    return jump_df[jump_df["scope"] == "predictor"].set_index("predictor")


# -- figure ------------------------------------------------------------------------------------------------------
def _fmt_pct(x: float) -> str:
    text = f"{100 * x:+.2f} %"
    return "0.00 %" if text in ("+0.00 %", "-0.00 %") else text.replace("-", "\u2212")


def smoothness_figure(df: pd.DataFrame, path: str | Path) -> Path:
    """One panel per predictor: value against strain (%), one line per crystal, the largest jump circled (and
    a dotted line between its two points) and named in the panel's title; crystals in one legend below. Written to ``path`` as a PNG (atomically)."""
    names = list(dict.fromkeys(df["predictor"]))
    if not names:
        raise ValueError("nothing to plot: the scan has no rows")
    top = largest_jumps(jumps(df))
    crystals = list(dict.fromkeys(df["crystal"]))
    cmap = matplotlib.colormaps["tab10"]  # ten colours, solid then dashed, dotted: 30 distinguishable lines
    styles = {c: (cmap(i % 10), ("-", "--", ":")[(i // 10) % 3]) for i, c in enumerate(crystals)}
    ncols = min(3, len(names))
    nrows = math.ceil(len(names) / ncols)
    legend_cols = min(8, 4 * ncols, len(crystals))
    legend_rows = math.ceil(len(crystals) / legend_cols)
    with matplotlib.rc_context(FONTS):
        fig = Figure(figsize=(4.8 * ncols, 4.6 * nrows + 0.25 * legend_rows + 0.45))
        axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
        for ax, name in zip(axes, names, strict=False):
            sub = df[df["predictor"] == name]
            prop, unit = sub["property"].iat[0], sub["unit"].iat[0]
            for crystal, g in sub.groupby("crystal", sort=False):
                g = g.sort_values("strain")
                color, ls = styles[crystal]
                ax.plot(100 * g["strain"], g["value"], lw=1.1, color=color, ls=ls, label=crystal)
            j = top.loc[name]
            if np.isfinite(j["max_jump"]):
                xs = [100 * j["strain_from"], 100 * j["strain_to"]]
                g = sub[sub["crystal"] == j["crystal"]].set_index("strain")["value"]
                ys = [g.loc[j["strain_from"]], g.loc[j["strain_to"]]]
                ax.axvline(np.mean(xs), color="red", ls=":", lw=1)
                ax.plot(xs, ys, "o", ms=9, mfc="none", mec="red", mew=1.5)
                second = (f"largest jump {j['max_jump']:.3g} {unit}\n{j['crystal']}, a = {j['a_from']:.3f} → "
                          f"{j['a_to']:.3f} Å ({_fmt_pct(j['strain_from'])})")
            else:
                second = "no finite predictions"
            ax.set_title(f"{_label(name)}\n{second}", fontsize=10)
            ax.set_xlabel("lattice strain (%)")
            ax.set_ylabel(f"predicted {SHORT.get(prop, prop)} ({unit})")
            ax.grid(alpha=0.3)
        for ax in axes[len(names):]:
            ax.set_visible(False)
        handles = [Line2D([], [], color=color, ls=ls, lw=1.1) for color, ls in styles.values()]
        fig.legend(handles, list(styles), loc="lower center", ncol=legend_cols, frameon=False,
                   bbox_to_anchor=(0.5, 0.2 / fig.get_figheight()))
        fig.text(0.5, 0.005, "Red circles: the two consecutive strain points with the largest change.",
                 ha="center", va="bottom", wrap=True, fontsize=FONTS["legend.fontsize"], color="0.25")
        bottom = (0.25 * legend_rows + 0.4) / fig.get_figheight()
        fig.tight_layout(rect=(0, bottom, 1, 1))
    return _save_png(fig, path)


# -- report ------------------------------------------------------------------------------------------------------
def _caption(df: pd.DataFrame, strain: float, step: float) -> str:
    crystals = list(dict.fromkeys(df["crystal"]))
    per = df.drop_duplicates("crystal")
    steps_A = per["a0"].to_numpy(float) * step
    n = len(strain_grid(strain, step))
    textbook = {f"{a}{b}{x}3" for a, b, x, _ in TEXTBOOK_PEROVSKITES}
    kind = "textbook cubic perovskites" if set(crystals) <= textbook else "crystals"
    return (f"Scan: {len(crystals)} {kind} ({', '.join(crystals)}), each cell scaled isotropically from its "
            f"experimental lattice constant a0 by strains of {_fmt_pct(-strain)} to {_fmt_pct(strain)} in "
            f"steps of {100 * step:g} % of a0 ({n} points per crystal; {steps_A.min():.4f} to "
            f"{steps_A.max():.4f} Å per step), fractional coordinates kept. Largest jump: the largest absolute "
            "change of a predictor's value between two consecutive strain points over all crystals; median "
            "change: the median over all steps of that crystal, for scale.")


def jumps_markdown(jump_df: pd.DataFrame, skipped: Mapping[str, str], caption: str = "") -> str:
    """The report: largest jump per predictor, the largest jump per crystal, skipped predictors, a caption."""
    top = largest_jumps(jump_df)
    lines = ["# Predictor smoothness under lattice strain", "",
             "| predictor | property | largest jump | crystal | where: a (Å), strain | step (Å) | "
             "median change per step | range over the scan |",
             "|---|---|---|---|---|---|---|---|"]
    for name, j in top.iterrows():
        prop = SHORT.get(j["property"], j["property"])
        if not np.isfinite(j["max_jump"]):
            lines.append(f"| {_label(name)} | {prop} ({j['unit']}) | no finite predictions | | | | | |")
            continue
        where = (f"{j['a_from']:.4f} → {j['a_to']:.4f} Å ({_fmt_pct(j['strain_from'])} → "
                 f"{_fmt_pct(j['strain_to'])})")
        lines.append(f"| {_label(name)} | {prop} | {j['max_jump']:.4g} {j['unit']} | {j['crystal']} | {where} | "
                     f"{j['step_A']:.4f} | {j['median_jump']:.2g} {j['unit']} | {j['range']:.3g} {j['unit']} |")
    if not top.empty:
        per = jump_df[jump_df["scope"] == "crystal"].pivot(index="crystal", columns="predictor",
                                                            values="max_jump")
        per = per.reindex(index=list(dict.fromkeys(jump_df.loc[jump_df["scope"] == "crystal", "crystal"])),
                          columns=list(top.index))
        lines += ["", "Largest jump per crystal (unit of each predictor):", "",
                  "| crystal | " + " | ".join(_label(n) for n in per.columns) + " |",
                  "|---|" + "---|" * len(per.columns)]
        for crystal, row in per.iterrows():
            cells = [f"{v:.3g}" if np.isfinite(v) else "n/a" for v in row]
            lines.append(f"| {crystal} | " + " | ".join(cells) + " |")
    if skipped:
        lines += ["", "Skipped:", ""] + [f"- {name}: {reason}" for name, reason in skipped.items()]
    if caption:
        lines += ["", caption]
    return "\n".join(lines) + "\n"


def run_smoothness(out_dir: str | Path, predictors: Sequence[str] | None = None, strain: float = 0.03,
                   step: float = 0.0005, progress: bool = True, crystals: Any = None,
                   device: Any = None) -> dict[str, Any]:
    """Scan ``predictors`` (default: every registered one) and write ``out_dir``/scan.csv, jumps.csv,
    jumps.md and smoothness.png. Returns {"scan", "jumps", "markdown", "figure": paths, "skipped": {name:
    reason}, "largest": {name: largest jump}}. Raises RuntimeError (one line, nothing written) when no
    predictor could be loaded."""
    names = list(PREDICTORS) if predictors is None else list(predictors)
    df, skipped = _scan(names, strain, step, crystals, device, progress)
    if df.empty:
        why = "; ".join(f"{n}: {r}" for n, r in skipped.items()) or "no predictor given"
        raise RuntimeError(f"no predictor could be loaded ({why})")
    out = Path(out_dir)
    jump_df = jumps(df)
    paths = {"scan": out / "scan.csv", "jumps": out / "jumps.csv", "markdown": out / "jumps.md",
             "figure": out / "smoothness.png"}
    write_csv(df, paths["scan"])
    write_csv(jump_df, paths["jumps"])
    atomic_write_text(paths["markdown"], jumps_markdown(jump_df, skipped, _caption(df, strain, step)))
    smoothness_figure(df, paths["figure"])
    top = largest_jumps(jump_df)
    return {**paths, "skipped": skipped, "largest": top["max_jump"].to_dict()}


# -- command line ------------------------------------------------------------------------------------------------
def add_parser(subparsers: Any, **kwargs: Any) -> argparse.ArgumentParser:
    """Add the ``smoothness`` subcommand to ``smoacs-bench``'s subparsers."""
    p = subparsers.add_parser("smoothness", **kwargs)
    p.add_argument("--predictors", help="comma list of predictor names or trained-model folders "
                   f"(default: every registered one: {','.join(PREDICTORS)})")
    p.add_argument("--strain", type=float, default=0.03, help="largest relative lattice strain (default 0.03)")
    p.add_argument("--step", type=float, default=0.0005, help="relative strain step (default 0.0005)")
    p.add_argument("--out", required=True, help="folder for scan.csv, jumps.csv, jumps.md, smoothness.png")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_smoothness)
    return p


def cmd_smoothness(args: argparse.Namespace) -> int:
    names = [n.strip() for n in args.predictors.split(",") if n.strip()] if args.predictors else None
    try:
        strain_grid(args.strain, args.step)
        result = run_smoothness(args.out, names, args.strain, args.step, progress=not args.no_progress)
    except (RuntimeError, ValueError) as err:
        print(f"smoacs-bench smoothness: {' '.join(str(err).split())}", file=sys.stderr)
        return 1
    for key in ("scan", "jumps", "markdown", "figure"):
        print(f"wrote {result[key]}")
    units = {n: UNITS[_spec(n).prop] for n in result["largest"]}
    for name, jump in result["largest"].items():
        print(f"{_label(name)}: largest jump {jump:.4g} {units[name]}")
    for name, reason in result["skipped"].items():
        print(f"{name}: skipped ({reason})")
    return 0


def _models_env() -> str | None:
    """The models folder as a string (``$SMOACS_MODEL_DIR`` or the config file's), or None."""
    from smoacs_bench.data.environment import model_dir

    found = model_dir()
    return str(found) if found else None
