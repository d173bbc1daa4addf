"""smoacs-bench: inverse crystal design benchmark (SMOACS, TPE, FTCP and plugins, one shared judge).

examples:
  smoacs-bench run --method smoacs --task perovskite --target-bg 1.5 --n-samples 256 --out runs/s15
  smoacs-bench run --method tpe --task perovskite --target-bg 1.5 --n-samples 64 --trials 200 --out runs/t15
  smoacs-bench run --method ftcp --task free --target-bg 1.5 --n-samples 256 --out runs/f15
  smoacs-bench table --runs runs/s15 runs/t15 runs/f15 --with-paper
  smoacs-bench evaluate my_cifs/*.cif --task free --target-bg 1.5 --out judged.csv
  smoacs-bench train ftcp --dataset perov_5 --epochs 200 --out models/my-ftcp
  smoacs-bench train crystalformer --dataset perov_5 --target e_form --out models/cry-perov_5-e_form
  smoacs-bench heldout --model models/ftcp-perov_5

Models: $SMOACS_MODEL_DIR (matgl/, cdvae-mp20/, crystalformer/, alignn/); data: $SMOACS_DATA_DIR (perov_5/, ...).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from smoacs_bench.data.task import TASKS

from .options import add_physical_args, physical_settings, stage_options
from .values import parse_value


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("smoacs-bench")
    except PackageNotFoundError:
        return "unknown"


def _add_target(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target-bg", type=float, default=1.5, help="target band gap, eV (default 1.5)")
    p.add_argument("--margin", type=float, default=0.04, help="band-gap margin h, eV (default 0.04)")


def build_parser(command: str | None = "*") -> argparse.ArgumentParser:
    """The parser; of the commands in modules of their own only ``command``'s is complete ("*": all of them)."""
    ap = argparse.ArgumentParser(prog="smoacs-bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = ap.add_subparsers(dest="command", required=True)

    ev = sub.add_parser("evaluate", help="judge structure files with the paper's criteria")
    ev.add_argument("files", nargs="+", help="structure files (CIF, POSCAR, ...) or folders of them")
    ev.add_argument("--task", choices=list(TASKS), default="free", help="task whose criteria judge (default free)")
    _add_target(ev)
    ev.add_argument("--predictions", help="CSV with columns file, band_gap, formation_energy "
                    "(default: predict with the MEGNet models)")
    ev.add_argument("--out", required=True, help="output CSV, one row per file")
    ev.add_argument("--no-crossjudge", action="store_true",
                    help="skip the independent formation-energy judge (CDVAE DimeNet++, $SMOACS_MODEL_DIR/cdvae-mp20)")
    add_physical_args(ev)
    ev.set_defaults(func=cmd_evaluate)

    run = sub.add_parser("run", help="run a method on a task and judge its proposals")
    run.add_argument("--method", default="smoacs", help="registered method (smoacs, smoacs-relax, tpe, tpe-n, "
                     "tpe+n, random, ftcp, screening, reference), an installed plugin, or package.module:Class "
                     "(default smoacs)")
    run.add_argument("--task", choices=list(TASKS), default="perovskite", help="task (default perovskite)")
    _add_target(run)
    run.add_argument("--n-samples", type=int, default=256, help="proposals to make and judge (default 256)")
    run.add_argument("--steps", type=int, help="budget of a method that counts steps (SMOACS; default 200)")
    run.add_argument("--trials", type=int, help="budget of a method that counts trials (TPE; default 200)")
    run.add_argument("--batch-size", type=int, help="samples optimised together, for methods with that option "
                     "(SMOACS: default 256)")
    run.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    run.add_argument("--workers", type=int, help="processes at once, for methods with that option (TPE: "
                     "groups of studies; default 1; results do not depend on it)")
    run.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                     help="any other method setting, e.g. --param lr_lattice=0.05 (repeatable)")
    run.add_argument("--seed", type=int, default=0, help="seed of the start structures and the method (default 0)")
    run.add_argument("--label", help="method name to show in tables (default: e.g. SMOACS(MEGNet), FTCP(perov_5))")
    run.add_argument("--out", required=True, help="output folder")
    run.add_argument("--force", action="store_true",
                     help="re-run even if the folder holds this run (also deletes resumable state, e.g. TPE journals)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--no-crossjudge", action="store_true",
                     help="skip the independent formation-energy judge (CDVAE DimeNet++, $SMOACS_MODEL_DIR/cdvae-mp20)")
    add_physical_args(run)
    run.set_defaults(func=cmd_run)
    plain_help = run.format_help
    run.format_help = lambda: plain_help() + "\n" + method_options_text()   # imports the methods only for --help

    tab = sub.add_parser("table", help="render runs as a paper-style table")
    tab.add_argument("--runs", nargs="+", required=True, help="run folders (each with summary.csv)")
    tab.add_argument("--format", choices=["md", "csv", "tex"], default="md")
    tab.add_argument("--layout", choices=["table2", "table3", "table4", "diversity"],
                     help="default: from the runs' task")
    tab.add_argument("--with-paper", action="store_true", help="add the paper's published rows")
    tab.add_argument("--no-caption", action="store_true", help="Markdown: omit the caption paragraph")
    tab.add_argument("--out", help="write to this file instead of printing")
    tab.set_defaults(func=cmd_table)

    tr = sub.add_parser(
        "train", help="train FTCP's VAE, or a Crystalformer / ALIGNN predictor, on a dataset",
        description="Train a model on a dataset; a killed run resumes in the same --out folder. "
                    "Defaults are each model's published recipe (FTCP: 200 epochs, batch 256, lr 1e-4; "
                    "crystalformer: 500, 128, 5e-4; alignn: 300, 64, 1e-3).")
    tr.add_argument("method", help="ftcp (a method's own model), a predictor: crystalformer, alignn, gap-judge "
                    "(the band-gap cross-judge, from $SMOACS_DATA_DIR/mp20_reference) or megnet-abx3 (MEGNet's "
                    "band-gap head refitted on MP-20's known cubic ABX3) or dft-gap (a composition gap model on "
                    "this project's own DFT labels, from the run folders under --runs)")
    tr.add_argument("--runs", action="append",
                    help="dft-gap only: a folder of run folders whose DFT checks are the labels (repeatable)")
    tr.add_argument("--dataset",
                    help="perov_5, megnet, a CDVAE-format folder (train/val/test.csv) or a MEGNet-format .json "
                    "(required except for gap-judge, megnet-abx3 and dft-gap)")
    tr.add_argument("--target", choices=["e_form", "bandgap"],
                    help="predictors only: formation energy (eV/atom) or band gap (eV)")
    tr.add_argument("--split", help="predictors only: reuse this split.json (e.g. an FTCP model's) for the split")
    tr.add_argument("--epochs", type=int, help="epochs (default: the model's recipe)")
    tr.add_argument("--batch-size", type=int, help="crystals per batch (default: the model's recipe)")
    tr.add_argument("--lr", type=float, help="peak learning rate (default: the model's recipe)")
    tr.add_argument("--seed", type=int, default=0, help="seed of the split, the initialisation and the batches")
    tr.add_argument("--limit", type=int, help="read only the first N rows of each dataset file")
    tr.add_argument("--device", help="torch device for predictors (default: cuda when available, else cpu)")
    tr.add_argument("--float16", action="store_true", help="FTCP: store the final weights as float16 (half the size)")
    tr.add_argument("--no-progress", action="store_true")
    tr.add_argument("--out", required=True, help="model folder (a killed run resumes there)")
    tr.set_defaults(func=cmd_train)

    ho = sub.add_parser("heldout", help="held-out MAE of a trained model: FTCP or a predictor (Table 1 row)")
    ho.add_argument("--model", required=True, help="a folder written by `smoacs-bench train`")
    ho.add_argument("--split", choices=["test", "val", "train"], default="test")
    ho.add_argument("--out", help="write the Markdown table here (default: print)")
    ho.set_defaults(func=cmd_heldout)

    data = sub.add_parser("data", help="datasets")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    dl = data_sub.add_parser("download", help="download a dataset and validate it")
    dl.add_argument("dataset", choices=["megnet"], help="megnet: mp.2018.6.1.json (figshare file 15087992)")
    dl.add_argument("--dest", help="folder to put it in (default: $SMOACS_DATA_DIR)")
    dl.set_defaults(func=cmd_data_download)

    rl = sub.add_parser("relax", help="run the judge's stages (robustness, relaxation, E_hull, novelty, second "
                        "potential, distortion, S.U.N., gap cross-judge, DFT) on finished run folders (without "
                        "re-running the method; resumable; a second call does no work)")
    rl.add_argument("runs", nargs="+", help="run folders (each with config.json, samples.csv, structures.zip)")
    add_physical_args(rl)
    rl.add_argument("--force", action="store_true",
                    help="re-derive the columns (from the relaxation cache relax_state/ where it matches)")
    rl.add_argument("--no-progress", action="store_true", help="no progress bar")
    rl.set_defaults(func=cmd_relax)

    ex = sub.add_parser("export", help="write a run folder's packed files (structures.zip, ...) as loose files")
    ex.add_argument("runs", nargs="+", help="run folders")
    ex.add_argument("--cif", required=True, metavar="DIR",
                    help="write DIR/<run>/structures/<sample>.cif (and structures_relaxed/ where relaxed)")
    ex.set_defaults(func=cmd_export)

    import importlib

    for name, (module, text) in COMMANDS.items():   # each imported only when it is the command given
        if command in (name, "*"):
            importlib.import_module(module, __package__).add_parser(sub, help=text)
        else:
            sub.add_parser(name, help=text, add_help=False)
    return ap


