"""ALIGNN (Choudhary & DeCost 2021) as a differentiable predictor of soft crystals, in pure torch (no dgl).

Architecture (2021 ``alignn.models.alignn.ALIGNN``, the layout of the official MEGNet checkpoints
``mp_e_form_alignn`` / ``mp_gappbe_alignn``): CGCNN atom features (92) -> MLP(Linear, BatchNorm, SiLU)
-> hidden 256; bond lengths -> 80 Gaussian RBFs on [0, 8] Å -> MLP 64 -> MLP 256; bond-angle cosines
-> 40 RBFs on [-1, 1] -> MLP 64 -> MLP 256; 4 ALIGNN layers (an edge-gated graph convolution on the
crystal graph, then one on its line graph) + 4 edge-gated graph convolutions; mean pooling; Linear.
Module names match the official state_dict, so ``ALIGNNPredictor.load_state_dict(sd, strict=True)``
loads an official checkpoint directly.

Soft species (SMOACS paper, Appendix A.5): node input = atom_probs (S, 98) @ CGCNN table (98, 92).
The CGCNN table is read from ``data/cgcnn_atom_init.json`` (the published ``atom_init.json`` format,
``{"Z": [92 floats]}``); it is not shipped here.

Graph (ALIGNN ``nearest_neighbor_edges`` with ``use_canonize=True`` + ``build_undirected_edgedata``):
each site keeps its 12 nearest neighbours (periodic images included) and every further neighbour tied
with the 12th; the union over sites is made undirected; a site's own periodic images (self loops) end up
twice in each direction, as in the official construction. The line graph joins bond e1 = (u -> v) to every
bond e2 = (v -> w) (backtracking and self-pairs included, as dgl's ``line_graph``); the angle feature is
cos(-r_e1, r_e2). The graph is discrete (from the detached geometry); bond vectors and cosines are
computed inside autograd, so outputs are differentiable in lattice, frac_coords and atom_probs.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import urllib.request
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

import smoacs_bench.data as _data_pkg

from .base import Predictor
from .crystals import NUM_ELEMENTS, SoftCrystals
from .graph import NeighborGraph, bond_vectors, build_neighbor_graph

__all__ = [
    "ALIGNNGraph",
    "ALIGNNPredictor",
    "ALIGNN_MODELS",
    "CGCNN_TABLE_PATH",
    "EdgeGatedGraphConv",
    "build_knn_graph",
    "knn_from_candidates",
    "line_graph",
    "load_alignn",
    "load_cgcnn_table",
]

MODEL_DIR_ENV = "SMOACS_MODEL_DIR"
CGCNN_TABLE_PATH = Path(_data_pkg.__file__).resolve().parent / "cgcnn_atom_init.json"

# Official figshare checkpoints (alignn ``pretrained.py``): name -> (URL, unit). SMOACS spells them "...alignnn".
ALIGNN_MODELS: dict[str, tuple[str, str]] = {
    "mp_e_form_alignn": ("https://figshare.com/ndownloader/files/31458811", "eV/atom"),
    "mp_gappbe_alignn": ("https://figshare.com/ndownloader/files/31458814", "eV"),
}
_ALIASES = {"mp_e_form_alignnn": "mp_e_form_alignn", "mp_gappbe_alignnn": "mp_gappbe_alignn"}

# Line-graph edges per group of crystals in eval mode (see ALIGNNPredictor.forward). Forward + backward
# keeps about 30 KB per line-graph edge in float32 (measured), so a group peaks near 2 GB; a 5-site
# perovskite has about 1,400 line-graph edges. None: one pass, whatever the size.
MAX_LINE_EDGES = 1 << 16
TIE_TOL = 1e-5  # Å: neighbours within this of the k-th distance count as tied with it


# --------------------------------------------------------------------------------------------------
# CGCNN atom-feature table
# --------------------------------------------------------------------------------------------------


def load_cgcnn_table(path: str | os.PathLike | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(98, F) float64 table (row Z - 1) and (98,) bool "has an entry" from an ``atom_init.json`` file.

    Default path: ``data/cgcnn_atom_init.json`` of this package (``CGCNN_TABLE_PATH``). Rows of
    elements missing from the file are zero and unsupported. Raises FileNotFoundError naming the file.
    """
    p = Path(path) if path is not None else CGCNN_TABLE_PATH
    if not p.is_file():
        raise FileNotFoundError(
            f"CGCNN atom-feature table not found: {p} (provide the published CGCNN atom_init.json, "
            f'format {{"Z": [92 floats]}}, at that path or pass atom_table=...)'
        )
    raw = json.loads(p.read_text())
    width = {len(v) for v in raw.values()}
    if len(width) != 1:
        raise ValueError(f"{p}: rows of different lengths {sorted(width)}")
    table = torch.zeros(NUM_ELEMENTS, width.pop(), dtype=torch.float64)
    ok = torch.zeros(NUM_ELEMENTS, dtype=torch.bool)
    for key, row in raw.items():
        z = int(key)
        if 1 <= z <= NUM_ELEMENTS:
            table[z - 1] = torch.tensor(row, dtype=torch.float64)
            ok[z - 1] = True
    return table, ok


