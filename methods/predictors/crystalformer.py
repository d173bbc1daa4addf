"""Crystalformer (Taniai et al., ICLR 2024) in pure torch, for soft crystals.

What this reproduces: the released **pure-torch** path of the official code (``Latticeformer`` with
``IndexedLatticeformerEncoder``, as run by SMOACS without cupy), with the hyperparameters of the
published MEGNet checkpoints (``megnet-{bandgap,e_form}-layer4.ckpt``; ``params/latticeformer/default.json``
with ``--num_layers 4 --domain real``): 4 blocks, width 128, 8 heads, feed-forward 512, no layer norm
(T-Fixup), real-space attention with r_0 = ``scale_real`` 1.4 Å, lower bound b = 0.5, ``elu=0.1``
positive function, 64 Gaussian value bases up to r_max = 10 * 1.4 = 14 Å, average pooling and the
MLP Linear(128)-ReLU-Linear(1). Atoms enter as a (N, 98) one-hot (column k is Z = k + 1) through a
bias-free linear layer, so a soft element distribution simply replaces the one-hot (SMOACS paper,
Appendix A.5).

For every ordered pair (i, j) of atoms of the same crystal, self pairs included, the attention sums over
the fixed window of lattice translations n in {-2..2}^3 (``lattice_range`` 2, 125 images) of
r_j - r_i + n L, with the Cartesian positions r = frac @ L exactly as given (no wrapping). Per block:
``alpha_i = -rho((q_i . w_h + shift) * scale) / (2 r_0^2)`` with (scale, shift) = ``gauss_scale`` taken
from the checkpoint (never recomputed), attention logits ``q_i . k_j / sqrt(16) + logsumexp_n(alpha_i |r_ijn|^2)``,
softmax over j, and values ``v_j + W_h sum_n softmax_n(alpha_i |r_ijn|^2) g(|r_ijn|)`` with the 64 Gaussians g.

Departures from the released code:

* The CUDA kernels' adaptive cutoff (``adaptive_cutoff_sigma``, used when cupy is installed) is not
  reproduced; their outputs differ slightly from this fixed window.
* Gradients: the official ``AverageGaussiansBySoftmaxXYFunc_`` backward treats the Gaussian basis g(|r|)
  as a constant (only the softmax weights carry a gradient to distances). This module reproduces that by
  default (``basis_grad=False``), so its input gradients match the official ones (and what SMOACS
  optimised with); ``basis_grad=True`` gives the exact gradient of the forward function instead. The two
  differ by O(1) of the gradient's size for coordinates and lattice (species gradients are identical).
* The pairwise lattice sums are computed in chunks of query atoms (with activation checkpointing when
  there is more than one chunk), so memory is bounded by ``chunk_elements``; summation order differs
  from the official code only at round-off level.
* Negligible terms are skipped: per atom pair, the images whose attention weight is below exp(-50) of
  the nearest image's in every head (``prune_log_weight``; None disables it), and Gaussian basis values
  below 1e-26 (always set to 0). Both change outputs by less than 1e-18 relative; they make large cells
  several times cheaper and avoid denormal arithmetic. The fixture is matched to ~1e-16 either way.
* The target normalisation of a real checkpoint (``target_mean``, ``target_std`` in its state dict) is
  folded into the last linear layer, as the official ``demo.py`` and SMOACS do. SMOACS additionally clips
  band-gap predictions at 0 from below; this module does not.

Units: lattice and positions in Å; outputs in eV (band gap) or eV/atom (formation energy).
"""

from __future__ import annotations

import math
import os
import pickle
import shutil
import tempfile
import urllib.request
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .base import Predictor
from .crystals import NUM_ELEMENTS, SoftCrystals

__all__ = [
    "CRYSTALFORMER_CHECKPOINTS",
    "CRYSTALFORMER_WEIGHTS_URL",
    "CrystalformerConfig",
    "CrystalformerPredictor",
    "load_crystalformer",
    "tfixup_init_",
]

