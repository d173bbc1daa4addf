"""Soft crystals: the differentiable input of every predictor.

A batch of crystals with lattices (Å, rows a, b, c as in pymatgen), fractional coordinates and a
per-site probability distribution over elements (column ``k`` is atomic number ``Z = k + 1``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from pymatgen.core import Lattice, Structure

from smoacs_bench.data.elements import K as NUM_ELEMENTS


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