def _as_table(atom_table) -> tuple[torch.Tensor, torch.Tensor]:
    if atom_table is None or isinstance(atom_table, (str, os.PathLike)):
        return load_cgcnn_table(atom_table)
    if isinstance(atom_table, dict):  # {Z: row} as in atom_init.json
        rows = {int(k): v for k, v in atom_table.items()}
        table = torch.zeros(NUM_ELEMENTS, len(next(iter(rows.values()))), dtype=torch.float64)
        ok = torch.zeros(NUM_ELEMENTS, dtype=torch.bool)
        for z, row in rows.items():
            if 1 <= z <= NUM_ELEMENTS:
                table[z - 1] = torch.as_tensor(row, dtype=torch.float64)
                ok[z - 1] = True
        return table, ok
    table = torch.as_tensor(atom_table, dtype=torch.float64)
    if table.shape[0] != NUM_ELEMENTS:
        raise ValueError(f"atom_table must have {NUM_ELEMENTS} rows (Z = 1..{NUM_ELEMENTS}), got {tuple(table.shape)}")
    return table, table.abs().sum(1) > 0


# --------------------------------------------------------------------------------------------------
# Graph: k nearest neighbours (ALIGNN) and line graph, from indices
# --------------------------------------------------------------------------------------------------


@dataclass
class ALIGNNGraph(NeighborGraph):
    """A finished ALIGNN k-nearest-neighbour graph (undirected, self loops doubled); used as given.

    ``cutoff`` is the radius the candidates were searched in (may exceed 8 Å after ALIGNN's enlargement).
    """

    k: int = 12

    def to(self, device: torch.device | str | None = None) -> ALIGNNGraph:
        return ALIGNNGraph(self.src.to(device), self.dst.to(device), self.images.to(device), self.cutoff, self.k)