MODEL_DIR_ENV = "SMOACS_MODEL_DIR"
MODEL_SUBDIR = "crystalformer"
# The official release (omron-sinicx/crystalformer README, "Download pretrained weights"): a Google Drive
# file ``weights.zip`` (view page https://drive.google.com/file/d/1yEmwnWflYHGlwQia1xb3G91u2Edz8H2a/view)
# holding ``weights/megnet-{bandgap,e_form}-layer{4,7}.ckpt``. This is its direct-download form.
CRYSTALFORMER_WEIGHTS_URL = (
    "https://drive.usercontent.google.com/download?id=1yEmwnWflYHGlwQia1xb3G91u2Edz8H2a&export=download&confirm=t"
)
CRYSTALFORMER_CHECKPOINTS = ("megnet-bandgap-layer4.ckpt", "megnet-e_form-layer4.ckpt")
_CKPT_PREFIXES = ("swa_model.module.", "model.")  # demo.py/SMOACS use the SWA weights
_BASIS_CUT, _BASIS_MIN = 60.0, 1e-26  # Gaussian bases exp(-t^2) <= 1e-26 are set to exactly 0


@dataclass(frozen=True)
class CrystalformerConfig:
    """Architecture hyperparameters; the defaults are those of the MEGNet layer4 checkpoints.

    Lengths in Å: ``scale_real`` is r_0 (a float, or one value per block cycled over blocks);
    ``value_pe_dist_max`` < 0 means r_max = -value_pe_dist_max * r_0.
    """

    num_layers: int = 4
    model_dim: int = 128
    head_num: int = 8
    ff_dim: int = 512
    lattice_range: int = 2
    scale_real: float | tuple[float, ...] = 1.4
    gauss_lb_real: float = 0.5
    elu_beta: float = 0.1              # positive_func "elu=0.1"
    value_pe_dist_real: int = 64       # number of Gaussian value bases K
    value_pe_dist_max: float = -10.0
    value_pe_width_scale: float = 1.0
    embedding_dim: tuple[int, ...] = (128,)
    atom_feat_dim: int = NUM_ELEMENTS  # 98
    num_targets: int = 1

    def layer_scale(self, index: int) -> float:
        """r_0 (Å) of block ``index``."""
        s = self.scale_real
        return float(s[index % len(s)]) if isinstance(s, tuple) else float(s)

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor]) -> CrystalformerConfig:
        """Read the sizes (layers, widths, heads, bases, MLP) from an official state dict; keep the rest."""
        layers = {int(k.split(".")[2]) for k in state if k.startswith("encoder.layers.")}
        pe = state["encoder.layers.0.self_attn.pe_dist_proj"]
        mlp = sorted(int(k.split(".")[1]) for k in state if k.startswith("mlp.") and k.endswith(".weight"))
        return cls(
            num_layers=max(layers) + 1 if layers else 0,
            model_dim=int(state["input_embeddings.weight"].shape[0]),
            head_num=int(pe.shape[1]),
            ff_dim=int(state["encoder.layers.0.linear1.weight"].shape[0]),
            value_pe_dist_real=int(pe.shape[3]),
            embedding_dim=tuple(int(state[f"mlp.{i}.weight"].shape[0]) for i in mlp[:-1]),
            atom_feat_dim=int(state["input_embeddings.weight"].shape[1]),
            num_targets=int(state[f"mlp.{mlp[-1]}.weight"].shape[0]),
        )