# the commands defined in modules of their own (heavy imports): loaded only when asked for, so that --help,
# --version and a mistyped option answer at once
COMMANDS = {
    "reproduce": (".reproduce", "run a paper table's experiments (what is missing) and render it beside the paper's "
                  "numbers"),
    "smoothness": (".smoothness", "scan predictors over small lattice strains of textbook perovskites and report "
                   "their largest jumps"),
    "doctor": (".doctor", "check Python, torch/CUDA, models, datasets, relaxer and extras"),
    "readme": (".readme", "fill the generated blocks of a results README from the stored runs"),
    "calibrate": (".calibration", "calibrate the judge on known compounds (hull stage, predictors, DFT)"),
}


def _command(argv: list[str]) -> str | None:
    """The subcommand named in ``argv`` (the first word that is not an option)."""
    return next((a for a in argv if not a.startswith("-")), None)


def cmd_relax(args: argparse.Namespace) -> int:
    from smoacs_bench.evaluation.relax import RelaxerUnavailable

    from .physical import add_physical

    relax, robust = physical_settings(args)
    if relax is None and robust is None:
        raise SystemExit("smoacs-bench relax: nothing to do (--relax none and --robust-copies 0)")
    failed = 0
    for run in args.runs:
        folder = Path(run)
        if not folder.is_dir():
            print(f"skipped: {run}: no such folder", file=sys.stderr)
            failed += 1
            continue
        try:
            res = add_physical(folder, relax, robust, workers=args.relax_workers, progress=not args.no_progress,
                               stage_options=stage_options(args),
                               force=args.force)
        except FileNotFoundError as err:
            print(f"skipped: {err}", file=sys.stderr)
            failed += 1
            continue
        except RelaxerUnavailable as err:
            raise SystemExit(f"smoacs-bench relax: {err}") from None
        if res["status"] == "unchanged":
            print(f"{folder}: already has these columns (nothing to do)")
        else:
            from smoacs_bench.evaluation.stages import headline

            print(f"{folder}: {headline(res)} ({res['wall_s']:.0f} s)")
    return 1 if failed == len(args.runs) else 0


