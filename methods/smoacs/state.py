"""The learnable crystal of SMOACS (paper Eq. 1-10) and its soft forward pass.

Parameters per sample: lattice lengths a, b, c (Å) and angles (degrees; fixed at 90° for
perovskites), fractional coordinates C, per-site element logits A and oxidation-pattern logits o.

Soft species (Eq. 9): for each pattern d, p_d = softmax over the elements allowed by the mask
M(S_d) of A / T (disallowed elements get -inf, so they carry exactly zero probability);
õ = softmax(o / T); the site distribution is the mixture Σ_d õ_d p_d. The mixture already sums to
one, so the paper's outer σ_T is not re-applied (applied literally to probabilities it would give
masked elements weight e^0); as T -> 0, p_d and õ become one-hot and so does the mixture.
A and o start as T0 * U(0, 1): near-uniform distributions at the first temperature.
"""

from __future__ import annotations

import numpy as np
import torch

from smoacs_bench.data.elements import K
from smoacs_bench.data.masks import pattern_mask
from smoacs_bench.data.oxidation import OxidationTable
from smoacs_bench.data.pools import InitialCrystal
from smoacs_bench.methods.predictors import SoftCrystals, lattice_from_parameters

from .radii import radius_vector

ROLE_INDEX = {"A": 0, "B": 1, "X": 2}


