"""The neighbour graph of soft crystals: which site pairs (with periodic images) are edges.

The graph is discrete: it is built from the detached geometry and may be held fixed by the
optimiser between rebuilds. Bond vectors on a graph are differentiable in lattice and coordinates.
Lengths in Å.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .crystals import SoftCrystals

# pymatgen's find_points_in_spheres keeps pairs with d^2 < r^2 + tol; matgl drops d <= tol self pairs.
_PAIR_TOL = 1e-8


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