def cmd_export(args: argparse.Namespace) -> int:
    """export: the CIFs of packed run folders, as files."""
    from smoacs_bench.evaluation.io import atomic_write_text
    from smoacs_bench.evaluation.packing import names, read_bytes

    missing = 0
    for run in map(Path, args.runs):
        if not (run / "samples.csv").is_file():
            print(f"skipped: {run}: not a run folder (no samples.csv)", file=sys.stderr)
            missing += 1
            continue
        written = 0
        for sub in ("structures", "structures_relaxed"):
            for name in names(run / sub):
                data = read_bytes(run / sub / name)
                if data is not None:
                    atomic_write_text(Path(args.cif) / run.name / sub / name, data.decode("utf-8"))
                    written += 1
        print(f"{run}: {written} files -> {Path(args.cif) / run.name}/")
    return 1 if missing == len(args.runs) else 0


def cmd_data_download(args: argparse.Namespace) -> int:
    from smoacs_bench.data.datasets import download_megnet

    try:
        path = download_megnet(dest_dir=args.dest)
    except (RuntimeError, ValueError, FileNotFoundError) as err:
        print(f"smoacs-bench data download: {err}", file=sys.stderr)
        return 1
    print(f"ready: {path}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from smoacs_bench.methods.predictors.training import RECIPES, train_predictor
    from smoacs_bench.methods.registry import get_method_class, trainable_methods

    command = "smoacs-bench " + " ".join(sys.argv[1:])
    trainable = ", ".join([c.name for c in trainable_methods()] + list(RECIPES) + ["gap-judge", "megnet-abx3", "dft-gap"])
    try:
        if args.method == "dft-gap":
            from smoacs_bench.evaluation.dft_gap_model import train_dft_gap

            if not args.runs:
                raise ValueError("training dft-gap needs --runs FOLDER (a folder of run folders with DFT checks)")
            m = train_dft_gap(args.out, args.runs, seed=args.seed, progress=not args.no_progress, command=command)
            h = m["holdout"]
            print(f"dft-gap ({m['kind']}): {h['n']} formulas, cross-validated MAE {h['mae']:.3f} eV (predicting the "
                  f"mean: {h['baseline_mae']:.3f}); labels cost {m['label_seconds'] / 3600:.2f} CPU hours of DFT; "
                  f"wrote {args.out}")
            return 0
        if args.method == "gap-judge":
            from smoacs_bench.evaluation.gap_judge import train_gap_judge

            m = train_gap_judge(args.out, seed=args.seed, limit=args.limit, progress=not args.no_progress,
                                command=command)
            h = m["holdout"]
            print(f"gap judge ({m['kind']}): cross-validated MAE {m['cv_mae'][m['kind']]:.3f} eV; held-out 5-site "
                  f"ABX3: MAE {h['mae']:.3f} eV over {h['n']}, {h['mae_gapped']:.3f} eV over {h['n_gapped']} gapped; "
                  f"wrote {args.out}")
            return 0
        if args.method == "megnet-abx3":
            from smoacs_bench.methods.predictors.finetune import finetune

            from .calibration import known_cubic_abx3

            cells, gaps, formulas, info = known_cubic_abx3(progress=not args.no_progress)
            f = finetune(cells, gaps, formulas, args.out, seed=args.seed, extra={**info, "command": command})
            print(f"MEGNet band gap, head refitted on {f['n']} known cubic ABX3 ({f['n_gapped']} gapped): held-out "
                  f"MAE {f['heldout_mae']:.3f} eV ({f['heldout_mae_gapped']:.3f} on gapped; MEGNet "
                  f"{f['megnet_mae']:.3f} / {f['megnet_mae_gapped']:.3f}); wrote {args.out}")
            return 0
        if args.dataset is None:
            raise ValueError(f"training {args.method} needs --dataset")
        if args.method in RECIPES:
            if args.target is None:
                raise ValueError(f"training {args.method} needs --target e_form or --target bandgap")
            train_predictor(args.method, args.dataset, args.target, args.out, epochs=args.epochs,
                            batch_size=args.batch_size, lr=args.lr, seed=args.seed, limit=args.limit,
                            split=args.split, device=args.device, progress=not args.no_progress, command=command)
            return 0
        try:
            cls = get_method_class(args.method)
        except ValueError:
            raise ValueError(f"nothing to train called {args.method!r}; trainable: {trainable}, "
                             "or a plugin method with a model") from None
        if not cls.trainable:
            raise ValueError(f"method {args.method!r} has no model to train; trainable: {trainable}")
        if args.target or args.split:
            raise ValueError("--target and --split apply to predictors (crystalformer, alignn) only")
        options = {k: v for k, v in (("batch_size", args.batch_size), ("lr", args.lr)) if v is not None}
        cls.train_model(args.dataset, args.out, epochs=args.epochs, seed=args.seed, limit=args.limit,
                        float16=args.float16, progress=not args.no_progress, command=command, **options)
    except (ValueError, FileNotFoundError, KeyError) as err:
        print(f"smoacs-bench train: {err}", file=sys.stderr)
        return 1
    return 0


def cmd_heldout(args: argparse.Namespace) -> int:
    from smoacs_bench.evaluation.io import atomic_write_text
    from smoacs_bench.methods.registry import trainable_methods

    try:
        if not Path(args.model).is_dir():
            raise FileNotFoundError(f"{args.model}: no such folder")
        if (Path(args.model) / "trainer.json").is_file():
            from smoacs_bench.methods.predictors.training import heldout_predictor, heldout_predictor_markdown

            text = heldout_predictor_markdown([heldout_predictor(args.model, args.split)], args.split)
        else:
            owners = [cls for cls in trainable_methods() if cls.owns_model(args.model)]
            if not owners:
                raise ValueError(f"{args.model}: not a model folder of a trainable method "
                                 f"({', '.join(c.name for c in trainable_methods())}) or a predictor")
            text = owners[0].heldout_markdown(args.model, args.split)
    except (ValueError, FileNotFoundError) as err:
        print(f"smoacs-bench heldout: {err}", file=sys.stderr)
        return 1
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(args.out), text)
        print(f"wrote {args.out}")
    else:
        print(text)
    return 0