def _ragged_arange(counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    owner = torch.repeat_interleave(torch.arange(counts.numel(), device=counts.device), counts)
    starts = torch.cumsum(counts, 0) - counts
    return owner, torch.arange(owner.numel(), device=counts.device) - starts[owner]


def _good_samples(crystals: SoftCrystals) -> torch.Tensor:
    """(B,) bool: finite, non-singular lattice and finite coordinates (those get edges)."""
    lat = crystals.lattice.detach().double()
    bad_site = (~torch.isfinite(crystals.frac_coords.detach()).all(1)).double()
    bad = torch.zeros(crystals.num_samples, dtype=torch.float64, device=lat.device).index_add_(
        0, crystals.batch, bad_site) > 0
    good = torch.isfinite(lat).all(2).all(1) & ~bad
    safe = torch.where(good[:, None, None], lat, torch.eye(3, dtype=lat.dtype, device=lat.device))
    return good & (torch.linalg.det(safe).abs() > 1e-12)


def _subset(crystals: SoftCrystals, samples: torch.Tensor) -> tuple[SoftCrystals, torch.Tensor]:
    """Crystals ``samples`` only, and the global index of each of their sites."""
    remap = torch.full((crystals.num_samples,), -1, dtype=torch.long, device=crystals.device)
    remap[samples] = torch.arange(samples.numel(), device=crystals.device)
    sites = torch.nonzero(remap[crystals.batch] >= 0).squeeze(1)
    sub = SoftCrystals(crystals.lattice.detach()[samples], crystals.frac_coords.detach()[sites],
                       crystals.atom_probs.detach()[sites], remap[crystals.batch[sites]])
    return sub, sites


def _select(crystals: SoftCrystals, src, dst, img, k: int, tie_tol: float):
    """Unique candidates -> (kept src, dst, img (long), per-site neighbour count)."""
    n_sites = crystals.frac_coords.shape[0]
    key = torch.unique(torch.cat([src[:, None], dst[:, None], img], 1), dim=0)
    src, dst, img = key[:, 0], key[:, 1], key[:, 2:]
    f = crystals.frac_coords.detach().double()
    lat = crystals.lattice.detach().double()
    vec = torch.einsum("ei,eij->ej", f[dst] + img.double() - f[src], lat[crystals.batch[src]])
    d = torch.linalg.vector_norm(vec, dim=1)
    order = torch.argsort(d, stable=True)
    order = order[torch.argsort(src[order], stable=True)]
    src, dst, img, d = src[order], dst[order], img[order], d[order]
    count = torch.bincount(src, minlength=n_sites)
    rank = torch.arange(src.numel(), device=src.device) - (torch.cumsum(count, 0) - count)[src]
    d_k = torch.full((n_sites,), math.inf, dtype=d.dtype, device=d.device)
    at_k = rank == k - 1
    d_k[src[at_k]] = d[at_k]
    keep = d <= d_k[src] + tie_tol
    return src[keep], dst[keep], img[keep], count


def knn_from_candidates(
    crystals: SoftCrystals,
    candidates: NeighborGraph,
    k: int = 12,
    cutoff: float = 8.0,
    tie_tol: float = TIE_TOL,
    max_rounds: int = 16,
) -> ALIGNNGraph:
    """The ALIGNN kNN graph from a complete radius graph ``candidates`` (all pairs within its cutoff).

    Each site keeps its ``k`` nearest candidates plus ties (within ``tie_tol`` Å of the k-th); crystals
    in which a site has fewer than ``k`` candidates are searched again with ALIGNN's enlarged radius
    (max(a, b, c) if the radius is below it, else twice the radius) until every site has ``k``. The
    union is made undirected and self loops are doubled (ALIGNN ``use_canonize`` convention).
    """
    dev = crystals.device
    src, dst = candidates.src, candidates.dst
    img = torch.round(candidates.images.detach().double()).long()
    good = _good_samples(crystals)
    radius = torch.full((crystals.num_samples,), float(max(candidates.cutoff, 0.0)), dtype=torch.float64,
                        device=dev)
    for _ in range(max_rounds):
        s, t, n, count = _select(crystals, src, dst, img, k, tie_tol)
        short = torch.zeros(crystals.num_samples, dtype=torch.bool, device=dev)
        short[crystals.batch[count < k]] = True
        short &= good
        if not short.any():
            break
        redo = torch.nonzero(short).squeeze(1)
        abc = torch.linalg.vector_norm(crystals.lattice.detach().double()[redo], dim=2).amax(1)
        r_old = radius[redo]
        r_new = torch.where(r_old < abc, abc, 2 * r_old)
        r_new = torch.where(r_new <= 0, torch.full_like(r_new, cutoff), r_new)
        radius[redo] = r_new
        sub, sites = _subset(crystals, redo)
        extra = build_neighbor_graph(sub, float(r_new.max()))
        drop = short[crystals.batch[src]]
        src = torch.cat([src[~drop], sites[extra.src]])
        dst = torch.cat([dst[~drop], sites[extra.dst]])
        img = torch.cat([img[~drop], torch.round(extra.images.double()).long()])
    # undirected union, then self loops twice
    s2, t2, n2 = torch.cat([s, t]), torch.cat([t, s]), torch.cat([n, -n])
    key = torch.unique(torch.cat([s2[:, None], t2[:, None], n2], 1), dim=0)
    key = torch.cat([key, key[key[:, 0] == key[:, 1]]])
    dtype = crystals.frac_coords.dtype
    return ALIGNNGraph(key[:, 0].contiguous(), key[:, 1].contiguous(), key[:, 2:].to(dtype),
                       float(radius.max()) if radius.numel() else float(cutoff), k)


def build_knn_graph(crystals: SoftCrystals, k: int = 12, cutoff: float = 8.0,
                    tie_tol: float = TIE_TOL) -> ALIGNNGraph:
    """ALIGNN's k-nearest-neighbour graph (``nearest_neighbor_edges``, k = 12, cutoff 8 Å) of ``crystals``."""
    return knn_from_candidates(crystals, build_neighbor_graph(crystals, cutoff), k, cutoff, tie_tol)


def line_graph(src: torch.Tensor, dst: torch.Tensor, n_nodes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Line graph of a directed multigraph: (lg_src, lg_dst) edge indices with dst[lg_src] == src[lg_dst].

    Like dgl ``line_graph(backtracking=True)``: every bond e1 = (u -> v) is joined to every bond leaving v.
    """
    out_order = torch.argsort(src, stable=True)
    out_count = torch.bincount(src, minlength=n_nodes)
    out_start = torch.cumsum(out_count, 0) - out_count
    e1, local = _ragged_arange(out_count[dst])
    return e1, out_order[out_start[dst[e1]] + local]


# --------------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------------


class RBFExpansion(nn.Module):
    """exp(-gamma (x - centers)^2), centers = linspace(vmin, vmax, bins) (float32 buffer, as ALIGNN),
    gamma = 1 / mean spacing of the float32 centers."""

    def __init__(self, vmin: float = 0.0, vmax: float = 8.0, bins: int = 40) -> None:
        super().__init__()
        self.register_buffer("centers", torch.linspace(vmin, vmax, bins))
        spacing = np.diff(self.centers.numpy()).mean()  # float32 arithmetic, as the official code
        self.gamma = float(1.0 / spacing)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(-self.gamma * (x.unsqueeze(1) - self.centers) ** 2)


class MLPLayer(nn.Module):
    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.layer = nn.Sequential(nn.Linear(in_features, out_features), nn.BatchNorm1d(out_features), nn.SiLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class EdgeGatedGraphConv(nn.Module):
    """Edge-gated graph convolution (ALIGNN 2021), residual, on index tensors (src -> dst).

    m_e = W_s h_src + W_d h_dst + W_e y_e;  sigma = sigmoid(m);
    h_v' = h_v + SiLU(BN(U_s h_v + sum_{e: u->v} sigma_e * U_d h_u / (sum sigma_e + 1e-6)));
    y_e' = y_e + SiLU(BN(m_e)).
    """

    def __init__(self, input_features: int, output_features: int, residual: bool = True) -> None:
        super().__init__()
        self.residual = residual
        self.src_gate = nn.Linear(input_features, output_features)
        self.dst_gate = nn.Linear(input_features, output_features)
        self.edge_gate = nn.Linear(input_features, output_features)
        self.bn_edges = nn.BatchNorm1d(output_features)
        self.src_update = nn.Linear(input_features, output_features)
        self.dst_update = nn.Linear(input_features, output_features)
        self.bn_nodes = nn.BatchNorm1d(output_features)

    def forward(self, src: torch.Tensor, dst: torch.Tensor, x: torch.Tensor, y: torch.Tensor):
        m = self.src_gate(x)[src] + self.dst_gate(x)[dst] + self.edge_gate(y)
        sigma = torch.sigmoid(m)
        bh = self.dst_update(x)
        zeros = x.new_zeros(x.shape[0], m.shape[1])
        sum_sigma_h = zeros.index_add(0, dst, bh[src] * sigma)
        sum_sigma = zeros.index_add(0, dst, sigma)
        h = sum_sigma_h / (sum_sigma + 1e-6)
        x_new = F.silu(self.bn_nodes(self.src_update(x) + h))
        y_new = F.silu(self.bn_edges(m))
        if self.residual:
            x_new, y_new = x + x_new, y + y_new
        return x_new, y_new


class ALIGNNConv(nn.Module):
    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.node_update = EdgeGatedGraphConv(in_features, out_features)
        self.edge_update = EdgeGatedGraphConv(out_features, out_features)

    def forward(self, g, lg, x, y, z):
        x, m = self.node_update(g[0], g[1], x, y)
        y, z = self.edge_update(lg[0], lg[1], m, z)
        return x, y, z


class ALIGNNPredictor(Predictor):
    """ALIGNN on soft crystals; state_dict keys are those of the official 2021 ``ALIGNN`` module.

    ``atom_table``: (98, F) CGCNN features (row Z - 1), a path to an ``atom_init.json``, a {Z: row} dict,
    or None for ``data/cgcnn_atom_init.json``. Elements without a row are unsupported. The model is put
    in eval mode (BatchNorm uses its running statistics) with frozen parameters.
    """

    def __init__(
        self,
        atom_table=None,
        alignn_layers: int = 4,
        gcn_layers: int = 4,
        atom_input_features: int = 92,
        edge_input_features: int = 80,
        triplet_input_features: int = 40,
        embedding_features: int = 64,
        hidden_features: int = 256,
        output_features: int = 1,
        name: str = "alignn",
        unit: str = "",
        k: int = 12,
        cutoff: float = 8.0,
        device: torch.device | str | None = None,
        max_line_edges: int | None = MAX_LINE_EDGES,
    ) -> None:
        super().__init__()
        table, ok = _as_table(atom_table)
        if table.shape[1] != atom_input_features:
            raise ValueError(f"atom table has {table.shape[1]} features, the model expects {atom_input_features}")
        self.name, self.unit, self.k, self.cutoff = name, unit, int(k), float(cutoff)
        self.max_line_edges = max_line_edges
        self.atom_embedding = MLPLayer(atom_input_features, hidden_features)
        self.edge_embedding = nn.Sequential(
            RBFExpansion(0.0, 8.0, edge_input_features),
            MLPLayer(edge_input_features, embedding_features),
            MLPLayer(embedding_features, hidden_features),
        )
        self.angle_embedding = nn.Sequential(
            RBFExpansion(-1.0, 1.0, triplet_input_features),
            MLPLayer(triplet_input_features, embedding_features),
            MLPLayer(embedding_features, hidden_features),
        )
        self.alignn_layers = nn.ModuleList([ALIGNNConv(hidden_features, hidden_features) for _ in range(alignn_layers)])
        self.gcn_layers = nn.ModuleList([EdgeGatedGraphConv(hidden_features, hidden_features) for _ in range(gcn_layers)])
        self.fc = nn.Linear(hidden_features, output_features)
        self.register_buffer("atom_table", table.float(), persistent=False)
        self.register_buffer("supported_elements", ok, persistent=False)
        self.eval()
        self.requires_grad_(False)
        if device is not None:
            self.to(device)

    @classmethod
    def from_state_dict(cls, state_dict: dict[str, torch.Tensor], atom_table=None, **kw) -> ALIGNNPredictor:
        """Build with sizes inferred from an official state_dict's shapes and load it strictly."""
        sd = {re.sub(r"^(module\.)+", "", key): v for key, v in state_dict.items()}

        def n_layers(prefix: str) -> int:
            found = {int(m.group(1)) for key in sd if (m := re.match(rf"{prefix}\.(\d+)\.", key))}
            return max(found) + 1 if found else 0

        sizes = dict(
            alignn_layers=n_layers("alignn_layers"),
            gcn_layers=n_layers("gcn_layers"),
            atom_input_features=sd["atom_embedding.layer.0.weight"].shape[1],
            hidden_features=sd["atom_embedding.layer.0.weight"].shape[0],
            edge_input_features=sd["edge_embedding.1.layer.0.weight"].shape[1],
            embedding_features=sd["edge_embedding.1.layer.0.weight"].shape[0],
            triplet_input_features=sd["angle_embedding.1.layer.0.weight"].shape[1],
            output_features=sd["fc.weight"].shape[0],
        )
        model = cls(atom_table, **sizes, **kw)
        device = model.device
        model.load_state_dict(sd, strict=True)
        return model.to(device)

    def neighbor_graph(self, crystals: SoftCrystals) -> ALIGNNGraph:
        """ALIGNN's kNN graph (k = 12 within 8 Å, enlarged if needed) from the detached geometry."""
        return build_knn_graph(crystals, self.k, self.cutoff)

    def forward(self, crystals: SoftCrystals, graph: NeighborGraph | None = None) -> torch.Tensor:
        """(B,) predictions; differentiable in lattice, frac_coords and atom_probs.

        ``graph``: an :class:`ALIGNNGraph` (used as given, e.g. held fixed by an optimiser), any complete
        radius graph (:func:`~.graph.build_neighbor_graph`; the kNN subgraph is selected from it with the
        current detached geometry), or None (built here). Samples with non-finite inputs give NaN.

        In eval mode a batch whose line graph has more than ``max_line_edges`` edges runs in groups of whole
        crystals, each under activation checkpointing when gradients are on (recomputed in backward), so
        memory is bounded by one group; BatchNorm then uses its running statistics, so the result is the
        same as one pass. In training mode the batch always runs whole (BatchNorm batch statistics).
        """
        if graph is None:
            graph = self.neighbor_graph(crystals)
        elif not isinstance(graph, ALIGNNGraph):
            graph = knn_from_candidates(crystals, graph, self.k, self.cutoff)
        groups = None if self.training else _sample_groups(crystals, graph, self.max_line_edges)
        if groups is None:
            return self._forward_graph(crystals, graph)
        outs = []
        for s0, s1 in groups:
            sub, sub_graph = _slice_samples(crystals, graph, s0, s1)

            def run(lattice, frac, probs, sub=sub, sub_graph=sub_graph):
                return self._forward_graph(SoftCrystals(lattice, frac, probs, sub.batch), sub_graph)

            if torch.is_grad_enabled():
                outs.append(checkpoint(run, sub.lattice, sub.frac_coords, sub.atom_probs, use_reentrant=False,
                                       preserve_rng_state=False))
            else:
                outs.append(run(sub.lattice, sub.frac_coords, sub.atom_probs))
        return torch.cat(outs)

    def _forward_graph(self, crystals: SoftCrystals, graph: ALIGNNGraph) -> torch.Tensor:
        dtype = self.fc.weight.dtype
        crystals = crystals.to(dtype=dtype)
        n_nodes = crystals.frac_coords.shape[0]
        src, dst = graph.src, graph.dst
        vec = bond_vectors(crystals, graph)  # (E, 3) src -> dst
        lg_src, lg_dst = line_graph(src, dst, n_nodes)
        r1, r2 = -vec[lg_src], vec[lg_dst]
        cos = (r1 * r2).sum(1) / (torch.linalg.vector_norm(r1, dim=1) * torch.linalg.vector_norm(r2, dim=1))
        cos = torch.clamp(cos, -1.0, 1.0)

        x = self.atom_embedding(crystals.atom_probs @ self.atom_table.to(dtype))
        y = self.edge_embedding(torch.linalg.vector_norm(vec, dim=1))
        z = self.angle_embedding(cos)
        for layer in self.alignn_layers:
            x, y, z = layer((src, dst), (lg_src, lg_dst), x, y, z)
        for layer in self.gcn_layers:
            x, y = layer(src, dst, x, y)
        n_b = crystals.num_samples
        pooled = x.new_zeros(n_b, x.shape[1]).index_add(0, crystals.batch, x)
        pooled = pooled / crystals.n_sites.clamp(min=1).to(dtype)[:, None]
        out = self.fc(pooled)
        out = out[:, 0] if out.shape[1] == 1 else out
        ok = _finite_samples(crystals)
        ok = ok if out.dim() == 1 else ok[:, None]
        return torch.where(ok, out, torch.full_like(out, math.nan))


def _sample_groups(crystals: SoftCrystals, graph: ALIGNNGraph, budget: int | None) -> list[tuple[int, int]] | None:
    """Consecutive sample ranges whose line graphs hold at most ``budget`` edges each (a larger single
    crystal gets its own range); None when the batch fits, has no budget, or its sites are not sorted."""
    n_nodes = crystals.frac_coords.shape[0]
    if budget is None or graph.src.numel() == 0:
        return None
    batch = crystals.batch
    if batch.numel() > 1 and bool((batch[1:] < batch[:-1]).any()):
        return None
    out_count = torch.bincount(graph.src, minlength=n_nodes)
    per_edge = out_count[graph.dst]
    per_sample = torch.zeros(crystals.num_samples, dtype=torch.long, device=batch.device).index_add_(
        0, batch[graph.src], per_edge)
    if int(per_sample.sum()) <= budget:
        return None
    groups, start, acc = [], 0, 0
    for i, n in enumerate(per_sample.tolist()):
        if acc and acc + n > budget:
            groups.append((start, i))
            start, acc = i, 0
        acc += n
    groups.append((start, crystals.num_samples))
    return groups


def _slice_samples(crystals: SoftCrystals, graph: ALIGNNGraph, s0: int, s1: int) -> tuple[SoftCrystals, ALIGNNGraph]:
    """Samples s0..s1-1 (sites sorted by sample) and their part of the graph, re-indexed."""
    ptr = crystals.ptr
    a, b = int(ptr[s0]), int(ptr[s1])
    keep = (graph.src >= a) & (graph.src < b)
    sub = SoftCrystals(crystals.lattice[s0:s1], crystals.frac_coords[a:b], crystals.atom_probs[a:b],
                       crystals.batch[a:b] - s0)
    return sub, ALIGNNGraph(graph.src[keep] - a, graph.dst[keep] - a, graph.images[keep], graph.cutoff, graph.k)


def _finite_samples(crystals: SoftCrystals) -> torch.Tensor:
    bad_site = ~(torch.isfinite(crystals.frac_coords).all(1) & torch.isfinite(crystals.atom_probs).all(1))
    bad = torch.zeros(crystals.num_samples, device=bad_site.device).index_add_(0, crystals.batch, bad_site.float())
    return torch.isfinite(crystals.lattice).all(dim=2).all(dim=1) & (bad == 0)


# --------------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------------


def _download(url: str, dest: Path) -> None:
    """Fetch ``url`` to ``dest`` (atomic rename); raises OSError on failure."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    with urllib.request.urlopen(url, timeout=60) as resp, open(tmp, "wb") as fh:
        while chunk := resp.read(1 << 20):
            fh.write(chunk)
    tmp.replace(dest)


def _torch_load(data: bytes):
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception:  # ignite checkpoints may hold non-tensor trainer state
        warnings.warn("ALIGNN checkpoint is not weights-only loadable; loading it with weights_only=False",
                      stacklevel=3)
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)


def _checkpoint_number(name: str) -> int:
    m = re.search(r"checkpoint_(\d+)", name)
    return int(m.group(1)) if m else -1


def _read_checkpoint(source: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(state_dict, config) from a figshare zip, a folder holding its files, or a .pt file."""
    files: dict[str, bytes] = {}
    if source.is_file() and zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as zf:
            for n in zf.namelist():
                base = n.rsplit("/", 1)[-1]
                if base.endswith(".pt") or base == "config.json":
                    files[base] = zf.read(n)
    elif source.is_dir():
        for p in sorted(source.rglob("*")):
            if p.is_file() and (p.suffix == ".pt" or p.name == "config.json"):
                files.setdefault(p.name, p.read_bytes())
    elif source.is_file():
        files[source.name] = source.read_bytes()
    pts = [n for n in files if n.endswith(".pt")]
    if not pts:
        raise FileNotFoundError(f"no best_model.pt / checkpoint_*.pt in {source}")
    pick = "best_model.pt" if "best_model.pt" in files else max(pts, key=_checkpoint_number)
    obj = _torch_load(files[pick])
    sd = obj["model"] if isinstance(obj, dict) and "model" in obj else obj
    config = json.loads(files["config.json"]) if "config.json" in files else {}
    return sd, config


def _resolve(path_or_name: str | os.PathLike) -> Path:
    path = Path(path_or_name)
    if path.exists():
        return path
    name = path.name[:-4] if path.name.endswith(".zip") else path.name
    name = _ALIASES.get(name, name)
    env = _models_env()
    folder = Path(env) / "alignn" if env else Path.home() / ".cache" / "smoacs_bench" / "alignn"
    names = [name] + [a for a, c in _ALIASES.items() if c == name]
    for n in names:
        for cand in (folder / n, folder / f"{n}.zip"):
            if cand.exists():
                return cand
    where = f"folder {folder} (${MODEL_DIR_ENV}/alignn; {MODEL_DIR_ENV}={env!r})"
    if name not in ALIGNN_MODELS:
        raise FileNotFoundError(f"ALIGNN checkpoint {name}.zip not found in {where}; unknown model name, "
                                f"known: {sorted(ALIGNN_MODELS)}")
    dest = folder / f"{name}.zip"
    url = ALIGNN_MODELS[name][0]
    try:
        _download(url, dest)
    except Exception as err:  # offline, HTTP error, read-only folder
        reason = " ".join(f"{type(err).__name__}: {err}".split())
        raise FileNotFoundError(f"ALIGNN checkpoint {name}.zip not found in {where} and download from {url} "
                                f"failed ({reason}); place the figshare zip there") from None
    return dest


def load_alignn(path_or_name: str | os.PathLike, device: torch.device | str | None = None,
                atom_table=None, **kw) -> ALIGNNPredictor:
    """Load an official ALIGNN checkpoint as an :class:`ALIGNNPredictor`.

    ``path_or_name``: a figshare zip, a folder with its files, a ``.pt`` file, or a model name
    (``mp_e_form_alignn``, ``mp_gappbe_alignn``; SMOACS's "...alignnn" spellings work) looked up as
    ``$SMOACS_MODEL_DIR/alignn/<name>[.zip]`` and otherwise downloaded there (or to
    ``~/.cache/smoacs_bench/alignn`` without the variable). Raises FileNotFoundError (one line) if absent
    and the download fails. The checkpoint's ``config.json`` graph settings (max_neighbors, cutoff) are used.
    """
    source = _resolve(path_or_name)
    sd, config = _read_checkpoint(source)
    if config.get("atom_features", "cgcnn") != "cgcnn" or config.get("neighbor_strategy", "k-nearest") != "k-nearest":
        raise ValueError(f"{source}: only cgcnn atom features with k-nearest graphs are supported, config has "
                         f"{config.get('atom_features')!r}, {config.get('neighbor_strategy')!r}")
    name = _ALIASES.get(source.name.removesuffix(".zip"), source.name.removesuffix(".zip"))
    kw.setdefault("name", name)
    kw.setdefault("unit", ALIGNN_MODELS.get(name, ("", ""))[1])
    kw.setdefault("k", int(config.get("max_neighbors", 12)))
    kw.setdefault("cutoff", float(config.get("cutoff", 8.0)))
    model = ALIGNNPredictor.from_state_dict(sd, atom_table=atom_table, **kw)
    return model.to(device) if device is not None else model


def _models_env() -> str | None:
    """The models folder as a string (``$SMOACS_MODEL_DIR`` or the config file's), or None."""
    from smoacs_bench.data.environment import model_dir

    found = model_dir()
    return str(found) if found else None
