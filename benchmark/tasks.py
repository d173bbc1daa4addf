"""The benchmark's tasks (paper Sections 4.2-4.4): search ranges and success criteria.

- ``free``: any structure, a, b, c in [2, 10] Å, angles in [30°, 150°] (A.4).
- ``perovskite``: 5-site ABX3, a, b, c in [2, 10] Å, angles fixed at 90°, coordinates within
  ±0.15 of ideal (3.3, A.7).
- ``perovskite3x3x3``: 135-site 3 x 3 x 3 supercell, a, b, c in [6, 30] Å, ε = 0.05 (A.8).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from data.templates import PerovskiteCell
from evaluation.criteria import Criteria


@dataclass(frozen=True)
class Task:
    """Search space and judging rules of one task."""

    name: str
    supercell: int | None            # n of the n x n x n perovskite cell; None for free structures
    abc_range: tuple[float, float]   # Å, whole cell
    angle_range: tuple[float, float]  # degrees; (90, 90) means fixed
    coord_eps: float | None          # fractional; None means coordinates are free
    target_bg: float = 1.5           # eV
    margin: float = 0.04             # eV

    @property
    def is_perovskite(self) -> bool:
        return self.supercell is not None

    @property
    def cell(self) -> PerovskiteCell | None:
        return PerovskiteCell(self.supercell) if self.supercell else None

    def with_target(self, target_bg: float, margin: float = 0.04) -> Task:
        """The same task aiming at another band-gap window (eV)."""
        return replace(self, target_bg=float(target_bg), margin=float(margin))

    def criteria(self, target_bg: float | None = None, margin: float | None = None) -> Criteria:
        """The evaluator's thresholds; the task's own target (eV) and margin (eV) unless given."""
        target_bg = self.target_bg if target_bg is None else target_bg
        margin = self.margin if margin is None else margin
        if self.is_perovskite:
            return Criteria(target_bg=target_bg, margin=margin, perovskite=self.cell, coord_eps=self.coord_eps)
        return Criteria(target_bg=target_bg, margin=margin)


TASKS: dict[str, Task] = {
    "free": Task("free", None, (2.0, 10.0), (30.0, 150.0), None),
    "perovskite": Task("perovskite", 1, (2.0, 10.0), (90.0, 90.0), 0.15),
    "perovskite3x3x3": Task("perovskite3x3x3", 3, (6.0, 30.0), (90.0, 90.0), 0.05),
}


def get_task(name: str, target_bg: float | None = None, margin: float = 0.04) -> Task:
    """Look a task up by name (optionally aiming at ``target_bg`` ± ``margin`` eV)."""
    try:
        task = TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; choose from {', '.join(TASKS)}") from None
    return task if target_bg is None else task.with_target(target_bg, margin)