def method_options_text(names: list[str] | None = None) -> str:
    """Every option of the built-in and installed methods: name, type, default and one line of help."""
    import textwrap

    from smoacs_bench.methods import get_method_class
    from smoacs_bench.methods.registry import available_methods

    lines = ["method options (--param KEY=VALUE; --steps/--trials set the budget):"]
    for name in names or list(available_methods()):
        try:
            cls = get_method_class(name)
        except ValueError as err:
            lines.append(f"  {name}: cannot be imported ({err})")
            continue
        lines.append(f"  {name} ({cls.display_name or cls.name}):")
        for key, (kind, default, text) in cls.option_help().items():
            head = f"    {key}: {kind} = {default!r}"
            lines.append(head if not text else textwrap.fill(f"{head}  {text}", 118, subsequent_indent=" " * 8))
    return "\n".join(lines) + "\n"




def _check_numbers(args: argparse.Namespace) -> None:
    """One-line errors for numbers out of range (no traceback, no run folder)."""
    if getattr(args, "n_samples", 1) < 1:
        raise SystemExit(f"--n-samples must be >= 1, got {args.n_samples}")
    if args.margin <= 0:
        raise SystemExit(f"--margin must be > 0 eV, got {args.margin}")
    if args.target_bg < 0:
        raise SystemExit(f"--target-bg must be >= 0 eV, got {args.target_bg}")
    for flag in ("steps", "trials", "batch_size", "workers"):
        value = getattr(args, flag, None)
        if value is not None and value < 1:
            raise SystemExit(f"--{flag.replace('_', '-')} must be >= 1, got {value}")