class _Attention(nn.Module):
    """Parameters of one block's periodic attention, in the official key layout."""

    def __init__(self, dim: int, heads: int, n_bases: int) -> None:
        super().__init__()
        self.q_proj_weight = nn.Parameter(torch.empty(dim, dim))
        self.k_proj_weight = nn.Parameter(torch.empty(dim, dim))
        self.v_proj_weight = nn.Parameter(torch.empty(dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        self.lattice_pos_weights = nn.Parameter(torch.empty(dim))
        self.pe_dist_proj = nn.Parameter(torch.empty(1, heads, dim // heads, n_bases))
        # (scale, shift) of the Gaussian-width logits, set in the first training step; 0 = unset.
        self.register_buffer("gauss_scale", torch.zeros(2))
        self.register_buffer("atten_scale", torch.zeros(1))  # unused (norm_func_mode 0)
        for w in (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight):
            nn.init.xavier_uniform_(w)
        nn.init.normal_(self.lattice_pos_weights, 0.0, (dim // heads) ** -0.5)
        nn.init.xavier_uniform_(self.pe_dist_proj.view(-1, n_bases))


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, ff_dim: int, n_bases: int) -> None:
        super().__init__()
        self.self_attn = _Attention(dim, heads, n_bases)
        self.linear1 = nn.Linear(dim, ff_dim)
        self.linear2 = nn.Linear(ff_dim, dim)


class _Encoder(nn.Module):
    def __init__(self, cfg: CrystalformerConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            _Block(cfg.model_dim, cfg.head_num, cfg.ff_dim, cfg.value_pe_dist_real) for _ in range(cfg.num_layers)
        )


def _lattice_grid(r: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """((2r+1)^3, 3) integer translations n in {-r..r}^3."""
    g = torch.arange(-r, r + 1, dtype=dtype, device=device)
    return torch.stack(torch.meshgrid(g, g, g, indexing="ij"), dim=-1).reshape(-1, 3)


def _finite_samples(lattice, frac, probs, batch, n_samples: int) -> torch.Tensor:
    """(B,) bool: lattice, coordinates and probabilities of the sample are all finite."""
    bad_site = ~(torch.isfinite(frac).all(1) & torch.isfinite(probs).all(1))
    bad = torch.zeros(n_samples, device=batch.device).index_add_(0, batch, bad_site.float())
    return torch.isfinite(lattice).all(dim=2).all(dim=1) & (bad == 0)


class CrystalformerPredictor(Predictor):
    """Crystalformer on soft crystals: (B,) predictions, differentiable in lattice, coordinates and atom_probs.

    ``cutoff`` is 0.0 Å: the model needs no neighbour graph (it sums over a fixed window of lattice
    translations itself), so paired with a graph model it never enlarges the shared graph; a graph passed
    to :meth:`forward` is ignored. All 98 elements are supported (one-hot input over Z = 1..98).

    ``chunk_elements`` bounds the largest temporary, (edges in a chunk) x (kept images) x 64 bases, in
    elements (2**26: 256 MiB in float32, 512 MiB in float64). A batch that fits in one chunk computes its
    bases once for all blocks; larger batches are split over query atoms and each chunk is recomputed in
    backward (activation checkpointing), so memory stays at a few chunk-sized temporaries whatever the
    batch size (about 1.5 GB peak RSS in float32 for any number of 135-site cells).

    ``basis_grad`` (default False) reproduces the official gradients, whose backward treats the Gaussian
    value basis as constant (coordinate and lattice gradients then differ from the true derivative of the
    output); True gives the exact gradient of the forward function (species gradients are the same).

    ``prune_log_weight`` (default 50): per edge, skip the images whose attention weight is below
    exp(-50) times that of the edge's nearest image in every head whatever the weights (for r_0 = 1.4 Å and
    b = 0.5: |r|^2 more than 392 Å^2 above the nearest image's). This changes outputs by < 1e-18 relative
    and makes large cells much cheaper; None keeps all 125 images exactly as the official code.
    A freshly built model is in eval mode with unset ``gauss_scale`` and refuses to run: load a checkpoint
    (or train it: in training mode the first batch sets the scale, as the official code does).
    """

    def __init__(
        self,
        config: CrystalformerConfig | None = None,
        name: str = "crystalformer",
        unit: str = "",
        basis_grad: bool = False,
        chunk_elements: int = 1 << 26,
        prune_log_weight: float | None = 50.0,
    ) -> None:
        super().__init__()
        cfg = config or CrystalformerConfig()
        if cfg.model_dim % cfg.head_num:
            raise ValueError("model_dim must be divisible by head_num")
        self.config = cfg
        self.name, self.unit, self.cutoff = name, unit, 0.0
        self.basis_grad = basis_grad
        self.chunk_elements = int(chunk_elements)
        self.prune_log_weight = prune_log_weight
        # |alpha| >= b / (2 r0^2) for any weights (rho >= b), so an image whose |r|^2 exceeds the edge's
        # nearest image's by more than this has a softmax weight below exp(-prune_log_weight) of it in every head.
        r0_max = max(cfg.layer_scale(i) for i in range(max(cfg.num_layers, 1)))
        self._prune_d2 = (prune_log_weight or 0.0) * 2.0 * r0_max**2 / cfg.gauss_lb_real
        self.input_embeddings = nn.Linear(cfg.atom_feat_dim, cfg.model_dim, bias=False)
        self.encoder = _Encoder(cfg)
        dims = (cfg.model_dim, *cfg.embedding_dim)
        mlp: list[nn.Module] = []
        for di, do in zip(dims[:-1], dims[1:], strict=True):
            mlp += [nn.Linear(di, do), nn.Identity(), nn.ReLU()]  # norm_type "no" -> Identity (keeps indices)
        mlp.append(nn.Linear(dims[-1], cfg.num_targets))
        self.mlp = nn.Sequential(*mlp)
        supported = torch.ones(NUM_ELEMENTS, dtype=torch.bool)
        self.register_buffer("supported_elements", supported, persistent=False)
        self.eval()   # a predictor; training (which sets gauss_scale on its first batch) calls .train()

    # ------------------------------------------------------------------ inputs
    def _inputs(self, crystals, frac_coords, atom_probs, batch):
        if isinstance(crystals, SoftCrystals):  # Predictor.forward(crystals, graph): graph ignored
            lattice, frac_coords, atom_probs, batch = (crystals.lattice, crystals.frac_coords,
                                                       crystals.atom_probs, crystals.batch)
        else:
            lattice = crystals
            if frac_coords is None or atom_probs is None or batch is None:
                raise TypeError("forward(lattice, frac_coords, atom_probs, batch) or forward(SoftCrystals)")
        dtype = self.input_embeddings.weight.dtype
        dev = self.input_embeddings.weight.device
        lattice = lattice.to(device=dev, dtype=dtype)
        frac_coords = frac_coords.to(device=dev, dtype=dtype)
        atom_probs = atom_probs.to(device=dev, dtype=dtype)
        batch = batch.to(device=dev, dtype=torch.long)
        if batch.numel() > 1 and bool((batch[1:] < batch[:-1]).any()):
            order = torch.argsort(batch, stable=True)  # crystals' sites must be contiguous; pooling is order-free
            frac_coords, atom_probs, batch = frac_coords[order], atom_probs[order], batch[order]
        return lattice, frac_coords, atom_probs, batch

    # ------------------------------------------------------------------ model
    def _plan(self, pos, shifts, batch, sizes, ptr):
        """Edges, kept images and chunks; all discrete, from the detached geometry.

        Edges are every ordered pair (i, j) of one crystal, grouped by query atom i. Returns ``ei``, ``ej``
        (E,), ``img`` (E, R) image indices per edge with the kept images first (None without pruning),
        ``cnt`` (E,) kept images per edge, and chunks ``(i0, i1, e0, e1, width, masked)`` of consecutive
        query atoms whose (edges x width x K) stays within ``chunk_elements``.
        """
        cfg = self.config
        dev = batch.device
        n_img, n_k = shifts.shape[1], cfg.value_pe_dist_real
        rows = sizes[batch]                                             # edges per query atom
        n_sites, n_edges = int(batch.numel()), int(rows.sum())
        ei = torch.repeat_interleave(torch.arange(n_sites, device=dev), rows)
        first = torch.cumsum(rows, 0) - rows                            # first edge of each query atom
        ej = ptr[batch[ei]] + torch.arange(n_edges, device=dev) - first[ei]
        img = None
        cnt = torch.full((n_edges,), n_img, dtype=torch.long, device=dev)
        if self.prune_log_weight is not None and n_edges:
            img = torch.empty((n_edges, n_img), dtype=torch.uint8 if n_img <= 256 else torch.int16, device=dev)
            block = max(1, self.chunk_elements // (16 * n_img))  # ~ (E, R) int64 temporaries <= 1/2 chunk
            ar = torch.arange(n_img, device=dev)
            with torch.no_grad():
                for e0 in range(0, n_edges, block):
                    e1 = min(n_edges, e0 + block)
                    i, j = ei[e0:e1], ej[e0:e1]
                    vec = (pos[j] - pos[i]).unsqueeze(1) + shifts[batch[i]]
                    d2 = (vec * vec).sum(-1)
                    keep = d2 <= d2.amin(1, keepdim=True) + self._prune_d2   # NaN geometry keeps nothing
                    c = keep.sum(1, keepdim=True)
                    slot = torch.where(keep, keep.cumsum(1) - 1, c + (~keep).cumsum(1) - 1)
                    img[e0:e1] = torch.empty_like(slot).scatter_(1, slot, ar.expand_as(slot)).to(img.dtype)
                    cnt[e0:e1] = c.squeeze(1).clamp(min=1)
        # Greedy chunks over query atoms (numpy on the host; S is at most a few thousand).
        rows_np = rows.cpu().numpy()
        first_np = np.concatenate([[0], np.cumsum(rows_np)])
        widest = torch.zeros(n_sites, dtype=torch.long, device=dev).scatter_reduce(
            0, ei, cnt, reduce="amax", include_self=True).cpu().numpy()
        chunks, i0 = [], 0
        while i0 < n_sites:
            i1, width = i0 + 1, int(widest[i0])
            while i1 < n_sites and (first_np[i1 + 1] - first_np[i0]) * max(width, widest[i1]) * n_k \
                    <= self.chunk_elements:
                width = max(width, int(widest[i1]))
                i1 += 1
            e0, e1 = int(first_np[i0]), int(first_np[i1])
            masked = img is not None and bool((cnt[e0:e1] < width).any())
            chunks.append((i0, i1, e0, e1, width, masked))
            i0 = i1
        return ei, ej, img, cnt, chunks

    def _geometry(self, pos, shifts, batch, ei, ej, img, cnt, width, masked):
        """Squared image distances d2 (E, W) in Å^2, their mask (E, W) or None, and the bases (E, W, K).

        With pruning, column w of edge e is image ``img[e, w]`` and only the first ``cnt[e]`` are kept.
        """
        cfg = self.config
        if img is None or (width == shifts.shape[1] and not masked):
            sh = shifts[batch[ei]]                                      # all R images, in grid order
            mask = None
        else:
            sh = shifts[batch[ei].unsqueeze(1), img[:, :width].long()]  # (E, W, 3)
            mask = torch.arange(width, device=cnt.device) < cnt.unsqueeze(1) if masked else None
        vec = (pos[ej] - pos[ei]).unsqueeze(1) + sh
        d2 = (vec * vec).sum(-1)
        r0 = cfg.layer_scale(0)
        m = -cfg.value_pe_dist_max * r0 if cfg.value_pe_dist_max < 0 else cfg.value_pe_dist_max
        k = cfg.value_pe_dist_real
        mu = torch.arange(1, k + 1, dtype=d2.dtype, device=d2.device) * (m / k)
        sigma = math.sqrt(2.0) * (cfg.value_pe_width_scale * m / k)
        # Values exp(-t^2) below 1e-26 (t^2 > 59.9) are set to exactly 0: denormals make exp and bmm crawl.
        if self.basis_grad:
            ok = d2 > 0
            d = torch.where(ok, torch.sqrt(torch.where(ok, d2, torch.ones_like(d2))), torch.zeros_like(d2))
            t2 = ((mu - d.unsqueeze(-1)) / sigma).square()
            return d2, mask, F.threshold(torch.exp(-t2.clamp(max=_BASIS_CUT)), _BASIS_MIN, 0.0)
        with torch.no_grad():  # the official backward treats the basis as constant; in place saves memory
            t2 = torch.sub(mu, torch.sqrt(d2).unsqueeze(-1)).div_(sigma).square_()
            return d2, mask, F.threshold_(t2.clamp_(max=_BASIS_CUT).neg_().exp_(), _BASIS_MIN, 0.0)

    @staticmethod
    def _attend(d2, mask, basis, alpha_e, logits_qk, v_j, local_q, n_q, w_pe):
        """One chunk of periodic attention -> (n_q, H, head_dim)."""
        s = d2.unsqueeze(1) * alpha_e.unsqueeze(-1)                 # (E, H, R)
        if mask is not None:
            s = s.masked_fill(~mask.unsqueeze(1), -math.inf)
        lse = torch.logsumexp(s, dim=-1)                            # (E, H)
        p = torch.softmax(s, dim=-1)
        logits = logits_qk + lse
        heads = logits.shape[1]
        idx = local_q.unsqueeze(1).expand(-1, heads)
        top = torch.full((n_q, heads), -math.inf, dtype=logits.dtype, device=logits.device)
        top = top.scatter_reduce(0, idx, logits.detach(), reduce="amax", include_self=True)
        e = torch.exp(logits - top[local_q])
        den = torch.zeros_like(top).index_add(0, local_q, e)
        a = e / den[local_q]                                        # softmax over keys j
        out_v = torch.zeros((n_q, *v_j.shape[1:]), dtype=v_j.dtype, device=v_j.device)
        out_v = out_v.index_add(0, local_q, a.unsqueeze(-1) * v_j)
        z = torch.matmul(a.unsqueeze(-1) * p, basis)                # (E, H, K): a_ij sum_n p_ijn g_ijn
        out_z = torch.zeros((n_q, *z.shape[1:]), dtype=z.dtype, device=z.device).index_add(0, local_q, z)
        return out_v + torch.einsum("qhk,hdk->qhd", out_z, w_pe)

    def _alpha(self, attn: _Attention, q: torch.Tensor, layer: int) -> torch.Tensor:
        """(S, H) negative Gaussian exponents (1/Å^2) of every query atom and head."""
        cfg = self.config
        n, h = q.shape[0], cfg.head_num
        raw = (q.view(n, h, -1) * attn.lattice_pos_weights.view(h, -1)).sum(-1)
        if not bool(attn.gauss_scale[0] > 0):
            if not self.training:
                raise RuntimeError(f"gauss_scale of block {layer} is unset: load a trained checkpoint "
                                   "(the scale is never recomputed from a batch outside training)")
            # first training step, as the official code: standardise this batch's logits once, then keep
            with torch.no_grad():
                attn.gauss_scale.copy_(torch.stack([1.0 / raw.std(), -raw.mean()]).to(attn.gauss_scale))
        scale, shift = attn.gauss_scale[0], attn.gauss_scale[1]
        x = (raw + shift) * scale
        lb = cfg.gauss_lb_real
        rho = (1.0 - lb) * F.elu(x * (cfg.elu_beta / (1.0 - lb))) + 1.0
        return rho * (-0.5 * cfg.layer_scale(layer) ** -2)

    def encode(self, crystals, frac_coords=None, atom_probs=None, batch=None):
        """Per-site encoder output (S, model_dim) (sites sorted by crystal) and the sorted batch (S,)."""
        lattice, frac, probs, batch = self._inputs(crystals, frac_coords, atom_probs, batch)
        cfg = self.config
        n_b = lattice.shape[0]
        sizes = torch.bincount(batch, minlength=n_b)
        ptr = torch.cat([sizes.new_zeros(1), torch.cumsum(sizes, 0)])
        pos = torch.matmul(frac.unsqueeze(1), lattice[batch]).squeeze(1)          # (S, 3) Å
        shifts = torch.matmul(_lattice_grid(cfg.lattice_range, lattice.dtype, lattice.device), lattice)  # (B,R,3)
        ei, ej, img, cnt, chunks = self._plan(pos.detach(), shifts.detach(), batch, sizes, ptr)
        use_ckpt = len(chunks) > 1 and torch.is_grad_enabled()
        geom = None
        if len(chunks) == 1:  # everything fits: one geometry for all blocks
            _, _, _, _, width, masked = chunks[0]
            geom = self._geometry(pos, shifts, batch, ei, ej, img, cnt, width, masked)

        x = self.input_embeddings(probs)
        n, h = x.shape[0], cfg.head_num
        hd = cfg.model_dim // h
        for li, block in enumerate(self.encoder.layers):
            attn = block.self_attn
            bq, bk, bv = attn.in_proj_bias.chunk(3)
            q = F.linear(x, attn.q_proj_weight, bq)
            k = F.linear(x, attn.k_proj_weight, bk).view(n, h, hd)
            v = F.linear(x, attn.v_proj_weight, bv).view(n, h, hd)
            alpha = self._alpha(attn, q, li)
            q = q.view(n, h, hd) / math.sqrt(hd)
            w_pe = attn.pe_dist_proj[0]
            outs = []
            for i0, i1, e0, e1, width, masked in chunks:
                def run(pos_, shifts_, q_, k_, v_, alpha_, w_, i0=i0, i1=i1, e0=e0, e1=e1, width=width,
                        masked=masked):
                    ci, cj = ei[e0:e1], ej[e0:e1]
                    if geom is not None:
                        d2, mask, basis = geom
                    else:
                        d2, mask, basis = self._geometry(pos_, shifts_, batch, ci, cj,
                                                         None if img is None else img[e0:e1], cnt[e0:e1],
                                                         width, masked)
                    qk = (q_[ci] * k_[cj]).sum(-1)
                    return self._attend(d2, mask, basis, alpha_[ci], qk, v_[cj], ci - i0, i1 - i0, w_)

                if use_ckpt:
                    outs.append(checkpoint(run, pos, shifts, q, k, v, alpha, w_pe,
                                           use_reentrant=False, preserve_rng_state=False))
                else:
                    outs.append(run(pos, shifts, q, k, v, alpha, w_pe))
            y = torch.cat(outs).reshape(n, cfg.model_dim)
            x = x + attn.out_proj(y)
            x = x + block.linear2(F.relu(block.linear1(x)))
        return x, batch, lattice, frac, probs

    def forward(self, crystals, frac_coords=None, atom_probs=None, batch=None, graph=None) -> torch.Tensor:
        """(B,) predictions in ``unit``.

        Call as ``forward(lattice (B,3,3) Å, frac_coords (S,3), atom_probs (S,98), batch (S,) long)`` or
        ``forward(SoftCrystals, graph=None)`` (the graph, also when passed positionally, is ignored).
        Samples with a non-finite input give NaN; the others are unaffected.
        """
        if isinstance(crystals, SoftCrystals):
            frac_coords = atom_probs = batch = None
        x, batch, lattice, frac, probs = self.encode(crystals, frac_coords, atom_probs, batch)
        n_b = lattice.shape[0]
        sizes = torch.bincount(batch, minlength=n_b).to(x.dtype)
        pooled = torch.zeros((n_b, x.shape[1]), dtype=x.dtype, device=x.device).index_add(0, batch, x)
        pooled = pooled / sizes.unsqueeze(1)
        out = self.mlp(pooled)[:, 0]
        ok = _finite_samples(lattice, frac, probs, batch, n_b)
        return torch.where(ok, out, torch.full_like(out, math.nan))


def tfixup_init_(model: CrystalformerPredictor) -> CrystalformerPredictor:
    """Re-initialise ``model`` for training from scratch, as the official ``t_fixup_init`` (in place).

    Xavier-uniform q/k/v/out and feed-forward weights with zero biases, then the T-Fixup scaling
    0.67 N^(-1/4) of v, out and feed-forward weights (N = blocks); atom embeddings N(0, d^-1/2) scaled by
    (9 N)^(-1/4); lattice weights N(0, d_head^-1/2); value-basis projection uniform in
    ±(2 K d_head)^(-1/2); default ``nn.Linear`` init for the output MLP; ``gauss_scale`` unset (it is set
    on the first training batch). These scales were read off the authors' randomly initialised fixture
    (``../shared/fixtures/crystalformer/state_dict.pt``). Draws from torch's global generator: seed it first.
    """
    cfg = model.config
    n = max(cfg.num_layers, 1)
    hd = cfg.model_dim // cfg.head_num
    with torch.no_grad():
        nn.init.normal_(model.input_embeddings.weight, 0.0, cfg.model_dim**-0.5)
        model.input_embeddings.weight.mul_((9 * n) ** -0.25)
        for block in model.encoder.layers:
            a = block.self_attn
            for w in (a.q_proj_weight, a.k_proj_weight, a.v_proj_weight, a.out_proj.weight,
                      block.linear1.weight, block.linear2.weight):
                nn.init.xavier_uniform_(w)
            for b in (a.in_proj_bias, a.out_proj.bias, block.linear1.bias, block.linear2.bias):
                b.zero_()
            for w in (a.v_proj_weight, a.out_proj.weight, block.linear1.weight, block.linear2.weight):
                w.mul_(0.67 * n**-0.25)
            nn.init.normal_(a.lattice_pos_weights, 0.0, hd**-0.5)
            bound = (2 * cfg.value_pe_dist_real * hd) ** -0.5
            nn.init.uniform_(a.pe_dist_proj, -bound, bound)
            a.gauss_scale.zero_()
            a.atten_scale.zero_()
        for layer in model.mlp:
            if isinstance(layer, nn.Linear):
                layer.reset_parameters()
    return model


# ---------------------------------------------------------------------- loading
def _unit_and_name(file_name: str) -> tuple[str, str]:
    if "bandgap" in file_name:
        return "crystalformer-bandgap", "eV"
    if "e_form" in file_name:
        return "crystalformer-eform", "eV/atom"
    return f"crystalformer-{Path(file_name).stem}", ""


def _download_weights(dest_dir: Path) -> None:
    """Fetch the official ``weights.zip`` and extract its ``*.ckpt`` files into ``dest_dir``."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest_dir) as tmp:
        archive = Path(tmp) / "weights.zip"
        with urllib.request.urlopen(CRYSTALFORMER_WEIGHTS_URL, timeout=60) as r, open(archive, "wb") as f:
            shutil.copyfileobj(r, f)
        if not zipfile.is_zipfile(archive):
            raise OSError("the download is not a zip archive (Google Drive refused the direct download?)")
        with zipfile.ZipFile(archive) as z:
            for member in z.namelist():
                if member.endswith(".ckpt"):
                    with z.open(member) as src, open(dest_dir / Path(member).name, "wb") as dst:
                        shutil.copyfileobj(src, dst)


def _read_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # a Lightning checkpoint may pickle its hyperparameter object
        warnings.warn(f"{path.name}: not loadable with weights_only=True; unpickling it in full "
                      "(only do this for the official release)", stacklevel=3)
        return torch.load(path, map_location="cpu", weights_only=False)


def _model_state(ckpt: Mapping) -> tuple[dict[str, torch.Tensor], torch.Tensor | None, torch.Tensor | None]:
    """(model state dict without prefix, target_mean, target_std) of an official checkpoint or a plain dict."""
    state = ckpt.get("state_dict", ckpt)
    for prefix in _CKPT_PREFIXES:
        if any(k.startswith(prefix) for k in state):
            model = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            break
    else:
        model = {k: v for k, v in state.items() if k not in ("target_mean", "target_std")}
    return model, state.get("target_mean"), state.get("target_std")


def load_crystalformer(path_or_name: str | os.PathLike, device: torch.device | str | None = None,
                       **kw) -> CrystalformerPredictor:
    """Load an official Crystalformer checkpoint as a frozen, eval-mode :class:`CrystalformerPredictor`.

    ``path_or_name``: an existing file (official ``.ckpt`` or a plain state dict), else a file name looked up
    as ``$SMOACS_MODEL_DIR/crystalformer/<name>``; when missing there, the official ``weights.zip`` is
    downloaded into that folder. Raises FileNotFoundError (one line: file, folder, variable) when that fails.
    The ``swa_model.module.`` prefix is stripped, the weights load strictly, and the checkpoint's
    ``target_mean``/``target_std`` are folded into the last layer (outputs in eV or eV/atom).
    """
    path = Path(path_or_name)
    if not path.is_file():
        env_dir = _models_env()
        folder = Path(env_dir) / MODEL_SUBDIR if env_dir else None
        path = folder / path.name if folder else path
        if not path.is_file():
            where = f"{folder}/" if folder else f"${MODEL_DIR_ENV}/{MODEL_SUBDIR}/ (set {MODEL_DIR_ENV})"
            reason = f"{MODEL_DIR_ENV} is not set"
            if folder is not None:
                try:
                    _download_weights(folder)
                except Exception as err:  # offline, refused, or not a zip
                    reason = f"download from {CRYSTALFORMER_WEIGHTS_URL} failed: {type(err).__name__}: {err}"
                else:
                    reason = f"not in the archive from {CRYSTALFORMER_WEIGHTS_URL}"
            if not path.is_file():
                msg = (f"Crystalformer checkpoint {path.name!r} not found: put it in {where} "
                       f"({MODEL_DIR_ENV}={env_dir!r}); {reason}").replace("\n", " ")
                raise FileNotFoundError(msg)
    state, mean, std = _model_state(_read_checkpoint(path))
    name, unit = _unit_and_name(path.name)
    kw.setdefault("name", name)
    kw.setdefault("unit", unit)
    model = CrystalformerPredictor(CrystalformerConfig.from_state_dict(state), **kw)
    model.load_state_dict(state, strict=True)
    if mean is not None and std is not None:
        last = model.mlp[-1]
        with torch.no_grad():
            std_t = std.to(last.weight.dtype).reshape(-1)
            last.weight.mul_(std_t[:, None])
            last.bias.copy_(last.bias * std_t + mean.to(last.bias.dtype).reshape(-1))
    model.eval().requires_grad_(False)
    return model.to(device) if device is not None else model


def _models_env() -> str | None:
    """The models folder as a string (``$SMOACS_MODEL_DIR`` or the config file's), or None."""
    from smoacs_bench.data.environment import model_dir

    found = model_dir()
    return str(found) if found else None
