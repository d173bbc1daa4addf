"""Held-out checks of a trained FTCP model (Table 1 row and reconstruction accuracy).

- Property branch: MAE of E_f (eV/atom) and band gap (eV) on the model's test split, predicted from z_mean
  as the released ``main.py`` does, beside the shared MEGNet predictors' MAE on the same crystals. For
  perov_5 the labels are heat_ref (not the Materials Project's E_f) and GLLB-SC gaps, so MEGNet (trained on
  MP PBE data) is compared with another quantity; the caption says so.
- Reconstruction (encode z_mean, decode, undo the scaling): element accuracy per element column (argmax,
  as released), site-count accuracy (decoded sites after trimming vs the crystal's), coordinate MAE over
  the crystal's sites (fractional), lattice-length MAPE (%) and angle MAE (degrees).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .model import load_model
from .representation import N_ELEMENTS, decode, pad
from .train import load_split_records, represent_records


@dataclass
class HeldOut:
    n: int
    mae_ftcp: tuple[float, float]            # (E_f eV/atom, gap eV)
    mae_megnet: tuple[float, float]
    element_accuracy: float
    site_count_accuracy: float
    coord_mae: float
    abc_mape: float
    angle_mae: float


def heldout(folder: str, split: str = "test", data_path: str | None = None, device: str | None = None) -> HeldOut:
    from smoacs_bench.methods.predictors import DEFAULT_PAIR, load_pair

    model = load_model(folder)
    records = load_split_records(folder, split, data_path)
    rep = represent_records(records, model.layout)
    x = model.scaler_x.transform(pad(rep.matrices))
    z = model.encode(x)
    y_hat = model.predict_from_latent(z)
    mae_ftcp = tuple(float(v) for v in np.mean(np.abs(y_hat - rep.y), axis=0))
    bg_model, ef_model = load_pair(*DEFAULT_PAIR, device)
    kept = [r for r in records if r.material_id in set(rep.ids)]   # represented rows, in rep's order
    structures = [r.structure for r in kept]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ef = ef_model.predict_structures(structures)
        bg = bg_model.predict_structures(structures)
    mae_megnet = (float(np.nanmean(np.abs(ef - rep.y[:, 0]))), float(np.nanmean(np.abs(bg - rep.y[:, 1]))))

    recon = model.decode(z)
    lay = model.layout
    true_el = np.argmax(rep.matrices[:, :N_ELEMENTS, :lay.max_elms], axis=1)
    rec_el = np.argmax(recon[:, :N_ELEMENTS, :lay.max_elms], axis=1)
    present = rep.matrices[:, :N_ELEMENTS, :lay.max_elms].sum(axis=1) > 0
    element_acc = float((true_el == rec_el)[present].mean())
    n_sites = [len(s) for s in structures]
    counts, coord_err = [], []
    for i, n in enumerate(n_sites):
        counts.append(len(decode(recon[i], lay).species) == n)
        sl = slice(lay.row_coords, lay.row_coords + n)
        coord_err.append(np.abs(recon[i, sl, :3] - rep.matrices[i, sl, :3]).ravel())
    abc_t, abc_r = rep.matrices[:, lay.row_abc, :3], recon[:, lay.row_abc, :3]
    ang_t, ang_r = rep.matrices[:, lay.row_angles, :3], recon[:, lay.row_angles, :3]
    return HeldOut(
        n=len(rep.ids), mae_ftcp=mae_ftcp, mae_megnet=mae_megnet, element_accuracy=element_acc,
        site_count_accuracy=float(np.mean(counts)), coord_mae=float(np.mean(np.concatenate(coord_err))),
        abc_mape=float(np.mean(np.abs(abc_r - abc_t) / abc_t) * 100), angle_mae=float(np.mean(np.abs(ang_r - ang_t))),
    )


def heldout_markdown(h: HeldOut, trained_on: str, split: str = "test") -> str:
    caption = (f"Table 1 (FTCP rows): MAE on the {split} split of {trained_on} ({h.n} crystals). The FTCP property "
               "branch predicts from z_mean; MEGNet is the shared predictor pair (formation energy MP-2018.6.1, "
               "multi-fidelity band gap at the PBE fidelity).")
    if trained_on == "perov_5":
        caption += (" Departure from the paper: perov_5's heat_ref is not the Materials Project's formation "
                    "energy and its gaps are GLLB-SC, so MEGNet's MAE compares it with a different quantity; the "
                    "paper's Table 1 uses the MEGNet dataset.")
    lines = [caption, "", "| model | E_f MAE (eV/atom) | band gap MAE (eV) |", "|---|---|---|",
             f"| FTCP({trained_on}) property branch | {h.mae_ftcp[0]:.3f} | {h.mae_ftcp[1]:.3f} |",
             f"| MEGNet (shared predictors) | {h.mae_megnet[0]:.3f} | {h.mae_megnet[1]:.3f} |", "",
             f"Reconstruction on the same crystals: element accuracy {h.element_accuracy:.3f}, site-count "
             f"accuracy {h.site_count_accuracy:.3f}, coordinate MAE {h.coord_mae:.4f} (fractional), lattice-length "
             f"MAPE {h.abc_mape:.2f} %, angle MAE {h.angle_mae:.2f}°."]
    return "\n".join(lines) + "\n"
