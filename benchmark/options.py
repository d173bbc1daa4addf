"""The command line's judge options (relaxation, robustness, DFT), shared by run, evaluate, reproduce and relax.

Light on purpose: the parser is built, and ``--help`` printed, without importing torch, pymatgen or matgl.
"""

from __future__ import annotations

from typing import Any

from smoacs_bench.evaluation.dft_base import ENGINE_DEFAULTS
from smoacs_bench.evaluation.settings import RelaxSettings, RobustSettings


def add_physical_args(p: Any, default_relax: str = "chgnet", table: bool = False) -> None:
    """The physical-validity options of a subcommand (``table``: a table's, where DFT checks count per row)."""
    g = p.add_argument_group("physical validity (relaxation and robustness)")
    g.add_argument("--relax", default=default_relax, metavar="NAME|none",
                   help=f"relax every proposal with this potential (default {default_relax}; chgnet = CHGNet 0.3.0, "
                   "sevenn = SevenNet-0, matgl:<model>, module:factory) and re-judge it; none skips it")
    g.add_argument("--fmax", type=float, default=RelaxSettings.fmax, help="FIRE convergence, eV/Å (default 0.05)")
    g.add_argument("--max-steps", type=int, default=RelaxSettings.max_steps, help="FIRE steps at most (default 300)")
    g.add_argument("--relax-subset", type=int, metavar="N",
                   help="relax a seeded draw of N proposals per run instead of all")
    g.add_argument("--relax-workers", type=int, default=1, help="relaxation processes (default 1)")
    g.add_argument("--robust-copies", type=int, default=RobustSettings.copies,
                   help="perturbed copies per success for success (robust); 0 skips it (default 8)")
    g.add_argument("--dft-subset", type=int, default=0, metavar="K",
                   help=("DFT-check K proposals per (row, target), pooled over the row's seeds (ceil(K / seeds) per run)"
                         if table else "DFT-check K proposals per run") + ", successes first (PySCF PBE band gap; "
                   "about a minute each on one core; default 0)")
    g.add_argument("--dft-workers", type=int, default=1, help="DFT processes at once (default 1)")
    g.add_argument("--dft-lattice", type=int, default=0, metavar="N",
                   help="relax the lattice with DFT first: scale each checked cell isotropically to the minimum of a "
                   "parabola through N DFT energies within ±4 %% (N+1 calculations; a full relaxation for cubic "
                   "5-site cells; default 0: the CHGNet-relaxed cell as it is)")
    g.add_argument("--dft-klength", type=float, default=0.0, metavar="L",
                   help="a k-mesh that follows the cell: max(1, round(L / a)) points along each axis of length a (Å; "
                   "12 gives 3x3x3 on a 4 Å cubic perovskite; default 0: a fixed 3x3x3 mesh)")
    g.add_argument("--dft-engine", default="pyscf", choices=list(ENGINE_DEFAULTS),
                   help="the DFT engine: pyscf (default; Gaussian basis, GTH pseudopotentials) or gpaw (plane waves, "
                   "PAW; `make gpaw` installs it; corrected by its own calibration, results/dft_calibration/gpaw)")
    g.add_argument("--dft-fine-grid", action="store_true",
                   help="PySCF at 140 Ha instead of 70 Ha in a cell with Mg or F (their tight pseudopotentials: a "
                   "gap moves by up to 1 eV with the cell's origin at 70 Ha); corrected by its own calibration, "
                   "results/dft_calibration/fine-grid (default off)")
    g.add_argument("--dft-time-limit", type=float, metavar="S",
                   help="stop a DFT calculation after S s of wall time (recorded as failed, its reason kept; 0: no "
                   "limit; default 600); a longer limit than a cached timeout's computes it again")
    g.add_argument("--skip-stages", metavar="NAMES", help="leave these judge stages out (a comma list, e.g. "
                   "second_potential,distortion): their columns stay empty and captions say they were skipped")
    if table:
        g.add_argument("--dft-rows", metavar="METHODS", help="DFT-check only these rows: a comma list of methods or "
                       "row tags (default: every row)")