def cmd_run(args: argparse.Namespace) -> int:
    from smoacs_bench.evaluation.relax import RelaxerUnavailable
    from smoacs_bench.methods import get_method_class

    from .runner import run_experiment

    _check_numbers(args)
    try:
        cls = get_method_class(args.method)
    except ValueError as err:
        raise SystemExit(f"smoacs-bench run: {err}") from None
    options = cls.options()
    config = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--param expects KEY=VALUE, got {item!r}")
        config[key.strip()] = parse_value(value.strip())
    for flag in ("steps", "trials"):  # both name the method's budget
        value = getattr(args, flag)
        if value is not None:
            if cls.budget != flag:
                what = f"counts {cls.budget}: use --{cls.budget}" if cls.budget else "has no budget option"
                raise SystemExit(f"--{flag}: {args.method} {what}")
            config[flag] = value
    for key in ("batch_size", "device", "workers"):
        value = getattr(args, key)
        if value is not None:
            if key not in options:
                raise SystemExit(f"--{key.replace('_', '-')} is not an option of {args.method} "
                                 f"(its options: {', '.join(options) or 'none'})")
            config[key] = value
    if "progress" in options:
        config["progress"] = not args.no_progress
    relax, robust = physical_settings(args)
    try:
        s = run_experiment(args.method, args.task, args.target_bg, args.margin, args.n_samples, args.seed,
                           args.out, config, label=args.label, force=args.force,
                           crossjudge=not args.no_crossjudge, relax=relax, robust=robust,
                           relax_workers=args.relax_workers, progress=not args.no_progress,
                           stage_options=stage_options(args))
    except RelaxerUnavailable as err:
        raise SystemExit(f"smoacs-bench run: {err}") from None
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"smoacs-bench run: {err}") from None
    keys = ("success", "bg_ok", "ef_ok", "valid_structure", "neutral", "min_dist_ok", "perovskite_ok",
            "tolerance_ok", "angles_ok", "coords_ok", "unique_rate")
    print("  ".join(f"{k}={s[k]:.3f}" for k in keys if s.get(k) is not None and s[k] == s[k]))
    from smoacs_bench.evaluation.stages import headline

    if headline(s):
        print(headline(s))
    out = Path(args.out)
    print(f"results: {out}/ (samples.csv, summary.csv, structures.zip, run.log)\n"
          f"next: smoacs-bench table --runs {out} [more run folders] --with-paper")
    return 0


