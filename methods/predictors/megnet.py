"""MEGNet predictors (matgl, PyG backend) that accept soft crystals.

The site distribution enters through the element embedding (SMOACS paper, Section A.5):
node features = atom_probs (restricted to the model's element types) @ embedding matrix.
Bond distances are computed inside autograd from lattice and fractional coordinates over a
fixed edge set; everything after that is matgl's own modules and weights.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from pymatgen.core.periodic_table import Element

from .base import Predictor
from .crystals import NUM_ELEMENTS, SoftCrystals
from .graph import NeighborGraph, bond_vectors

__all__ = [
    "BAND_GAP_MODEL",
    "FORMATION_ENERGY_MODEL",
    "MEGNetPredictor",
    "band_gap_predictor",
    "formation_energy_predictor",
    "load_matgl_model",
    "load_megnet",
]

FORMATION_ENERGY_MODEL = "MEGNet-MP-2018.6.1-Eform"
BAND_GAP_MODEL = "MEGNet-MP-2019.4.1-BandGap-mfi"
MODEL_DIR_ENV = "SMOACS_MODEL_DIR"


class MEGNetPredictor(Predictor):
    """Differentiable wrapper around a matgl MEGNet (optionally inside a TransformedTargetModel).

    ``state``: for models with a state embedding (multi-fidelity band gap) the fidelity index
    (0 = PBE); for models with raw state features (Eform) the feature vector, default the
    converter's default [0, 0]. Output is in the wrapped model's target units after its
    inverse target transform.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        name: str = "megnet",
        unit: str = "",
        state: int | Sequence[float] | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.transformer = getattr(model, "transformer", None)
        self.model = getattr(model, "model", model)
        self.model.eval()
        self.model.requires_grad_(False)
        self.name, self.unit = name, unit
        self.cutoff = float(self.model.cutoff)
        emb = self.model.embedding
        if emb.ntypes_node is None:
            raise ValueError("MEGNetPredictor needs a model with an element (nn.Embedding) node embedding")
        z_index = torch.tensor([Element(s).Z - 1 for s in self.model.element_types], dtype=torch.long)
        if (z_index >= NUM_ELEMENTS).any():
            raise ValueError(f"model element types beyond Z = {NUM_ELEMENTS}")
        supported = torch.zeros(NUM_ELEMENTS, dtype=torch.bool)
        supported[z_index] = True
        self.register_buffer("z_index", z_index, persistent=False)
        self.register_buffer("supported_elements", supported, persistent=False)
        self.state_is_index = emb.include_state and emb.ntypes_state is not None
        if self.state_is_index:
            state_t = torch.tensor(int(state or 0), dtype=torch.long)
        elif isinstance(state, int):
            raise ValueError("this model has raw state features, not a state embedding: pass a float sequence")
        else:
            state_t = torch.tensor([0.0, 0.0] if state is None else list(state), dtype=torch.float32)
        self.register_buffer("state", state_t, persistent=False)
        if device is not None:
            self.to(device)

    def _state_attr(self, n: int, dtype: torch.dtype) -> torch.Tensor | None:
        if not self.model.include_state_embedding:
            return None
        if self.state_is_index:
            return self.state.expand(n)
        return self.state.to(dtype).expand(n, -1)

    def forward(self, crystals: SoftCrystals, graph: NeighborGraph | None = None) -> torch.Tensor:
        """(B,) predictions in ``unit``; differentiable in lattice, frac_coords and atom_probs.

        Samples with a non-finite lattice, coordinate or probability give NaN; other samples are unaffected.

        ``graph`` must have ``cutoff >= self.cutoff``; with a larger cutoff (a Verlet skin, e.g. one
        graph shared by several predictors) edges longer than ``self.cutoff`` are dropped on the fly.
        """
        if crystals.lattice.is_cuda:
            # matgl's Set2Set readout is an LSTM; cuDNN's LSTM has no backward in eval mode, the native one has.
            with torch.backends.cudnn.flags(enabled=False):
                return self._forward(crystals, graph)
        return self._forward(crystals, graph)

    def _forward(self, crystals: SoftCrystals, graph: NeighborGraph | None) -> torch.Tensor:
        m = self.model
        n_graphs = crystals.num_samples
        out = m.output_proj(self.readout_input(crystals, graph))
        if m.is_classification:
            out = torch.sigmoid(out)
        out = out.reshape(n_graphs)
        if self.transformer is not None:
            out = self.transformer.inverse_transform(out)
        return torch.where(_finite_samples(crystals), out, torch.full_like(out, math.nan))

    def readout_input(self, crystals: SoftCrystals, graph: NeighborGraph | None = None) -> torch.Tensor:
        """(B, d) what the model's final MLP (``output_proj``) reads: the node and edge Set2Set vectors and the
        state features (a fine-tuned head needs nothing else)."""
        if graph is None:
            graph = self.neighbor_graph(crystals)
        elif graph.cutoff < self.cutoff - 1e-9:
            raise ValueError(f"graph cutoff {graph.cutoff} Å < model cutoff {self.cutoff} Å")
        m = self.model
        n_graphs, n_nodes = crystals.num_samples, crystals.frac_coords.shape[0]
        dtype = m.embedding.layer_node_embedding.weight.dtype
        crystals = crystals.to(dtype=dtype)
        batch = crystals.batch
        vec = bond_vectors(crystals, graph)
        dist = torch.linalg.vector_norm(vec, dim=1)
        src, dst = graph.src, graph.dst
        if graph.cutoff > self.cutoff + 1e-9:
            keep = (dist * dist < self.cutoff**2 + 1e-8).detach()
            src, dst, dist = src[keep], dst[keep], dist[keep]
        edge_index = torch.stack([src, dst])
        edge_batch = batch[src]

        # Soft node embedding: (S, 98) -> (S, n_types) @ (n_types, dim).
        node_feat = crystals.atom_probs.index_select(1, self.z_index) @ m.embedding.layer_node_embedding.weight
        edge_attr = m.bond_expansion(dist)
        dummy_types = torch.zeros(n_nodes, dtype=torch.long, device=batch.device)
        _, edge_feat, state_feat = m.embedding(dummy_types, edge_attr, self._state_attr(n_graphs, dtype))
        edge_feat = m.edge_encoder(edge_feat)
        node_feat = m.node_encoder(node_feat)
        state_feat = m.state_encoder(state_feat)
        for block in m.blocks:  # same calling convention as matgl's MEGNet.forward
            if state_feat.dim() == 1:
                state_feat = state_feat.unsqueeze(0)
            edge_feat, node_feat, state_feat = block(
                edge_index, edge_feat, node_feat, state_feat, batch, edge_batch, n_nodes, n_graphs
            )
        node_vec = m.node_s2s(node_feat, batch, dim_size=n_graphs).view(n_graphs, -1)
        edge_vec = m.edge_s2s(edge_feat, edge_batch, num_graphs=n_graphs).view(n_graphs, -1)
        return torch.cat([node_vec, edge_vec, state_feat.reshape(n_graphs, -1)], dim=-1)


