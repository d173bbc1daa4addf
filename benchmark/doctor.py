"""``smoacs-bench doctor``: what this machine has, what the tables need, and how to get what is missing.

Every check is a file or import test (no model is loaded except the relaxer's import), so the command takes a
few seconds and never downloads anything. Exit status 1 when something a main table needs is missing.
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smoacs_bench.data.environment import (
    DATA_DIR_ENV,
    DEFAULT_CONFIG,
    MODEL_DIR_ENV,
    config_file,
    data_dir,
    model_dir,
)

MATGL_FILES = ("model.json", "model.pt", "state.pt")
MEGNET_MODELS = ("MEGNet-MP-2018.6.1-Eform", "MEGNet-MP-2019.4.1-BandGap-mfi")
CDVAE_FILES = ("model.ckpt", "hparams.yaml", "prop_scaler.pt")
PEROV5_FILES = ("val.csv", "test.csv")   # the CDVAE files the tables read (train.csv is optional)


@dataclass
class Check:
    what: str
    ok: bool
    detail: str
    required: bool = True


def _files(folder: Path | None, names: tuple[str, ...]) -> tuple[bool, str]:
    if folder is None:
        return False, "folder not configured"
    missing = [n for n in names if not (folder / n).is_file()]
    return (not missing, str(folder) if not missing else f"{folder}: missing {', '.join(missing)}")


def checks() -> list[Check]:
    """Every check, required ones first."""
    import torch

    out = [Check("python", sys.version_info >= (3, 10), platform.python_version()),
           Check("torch", True, f"{torch.__version__}; CUDA {'available: ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'not available (CPU)'}")]
    models, data = model_dir(), data_dir()
    where_m = f"set {MODEL_DIR_ENV} or 'models = \"DIR\"' in {DEFAULT_CONFIG}"
    where_d = f"set {DATA_DIR_ENV} or 'data = \"DIR\"' in {DEFAULT_CONFIG}"
    out.append(Check(f"models folder (${MODEL_DIR_ENV})", models is not None and models.is_dir(),
                     str(models) if models else f"not set: {where_m}"))
    for name in MEGNET_MODELS:
        ok, detail = _files(models / "matgl" / name if models else None, MATGL_FILES)
        out.append(Check(f"MEGNet {name}", ok, detail if ok else f"{detail}; {where_m}, or with internet matgl "
                         f"downloads it by name (matgl.load_model('{name}'))"))
    ok, detail = _files(models / "cdvae-mp20" if models else None, CDVAE_FILES)
    out.append(Check("cross-judge CDVAE DimeNet++ (MP-20)", ok, detail if ok else
                     f"{detail}; CDVAE's released mp_20 property model, see docs/judge.md 'What the evaluator checks'"))
    out.append(Check(f"data folder (${DATA_DIR_ENV})", data is not None and data.is_dir(),
                     str(data) if data else f"not set: {where_d}"))
    ok, detail = _files(data / "perov_5" if data else None, PEROV5_FILES)
    out.append(Check("dataset perov_5", ok, detail if ok else
                     f"{detail}; CDVAE's data/perov_5 (github.com/txie-93/cdvae) into $SMOACS_DATA_DIR/perov_5/"))
    ftcp = Path(__file__).resolve().parents[1] / "models" / "ftcp-perov_5"
    ok, detail = _files(ftcp, ("manifest.json",))
    out.append(Check("FTCP model (models/ftcp-perov_5)", ok, detail if ok else
                     f"{detail}; train one: smoacs-bench train ftcp --dataset perov_5 --out models/ftcp-perov_5"))
    from smoacs_bench.data.mp_reference import HULL_DIR, HULL_FILES, MP20_ABX3, MP20_DIR, MP20_FORMULAS

    ok, detail = _files(data / HULL_DIR if data else None, HULL_FILES)
    out.append(Check("hull reference mp_hull (stage hull)", ok, detail if ok else
                     f"{detail}; Bartel-Group/matgen_baselines' MP formation energies and elemental energies, see the "
                     "hull stage", required=False))
    ok, detail = _files(data / MP20_DIR if data else None, (MP20_FORMULAS, MP20_ABX3))
    out.append(Check("MP-20 reference mp20_reference (novelty, gap judge, calibrations)", ok, detail if ok else
                     f"{detail}; LeMat-GenBench's MP-20 formulas with PBE gaps", required=False))
    from smoacs_bench.evaluation.gap_judge import TRAIN_COMMAND, default_folder

    judge = default_folder()
    out.append(Check("band-gap cross-judge (stage gap_crossjudge)", judge is not None,
                     str(judge) if judge else f"train it: {TRAIN_COMMAND}", required=False))
    for module, hint in (("pyscf", "pip install pyscf (the dft stage's engine)"),
                         ("lightgbm", "pip install lightgbm (the band-gap cross-judge)")):
        found = importlib.util.find_spec(module) is not None
        out.append(Check(f"{module}", found, "installed" if found else hint, required=False))
    chgnet = importlib.util.find_spec("chgnet") is not None
    out.append(Check("relaxer CHGNet (default)", chgnet, "installed" if chgnet else "pip install chgnet"))
    ok, detail = _files(data, ("mp.2018.6.1.json",))
    out.append(Check("MEGNet dataset mp.2018.6.1.json (novelty, FTCP on MEGNet)", ok,
                     detail if ok else f"{detail}; smoacs-bench data download megnet", required=False))
    for sub, what in (("crystalformer", "official Crystalformer weights (S(Cry) rows)"),
                      ("alignn", "official ALIGNN weights (S(ALI) rows)")):
        folder = models / sub if models else None
        ok = folder is not None and folder.is_dir() and any(folder.iterdir())
        out.append(Check(what, ok, str(folder) if ok else "downloaded on first use with internet "
                         f"into ${MODEL_DIR_ENV}/{sub}/", required=False))
    for module, hint in (("sevenn", "pip install '.[sevenn]' (relaxer SevenNet-0; the second_potential stage)"),
                         ("tensorflow", "pip install '.[tensorflow]' (FTCP's other Keras backend)"),
                         ("distributed", "pip install dask distributed (reproduce --scheduler)")):
        found = importlib.util.find_spec(module) is not None
        out.append(Check(f"optional: {module}", found, "installed" if found else hint, required=False))
    from smoacs_bench.evaluation.dft_gpaw import GPAWEngine, setup_dirs

    why = GPAWEngine().unavailable()
    out.append(Check("optional: gpaw (the second DFT engine, --dft-engine gpaw)", why is None,
                     f"installed; PAW setups in {setup_dirs()[0]}" if why is None else why, required=False))
    return out


def cmd_doctor(args: argparse.Namespace) -> int:
    cfg = config_file()
    print(f"config file: {cfg} ({'found' if cfg.is_file() else 'none'})")
    results = checks()
    width = max(len(c.what) for c in results)
    for c in results:
        mark = "ok" if c.ok else ("MISSING" if c.required else "absent")
        print(f"{mark:8s} {c.what:<{width}}  {c.detail}")
    missing = [c.what for c in results if c.required and not c.ok]
    if missing:
        print(f"\n{len(missing)} required item(s) missing: {', '.join(missing)}", file=sys.stderr)
        return 1
    print("\neverything the main tables need is here")
    return 0


def add_parser(subparsers: argparse._SubParsersAction, **kwargs: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("doctor", **kwargs)
    p.set_defaults(func=cmd_doctor)
    return p
