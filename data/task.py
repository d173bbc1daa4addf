"""The benchmark's tasks (paper Sections 4.2-4.4): the one place where a task is defined.

A :class:`Task` holds everything that differs between tasks: the search space, the judging
thresholds (:class:`Criteria`), the default pool of start structures, the paper table it is reported
in and that table's caption phrases, and per-method defaults (e.g. SMOACS's learning rates). No other
module keeps a dict keyed by task name; they ask the task.

- ``free``: any structure, a, b, c in [2, 10] Å, angles in [30°, 150°] (A.4).
- ``perovskite``: 5-site ABX3, a, b, c in [2, 10] Å, angles fixed at 90°, coordinates within
  ±0.15 of ideal (3.3, A.7).
- ``perovskite3x3x3``: 135-site 3 x 3 x 3 supercell, a, b, c in [6, 30] Å, ε = 0.05 (A.8).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:   # a task's names and thresholds load without numpy or pymatgen (the CLI's --help)
    from .templates import PerovskiteCell


@dataclass(frozen=True)
class Criteria:
    """Thresholds of one task's judge. ``perovskite`` is the ideal cell for perovskite tasks, else None."""

    target_bg: float = 1.5          # eV
    margin: float = 0.04            # eV
    ef_max: float = -0.5            # eV/atom, strict
    min_dist: float = 0.5           # Å
    perovskite: PerovskiteCell | None = None
    coord_eps: float = 0.15         # fractional units
    tolerance_range: tuple[float, float] = (0.8, 1.0)
    angle_range: tuple[float, float] = (85.0, 95.0)  # degrees
    neutrality: str = "any"         # "any" (exact DP) or "pattern" (one task pattern on A/B/X); data.rules

    @property
    def is_perovskite(self) -> bool:
        return self.perovskite is not None


@dataclass(frozen=True)
class Task:
    """Search space, judging rules, defaults and reporting of one task."""

    name: str
    supercell: int | None            # n of the n x n x n perovskite cell; None for free structures
    abc_range: tuple[float, float]   # Å, whole cell
    angle_range: tuple[float, float]  # degrees; (90, 90) means fixed
    coord_eps: float | None          # fractional; None means coordinates are free
    target_bg: float = 1.5           # eV
    margin: float = 0.04             # eV
    ef_max: float = -0.5             # eV/atom, criterion (B)
    min_dist: float = 0.5            # Å, criterion (b)
    tolerance_range: tuple[float, float] = (0.8, 1.0)   # criterion (c)
    tolerance_target: float = 0.9    # the SMOACS loss term |t - 0.9| (Eq. 17)
    judged_angle_range: tuple[float, float] = (85.0, 95.0)  # degrees, criterion (d)
    neutrality: str = "pattern"      # criterion (a): "pattern" (perovskite tasks) or "any" (data.rules)
    default_pool: str = "perovskite"  # data.pools.get_pool name of the start structures
    table_layout: str = "table3"     # evaluation.layouts name of the paper table it is reported in
    paper_tables: Mapping[str, tuple[str, ...]] = field(default_factory=dict, compare=False, hash=False)
    caption_subject: str = ""        # what the caption says the experiment preserves
    caption_note: str = ""           # extra caption sentence of the task's table
    method_defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, compare=False, hash=False)

    @property
    def is_perovskite(self) -> bool:
        return self.supercell is not None

    @property
    def cell(self) -> PerovskiteCell | None:
        from .templates import PerovskiteCell

        return PerovskiteCell(self.supercell) if self.supercell else None

    def with_target(self, target_bg: float, margin: float = 0.04) -> Task:
        """The same task aiming at another band-gap window (eV)."""
        return replace(self, target_bg=float(target_bg), margin=float(margin))

    def criteria(self, target_bg: float | None = None, margin: float | None = None) -> Criteria:
        """The evaluator's thresholds; the task's own target (eV) and margin (eV) unless given."""
        target_bg = self.target_bg if target_bg is None else target_bg
        margin = self.margin if margin is None else margin
        common = {"target_bg": target_bg, "margin": margin, "ef_max": self.ef_max, "min_dist": self.min_dist,
                  "tolerance_range": self.tolerance_range, "angle_range": self.judged_angle_range,
                  "neutrality": self.neutrality}
        if self.is_perovskite:
            return Criteria(perovskite=self.cell, coord_eps=self.coord_eps, **common)
        return Criteria(**common)

    def defaults_for(self, method: str) -> dict[str, Any]:
        """This task's defaults for a method (by the method's ``name``; empty when it has none)."""
        return dict(self.method_defaults.get(method, {}))


