"""Differentiable property-predictor interface.

A :class:`Predictor` maps a batch of *soft* crystals (lattice, fractional coordinates and a
per-site probability distribution over elements) to one scalar per sample, differentiably
with respect to all three. The neighbour graph (which site pairs are edges) is discrete: it
is built from the current geometry by :func:`build_neighbor_graph`, detached, and may be
held fixed by the optimiser between rebuilds. Adding a new model (ALIGNN, Crystalformer, ...)
means writing one subclass that implements :meth:`Predictor.forward`.

Conventions: lengths in Å, angles in degrees, lattice rows are the vectors a, b, c
(pymatgen), element column ``k`` of ``atom_probs`` is atomic number ``Z = k + 1``.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from pymatgen.core import Lattice, Structure

from data.elements import K as NUM_ELEMENTS

__all__ = [
    "NUM_ELEMENTS",
    "NeighborGraph",
    "Predictor",
    "SoftCrystals",
    "bond_vectors",
    "build_neighbor_graph",
    "lattice_from_parameters",
]

# pymatgen's find_points_in_spheres keeps pairs with d^2 < r^2 + tol; matgl drops d <= tol self pairs.
_PAIR_TOL = 1e-8


def _concat(arrays: list[np.ndarray], empty_shape: tuple[int, ...]) -> np.ndarray:
    return np.concatenate(arrays) if arrays else np.zeros(empty_shape)


@dataclass
class SoftCrystals:
    """A batch of crystals whose species are probability distributions.

    lattice: (B, 3, 3) Å, rows are a, b, c. frac_coords: (S, 3) of all sites, sample-major.
    atom_probs: (S, 98) per-site distribution over Z = 1..98. batch: (S,) long sample index.
    """

    lattice: torch.Tensor
    frac_coords: torch.Tensor
    atom_probs: torch.Tensor
    batch: torch.Tensor

    @property
    def num_samples(self) -> int:
        """Number of crystals B."""
        return int(self.lattice.shape[0])

    @property
    def n_sites(self) -> torch.Tensor:
        """(B,) long: number of sites of each sample."""
        return torch.bincount(self.batch, minlength=self.num_samples)

    @property
    def ptr(self) -> torch.Tensor:
        """(B + 1,) long: sites of sample b are ``ptr[b]:ptr[b + 1]``."""
        return torch.cat([self.n_sites.new_zeros(1), torch.cumsum(self.n_sites, 0)])

    @property
    def device(self) -> torch.device:
        return self.lattice.device

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> SoftCrystals:
        """Copy to ``device`` and/or floating ``dtype`` (batch stays long)."""
        return SoftCrystals(
            lattice=self.lattice.to(device=device, dtype=dtype),
            frac_coords=self.frac_coords.to(device=device, dtype=dtype),
            atom_probs=self.atom_probs.to(device=device, dtype=dtype),
            batch=self.batch.to(device=device),
        )

    def detach(self) -> SoftCrystals:
        return SoftCrystals(self.lattice.detach(), self.frac_coords.detach(), self.atom_probs.detach(), self.batch)

    @classmethod
    def from_structures(
        cls,
        structures: Sequence[Structure],
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> SoftCrystals:
        """Batch pymatgen structures; ordered sites give one-hot ``atom_probs``.

        Disordered sites get their occupancies as probabilities. Raises ValueError for Z > 98.
        """
        lattices = np.stack([s.lattice.matrix for s in structures]) if structures else np.zeros((0, 3, 3))
        fracs, probs, batch = [], [], []
        for b, s in enumerate(structures):
            p = np.zeros((len(s), NUM_ELEMENTS))
            for i, site in enumerate(s):
                for sp, occ in site.species.items():
                    z = sp.Z
                    if not 1 <= z <= NUM_ELEMENTS:
                        raise ValueError(f"element {sp} (Z = {z}) outside Z = 1..{NUM_ELEMENTS}")
                    p[i, z - 1] += occ
            fracs.append(s.frac_coords)
            probs.append(p)
            batch.append(np.full(len(s), b))
        return cls(
            lattice=torch.as_tensor(lattices, dtype=dtype, device=device),
            frac_coords=torch.as_tensor(_concat(fracs, (0, 3)), dtype=dtype, device=device),
            atom_probs=torch.as_tensor(_concat(probs, (0, NUM_ELEMENTS)), dtype=dtype, device=device),
            batch=torch.as_tensor(_concat(batch, (0,)), dtype=torch.long, device=device),
        )

    def to_structures(self) -> list[Structure]:
        """Argmax species on every site -> list of pymatgen Structures (coordinates not wrapped)."""
        lat = self.lattice.detach().double().cpu().numpy()
        frac = self.frac_coords.detach().double().cpu().numpy()
        z = (self.atom_probs.detach().argmax(dim=1) + 1).cpu().numpy()
        ptr = self.ptr.cpu().numpy()
        return [
            Structure(Lattice(lat[b]), [int(v) for v in z[ptr[b]:ptr[b + 1]]], frac[ptr[b]:ptr[b + 1]])
            for b in range(self.num_samples)
        ]


@dataclass
class NeighborGraph:
    """Edges (src -> dst + image) within ``cutoff`` Å; discrete, never differentiated.

    src, dst: (E,) long global site indices. images: (E, 3) integer-valued image offsets of dst
    (in lattice vectors, relative to the raw, unwrapped ``frac_coords``).
    """

    src: torch.Tensor
    dst: torch.Tensor
    images: torch.Tensor
    cutoff: float

    @property
    def num_edges(self) -> int:
        return int(self.src.numel())

    def to(self, device: torch.device | str | None = None) -> NeighborGraph:
        return NeighborGraph(self.src.to(device), self.dst.to(device), self.images.to(device), self.cutoff)


def lattice_from_parameters(abc: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """(B, 3) lengths a, b, c in Å and (B, 3) angles alpha, beta, gamma in degrees -> (B, 3, 3).

    Same orientation as pymatgen ``Lattice.from_parameters`` (vesta=False): c is along z,
    a lies in the xz plane: a = (a sin(beta), 0, a cos(beta)),
    b = (-b sin(alpha) cos(gamma*), b sin(alpha) sin(gamma*), b cos(alpha)), c = (0, 0, c), where
    cos(gamma*) = (cos(alpha) cos(beta) - cos(gamma)) / (sin(alpha) sin(beta)).
    Angle triples that admit no cell (|cos(gamma*)| >= 1; pymatgen would clip to a flat cell)
    give an all-NaN matrix for that sample (its inputs get zero, not NaN, gradient), so callers
    can flag the sample as failed with ``torch.isnan(lattice).any((1, 2))``.
    """
    rad = torch.deg2rad(angles)
    cos, sin = torch.cos(rad), torch.sin(rad)
    ca, cb, cg = cos.unbind(-1)
    sa, sb, _ = sin.unbind(-1)
    cos_gs = (ca * cb - cg) / (sa * sb)
    sin2 = 1.0 - cos_gs * cos_gs
    ok = sin2 > 0  # NaN angles also fail here
    sin_gs = torch.sqrt(torch.where(ok, sin2, torch.ones_like(sin2)))
    a, b, c = abc.unbind(-1)
    zero = torch.zeros_like(a)
    va = torch.stack([a * sb, zero, a * cb], -1)
    vb = torch.stack([-b * sa * cos_gs, b * sa * sin_gs, b * ca], -1)
    vc = torch.stack([zero, zero, c], -1)
    lattice = torch.stack([va, vb, vc], -2)
    return torch.where(ok[..., None, None], lattice, torch.full_like(lattice, math.nan))


def _ragged_arange(counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For counts (n,), return (owner, local): owner[t] = row of item t, local[t] = its index in the row."""
    owner = torch.repeat_interleave(torch.arange(counts.numel(), device=counts.device), counts)
    starts = torch.cumsum(counts, 0) - counts
    local = torch.arange(owner.numel(), device=counts.device) - starts[owner]
    return owner, local