def _finite_samples(crystals: SoftCrystals) -> torch.Tensor:
    """(B,) bool: lattice, coordinates and probabilities of the sample are all finite."""
    bad_site = ~(torch.isfinite(crystals.frac_coords).all(1) & torch.isfinite(crystals.atom_probs).all(1))
    bad = torch.zeros(crystals.num_samples, device=bad_site.device).index_add_(0, crystals.batch, bad_site.float())
    return torch.isfinite(crystals.lattice).all(dim=2).all(dim=1) & (bad == 0)


def load_matgl_model(name_or_path: str | os.PathLike) -> torch.nn.Module:
    """Load a matgl model: an existing directory; else ``$SMOACS_MODEL_DIR/matgl/<name>`` or
    ``$SMOACS_MODEL_DIR/<name>``; else by name.

    The last step is matgl's own lookup (download from its hub). Raises FileNotFoundError
    naming the model and the underlying error when loading fails.
    """
    import matgl
    from matgl.data.transformer import Normalizer

    torch.serialization.add_safe_globals([Normalizer])
    path = Path(name_or_path)
    env_dir = _models_env()
    candidates = [Path(env_dir) / "matgl" / path.name, Path(env_dir) / path.name] if env_dir else []
    if path.is_dir():
        source: str | Path = path
    elif found := next((c for c in candidates if c.is_dir()), None):
        source = found
    else:
        source = str(name_or_path)
        from smoacs_bench.data.environment import online

        if not online("raw.githubusercontent.com"):   # matgl would retry its hub for about a minute
            raise FileNotFoundError(
                f"matgl model {path.name!r} not found and no network to download it: set {MODEL_DIR_ENV} (or "
                f"'models = \"DIR\"' in ~/.config/smoacs-bench/config.toml) to a folder holding matgl/{path.name}/ "
                "(model.json, model.pt, state.pt); with internet matgl downloads it by name")
    try:
        with warnings.catch_warnings():  # matgl warns about its own model-version field on every load
            warnings.filterwarnings("ignore", message=".*Incompatible model version.*")
            warnings.filterwarnings("ignore", message=".*_check_ver.*")
            return matgl.load_model(source)
    except Exception as err:  # matgl wraps download/IO failures in RuntimeError/ValueError
        cause = err.__cause__ or err
        raise FileNotFoundError(
            f"could not load matgl model {path.name!r} (tried {str(source)!r}): set {MODEL_DIR_ENV} to a "
            f"directory containing 'matgl/{path.name}/' (model.json, model.pt, state.pt) or allow matgl to "
            f"download it. {MODEL_DIR_ENV}={env_dir!r}; underlying error: {type(cause).__name__}: {cause}"
        ) from err


def load_megnet(name_or_path: str | os.PathLike, device: torch.device | str | None = None,
                **kw) -> MEGNetPredictor:
    """Load a MEGNet model (see :func:`load_matgl_model`) as a :class:`MEGNetPredictor`."""
    kw.setdefault("name", Path(name_or_path).name)
    return MEGNetPredictor(load_matgl_model(name_or_path), device=device, **kw)


def formation_energy_predictor(device: torch.device | str | None = None) -> MEGNetPredictor:
    """MEGNet formation energy (MP 2018.6.1), eV/atom, cutoff 4 Å."""
    return load_megnet(FORMATION_ENERGY_MODEL, device=device, name="megnet-eform", unit="eV/atom")


def band_gap_predictor(state: int = 0, device: torch.device | str | None = None) -> MEGNetPredictor:
    """MEGNet multi-fidelity band gap (MP 2019.4.1), eV, cutoff 5 Å; state 0 = PBE fidelity."""
    return load_megnet(BAND_GAP_MODEL, device=device, name="megnet-bandgap", unit="eV", state=state)


def _models_env() -> str | None:
    """The models folder as a string (``$SMOACS_MODEL_DIR`` or the config file's), or None."""
    from smoacs_bench.data.environment import model_dir

    found = model_dir()
    return str(found) if found else None
