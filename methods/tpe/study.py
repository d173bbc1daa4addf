"""Setting up the TPE studies: one member per sample, its storage, its study, and the objectives.

A member is a sample's start (from the task's pool, as SMOACS draws it), search space and the
params enqueued as its first trial. Each study is stored with the run's identity and a fingerprint of
its start, so resuming a journal written by another run or from other starts fails clearly.
The objectives of a trial (:func:`objectives`) use the task's own thresholds.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.storages import InMemoryStorage, JournalStorage
from optuna.trial import TrialState
from pymatgen.core import Structure

from smoacs_bench.data.elements import SYMBOLS
from smoacs_bench.data.rules import judge_neutrality, pattern_tolerance_factor
from smoacs_bench.data.task import Task

from .journal import RoundJournal
from .space import (
    SearchSpace,
    composition_space,
    free_initial_params,
    free_space,
    perovskite_space,
    smoacs_initial_params,
    smoacs_space,
)

L_BG, L_F, L_NEUTRAL, L_T = "L_bg", "L_f", "L_neutral", "L_t"
FAILED = {L_BG: 1e3, L_F: 1e3, L_NEUTRAL: 1.0, L_T: 1.0}  # objective values of a failed trial


def objective_names(task: Task, neutrality: bool) -> list[str]:
    """The objectives of a study, in order: L_bg = max(0, |y - ŷ_bg| - h) (eV), L_f = ŷ_f (eV/atom)
    (Eq. 13), L_neutral (Eq. A.1, 0/1) unless the variant drops it, L_t (Eq. A.2, 0/1) on perovskites."""
    return [L_BG, L_F] + ([L_NEUTRAL] if neutrality else []) + ([L_T] if task.is_perovskite else [])


def trial_seed(seed: int, sample: int, n_complete: int) -> int:
    """Stable 32-bit seed of the sampler for trial ``n_complete`` of study ``sample``."""
    digest = hashlib.blake2b(f"{seed}/{sample}/{n_complete}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little")


@dataclass
class Member:
    """One sample: its index, where its start came from, its search space and enqueued first params."""

    index: int
    source: str
    space: SearchSpace
    initial: dict[str, Any]

    def fingerprint(self) -> str:
        """Short hash of the start (enqueued params and number of sites), stored with the study."""
        text = json.dumps([self.space.n_sites, self.initial], sort_keys=True)
        return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


@dataclass
class OpenStudy:
    """One sample's open study and its number of COMPLETE trials."""

    member: Member
    study: optuna.Study
    n_complete: int
    history: Any = None     # batched.History of the COMPLETE trials when the batched engine draws
    n_trials: int = 0       # trials stored in any state (n_complete when none failed or waits)


SPACES = ("paper", "smoacs")


def members(task: Task, starts: list[tuple], allowed: np.ndarray, space: str = "paper",
            composition_only: bool = False) -> list[Member]:
    """One :class:`Member` per (source, start structure[, its oxidation patterns (D, N)]): search space and
    enqueued initial params. ``allowed``: (K,) bool elements the predictors can embed; ``space``: "paper"
    (one element per site among its role's states or all elements, the paper's TPE) or "smoacs" (a pattern,
    then the elements it allows per site: SMOACS's encoding, :func:`.space.smoacs_space`); ``composition_only``
    (perovskites): the geometry held at the ideal cell (:func:`.space.composition_space`)."""
    if space not in SPACES:
        raise ValueError(f"space must be one of {', '.join(SPACES)}, got {space!r}")
    if composition_only and space != "smoacs":
        raise ValueError("composition_only needs space=smoacs")
    starts = [tuple(s) if len(s) == 3 else (*s, None) for s in starts]   # (source, structure) still works
    if space == "smoacs":
        from smoacs_bench.data.patterns import oxidation_patterns

        starts = [(src, st, pat if pat is not None else (task.cell.patterns if task.is_perovskite
                                                            else oxidation_patterns(st)[0]))
                  for src, st, pat in starts]
    out = []
    if task.is_perovskite:
        base = perovskite_space(task, allowed)
        zero = {f"{q}{i}": 0.0 for i in range(base.n_sites) for q in "xyz"}
        paper = [(src, base, dict(zip("abc", map(float, st.lattice.abc), strict=True)) | zero, pat)
                 for src, st, pat in starts]
    else:
        symbols = {SYMBOLS[k] for k in np.flatnonzero(allowed)}
        spaces: dict[int, SearchSpace] = {}   # one object per size: BatchTPE draws studies sharing it together
        paper = [(src, spaces.setdefault(len(st), free_space(task, allowed, len(st))),
                  free_initial_params(st, task, symbols), pat) for src, st, pat in starts]
    cache: dict[bytes, SearchSpace] = {}
    for i, (src, sp, initial, pat) in enumerate(paper):
        if space == "smoacs":
            key = np.asarray(pat).tobytes() + str(np.asarray(pat).shape).encode() + str(sp.n_sites).encode()
            if key not in cache:
                cache[key] = smoacs_space(sp, pat, allowed)
                if composition_only:
                    cache[key] = composition_space(cache[key])
            sp = cache[key]
            initial = smoacs_initial_params(sp, initial)
        if composition_only:
            initial = {k: v for k, v in initial.items() if k in sp.distributions or k.startswith("el")}
        out.append(Member(i, src, sp, initial))
    return out


