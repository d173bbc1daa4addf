"""Time of the exact neutrality check (dynamic programming) for 5-, 40- and 135-site cells, and of the
oxidation patterns of a 135-site supercell (data/patterns.py).

Goal (issue): under 1 ms at 135 sites. Run: python perf/neutrality_speed.py
"""

from __future__ import annotations

import timeit

from smoacs_bench.data.neutrality import check_species
from smoacs_bench.data.patterns import oxidation_patterns
from smoacs_bench.data.templates import PerovskiteCell

CELLS = {
    "5 sites  (SrTiO3)": ["Sr", "Ti", "O", "O", "O"],
    "40 sites (2x2x2 Ba/Fe mixed, several states)": ["Ba"] * 8 + ["Fe"] * 4 + ["Mn"] * 4 + ["O"] * 24,
    "135 sites (3x3x3 SrTiO3)": ["Sr"] * 27 + ["Ti"] * 27 + ["O"] * 81,
    "135 sites (3x3x3, multi-valent: Eu/Mn/S/Se)": ["Eu"] * 27 + ["Mn"] * 27 + ["S"] * 40 + ["Se"] * 41,
    "135 sites (not neutral: one K on an A site)": ["K"] + ["Sr"] * 26 + ["Ti"] * 27 + ["O"] * 81,
}


def main() -> None:
    print(f"{'cell':48s} {'neutral':>8s} {'time per check':>16s}")
    for name, species in CELLS.items():
        n = 2000
        t = timeit.timeit(lambda s=species: check_species(s), number=n) / n
        print(f"{name:48s} {str(check_species(species).neutral):>8s} {t * 1e3:13.3f} ms")
    structure = PerovskiteCell(3).structure((12.0, 12.0, 12.0))
    oxidation_patterns(structure)  # warm the state caches
    n = 50
    t = timeit.timeit(lambda: oxidation_patterns(structure), number=n) / n
    print(f"oxidation patterns of 135-site SrTiO3: {len(oxidation_patterns(structure)[0])} in {t * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