# SMOACS learning rates: swept for MEGNet at 1.5 eV with perf/sweep_smoacs_lr.py (results/sweeps/*.csv; the
# perovskite task re-swept under the current protocol, seed 123: perovskite_lr_sweep_protocol*.csv);
# "smoacs:<family>" holds the paper's values for Crystalformer and ALIGNN (A.6 free, A.7 perovskite, A.8 3x3x3:
# η_l lattice, η_C coordinates, η_A = η_O), untested here (no official weights); angles keep the MEGNet rate.
TASKS: dict[str, Task] = {
    "free": Task(
        "free", None, (2.0, 10.0), (30.0, 150.0), None,
        neutrality="any", default_pool="aflow", table_layout="table2",
        paper_tables={"metrics": ("A.2", "A.10", "A.15"), "diversity": ("A.3",)},
        method_defaults={"smoacs": {"lr_lattice": 0.05, "lr_angles": 0.5, "lr_coords": 0.005, "lr_atoms": 0.02,
                                    "lr_ox": 0.02},
                         "smoacs:Crystalformer": {"lr_lattice": 0.01, "lr_coords": 0.02, "lr_atoms": 6.0,
                                                  "lr_ox": 6.0},
                         "smoacs:ALIGNN": {"lr_lattice": 0.008, "lr_coords": 0.02, "lr_atoms": 0.0002,
                                           "lr_ox": 0.0002}}),
    "perovskite": Task(
        "perovskite", 1, (2.0, 10.0), (90.0, 90.0), 0.15,
        default_pool="perovskite", table_layout="table3",
        paper_tables={"metrics": ("A.4", "A.16"), "diversity": ("A.5",)},
        caption_subject="preserving perovskite structures",
        method_defaults={"smoacs": {"lr_lattice": 0.05, "lr_angles": 0.0, "lr_coords": 0.01, "lr_atoms": 0.04,
                                    "lr_ox": 0.04},
                         "smoacs:Crystalformer": {"lr_lattice": 0.01, "lr_coords": 0.02, "lr_atoms": 6.0,
                                                  "lr_ox": 6.0},
                         "smoacs:ALIGNN": {"lr_lattice": 0.5, "lr_coords": 0.002, "lr_atoms": 0.00008,
                                           "lr_ox": 0.00008}}),
    "perovskite3x3x3": Task(
        "perovskite3x3x3", 3, (6.0, 30.0), (90.0, 90.0), 0.05,
        default_pool="perovskite3x3x3", table_layout="table4",
        paper_tables={"metrics": ("A.6",)},
        caption_subject="preserving 3 × 3 × 3 perovskite structures (135 atom sites)",
        caption_note="TPE(/N) denotes TPE without the electrical-neutrality objective; the paper could not "
                     "evaluate its neutrality (N/A), our exact dynamic-programming check evaluates it for every "
                     "row. TPE+N keeps the exact neutrality objective on 135 sites.",
        method_defaults={"smoacs": {"lr_lattice": 0.15, "lr_angles": 0.0, "lr_coords": 0.003, "lr_atoms": 0.02,
                                    "lr_ox": 0.02},
                         "smoacs:Crystalformer": {"lr_lattice": 0.003, "lr_coords": 0.005, "lr_atoms": 2.0,
                                                  "lr_ox": 2.0},
                         "smoacs:ALIGNN": {"lr_lattice": 5.0, "lr_coords": 0.002, "lr_atoms": 0.00005,
                                           "lr_ox": 0.00005}}),
}


def get_task(name: str, target_bg: float | None = None, margin: float = 0.04) -> Task:
    """Look a task up by name (optionally aiming at ``target_bg`` ± ``margin`` eV)."""
    try:
        task = TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; choose from {', '.join(TASKS)}") from None
    return task if target_bg is None else task.with_target(target_bg, margin)