def group_storage(where: str | None, group: int) -> tuple[Any, RoundJournal | None]:
    """(Optuna storage, journal backend to flush after each round or None) of one group of studies.

    ``where``: None (in memory), an Optuna URL, a ``*.log`` Optuna journal file, or a folder holding
    one :class:`RoundJournal` per group (``group-<g>.log``).
    """
    if where is None:
        return InMemoryStorage(), None
    if "://" in where:
        return where, None
    if where.endswith(".log"):  # Optuna's own journal file (absolute: its symlink lock needs it)
        from optuna.storages.journal import JournalFileBackend

        Path(where).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(Path(where).resolve()))), None
    folder = Path(where)
    if folder.is_file():
        raise ValueError(f"TPE storage {where!r} is a file; give a folder (one journal per group of studies) "
                         "or an Optuna storage URL")
    backend = RoundJournal(folder / f"group-{group:03d}.log")
    return JournalStorage(backend), backend


def open_study(storage, member: Member, n_objectives: int, identity: dict[str, Any],
               where: str | None) -> OpenStudy:
    """Create or load study "sample-<i>" and fail its stale RUNNING trials (the runner enqueues the start where
    Optuna's ask/tell draws). ``where`` (the storage as configured) only appears in error messages."""
    i = member.index
    study = optuna.create_study(storage=storage, study_name=f"sample-{i}",
                                directions=["minimize"] * n_objectives, load_if_exists=True)
    stored = study.user_attrs.get("run")
    if stored is None:
        study.set_user_attr("run", identity)
        study.set_user_attr("start", member.fingerprint())
    elif stored != identity:
        raise ValueError(f"storage {where!r} holds study sample-{i} of another run: "
                         f"{stored} != {identity}; use a fresh storage folder (or --force to start over)")
    elif study.user_attrs.get("start", member.fingerprint()) != member.fingerprint():
        raise ValueError(f"storage {where!r} holds study sample-{i} started from another structure "
                         f"than this run's {member.source!r} (other initial structures, or a draw of another "
                         "size from a finite pool); use a fresh storage folder (or --force to start over)")
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(t.number, state=TrialState.FAIL)  # asked before a kill, never told (URL storages)
    trials = study.get_trials(deepcopy=False)
    n_complete = sum(t.state == TrialState.COMPLETE for t in trials)
    return OpenStudy(member, study, n_complete, n_trials=len(trials))


def objectives(structure: Structure | None, bg: float, ef: float, task: Task) -> tuple[dict[str, float], dict[str, Any]]:
    """(objective values by name, user attributes) of one trial; failed trials get ``FAILED``.

    ``bg`` in eV, ``ef`` in eV/atom. L_neutral is the evaluator's neutrality rule for the task
    (:func:`~smoacs_bench.data.rules.judge_neutrality`); L_t uses the pattern's radii and the task's
    window (c), so a crystal that fits no task pattern has L_t = 1.
    """
    if structure is None or not (math.isfinite(bg) and math.isfinite(ef)):
        why = "unusable lattice" if structure is None else "prediction is not finite"
        return dict(FAILED), {"band_gap": None, "formation_energy": None, "failed": why}
    species = [site.specie.symbol for site in structure]
    criteria = task.criteria()
    verdict = judge_neutrality(species, structure.frac_coords, criteria)  # the evaluator's rule, not a copy
    values = {L_BG: max(0.0, abs(task.target_bg - bg) - task.margin), L_F: float(ef),
              L_NEUTRAL: 0.0 if verdict.neutral else 1.0}
    attrs: dict[str, Any] = {"band_gap": float(bg), "formation_energy": float(ef), "neutral": verdict.neutral}
    if task.is_perovskite:
        t = pattern_tolerance_factor(species, verdict)[0] if criteria.neutrality == "pattern" else math.nan
        lo, hi = task.tolerance_range
        values[L_T] = 0.0 if math.isfinite(t) and lo <= t <= hi else 1.0
        attrs["tolerance_factor"] = t if math.isfinite(t) else None
    return values, attrs
