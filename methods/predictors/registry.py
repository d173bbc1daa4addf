"""Predictors by name, and the one place that loads a method's pair of predictors.

A predictor is registered under a name (``megnet-bandgap``) with its property (``band_gap`` in eV or
``formation_energy`` in eV/atom) and its model family, which labels table rows (``SMOACS(MEGNet)``).
Every method and the shared judge load predictors through :func:`get_predictor` /
:func:`load_pair`, and restrict elements with :func:`allowed_elements`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from smoacs_bench.data.elements import K

from .base import Predictor
from .megnet import band_gap_predictor, formation_energy_predictor


@dataclass(frozen=True)
class PredictorSpec:
    """A registered predictor: how to build it, what it predicts, and its family's display name."""

    factory: Callable[..., Predictor]
    prop: str        # "band_gap" (eV) or "formation_energy" (eV/atom)
    family: str      # the architecture, shown in labels, e.g. "MEGNet"; picks SMOACS's learning rates
    paper_abbrev: str = ""   # the paper's row abbreviation, e.g. "Cry" for S(Cry)
    trained_on: str = ""     # a model trained here: its data, shown in labels ("Crystalformer(perov_5)")


def _crystalformer(checkpoint: str) -> Callable[..., Predictor]:
    def build(device: torch.device | str | None = None) -> Predictor:
        from .crystalformer import load_crystalformer

        return load_crystalformer(checkpoint, device=device)

    return build


def _alignn(name: str) -> Callable[..., Predictor]:
    def build(device: torch.device | str | None = None) -> Predictor:
        from .alignn import load_alignn

        return load_alignn(name, device=device)

    return build


def _megnet_abx3(device: torch.device | str | None = None) -> Predictor:
    from .finetune import load_finetuned

    return load_finetuned(device=device)


PREDICTORS: dict[str, PredictorSpec] = {
    "megnet-bandgap": PredictorSpec(band_gap_predictor, "band_gap", "MEGNet"),
    # MEGNet's band gap with its final MLP refitted on MP-20's known 5-site ABX3 (`smoacs-bench train megnet-abx3`)
    "megnet-bandgap-abx3": PredictorSpec(_megnet_abx3, "band_gap", "MEGNet", "", "ABX3-refit"),
    "megnet-eform": PredictorSpec(formation_energy_predictor, "formation_energy", "MEGNet"),
    # official MEGNet-dataset checkpoints in $SMOACS_MODEL_DIR/crystalformer/ (downloaded when missing)
    "crystalformer-bandgap": PredictorSpec(_crystalformer("megnet-bandgap-layer4.ckpt"), "band_gap", "Crystalformer",
                                           "Cry"),
    "crystalformer-eform": PredictorSpec(_crystalformer("megnet-e_form-layer4.ckpt"), "formation_energy",
                                         "Crystalformer", "Cry"),
    # official figshare zips in $SMOACS_MODEL_DIR/alignn/; uses the CGCNN table data/cgcnn_atom_init.json
    "alignn-bandgap": PredictorSpec(_alignn("mp_gappbe_alignn"), "band_gap", "ALIGNN", "ALI"),
    "alignn-eform": PredictorSpec(_alignn("mp_e_form_alignn"), "formation_energy", "ALIGNN", "ALI"),
}

# The shared judge's predictors and every method's default: (band gap, formation energy).
DEFAULT_PAIR: tuple[str, str] = ("megnet-bandgap", "megnet-eform")


def _trained_spec(folder: Path) -> PredictorSpec:
    """A folder written by ``smoacs-bench train crystalformer|alignn`` as a predictor (never the paper's)."""
    from .training import _tag, load_trained

    settings = json.loads((folder / "trainer.json").read_text())

    def build(device: torch.device | str | None = None) -> Predictor:
        return load_trained(folder, device=device)

    prop = "band_gap" if settings["target"] == "bandgap" else "formation_energy"
    family = {"crystalformer": "Crystalformer", "alignn": "ALIGNN"}[settings["family"]]
    return PredictorSpec(build, prop, family, "", _tag(settings["dataset"]))


def _spec(name: str) -> PredictorSpec:
    if name in PREDICTORS:
        return PREDICTORS[name]
    folder = Path(name).expanduser()
    if (folder / "trainer.json").is_file():
        return _trained_spec(folder)
    raise KeyError(f"unknown predictor {name!r}; known: {sorted(PREDICTORS)}, or a folder written by "
                   "`smoacs-bench train crystalformer|alignn`")


def get_predictor(name: str, device: torch.device | str | None = None) -> Predictor:
    """Instantiate a registered predictor by name (see ``PREDICTORS``)."""
    return _spec(name).factory(device=device)


def load_pair(band_gap: str = DEFAULT_PAIR[0], formation_energy: str = DEFAULT_PAIR[1],
              device: torch.device | str | None = None, frozen: bool = True) -> tuple[Predictor, Predictor]:
    """(band-gap predictor in eV, formation-energy predictor in eV/atom), in eval mode; with
    ``frozen`` their weights get no gradients (the optimiser differentiates the inputs only)."""
    for name, prop in ((band_gap, "band_gap"), (formation_energy, "formation_energy")):
        if _spec(name).prop != prop:
            raise ValueError(f"predictor {name!r} predicts {_spec(name).prop}, not {prop}")
    pair = (get_predictor(band_gap, device).eval(), get_predictor(formation_energy, device).eval())
    if frozen:
        for p in pair:
            p.requires_grad_(False)
    return pair


def allowed_elements(predictors: Sequence[Predictor]) -> np.ndarray:
    """(K,) bool: the elements every one of ``predictors`` can embed."""
    mask = torch.ones(K, dtype=torch.bool)
    for p in predictors:
        mask &= p.supported_elements.cpu()[:K].bool()
    return mask.numpy()


FAMILIES: dict[str, tuple[str, str]] = {   # --param predictors=NAME -> (band gap, formation energy)
    "megnet": ("megnet-bandgap", "megnet-eform"),
    "crystalformer": ("crystalformer-bandgap", "crystalformer-eform"),
    "alignn": ("alignn-bandgap", "alignn-eform"),
}


def family_pair(family: str) -> tuple[str, str]:
    """The (band gap, formation energy) predictor names of a family shortcut (``--param predictors=...``)."""
    try:
        return FAMILIES[family.lower()]
    except KeyError:
        raise ValueError(f"unknown predictors {family!r}; choose from {', '.join(FAMILIES)}") from None


def family_of(names: Sequence[str]) -> str:
    """The single family of a pair of predictors (their display name), or "mixed"."""
    families = {_spec(n).family for n in names}
    return families.pop() if len(families) == 1 else "mixed"


def paper_abbrev(names: Sequence[str]) -> str:
    """The paper's abbreviation of a pair's family ("Cry", "ALI"), or "" when the paper has none."""
    abbrevs = {_spec(n).paper_abbrev for n in names}
    return abbrevs.pop() if len(abbrevs) == 1 else ""


def family_label(names: Sequence[str]) -> str:
    """Display name of the predictors' families, e.g. "MEGNet" or "MEGNet/ALIGNN" (order kept); a model
    trained here carries its data, e.g. "Crystalformer(perov_5)"."""
    def one(spec: PredictorSpec) -> str:
        return f"{spec.family}({spec.trained_on})" if spec.trained_on else spec.family

    return "/".join(dict.fromkeys(one(_spec(n)) for n in names))