def stage_options(args: Any) -> dict[str, Any]:
    """The judge stages' run options from :func:`add_physical_args`' flags; SystemExit (one line) on a bad value."""
    subset, workers = getattr(args, "dft_subset", 0) or 0, getattr(args, "dft_workers", 1) or 1
    if subset < 0 or workers <= 0:
        raise SystemExit(f"--dft-subset must be >= 0 and --dft-workers > 0, got {subset} and {workers}")
    rows = getattr(args, "dft_rows", None)
    lattice = getattr(args, "dft_lattice", 0) or 0
    if lattice and lattice < 3:
        raise SystemExit(f"--dft-lattice needs at least 3 points (or 0 for none), got {lattice}")
    out: dict[str, Any] = {"dft_subset": subset, "dft_workers": workers}
    if lattice:
        out["dft_lattice"] = lattice
    klength = getattr(args, "dft_klength", 0.0) or 0.0
    if klength < 0:
        raise SystemExit(f"--dft-klength must be >= 0 (Å), got {klength}")
    if klength:
        out["dft_klength"] = klength
    engine = getattr(args, "dft_engine", "pyscf") or "pyscf"
    if engine != "pyscf":   # the default leaves run folders' stage identities as they were
        if lattice:
            raise SystemExit(f"--dft-lattice needs the pyscf engine (the {engine} engine has no lattice scan)")
        out["dft_engine"] = engine
    if getattr(args, "dft_fine_grid", False):   # set only when asked: run folders' identities stay as they were
        if engine != "pyscf":
            raise SystemExit(f"--dft-fine-grid is PySCF's (the {engine} engine has its own plane-wave cutoff)")
        out["dft_fine_grid"] = True
    limit = getattr(args, "dft_time_limit", None)
    if limit is not None:
        from smoacs_bench.evaluation.dft import DFTSettings

        if limit < 0:
            raise SystemExit(f"--dft-time-limit must be >= 0 (s; 0: none), got {limit:g}")
        if limit != DFTSettings.time_limit:   # the default leaves run folders' stage identities as they were
            out["dft_time_limit"] = limit
    skip = [n.strip() for n in (getattr(args, "skip_stages", None) or "").split(",") if n.strip()]
    if skip:
        from smoacs_bench.evaluation.stages import stages

        known = [s.name for s in stages()]
        unknown = [n for n in skip if n not in known]
        if unknown:
            raise SystemExit(f"--skip-stages: unknown stage {', '.join(unknown)}; known: {', '.join(known)}")
        out["skip_stages"] = sorted(set(skip))
    if rows:
        out["dft_rows"] = [r.strip() for r in rows.split(",") if r.strip()]
    return out


def physical_settings(args: Any) -> tuple[RelaxSettings | None, RobustSettings | None]:
    """Settings from :func:`add_physical_args`' options; SystemExit (one line) on a bad value."""
    for flag in ("fmax", "max_steps", "relax_subset", "relax_workers"):
        value = getattr(args, flag, None)
        if value is not None and value <= 0:
            raise SystemExit(f"--{flag.replace('_', '-')} must be > 0, got {value}")
    if args.robust_copies < 0:
        raise SystemExit(f"--robust-copies must be >= 0, got {args.robust_copies}")
    relax_settings = None
    if str(args.relax).lower() != "none":
        from smoacs_bench.evaluation.relax import RelaxerUnavailable, check_relaxer

        try:
            check_relaxer(args.relax)
        except RelaxerUnavailable as err:
            raise SystemExit(f"smoacs-bench: {err}") from None
        relax_settings = RelaxSettings(relaxer=args.relax, fmax=args.fmax, max_steps=args.max_steps,
                                       subset=args.relax_subset)
    robust_settings = RobustSettings(copies=args.robust_copies) if args.robust_copies else None
    return relax_settings, robust_settings