def cmd_table(args: argparse.Namespace) -> int:
    import pandas as pd

    from smoacs_bench.evaluation.captions import caption_for
    from smoacs_bench.evaluation.compare import differences_markdown, paired_differences
    from smoacs_bench.evaluation.io import atomic_write_text
    from smoacs_bench.evaluation.layouts import layout_for_task
    from smoacs_bench.evaluation.render import render_table
    from smoacs_bench.evaluation.summary import table_inputs

    frames, runs = [], []
    for run in args.runs:
        path = Path(run) / "summary.csv"
        if not Path(run).is_dir():
            print(f"skipped: {run}: no such folder", file=sys.stderr)
            continue
        if not path.exists():
            print(f"skipped: {run} has no summary.csv (run unfinished?)", file=sys.stderr)
            continue
        summary = pd.read_csv(path)
        if (Path(run) / "samples.csv").exists():
            samples = pd.read_csv(Path(run) / "samples.csv")
            summary = summary.assign(**table_inputs(samples))
            runs.append((summary.iloc[0].to_dict(), samples))
        frames.append(summary)
    if not frames:
        raise SystemExit("no run with a summary.csv among --runs")
    df = pd.concat(frames, ignore_index=True)
    layout = args.layout or layout_for_task(str(df["task"].iloc[0]))
    text = render_table(df, layout, args.format, with_paper=args.with_paper)
    if args.format == "md" and not args.no_caption:
        text = text.rstrip("\n") + "\n\n" + caption_for(layout, df, with_paper=args.with_paper) + "\n"
        diffs = differences_markdown(paired_differences(runs)) if layout != "diversity" else ""
        if diffs:
            text += "\n" + diffs
    if args.out:
        atomic_write_text(args.out, text)
        print(f"wrote {args.out} ({len(frames)} run(s), layout {layout})")
    else:
        print(text)
    return 0


