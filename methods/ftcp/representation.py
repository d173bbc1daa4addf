"""The FTCP crystal representation (Ren et al., Matter 2022), as the released ``data.py`` computes it.

One crystal becomes a (238, 63) float64 matrix (``max_elms`` = 4, ``max_sites`` = 20; C = max(max_elms, 3)
real-space columns, then 59 reciprocal-space columns):

=========  ===========================================  ===========================================
rows       columns 0..C-1 (real space)                  columns C.. (59 k points)
=========  ===========================================  ===========================================
0-102      element one-hot over 103 elements (row Z-1);  0
           column c = c-th distinct element in site order
103        a, b, c (Å)                                  0
104        α, β, γ (degrees)                            0
105-124    fractional coordinates (x, y, z, 0)          0
125-144    site occupancy: one-hot over element columns 0
145        0                                            \\|g_hkl\\| (1/Å, no 2π)
146-237    the 92 CGCNN features of each element column F[p, k] = Σ_j prop[p, elem(j)] · π (k · r_j)
=========  ===========================================  ===========================================

As released, the "Fourier" block is *linear* in k · r (π times the dot product of the Miller index with the
fractional coordinates), not exp(-2πi k · r) as in the paper's formula; this module computes what the
authors' code computes. k points: the crystallographic reciprocal lattice's points within 1.297 Å⁻¹ of the
origin (1.4 Å⁻¹ if fewer than 60 are found), the origin dropped, sorted by |h|+|k|+|l| and then by h, k, l
descending, the first 59 kept. For training, two zero rows pad the matrix to 240 rows (:func:`pad`) and
each row is min-max scaled over the training set (:class:`RowScaler`).

:func:`decode` follows the released ``get_info``: elements by argmax over the first ``max_elms`` columns,
per-site occupancy = the largest entry if it is at least 0.05, trailing empty sites trimmed (an empty site
reads as element index 0, H, exactly as released), lattice and coordinates from their rows.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np
from pymatgen.core import Element, Lattice, Structure

N_ELEMENTS = 103          # H .. Lr, the released element.pkl
MAX_ELMS = 4
MAX_SITES = 20
N_KPOINTS = 59
N_PROPS = 92              # CGCNN atom_init features
K_RADIUS = 1.297          # 1/Å
K_RADIUS_WIDE = 1.4       # 1/Å, when fewer than 60 points are found within K_RADIUS
OCCUPANCY_THRESHOLD = 0.05
PAD_ROWS = 2              # the released main.py pads 238 -> 240 rows
ELEMENTS: tuple[str, ...] = tuple(Element.from_Z(z).symbol for z in range(1, N_ELEMENTS + 1))


class RepresentationError(ValueError):
    """A crystal the representation cannot hold (too many elements or sites, an unknown element)."""


@dataclass(frozen=True)
class Layout:
    """Row and column offsets of the representation for given ``max_elms`` and ``max_sites``."""

    max_elms: int = MAX_ELMS
    max_sites: int = MAX_SITES

    @property
    def n_cols_real(self) -> int:
        return max(self.max_elms, 3)

    @property
    def n_cols(self) -> int:
        return self.n_cols_real + N_KPOINTS

    @property
    def row_abc(self) -> int:
        return N_ELEMENTS

    @property
    def row_angles(self) -> int:
        return N_ELEMENTS + 1

    @property
    def row_coords(self) -> int:
        return N_ELEMENTS + 2

    @property
    def row_occupancy(self) -> int:
        return N_ELEMENTS + 2 + self.max_sites

    @property
    def row_g(self) -> int:
        return N_ELEMENTS + 2 + 2 * self.max_sites

    @property
    def row_props(self) -> int:
        return self.row_g + 1

    @property
    def n_rows(self) -> int:
        return self.row_props + N_PROPS


DEFAULT_LAYOUT = Layout()


@cache
def cgcnn_table() -> dict[int, np.ndarray]:
    """Z -> the 92 CGCNN features (``data/cgcnn_atom_init.json``, see data/tools/make_cgcnn_atom_init.py)."""
    text = resources.files("smoacs_bench.data").joinpath("cgcnn_atom_init.json").read_text()
    return {int(z): np.asarray(v, dtype=np.float64) for z, v in json.loads(text).items()}


def kpoints(lattice: Lattice) -> tuple[np.ndarray, np.ndarray]:
    """The 59 Miller indices (59, 3) int and their lengths \\|g_hkl\\| (59,) in 1/Å, as released."""
    recip = lattice.reciprocal_lattice_crystallographic
    hkl, g, _, _ = recip.get_points_in_sphere([[0, 0, 0]], [0, 0, 0], K_RADIUS, zip_results=False)
    if len(hkl) < N_KPOINTS + 1:
        hkl, g, _, _ = recip.get_points_in_sphere([[0, 0, 0]], [0, 0, 0], K_RADIUS_WIDE, zip_results=False)
    keep = g != 0
    hkl = np.rint(hkl[keep]).astype(np.int64)
    g = np.asarray(g[keep], dtype=np.float64)
    order = np.lexsort((-hkl[:, 2], -hkl[:, 1], -hkl[:, 0], np.abs(hkl).sum(axis=1)))[:N_KPOINTS]
    if len(order) < N_KPOINTS:
        raise RepresentationError(f"only {len(order)} k points within {K_RADIUS_WIDE} 1/Å (cell too small)")
    return hkl[order], g[order]


def check_representable(structure: Structure, layout: Layout = DEFAULT_LAYOUT) -> None:
    """RepresentationError saying why ``structure`` cannot be represented, or nothing."""
    if not structure.is_ordered:
        raise RepresentationError("partial occupancy")
    if len(structure) > layout.max_sites:
        raise RepresentationError(f"{len(structure)} sites > max_sites = {layout.max_sites}")
    zs = set(structure.atomic_numbers)
    if len(zs) > layout.max_elms:
        raise RepresentationError(f"{len(zs)} elements > max_elms = {layout.max_elms}")
    table = cgcnn_table()
    missing = sorted(z for z in zs if z > N_ELEMENTS or z not in table)
    if missing:
        names = ", ".join(Element.from_Z(z).symbol for z in missing)
        raise RepresentationError(f"no CGCNN features for {names}")


def represent(structure: Structure, layout: Layout = DEFAULT_LAYOUT) -> np.ndarray:
    """The unscaled (238, 63) FTCP matrix of ``structure`` (float64); RepresentationError if impossible.

    Sites are taken in the structure's order, fractional coordinates as stored (a CIF parsed by pymatgen
    wraps them into [0, 1)).
    """
    check_representable(structure, layout)
    table = cgcnn_table()
    C, n = layout.n_cols_real, len(structure)
    site_z = np.asarray(structure.atomic_numbers, dtype=np.int64)
    _, first = np.unique(site_z, return_index=True)
    elements = site_z[np.sort(first)]                        # distinct Z in order of first appearance
    column_of = {int(z): c for c, z in enumerate(elements)}
    site_col = np.array([column_of[int(z)] for z in site_z])
    frac = np.asarray(structure.frac_coords, dtype=np.float64)

    m = np.zeros((layout.n_rows, layout.n_cols))
    m[elements - 1, np.arange(len(elements))] = 1.0
    lat = structure.lattice
    m[layout.row_abc, :3] = lat.abc
    m[layout.row_angles, :3] = lat.angles
    m[layout.row_coords:layout.row_coords + n, :3] = frac
    m[layout.row_occupancy + np.arange(n), site_col] = 1.0
    props = np.stack([table[int(z)] for z in elements], axis=1)      # (92, n_elements)
    m[layout.row_props:, :len(elements)] = props

    hkl, g = kpoints(lat)
    m[layout.row_g, C:] = g
    k_dot_r = hkl.astype(np.float64) @ frac.T                         # (59, n)
    m[layout.row_props:, C:] = props[:, site_col] @ (np.pi * k_dot_r.T)
    return m


def pad(matrices: np.ndarray, rows: int = PAD_ROWS) -> np.ndarray:
    """Append ``rows`` zero rows to (N, R, C) matrices (the released ``utils.pad``)."""
    out = np.zeros((matrices.shape[0], matrices.shape[1] + rows, matrices.shape[2]), dtype=matrices.dtype)
    out[:, :matrices.shape[1]] = matrices
    return out


class RowScaler:
    """Per-row min-max scaling of (N, R, C) matrices, fitted over samples and columns (``utils.minmax``).

    A row that is constant in the training data maps to 0 (scikit-learn's convention).
    """

    def __init__(self, lo: np.ndarray, hi: np.ndarray):
        self.lo = np.asarray(lo, dtype=np.float64)
        self.hi = np.asarray(hi, dtype=np.float64)

    @classmethod
    def fit(cls, matrices: np.ndarray) -> RowScaler:
        return cls(matrices.min(axis=(0, 2)), matrices.max(axis=(0, 2)))

    @property
    def scale(self) -> np.ndarray:
        span = self.hi - self.lo
        return np.where(span > 0, span, 1.0)

    def transform(self, matrices: np.ndarray) -> np.ndarray:
        return (matrices - self.lo[None, :, None]) / self.scale[None, :, None]

    def inverse(self, matrices: np.ndarray) -> np.ndarray:
        return matrices * self.scale[None, :, None] + self.lo[None, :, None]

    def save(self, path) -> None:
        np.savez(path, lo=self.lo, hi=self.hi)

    @classmethod
    def load(cls, path) -> RowScaler:
        with np.load(path) as d:
            return cls(d["lo"], d["hi"])


@dataclass
class Decoded:
    """A decoded crystal (lengths in Å, angles in degrees), before any validity check."""

    species: list[str]
    abc: np.ndarray
    angles: np.ndarray
    frac_coords: np.ndarray


def decode(matrix: np.ndarray, layout: Layout = DEFAULT_LAYOUT) -> Decoded:
    """Read one unscaled matrix (rows x columns as in :func:`represent`, padding allowed), as ``get_info``.

    The matrix is not modified.
    """
    me = layout.max_elms
    elm_index = np.argmax(matrix[:N_ELEMENTS, :me], axis=0)                 # element of each column
    occ = np.array(matrix[layout.row_occupancy:layout.row_occupancy + layout.max_sites, :me], copy=True)
    occ[occ < occ.max(axis=1, keepdims=True)] = 0.0
    occ[occ < OCCUPANCY_THRESHOLD] = 0.0
    occ = np.ceil(occ)
    per_site = occ @ elm_index                                                # 0 also means "empty"
    if np.all(per_site == 0):
        species_idx = [0]
    else:
        species_idx = [int(j) for j in per_site[:np.nonzero(per_site > 0)[0][-1] + 1]]
    n = len(species_idx)
    return Decoded(
        species=[ELEMENTS[j] for j in species_idx],
        abc=np.array(matrix[layout.row_abc, :3], dtype=np.float64),
        angles=np.array(matrix[layout.row_angles, :3], dtype=np.float64),
        frac_coords=np.array(matrix[layout.row_coords:layout.row_coords + n, :3], dtype=np.float64),
    )


def to_structure(decoded: Decoded) -> Structure:
    """A pymatgen Structure from a decoded crystal; ValueError with the reason when it is not a crystal."""
    abc, ang = decoded.abc, decoded.angles
    if not (np.all(np.isfinite(abc)) and np.all(np.isfinite(ang))):
        raise ValueError("non-finite lattice parameters")
    if np.any(abc <= 0):
        raise ValueError(f"non-positive lattice length {np.round(abc, 3).tolist()} Å")
    if np.any(ang <= 0) or np.any(ang >= 180):
        raise ValueError(f"lattice angle outside (0, 180)°: {np.round(ang, 2).tolist()}")
    lattice = Lattice.from_parameters(*abc, *ang)
    if not math.isfinite(lattice.volume) or lattice.volume <= 1e-3:
        raise ValueError(f"degenerate lattice (angles {np.round(ang, 2).tolist()}°)")
    if not np.all(np.isfinite(decoded.frac_coords)):
        raise ValueError("non-finite fractional coordinates")
    return Structure(lattice, decoded.species, decoded.frac_coords)