class CrystalState(torch.nn.Module):
    """Batched learnable crystals with their masks; ``soft(T)`` gives predictor inputs. ``table`` (default ours)
    gives the oxidation numbers the masks allow."""

    def __init__(self, initial: list[InitialCrystal], allowed: np.ndarray, *, t_start: float,
                 abc_range: tuple[float, float], angle_range: tuple[float, float],
                 coord_eps: float | None, generator: torch.Generator, tolerance: bool,
                 device: torch.device | str = "cpu", table: OxidationTable | None = None):
        super().__init__()
        self.abc_range, self.angle_range, self.coord_eps = abc_range, angle_range, coord_eps
        self.fixed_angles = angle_range[0] == angle_range[1]
        n_b = len(initial)
        n_sites = [len(c.structure) for c in initial]
        d_max = max(len(c.patterns) for c in initial)
        batch = np.repeat(np.arange(n_b), n_sites)
        n_s = int(sum(n_sites))

        masks = np.ones((n_s, d_max, K), dtype=bool)  # padded patterns stay all-True (their õ is 0)
        valid = np.zeros((n_b, d_max), dtype=bool)
        radii = np.zeros((n_s, d_max, K))
        start = 0
        for b, c in enumerate(initial):
            sl = slice(start, start + n_sites[b])
            for d, pattern in enumerate(c.patterns):
                m = pattern_mask(pattern, table, allowed=allowed)
                if tolerance:  # elements without an ionic radius at their state cannot be judged
                    r = np.stack([radius_vector(int(s)) for s in pattern])
                    m &= np.isfinite(r)
                    radii[sl, d] = np.nan_to_num(r)
                if not m.any(axis=1).all():
                    raise ValueError(f"sample {b}: pattern {list(pattern)} leaves a site with no element")
                masks[sl, d], valid[b, d] = m, True
            start += n_sites[b]

        lat = np.array([c.structure.lattice.parameters for c in initial])
        frac = np.concatenate([c.structure.frac_coords for c in initial])
        f32 = dict(dtype=torch.float32, device=device)
        self.register_buffer("batch", torch.as_tensor(batch, dtype=torch.long, device=device))
        self.register_buffer("masks", torch.as_tensor(masks, device=device))
        self.register_buffer("valid", torch.as_tensor(valid, device=device))
        self.register_buffer("radii", torch.as_tensor(radii, **f32))
        self.tolerance = tolerance
        if tolerance:
            roles = np.concatenate([[ROLE_INDEX[r] for r in c.roles] for c in initial])
            self.register_buffer("roles", torch.as_tensor(roles, dtype=torch.long, device=device))
        ideal = np.concatenate([c.ideal_coords for c in initial]) if coord_eps is not None else frac
        self.register_buffer("ideal", torch.as_tensor(ideal, **f32))

        self.abc = torch.nn.Parameter(torch.as_tensor(lat[:, :3], **f32))
        angles = torch.as_tensor(lat[:, 3:], **f32)
        if self.fixed_angles:
            self.register_buffer("angles", torch.full_like(angles, angle_range[0]))
        else:
            self.angles = torch.nn.Parameter(angles)
        self.coords = torch.nn.Parameter(torch.as_tensor(frac, **f32))
        self.atoms = torch.nn.Parameter(t_start * torch.rand(n_s, K, generator=generator).to(device))
        self.ox = torch.nn.Parameter(t_start * torch.rand(n_b, d_max, generator=generator).to(device))
        self.n_sites = n_sites
        self.ptr = np.concatenate([[0], np.cumsum(n_sites)])
        self.t_start = t_start

    @property
    def num_samples(self) -> int:
        return int(self.abc.shape[0])

    def pattern_weights(self, temperature: float) -> torch.Tensor:
        """õ = σ_T(o) over each sample's valid patterns, (B, D)."""
        return torch.softmax((self.ox / temperature).masked_fill(~self.valid, -torch.inf), dim=1)

    def soft(self, temperature: float) -> tuple[SoftCrystals, torch.Tensor, torch.Tensor]:
        """(soft crystals, per-pattern site distributions p (S, D, K), pattern weights per site (S, D))."""
        logits = (self.atoms / temperature).unsqueeze(1).masked_fill(~self.masks, -torch.inf)
        p = torch.softmax(logits, dim=2)
        w = self.pattern_weights(temperature)[self.batch]
        probs = torch.einsum("sd,sdk->sk", w, p)
        lattice = lattice_from_parameters(self.abc, self.angles)
        return SoftCrystals(lattice, self.coords, probs, self.batch), p, w

    def tolerance_factor(self, p: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Differentiable Goldschmidt t per sample from expected ionic radii (Eq. 15), (B,)."""
        r_site = torch.einsum("sd,sdk,sdk->s", w, p, self.radii)
        idx = self.batch * 3 + self.roles
        sums = torch.zeros(self.num_samples * 3, device=r_site.device).index_add(0, idx, r_site)
        counts = torch.zeros_like(sums).index_add(0, idx, torch.ones_like(r_site)).clamp(min=1)
        r = (sums / counts).view(-1, 3)
        return (r[:, 0] + r[:, 2]) / (2.0**0.5 * (r[:, 1] + r[:, 2]))

    @torch.no_grad()
    def discrete_tolerance(self, crystals: SoftCrystals, chosen: torch.Tensor) -> torch.Tensor:
        """Goldschmidt t per sample of one-hot ``crystals`` (from :meth:`discretize`) at the radii of the
        chosen patterns, (B,)."""
        elem = crystals.atom_probs.argmax(dim=1)
        sites = torch.arange(self.batch.numel(), device=elem.device)
        r_site = self.radii[sites, chosen[self.batch], elem]
        idx = self.batch * 3 + self.roles
        sums = torch.zeros(self.num_samples * 3, device=r_site.device).index_add(0, idx, r_site)
        counts = torch.zeros_like(sums).index_add(0, idx, torch.ones_like(r_site)).clamp(min=1)
        r = (sums / counts).view(-1, 3)
        return (r[:, 0] + r[:, 2]) / (2.0**0.5 * (r[:, 1] + r[:, 2]))

    @torch.no_grad()
    def project(self) -> None:
        """Keep parameters in range after a step: lengths/angles clipped, coordinates near ideal."""
        self.abc.clamp_(*self.abc_range)
        if not self.fixed_angles:
            self.angles.clamp_(*self.angle_range)
        if self.coord_eps is not None:
            self.coords.copy_(torch.clamp(self.coords, self.ideal - self.coord_eps, self.ideal + self.coord_eps))

    @torch.no_grad()
    def copy_samples(self, pairs: list[tuple[int, int]], generator: torch.Generator, noise: float,
                     scale: float | None = None, copy_ox: bool = True) -> None:
        """Overwrite sample ``dst`` with a copy of sample ``src`` for each (dst, src) pair of equal site
        count: geometry plus Gaussian noise of standard deviation ``noise`` (Å, degrees, fractional),
        masks, patterns, radii, roles and ideal coordinates copied; element logits re-initialised to
        ``scale * U(0, 1)`` (default ``t_start``; the current temperature gives a near-uniform distribution at
        that temperature); pattern logits copied with the same noise (``copy_ox``, as the authors' released
        copy-and-mutate does) or re-initialised like the element logits."""
        dev = self.abc.device
        scale = self.t_start if scale is None else scale

        def jitter(x: torch.Tensor) -> torch.Tensor:
            return x + noise * torch.randn(x.shape, generator=generator).to(dev)

        for dst, src in pairs:
            a, b = slice(self.ptr[dst], self.ptr[dst + 1]), slice(self.ptr[src], self.ptr[src + 1])
            if a.stop - a.start != b.stop - b.start:
                raise ValueError(f"samples {dst} and {src} have different numbers of sites")
            self.abc[dst] = jitter(self.abc[src])
            if not self.fixed_angles:
                self.angles[dst] = jitter(self.angles[src])
            self.coords[a] = jitter(self.coords[b])
            for name in ("masks", "radii", "ideal", *(("roles",) if self.tolerance else ())):
                getattr(self, name)[a] = getattr(self, name)[b]
            self.valid[dst] = self.valid[src]
            self.atoms[a] = scale * torch.rand(self.atoms[a].shape, generator=generator).to(dev)
            if copy_ox:
                self.ox[dst] = jitter(self.ox[src])
            else:
                self.ox[dst] = scale * torch.rand(self.ox[dst].shape, generator=generator).to(dev)
        self.project()

    @torch.no_grad()
    def discretize(self) -> tuple[SoftCrystals, np.ndarray]:
        """The final crystal: argmax pattern, then argmax element inside that pattern's mask (so the
        oxidation numbers of the chosen pattern balance). Returns one-hot crystals and the pattern index."""
        chosen = self.ox.masked_fill(~self.valid, -torch.inf).argmax(dim=1)
        site_mask = self.masks[torch.arange(self.batch.numel(), device=self.batch.device), chosen[self.batch]]
        elem = self.atoms.masked_fill(~site_mask, -torch.inf).argmax(dim=1)
        onehot = torch.nn.functional.one_hot(elem, K).to(self.abc.dtype)
        lattice = lattice_from_parameters(self.abc, self.angles)
        crystals = SoftCrystals(lattice, torch.remainder(self.coords, 1.0), onehot, self.batch)
        return crystals, chosen.cpu().numpy()