def _structure_files(items: list[str]) -> list[str]:
    """Files as given; a folder stands for the structure files directly inside it (CIF, POSCAR, ...)."""
    out = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(str(f) for f in p.iterdir() if f.is_file() and (
                f.suffix.lower() in (".cif", ".vasp", ".poscar", ".json", ".xyz") or f.name.startswith(("POSCAR",
                                                                                                        "CONTCAR"))))
            if not found:
                raise SystemExit(f"smoacs-bench evaluate: {item}: a folder with no structure files (CIF, POSCAR)")
            out += found
        else:
            out.append(item)
    return out


def cmd_evaluate(args: argparse.Namespace) -> int:
    from smoacs_bench.data.task import get_task
    from smoacs_bench.evaluation.io import write_csv

    from .judge import judge_files

    _check_numbers(args)
    relax, robust = physical_settings(args)
    args.files = _structure_files(args.files)
    import warnings

    from .runner import _warnings_log

    with warnings.catch_warnings(record=True) as caught:   # third-party warnings go to a log, not the console
        warnings.simplefilter("always")
        try:
            df, problems = judge_files(args.files, get_task(args.task), args.target_bg, args.margin,
                                       args.predictions, crossjudge=not args.no_crossjudge)
        except (FileNotFoundError, ValueError) as err:   # the judge's models (or a predictions file) missing
            raise SystemExit(f"smoacs-bench evaluate: {err}") from None
        if relax is not None or robust is not None:
            df = _physical_columns(args, df, relax, robust)
    if caught:
        from smoacs_bench.evaluation.io import atomic_write_text

        log = Path(args.out).with_suffix(".log")
        atomic_write_text(log, _warnings_log(caught))
        print(f"{len(caught)} warning(s) of the libraries in {log}", file=sys.stderr)
    write_csv(df, args.out)
    for msg in problems:
        print(f"skipped/flagged: {msg}", file=sys.stderr)
    n = len(df)
    unreadable = int(df["formula"].isna().sum())
    print(f"{n} files: {n - unreadable} judged, {unreadable} unreadable; {int(df['success'].sum())} successful "
          f"({df['success'].mean():.3f}); {len(problems)} problem(s); wrote {Path(args.out)}")
    relaxed_dir = Path(args.out).parent / (Path(args.out).stem + "_relaxed")
    if relax is not None and relaxed_dir.is_dir():
        print(f"relaxed ({relax.describe()}); relaxed cells in {relaxed_dir}/")
    from smoacs_bench.evaluation.stages import report_lines

    for line in report_lines(df):
        print(line)
    return 0 if unreadable < n else 1


def _physical_columns(args: argparse.Namespace, df, relax, robust):
    """evaluate --relax: the judge stages' columns for judged files (relaxed CIFs beside --out)."""
    from smoacs_bench.data.task import get_task
    from smoacs_bench.evaluation.io import read_structure
    from smoacs_bench.evaluation.relax import RelaxerUnavailable

    from .physical import judge_options, stage_columns

    criteria = get_task(args.task).criteria(args.target_bg, args.margin)
    structures = [read_structure(f)[0] for f in args.files]
    out = Path(args.out)
    options = dict(judge_options(relax, robust, stage_options(args)), workers=args.relax_workers)
    try:   # the relaxation's resumable state in a hidden folder beside --out, the relaxed cells in <out>_relaxed/
        out_df, _ = stage_columns(df, structures, criteria, options, out.parent / f".{out.stem}_judge",
                                  out.parent / f".{out.stem}_stage_cache", progress=True,
                                  relaxed_dir=out.parent / f"{out.stem}_relaxed")
    except RelaxerUnavailable as err:
        raise SystemExit(f"smoacs-bench evaluate: {err}") from None
    return out_df


INTERRUPTED = "interrupted; run the same command again to resume"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(_command(argv)).parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:   # files are written atomically: nothing half-written is left behind
        print(f"\n{INTERRUPTED}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