def build_neighbor_graph(
    crystals: SoftCrystals,
    cutoff: float,
    max_image: int = 12,
    chunk: int = 1 << 20,
) -> NeighborGraph:
    """All (src, dst, image) with |(f_dst + image - f_src) @ L| < cutoff Å, from the detached geometry.

    Matches matgl's Structure2Graph (pymatgen ``find_points_in_spheres``: d^2 < r^2 + 1e-8,
    self-images included, the zero-image self pair excluded). Runs in float64 on the crystals'
    device, ragged (no padding) over samples and site pairs, in chunks of at most ``chunk``
    candidates. For a pair with wrapped offset df the images tried along axis k are those with
    |df_k + n_k| <= cutoff * |b_k| (b_k the reciprocal vector without 2 pi, so 1 / |b_k| is the
    spacing of the lattice planes), capped at |n_k| <= ``max_image``. Samples with a non-finite
    or singular lattice, or non-finite coordinates, get no edges.
    """
    dev, n_b = crystals.device, crystals.num_samples
    lat = crystals.lattice.detach().to(torch.float64)
    frac = crystals.frac_coords.detach().to(torch.float64)
    batch, n_sites, ptr = crystals.batch, crystals.n_sites, crystals.ptr
    if n_b == 0 or frac.shape[0] == 0:
        zero = torch.zeros(0, dtype=torch.long, device=dev)
        return NeighborGraph(zero, zero, torch.zeros(0, 3, dtype=crystals.frac_coords.dtype, device=dev),
                             float(cutoff))

    bad_site = (~torch.isfinite(frac).all(1)).to(torch.float64)
    bad_frac = torch.zeros(n_b, dtype=torch.float64, device=dev).index_add_(0, batch, bad_site) > 0
    good = torch.isfinite(lat).all(dim=2).all(dim=1) & ~bad_frac
    good &= torch.linalg.det(torch.where(good[:, None, None], lat, 0.0)).abs() > 1e-12
    safe_lat = torch.where(good[:, None, None], lat, torch.eye(3, dtype=lat.dtype, device=dev))
    reach = (cutoff + 1e-6) * torch.linalg.inv(safe_lat).norm(dim=1)  # (B, 3) = cutoff * |b_k|

    safe_frac = torch.where(torch.isfinite(frac), frac, 0.0)
    floor_f = torch.floor(safe_frac)
    wrapped = safe_frac - floor_f

    # Site pairs (ragged over samples) and, per pair, a box of candidate images.
    owner, local = _ragged_arange(torch.where(good, n_sites * n_sites, 0))
    pi = ptr[owner] + local // n_sites[owner]
    pj = ptr[owner] + local % n_sites[owner]
    dw = wrapped[pj] - wrapped[pi]
    lo = torch.ceil(-reach[owner] - dw).clamp(-max_image, max_image).long()
    hi = torch.floor(reach[owner] - dw).clamp(-max_image, max_image).long()
    size = (hi - lo + 1).clamp(min=0)
    count = size.prod(1)
    cum = torch.cumsum(count, 0).cpu()

    r2 = cutoff * cutoff + _PAIR_TOL
    src, dst = [pi[:0]], [pj[:0]]
    img = [lo[:0]]
    first, done = 0, 0
    while first < count.numel():  # contiguous pair ranges of at most ``chunk`` candidates
        last = max(int(torch.searchsorted(cum, done + chunk, right=True)), first + 1)
        sel = torch.arange(first, last, device=dev)
        p_of, k = _ragged_arange(count[sel])
        p = sel[p_of]
        sz = size[p]
        shift = lo[p] + torch.stack([k // (sz[:, 1] * sz[:, 2]), (k // sz[:, 2]) % sz[:, 1], k % sz[:, 2]], 1)
        x = dw[p] + shift
        vec = torch.einsum("ei,eij->ej", x, safe_lat[owner[p]])
        d2 = (vec * vec).sum(1)
        keep = (d2 < r2) & ((pi[p] != pj[p]) | (d2 > _PAIR_TOL * _PAIR_TOL))
        p = p[keep]
        src.append(pi[p])
        dst.append(pj[p])
        img.append(shift[keep])
        done = int(cum[last - 1])
        first = last

    i, j = torch.cat(src), torch.cat(dst)
    images = torch.cat(img).to(torch.float64) - floor_f[j] + floor_f[i]  # relative to the raw coordinates
    return NeighborGraph(i, j, images.to(crystals.frac_coords.dtype), float(cutoff))


def bond_vectors(crystals: SoftCrystals, graph: NeighborGraph) -> torch.Tensor:
    """(E, 3) Å: (f_dst + image - f_src) @ lattice[sample]; differentiable in lattice and frac_coords."""
    f = crystals.frac_coords
    df = f[graph.dst] + graph.images.to(f.dtype) - f[graph.src]
    return torch.einsum("ei,eij->ej", df, crystals.lattice[crystals.batch[graph.src]])


class Predictor(torch.nn.Module, abc.ABC):
    """A differentiable scalar property of a crystal.

    Subclasses set ``name``, ``unit`` and ``cutoff`` (Å), register ``supported_elements``
    ((98,) bool buffer; the optimiser masks out the rest) and implement :meth:`forward`.
    """

    name: str
    unit: str
    cutoff: float
    supported_elements: torch.Tensor

    @property
    def device(self) -> torch.device:
        return self.supported_elements.device

    def neighbor_graph(self, crystals: SoftCrystals) -> NeighborGraph:
        """The graph this predictor uses for ``crystals`` at its own cutoff."""
        return build_neighbor_graph(crystals, self.cutoff)

    @abc.abstractmethod
    def forward(self, crystals: SoftCrystals, graph: NeighborGraph | None = None) -> torch.Tensor:
        """(B,) predictions in ``unit``; builds the graph itself when ``graph`` is None."""

    def predict_structures(self, structures: Sequence[Structure], batch_size: int = 256) -> np.ndarray:
        """(B,) float64 predictions for pymatgen structures, no grad, one-hot species.

        Structures containing an element the model cannot embed (or Z > 98) give NaN.
        """
        out = np.full(len(structures), np.nan)
        ok_mask = self.supported_elements.cpu().numpy()
        ok = [i for i, s in enumerate(structures)
              if all(1 <= el.Z <= NUM_ELEMENTS and ok_mask[el.Z - 1] for el in s.composition.elements)]
        dtype = next((p.dtype for p in self.parameters()), torch.float32)
        with torch.no_grad():
            for k in range(0, len(ok), batch_size):
                idx = ok[k:k + batch_size]
                crystals = SoftCrystals.from_structures([structures[i] for i in idx], self.device, dtype)
                out[idx] = self(crystals).double().cpu().numpy()
        return out
