"""SMOACS-relax: SMOACS whose crystals are asked about near-equilibrium geometries (issue #23).

SMOACS moves the lattice and coordinates wherever the band-gap predictor says the target is, and such
geometries are far from equilibrium: a universal potential relaxes them by ~1.5 eV/atom and the predicted gap
moves with it. This variant keeps SMOACS's state, masks, schedules and copy-and-mutate and adds these ideas,
each behind an option (the ablation rows of ``reproduce relax3``/``relax2`` switch them one at a time):

- **relaxation in the loop** (``relax_every`` k > 0): every k steps the discretised crystal (argmax pattern and
  elements) is relaxed with the universal potential (CHGNet 0.3.0 by default; at most ``relax_steps`` steps)
  and its lattice and fractional coordinates replace the state's (elements and pattern logits are kept; the
  rigid drift is removed; perovskite ranges still apply), so the gradient on the elements is taken at a
  near-equilibrium geometry; ``geometry_lr_scale`` scales the lattice and coordinate rates between relaxations
  (0, the default: the geometry is the potential's alone);
- **final relaxation** (``final_relax``): each proposal is relaxed to the evaluator's convergence criterion
  (every force and cell force below 0.05 eV/Å, ≤ 300 steps), so it is at equilibrium by construction; its own
  predictions are re-made on the relaxed crystal;
- **ideal sites** (``snap_ideal``, perovskite tasks): every relaxation starts from the ideal site coordinates.
  A 5-site cell's sites then sit on inversion centres and mirror planes, so forces vanish by symmetry and only
  a, b, c relax (angles stay 90°): the crystal stays a perovskite, at a stationary point of the potential that
  may be unstable to distortions a 5-site cell cannot express (octahedral tilts). Such cells are relaxed by
  quasi-Newton steps on ln(a, b, c) (:func:`~smoacs_bench.evaluation.relax.relax_cell`: ~10 potential calls
  where FIRE takes ~35, to the same criterion, so the evaluator's FIRE stops at once); every other crystal by
  FIRE on a FrechetCellFilter. A supercell (3x3x3) holds different elements on equivalent sites, so forces do
  not vanish, and FIRE from SMOACS's cells (2-10 Å per unit cell) explodes or stalls: its cell relaxes first
  with the sites held (``relax_cell(hold_sites=True)``), then FIRE relaxes everything. A mixed supercell
  relaxes into distortions that may leave the task's ±0.05 coordinate window (the criteria then say so).
  On a 5-site cell's ideal sites a crystal is its species in site order, so each composition is relaxed once
  per run and every later visit (another sample, a copy, a return after reheating) reuses that relaxation;
- **relaxed checkpoints** (``checkpoints``): each converged in-loop relaxation is a candidate at equilibrium;
  a sample proposes its best one (the final relaxation included) by its own predictors and the task's criteria
  (success, then criteria met, then distance to the window), the judge re-predicting it as always;
- **reheating** (``reheat``): SMOACS's element logits saturate within a few steps, after which only the
  geometry moves; with the geometry given by the potential a sample would keep one composition. So at each
  in-loop relaxation a sample whose relaxed crystal misses the criteria (own predictors) gets near-uniform
  element logits at the current temperature (as the released copy-and-mutate gives a copy) and descends to a
  new composition from its relaxed geometry; the checkpoints keep the best one it has visited;
- **unclamped gap** (SMOACS's ``clamp_bg`` set to False; on by default, as in SMOACS): the loss sees max(ŷ_bg, 0),
  so a crystal predicted metallic gets no band-gap gradient; SMOACS escapes through the lattice, which here is
  the potential's (one 32-sample pilot did better unclamped; not yet an ablation row);
- **hinged terms** (``hinge``): SMOACS's λ ŷ_f rewards ever lower formation energy and |t - 0.9| any step
  towards 0.9; with the geometry pinned by the potential those pulls compete with the band gap for the
  composition, so here they act only beyond a safety margin inside the criteria: λ max(0, ŷ_f - (E_max - 0.2))
  and max(0, |t - 0.9| - 0.05);
- **smoothed band-gap loss** (``smooth_copies`` K > 0, off by default): the band-gap loss is averaged over the
  crystal and K copies under random symmetric strains (σ ``smooth_strain``) and displacements (σ
  ``smooth_disp`` Å), each on its own neighbour graph, so the optimiser cannot sit on a predictor's cutoff
  discontinuity;
- **energy term** (``energy_weight`` w > 0, off by default): w times the potential's energy per atom
  (eV/atom) of the discretised crystal, with its exact gradient on lattice and coordinates from the potential's
  stress and forces, every ``energy_every`` steps (it acts only where the geometry moves by gradient).

Cost: one CHGNet call per relaxation step or energy evaluation, ≈ 20-35 ms per 5-site crystal on one CPU core.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from smoacs_bench.data.oxidation import closed_shell
from smoacs_bench.data.task import Task
from smoacs_bench.evaluation.relax import (
    RelaxOutcome,
    RelaxSettings,
    load_relaxer,
    relax,
    relax_cell,
    relaxer_label,
)
from smoacs_bench.methods.base import Proposal
from smoacs_bench.methods.predictors import SoftCrystals, build_neighbor_graph

from .method import SMOACS, SMOACSConfig
from .schedules import temperature
from .state import CrystalState

EF_SAFETY = 0.2    # eV/atom below the E_f threshold where the hinged E_f term stops acting
T_SAFETY = 0.05    # the hinged tolerance term acts beyond |t - 0.9| > 0.05 (criterion: 0.8-1.0)
AGREE_GAP = "gap-judge"   # the composition band-gap model of evaluation.gap_judge (MP-20 PBE gaps)
# the composition models of evaluation.dft_gap_model (this project's DFT labels), by round: their model folders
AGREE_DFT = {"dft-gap": "dft-gap-perovskite", "dft-gap-r2": "dft-gap-perovskite-r2"}
SUPERCELL_CELL_STEPS = 60   # quasi-Newton cell steps (sites held) before FIRE relaxes a perovskite supercell


@dataclass
class RelaxingSMOACSConfig(SMOACSConfig):
    relax_every: int = 5               # steps between in-loop relaxations (0: none)
    relax_steps: int = 60              # relaxation steps at most per in-loop relaxation
    relax_fmax: float = 0.05           # eV/Å, in-loop and final convergence threshold
    final_relax: bool = True           # relax every proposal to the evaluator's convergence criterion
    final_steps: int = 300             # relaxation steps at most in the final relaxation
    geometry_lr_scale: float = 0.0     # multiplies the lattice, angle and coordinate rates (0: relaxation alone)
    smooth_copies: int = 0             # K strained/displaced copies in the band-gap loss (0: off)
    smooth_strain: float = 0.01        # σ of each symmetric strain component
    smooth_disp: float = 0.02          # σ of each Cartesian displacement (Å)
    energy_weight: float = 0.0         # weight of the potential's energy per atom in the loss (0: off)
    energy_every: int = 1              # steps between energy evaluations (the term acts on those steps)
    reheat: bool = True                # at an in-loop relaxation, a sample missing the criteria redraws its elements
    hinge: bool = True                 # E_f and tolerance terms only act outside their criteria (see _ef_loss)
    snap_ideal: bool = True            # perovskite tasks: relax from the ideal site coordinates (the cell alone moves)
    checkpoints: bool = True           # with final_relax: propose each sample's best relaxed crystal (converged
    #                                    in-loop ones and the final one)
    agree_gap: str = ""                # "gap-judge": a checkpoint or a kept composition also needs the composition
    #                                    gap model (evaluation.gap_judge) within ± agree_window of the target;
    #                                    "dft-gap" ("dft-gap-r2"): the model trained on the judge's DFT labels,
    #                                    round 1 (2) (dft_gap_model)
    agree_window: float = 0.25         # eV: half-width of the second model's window (the DFT hit's)
    closed_shell: bool = False         # only closed-shell ions (d0/d10, f0/f14, main group): what the judge's
    #                                    closed-shell, U-free PBE check can verify (data.oxidation.closed_shell)
    relaxer: str = "chgnet"            # the universal potential (evaluation.relax.load_relaxer names)
    relax_batch: int = 64              # structures per potential call


class RelaxingSMOACS(SMOACS):
    """SMOACS with relaxation in the loop, a final relaxation, a smoothed band-gap loss and an energy term
    (module docstring); each is an option, so one class gives every ablation row."""

    name = "smoacs-relax"
    display_name = "SMOACS-relax"
    config_class = RelaxingSMOACSConfig
    result_neutral = (*SMOACS.result_neutral, "relax_batch")
    revision = 0

    def __init__(self, **config: Any):
        super().__init__(**{k: v for k, v in config.items() if k in SMOACSConfig.__dataclass_fields__})
        # this class's own defaults, then the predictor pair SMOACS resolved (a ``predictors`` family shortcut)
        self.cfg = dataclasses.replace(RelaxingSMOACSConfig(**config), band_gap_model=self.cfg.band_gap_model,
                                       formation_energy_model=self.cfg.formation_energy_model)
        c = self.cfg
        if c.relax_every < 0 or c.smooth_copies < 0 or c.energy_every < 1 or c.energy_weight < 0:
            raise ValueError("relax_every and smooth_copies must be >= 0, energy_every >= 1, energy_weight >= 0")
        if c.agree_gap not in ("", AGREE_GAP, *AGREE_DFT) or c.agree_window <= 0:
            raise ValueError(f"agree_gap must be '', {AGREE_GAP!r} or one of {', '.join(AGREE_DFT)}, and agree_window "
                             f"> 0 eV, got {c.agree_gap!r} and {c.agree_window}")
        self._relaxer = None
        self._relax_log: dict[str, float] = {}
        self._ckpts: dict[int, list] = {}   # id(state) -> per sample (score, structure, bg, ef, step) or None
        self._cell_cache: dict[tuple, Any] = {}   # species in site order -> relaxation on ideal sites (this run)
        self._task: Task | None = None

    def propose(self, task: Task, n_samples: int, seed: int) -> list[Proposal]:
        self._task, self._ckpts, self._relax_log, self._cell_cache = task, {}, {}, {}
        self._gen = torch.Generator().manual_seed(seed + 7919)   # reheating draws (the method's own stream)
        return super().propose(task, n_samples, seed)

    def oxidation_table(self):
        return closed_shell() if self.cfg.closed_shell else None

    # -- the potential ---------------------------------------------------------------------------------------
    @property
    def relaxer(self):
        if self._relaxer is None:
            self._relaxer = load_relaxer(self.cfg.relaxer, batch_size=self.cfg.relax_batch)
        return self._relaxer

    def _count(self, key: str, value: float) -> None:
        self._relax_log[key] = self._relax_log.get(key, 0.0) + value

    def _dft_model(self):
        """The DFT-trained gap model of this run's round (``agree_gap``, a key of :data:`AGREE_DFT`)."""
        from smoacs_bench.evaluation.dft_gap_model import load_dft_gap_model

        return load_dft_gap_model(name=AGREE_DFT[self.cfg.agree_gap])

    def config(self) -> dict[str, Any]:
        out = super().config() | {"relax_log": dict(self._relax_log)}
        if self.cfg.agree_gap in AGREE_DFT:
            m = self._dft_model().manifest
            out["agree_model"] = {k: m.get(k) for k in ("training_formulas", "label_seconds", "label_records",
                                                         "cv_mae", "command")}
        return out

    def caption_note(self) -> str:
        c = self.cfg
        ideas = []
        if c.relax_every:
            ideas.append(f"relaxes the discretised crystal with {relaxer_label(c.relaxer)} every {c.relax_every} steps "
                         f"(≤ {c.relax_steps} steps) and continues from it")
        if c.geometry_lr_scale != 1.0:
            ideas.append(f"scales the geometry's learning rates by {c.geometry_lr_scale:g}")
        if c.reheat and c.relax_every:
            ideas.append("redraws the elements of a sample whose relaxed crystal misses the criteria")
        if c.hinge:
            ideas.append(f"hinges the E_f term at {EF_SAFETY:g} eV/atom below the threshold and the tolerance term at "
                         f"|t - 0.9| = {T_SAFETY:g}")
        if c.smooth_copies:
            ideas.append(f"averages the band-gap loss over {c.smooth_copies} copies strained by σ {c.smooth_strain:g} "
                         f"and displaced by σ {c.smooth_disp:g} Å")
        if c.energy_weight:
            ideas.append(f"adds {c.energy_weight:g} × the {relaxer_label(c.relaxer)} energy per atom every "
                         f"{c.energy_every} steps")
        if c.snap_ideal and (c.relax_every or c.final_relax):
            ideas.append("starts every relaxation of a perovskite from the ideal site coordinates (on the 5-site "
                         "cell forces vanish by symmetry and the cell alone relaxes, by quasi-Newton steps to the "
                         "evaluator's convergence criterion; a supercell's sites hold different elements, so there the "
                         "cell relaxes first with the sites held, then FIRE relaxes everything)")
        if c.agree_gap == AGREE_GAP:
            ideas.append(f"counts a crystal a success, keeps it and ranks it first only where a second band-gap model "
                         f"agrees: the composition model trained on MP-20's PBE gaps (the gap cross-judge, so its column "
                         f"is no independent check of this row: DFT is) within ± {c.agree_window:g} eV of the target (a "
                         "sample that never finds such a crystal proposes its best other one)")
        elif c.agree_gap in AGREE_DFT:
            m = self._dft_model().manifest
            ideas.append(f"counts a crystal a success, keeps it and ranks it first only where a composition model "
                         f"trained on the judge's own DFT labels of earlier proposals ({m['training_formulas']} formulas, "
                         f"cross-validated MAE {m['holdout']['mae']:.2f} eV; {m['label_seconds'] / 3600:.1f} CPU hours of "
                         f"DFT, paid by the judge's checks of other rows) puts the gap within ± {c.agree_window:g} eV of "
                         "the target, never on a formula it was trained on (so the judge's DFT check is out of sample; a "
                         "sample that never finds such a crystal proposes its best other one)")
        if c.closed_shell:
            ideas.append("allows closed-shell ions only (d0/d10, f0/f14 and main-group ions: what the closed-shell, "
                         "U-free PBE check describes), a smaller space than the other rows'")
        if c.final_relax:
            ideas.append(f"proposes each crystal relaxed to fmax {c.relax_fmax:g} eV/Å (≤ {c.final_steps} steps; FIRE "
                         "on a FrechetCellFilter where the cell alone does not apply)")
            if c.checkpoints and c.relax_every:
                ideas.append("or, where its own predictors rank it higher, its best converged in-loop relaxed crystal")
        what = "; ".join(ideas) if ideas else "runs as SMOACS (every idea switched off)"
        return super().caption_note().rstrip(".") + f"; it {what}."

    def learning_rates(self, task: Task) -> dict[str, float]:
        out = super().learning_rates(task)
        for key in ("lr_lattice", "lr_angles", "lr_coords"):
            out[key] *= self.cfg.geometry_lr_scale
        return out

    # -- hinged terms ----------------------------------------------------------------------------------------
    def _ef_loss(self, ef: torch.Tensor, task: Task) -> torch.Tensor:
        if not self.cfg.hinge:
            return super()._ef_loss(ef, task)
        return self.cfg.lam * torch.relu(ef - (task.ef_max - EF_SAFETY))

    def _tolerance_loss(self, t: torch.Tensor, task: Task) -> torch.Tensor:
        if not self.cfg.hinge:
            return super()._tolerance_loss(t, task)
        return torch.relu((t - task.tolerance_target).abs() - T_SAFETY)

    # -- relaxation in the loop ------------------------------------------------------------------------------
    def _symmetric(self, task: Task) -> bool:
        """Relaxations start from the ideal sites of a 5-site cell: every coordinate 0 or 1/2, forces vanish."""
        return self.cfg.snap_ideal and task.is_perovskite and task.cell is not None and task.cell.n == 1

    def _supercell(self, task: Task) -> bool:
        """A perovskite supercell (3x3x3) relaxed from ideal sites: its sites hold different elements, so forces do
        not vanish, and SMOACS's cells (lengths of 2-10 Å per unit cell) are far from the potential's scale."""
        return self.cfg.snap_ideal and task.is_perovskite and task.cell is not None and task.cell.n > 1

    def _relax_supercell(self, structures: list, settings: RelaxSettings) -> list:
        """The cell first, with the sites held (:func:`relax_cell`, ``hold_sites``; at most
        ``SUPERCELL_CELL_STEPS`` steps), then FIRE on a FrechetCellFilter from there: FIRE started from SMOACS's
        compressed or stretched cells explodes or does not converge. Steps and the initial energy count both."""
        pre = relax_cell(structures, dataclasses.replace(settings, max_steps=SUPERCELL_CELL_STEPS),
                         relaxer=self.relaxer, hold_sites=True)
        starts = [o.final if o.final is not None else st for o, st in zip(pre, structures, strict=True)]
        outcomes = relax(starts, settings, relaxer=self.relaxer)
        self._count("cell_prerelaxations", sum(o.final is not None for o in pre))
        for p, o in zip(pre, outcomes, strict=True):
            if p.final is not None:
                o.steps += p.steps
                o.energy_initial = p.energy_initial
                o.extra["cell_steps"] = p.steps
        return outcomes

    def _relax(self, structures: list, task: Task, max_steps: int) -> list:
        """Relax ``structures`` (None allowed): the cell alone by quasi-Newton where the sites sit on symmetry
        points (:func:`relax_cell`, the same convergence as FIRE's), FIRE on a FrechetCellFilter otherwise and for
        any structure the cell relaxation hands back."""
        settings = RelaxSettings(relaxer=self.cfg.relaxer, fmax=self.cfg.relax_fmax, max_steps=max_steps)
        if self._supercell(task):
            return self._relax_supercell(structures, settings)
        if not self._symmetric(task):
            return relax(structures, settings, relaxer=self.relaxer)
        # on ideal sites a crystal is its species in site order: one relaxation per run serves every visit
        keys = [None if st is None else tuple(sp.symbol for sp in st.species) for st in structures]
        todo: dict[tuple, int] = {}
        for i, k in enumerate(keys):
            if k is not None and k not in self._cell_cache and k not in todo:
                todo[k] = i
        first = list(todo.values())
        fresh = relax_cell([structures[i] for i in first], settings, relaxer=self.relaxer)
        redo = [j for j, o in enumerate(fresh) if o.final is None]
        if redo:
            again = relax([structures[first[j]] for j in redo], settings, relaxer=self.relaxer)
            for j, o in zip(redo, again, strict=True):
                fresh[j] = o
            self._count("fire_fallbacks", len(redo))
        for k, o in zip(todo, fresh, strict=True):
            if o.converged or max_steps >= self.cfg.final_steps:   # an in-loop cap does not fix a crystal's state
                self._cell_cache[k] = o
        self._count("relaxed_compositions", len(first))
        out = []
        for i, k in enumerate(keys):
            if k is None:
                out.append(RelaxOutcome(reason="no structure"))
                continue
            o = self._cell_cache.get(k) or fresh[list(todo).index(k)]
            if i not in first:
                self._count("cache_hits", 1)
            out.append(dataclasses.replace(o, final=None if o.final is None else o.final.copy()))
        return out

    def _snap(self, state: CrystalState, task: Task) -> None:
        if self.cfg.snap_ideal and task.is_perovskite:
            with torch.no_grad():
                state.coords.copy_(state.ideal)

    def _score(self, structures: list, task: Task) -> tuple[list[tuple], np.ndarray, np.ndarray]:
        """Own predictions of ``structures`` (None allowed) judged by the task's criteria: a sortable score per
        structure (success, the second gap model agrees (always, when off), criteria met, -distance to meeting bg
        and E_f), band gaps (eV), E_f (eV/atom)."""
        from smoacs_bench.evaluation.criteria import evaluate

        idx = [i for i, st in enumerate(structures) if st is not None]
        bg, ef = np.full(len(structures), np.nan), np.full(len(structures), np.nan)
        if idx:
            bg_model, ef_model = self.predictors
            bg[idx] = bg_model.predict_structures([structures[i] for i in idx])
            ef[idx] = ef_model.predict_structures([structures[i] for i in idx])
        rows = evaluate(structures, list(bg), list(ef), task.criteria())
        keys = ["bg_ok", "ef_ok", "valid_structure"] + (["perovskite_ok"] if task.is_perovskite else [])
        second = self._second_gaps(structures, idx)
        scores = []
        for i, row in rows.iterrows():
            if structures[i] is None or not np.isfinite(bg[i]) or not np.isfinite(ef[i]):
                scores.append((-1, -1, -1, -np.inf))
                continue
            dist = max(abs(bg[i] - task.target_bg) - task.margin, 0.0) + max(ef[i] - task.ef_max, 0.0)
            success, agrees = bool(row["success"]), True
            if second is not None:   # the second model must agree; it ranks before the criteria (NaN: 10 eV off)
                off = abs(second[i] - task.target_bg) if np.isfinite(second[i]) else 10.0
                agrees = off <= self.cfg.agree_window
                success, dist = success and agrees, dist + max(off - self.cfg.agree_window, 0.0)
            scores.append((int(success), int(agrees), sum(bool(row[k]) for k in keys), -dist))
        return scores, bg, ef

    def _second_gaps(self, structures: list, idx: list[int]) -> np.ndarray | None:
        """The agreeing model's band gaps (eV; NaN where none) of ``structures[idx]``, or None when it is off."""
        if not self.cfg.agree_gap:
            return None
        out = np.full(len(structures), np.nan)
        if not idx:
            return out
        formulas = [structures[i].composition.reduced_formula for i in idx]
        if self.cfg.agree_gap in AGREE_DFT:
            out[idx] = self._dft_model().predict(formulas)
            return out
        from smoacs_bench.evaluation.gap_judge import load_gap_judge

        gaps, _ = load_gap_judge().predict(formulas)
        out[idx] = gaps
        return out

    def _keep(self, state: CrystalState, task: Task, step: int, structures: list,
              converged: list[bool]) -> list[tuple] | None:
        """Record each sample's relaxed crystal as a checkpoint when it beats the sample's best (ties: the later);
        returns the scores (None when neither checkpoints nor reheating need them)."""
        if not (self.cfg.checkpoints or self.cfg.reheat):
            return None
        todo = [st if ok else None for st, ok in zip(structures, converged, strict=True)]
        scores, bg, ef = self._score(todo, task)
        if not self.cfg.checkpoints:
            return scores
        best = self._ckpts.setdefault(id(state), [None] * state.num_samples)
        for b, sc in enumerate(scores):
            if todo[b] is not None and (best[b] is None or sc >= best[b][0]):
                best[b] = (sc, todo[b], float(bg[b]), float(ef[b]), step)
        return scores

    def _resume_extra(self, state: CrystalState) -> dict[str, Any]:
        return {"ckpts": self._ckpts.get(id(state)), "relax_log": dict(self._relax_log),
                "cell_cache": dict(self._cell_cache), "gen": self._gen.get_state()}

    def _restore_extra(self, state: CrystalState, extra: dict[str, Any]) -> None:
        if extra["ckpts"] is not None:
            self._ckpts[id(state)] = extra["ckpts"]
        self._relax_log, self._cell_cache = dict(extra["relax_log"]), dict(extra["cell_cache"])
        self._gen.set_state(extra["gen"])

    def _copied(self, state: CrystalState, pairs: list[tuple[int, int]]) -> None:
        """A sample overwritten by a copy starts its own record: its earlier checkpoints belong to another lineage."""
        best = self._ckpts.get(id(state))
        if best is not None:
            for dst, _ in pairs:
                best[dst] = None

    def _reshape(self, state: CrystalState, step: int, task: Task, alive: torch.Tensor) -> bool:
        k = self.cfg.relax_every
        if not k or step == 0 or step % k:
            return False
        self._snap(state, task)
        crystals, _ = state.discretize()
        ok = (alive & torch.isfinite(crystals.lattice).all(dim=(1, 2))).cpu().numpy()
        structures = crystals.to_structures()
        todo = [s if ok[b] else None for b, s in enumerate(structures)]
        outcomes = self._relax(todo, task, self.cfg.relax_steps)
        moved = 0
        with torch.no_grad():
            for b, out in enumerate(outcomes):
                if out.final is None or not ok[b]:
                    continue
                self._set_geometry(state, b, structures[b], out.final)
                moved += 1
                self._count("in_loop_steps", out.steps)
            state.project()
        self._count("in_loop_relaxations", moved)
        scores = self._keep(state, task, step, [o.final for o in outcomes], [o.converged and bool(ok[b])
                                                                             for b, o in enumerate(outcomes)])
        if self.cfg.reheat:
            t_now = temperature(step, self.cfg.steps, self.cfg.t_start, self.cfg.t_end)
            with torch.no_grad():
                for b in range(state.num_samples):
                    if ok[b] and (scores is None or scores[b][0] < 1):
                        sl = slice(state.ptr[b], state.ptr[b + 1])
                        state.atoms[sl] = t_now * torch.rand(state.atoms[sl].shape, generator=self._gen).to(
                            state.atoms.device)
                        self._count("reheated", 1)
        return moved > 0

    @staticmethod
    def _set_geometry(state: CrystalState, b: int, before, after) -> None:
        """Sample ``b`` takes the lattice and coordinates of ``after`` (relaxed from ``before``), its rigid drift
        removed, coordinates kept continuous with the state's (no wrap into [0, 1))."""
        sl = slice(state.ptr[b], state.ptr[b + 1])
        d = np.asarray(after.frac_coords) - np.asarray(before.frac_coords)
        d -= np.round(d)
        d -= d.mean(axis=0)
        dev, dt = state.coords.device, state.coords.dtype
        state.coords[sl] += torch.as_tensor(d, dtype=dt, device=dev)
        state.abc[b] = torch.as_tensor(after.lattice.abc, dtype=dt, device=dev)
        if not state.fixed_angles:
            state.angles[b] = torch.as_tensor(after.lattice.angles, dtype=dt, device=dev)

    # -- smoothed band-gap loss ------------------------------------------------------------------------------
    def _band_gap_loss(self, crystals: SoftCrystals, graph, cutoff: float, task: Task,
                       gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        bg, loss = super()._band_gap_loss(crystals, graph, cutoff, task, gen)
        k = self.cfg.smooth_copies
        if not k:
            return bg, loss
        total = loss
        n_b, dev = crystals.num_samples, crystals.device
        for _ in range(k):
            e = self.cfg.smooth_strain * torch.randn(n_b, 3, 3, generator=gen).to(dev)
            strain = torch.eye(3, device=dev) + 0.5 * (e + e.transpose(1, 2))
            lattice = crystals.lattice @ strain
            cart = self.cfg.smooth_disp * torch.randn(crystals.frac_coords.shape, generator=gen).to(dev)
            # Cartesian rows R = X L, so a displacement dR moves fractional coordinates by dR L^-1
            frac = crystals.frac_coords + (cart.unsqueeze(1) @ torch.linalg.inv(lattice.detach())[crystals.batch]
                                           ).squeeze(1)
            moved = SoftCrystals(lattice, frac, crystals.atom_probs, crystals.batch)
            g = build_neighbor_graph(moved.detach(), cutoff)
            total = total + super()._band_gap_loss(moved, g, cutoff, task, gen)[1]
        return bg, total / (k + 1)

    # -- energy term -----------------------------------------------------------------------------------------
    def _extra_loss(self, state: CrystalState, crystals: SoftCrystals, step: int, task: Task) -> torch.Tensor | None:
        w = self.cfg.energy_weight
        if not w or step % self.cfg.energy_every:
            return None
        one_hot, _ = state.discretize()
        structures = one_hot.to_structures()
        results = self.relaxer.efs(structures)
        self._count("energy_calls", len(structures))
        lattice = crystals.lattice
        n_b, dev, dt = crystals.num_samples, lattice.device, lattice.dtype
        g_lat = torch.zeros(n_b, 3, 3, dtype=dt, device=dev)
        g_frac = torch.zeros_like(crystals.frac_coords)
        e_atom = torch.zeros(n_b, dtype=dt, device=dev)
        lat_np = lattice.detach().cpu().double().numpy()
        for b, res in enumerate(results):
            if isinstance(res, str):
                continue
            energy, forces, stress = res
            n = state.n_sites[b]
            if not (math.isfinite(energy) and np.isfinite(forces).all() and np.isfinite(stress).all()):
                continue
            volume = abs(np.linalg.det(lat_np[b]))
            # E(L, X): dE/dX = -F L^T (R = X L); dE/dL = L^-T V σ (L' = L (1 + ε), σ = (1/V) dE/dε)
            g_lat[b] = torch.as_tensor(np.linalg.inv(lat_np[b]).T @ (volume * stress) / n, dtype=dt, device=dev)
            sl = slice(state.ptr[b], state.ptr[b + 1])
            g_frac[sl] = torch.as_tensor(-forces @ lat_np[b].T / n, dtype=dt, device=dev)
            e_atom[b] = energy / n
        lin = ((lattice - lattice.detach()) * g_lat).sum(dim=(1, 2))
        lin = lin + torch.zeros(n_b, dtype=dt, device=dev).index_add(
            0, crystals.batch, ((crystals.frac_coords - crystals.frac_coords.detach()) * g_frac).sum(dim=1))
        return w * (e_atom + lin)   # value: w E/atom; gradient: w dE/atom

    # -- final relaxation ------------------------------------------------------------------------------------
    @torch.no_grad()
    def _finalize(self, state, alive, reasons, hist, offset, best=None) -> list[Proposal]:
        task = self._task
        if self.cfg.final_relax:
            self._snap(state, task)
        proposals = super()._finalize(state, alive, reasons, hist, offset, best)
        if not self.cfg.final_relax:
            self._ckpts.pop(id(state), None)   # checkpoints are chosen among with the final relaxation only
            return proposals
        outcomes = self._relax([p.structure for p in proposals], task, self.cfg.final_steps)
        relaxed = [o.final if (o.final is not None and p.structure is not None) else None
                   for p, o in zip(proposals, outcomes, strict=True)]
        keep = [i for i, s in enumerate(relaxed) if s is not None]
        bg_model, ef_model = self.predictors
        bg = bg_model.predict_structures([relaxed[i] for i in keep]) if keep else np.array([])
        ef = ef_model.predict_structures([relaxed[i] for i in keep]) if keep else np.array([])
        for j, i in enumerate(keep):
            p, o = proposals[i], outcomes[i]
            p.meta.update(unrelaxed_band_gap=p.band_gap, unrelaxed_formation_energy=p.formation_energy,
                          final_relax_steps=o.steps, final_relax_converged=o.converged,
                          final_relax_drop=o.energy_drop)
            p.structure, p.band_gap, p.formation_energy = relaxed[i], float(bg[j]), float(ef[j])
        for i, (p, o) in enumerate(zip(proposals, outcomes, strict=True)):
            if p.structure is not None and relaxed[i] is None:
                p.meta["final_relax"] = f"not relaxed: {o.reason}"   # proposed as optimised
        self._count("final_relaxations", len(keep))
        self._count("final_relax_steps", sum(outcomes[i].steps for i in keep))
        if self.cfg.checkpoints:
            self._keep(state, task, self.cfg.steps, [p.structure if i in keep else None
                                                     for i, p in enumerate(proposals)],
                       [outcomes[i].converged for i in range(len(proposals))])
            final = self._ckpts.pop(id(state))
            for b, p in enumerate(proposals):
                if final[b] is None or final[b][4] == self.cfg.steps:
                    continue   # the final relaxed crystal is the best (or nothing converged)
                _, st, bg_b, ef_b, step = final[b]
                p.meta.update(checkpoint_step=step, final_band_gap=p.band_gap)
                p.structure, p.band_gap, p.formation_energy = st, bg_b, ef_b
            self._count("from_checkpoints", sum(1 for f in final if f is not None and f[4] != self.cfg.steps))
        return proposals
