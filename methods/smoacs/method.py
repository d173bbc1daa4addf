"""SMOACS (paper Section 3): gradient descent on crystals through differentiable predictors.

Loss per sample (Eq. 13, 14, 17): L = max(0, |y - ŷ_bg| - h) + λ ŷ_f (+ |t - 0.9| for perovskites).
Adam with one learning rate per parameter group and cosine annealing; softmax temperature decays
linearly from 0.01 to 0.0001; the neighbour graph is rebuilt on a sine schedule (the integral of
the cosine learning rate). Samples are independent: the batch loss is the sum of per-sample
losses, so a sample whose loss or lattice turns NaN is frozen and reported, the rest go on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from smoacs_bench.data.pools import Drawn, get_pool
from smoacs_bench.data.task import Task
from smoacs_bench.methods.base import Method, Proposal, deterministic
from smoacs_bench.methods.predictors import (
    DEFAULT_PAIR,
    SoftCrystals,
    allowed_elements,
    bond_vectors,
    build_neighbor_graph,
    family_of,
    family_pair,
    load_pair,
    paper_abbrev,
)

from .resume import Checkpointer
from .schedules import lr_factors, mutate_steps, rebuild_steps, temperature
from .state import CrystalState, InitialCrystal


@dataclass
class SMOACSConfig:
    """Settings of one SMOACS run. Learning rates are Adam step sizes: lattice in Å, angles in
    degrees, coordinates in fractional units, A and o in logit-times-temperature units; None takes
    the task's default (``Task.method_defaults["smoacs"]``)."""

    steps: int = 200                         # optimisation steps (the budget)
    lr_lattice: float | None = None           # Adam rate of a, b, c (Å); None: the task's default
    lr_angles: float | None = None            # Adam rate of the angles (degrees); None: the task's default
    lr_coords: float | None = None            # Adam rate of fractional coordinates; None: the task's default
    lr_atoms: float | None = None             # Adam rate of the element logits A; None: the task's default
    lr_ox: float | None = None                # Adam rate of the pattern logits o; None: the task's default
    lr_scale: float = 1.0                     # multiplies every rate above (the tuning protocol's knob)
    lam: float = 1.0                   # λ, weight of the formation energy
    t_start: float = 0.01                     # softmax temperature at the first step
    t_end: float = 0.0001                     # softmax temperature at the last step
    rebuild_every: int = 1             # steps between neighbour-graph rebuilds; 0: sine schedule of n_rebuilds
    n_rebuilds: int = 32               # only with rebuild_every = 0 (the schedule before this was measured)
    copy_mutate: bool = True           # the authors' copy-and-mutate step (docs/methods.md "SMOACS as implemented")
    mutate_at: tuple[float, ...] = (0.5, 0.75)  # fractions of the run: steps 100 and 150 of 200
    keep_best: float = 0.1             # share of the samples missing a target kept at a copy-and-mutate step
    mutate_noise: float = 7e-5         # σ of the noise on copied lattice (Å), angles (°) and coordinates
    reinit_at_temperature: bool = True  # copies' logits near-uniform at the current temperature (else at t_start)
    # the released copy-and-mutate (src/smoacs_opt_eval/copy_and_mutate.py); False/0 gives this project's earlier one
    copy_ox: bool = True               # a copy takes its parent's pattern logits plus noise (False: redrawn)
    skip_copy_rate: float = 0.05       # chance that a sample due to be replaced is left alone (group_C_use_rate)
    restart_cosine: bool = True        # a new cosine from the current rate over the remaining steps at each copy
    clamp_bg: bool = True              # the loss sees max(predicted gap, 0)
    selection: str = "final"           # "final": the last step; "best": the step meeting most criteria
    batch_size: int = 256              # samples optimised together
    band_gap_model: str = DEFAULT_PAIR[0]
    formation_energy_model: str = DEFAULT_PAIR[1]
    predictors: str | None = None      # family shortcut (megnet, crystalformer, alignn): sets both models
    device: str | None = None          # default: CUDA when available
    pool: str | None = None            # initial pool (data.pools.get_pool); None: the task's default
    progress: bool = True
    storage: str | None = None
    checkpoint_s: float = 300.0        # seconds between saves of the optimisation state (with storage; resume.py)


SELECTIONS = ("final", "best")


@dataclass
class _Run:
    """Per-chunk results collected by :meth:`SMOACS._optimize`."""

    proposals: list[Proposal] = field(default_factory=list)
    history: dict[str, list[np.ndarray]] = field(default_factory=dict)


def initial_crystals(task: Task, n_samples: int, seed: int, pool: str | None = None) -> list[Drawn]:
    """Starting points drawn from a pool (default per task: AFLOW prototypes with <= 10 sites for the
    free task, generated perovskites with the two perovskite patterns otherwise), with their source ids."""
    return get_pool(pool or task.default_pool).draw(n_samples, seed)


class SMOACS(Method):
    """Simultaneous Multi-property Optimization using Adaptive Crystal Synthesizer."""

    name = "smoacs"
    display_name = "SMOACS"
    config_class = SMOACSConfig
    budget = "steps"
    result_neutral = ("progress", "device", "checkpoint_s")   # CPU and CUDA differ at round-off level only
    state_dir = "smoacs_state"   # a killed run resumes from its last checkpoint (resume.py)
    revision = 2   # 2: copy-and-mutate as released (runs stored before it are not reused)
    tuning = ({"lr_scale": 1.0}, {"lr_scale": 0.5}, {"lr_scale": 2.0}, {"lr_scale": 0.25})

    def __init__(self, **config: Any):
        self.cfg = SMOACSConfig(**config)
        if self.cfg.predictors:
            self.cfg.band_gap_model, self.cfg.formation_energy_model = family_pair(self.cfg.predictors)
        if self.cfg.selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {', '.join(SELECTIONS)}, got {self.cfg.selection!r}")
        if self.cfg.steps < 1 or self.cfg.rebuild_every < 0:
            raise ValueError(f"steps must be >= 1 and rebuild_every >= 0, got {self.cfg.steps}, "
                             f"{self.cfg.rebuild_every}")
        dev = self.cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.device = torch.device(dev)
        self._predictors = None
        self._artifacts: dict[str, Any] = {}
        self._pool_info: dict[str, Any] = {}
        self._lrs: dict[str, float] = {}
        self.seconds_before_resume = 0.0   # wall time a resumed run had spent before this process (s)
        self._ckpt: Checkpointer | None = None

    def config(self) -> dict[str, Any]:
        return asdict(self.cfg) | {"device": str(self.device), "pool_used": self._pool_info,
                                   "learning_rates_used": self._lrs,
                                   "mutations": self._artifacts.get("mutations", [])}

    def predictor_names(self) -> tuple[str, ...]:
        return (self.cfg.band_gap_model, self.cfg.formation_energy_model)

    def caption_note(self) -> str:
        """Its start pool and copy-and-mutate settings, from the resolved config (after :meth:`propose`)."""
        cfg = self.cfg
        pool = self._pool_info.get("name") or cfg.pool or "the task's default pool"
        if not cfg.copy_mutate:
            copy = "without the authors' copy-and-mutate step"
        else:
            steps = ", ".join(str(round(f * cfg.steps)) for f in cfg.mutate_at)
            released = [name for name, on in (("pattern logits copied with noise", cfg.copy_ox),
                                              (f"{cfg.skip_copy_rate:g} chance to skip a copy", cfg.skip_copy_rate > 0),
                                              ("a cosine restarted at each copy", cfg.restart_cosine),
                                              ("band gap clamped at 0 in the loss", cfg.clamp_bg)) if on]
            copy = (f"with the authors' copy-and-mutate step from their released code (not in the paper) at steps "
                    f"{steps}: the samples missing the target are replaced by copies of those meeting it (the best "
                    f"{cfg.keep_best:g} kept)" + (f", {', '.join(released)}" if released else ""))
        return f"{self.label} starts from {pool} and runs {cfg.steps} steps {copy}."

    @property
    def label(self) -> str:
        """``S(Cry)`` / ``S(ALI)`` as in the paper's tables; ``SMOACS(MEGNet)`` for the pair the paper lacks."""
        abbrev = paper_abbrev(self.predictor_names())
        return f"S({abbrev})" if abbrev else super().label

    def learning_rates(self, task: Task) -> dict[str, float]:
        """The configured learning rates, else the task's defaults for the predictors' family (the paper's
        A.6-A.8 values for Crystalformer and ALIGNN), else the task's SMOACS defaults (MEGNet, swept here);
        an error where none is set."""
        family = family_of(self.predictor_names())
        defaults = task.defaults_for("smoacs") | task.defaults_for(f"smoacs:{family}")   # variants share them
        out = {}
        for key in ("lr_lattice", "lr_angles", "lr_coords", "lr_atoms", "lr_ox"):
            value = getattr(self.cfg, key)
            if value is None:
                if key not in defaults:
                    raise ValueError(f"task {task.name!r} has no default {key} for SMOACS; set it "
                                     f"(--param {key}=...)")
                value = defaults[key]
            out[key] = float(value) * self.cfg.lr_scale
        return out

    def artifacts(self) -> dict[str, Any]:
        return self._artifacts

    @property
    def predictors(self):
        """(band-gap predictor in eV, formation-energy predictor in eV/atom), loaded once."""
        if self._predictors is None:
            self._predictors = load_pair(*self.predictor_names(), device=self.device)
        return self._predictors

    def propose(self, task: Task, n_samples: int, seed: int) -> list[Proposal]:
        torch.manual_seed(seed)
        self._lrs = self.learning_rates(task)
        pool = get_pool(self.cfg.pool or task.default_pool)
        self._pool_info = pool.describe()
        drawn = pool.draw(n_samples, seed)
        initial = [d.crystal for d in drawn]
        gen = torch.Generator().manual_seed(seed)
        run = _Run()
        self._mutations: list[dict[str, int]] = []
        neutral = {*self.result_neutral, "storage"}
        self._ckpt = Checkpointer(self.cfg.storage, {
            "method": self.name, "revision": self.revision, "task": task.name, "target_bg": task.target_bg,
            "margin": task.margin, "n_samples": n_samples, "seed": seed,
            "config": {k: v for k, v in asdict(self.cfg).items() if k not in neutral}}, self.cfg.checkpoint_s)
        resume = self._ckpt.load()
        self.seconds_before_resume = self._ckpt.seconds_before
        if resume is not None:
            run = _Run(resume["proposals"], resume["history"])
            self._mutations = resume["mutations"]
        with deterministic():
            for start in range(0, n_samples, self.cfg.batch_size):
                if resume is not None and start < resume["offset"]:
                    continue   # finished before the checkpoint: its proposals are in ``run``
                self._optimize(initial[start:start + self.cfg.batch_size], task, gen, run, offset=start,
                               resume=resume if resume is not None and start == resume["offset"] else None)
        self._ckpt.clear()
        for p, d in zip(run.proposals, drawn, strict=True):
            p.meta["source"] = d.source
        self._artifacts = {"history": {k: np.concatenate(v, axis=1) for k, v in run.history.items()}}
        self._artifacts["mutations"] = self._mutations
        self._artifacts["history"]["temperature"] = np.array(
            [temperature(s, self.cfg.steps, self.cfg.t_start, self.cfg.t_end) for s in range(self.cfg.steps)])
        return run.proposals

    def allowed_elements(self) -> np.ndarray:
        """(98,) bool: elements both predictors can embed."""
        return allowed_elements(self.predictors)

    def oxidation_table(self):
        """The oxidation numbers the masks allow (None: ours, the paper's)."""
        return None

    def _optimize(self, initial: list[InitialCrystal], task: Task, gen: torch.Generator, run: _Run,
                  offset: int, resume: dict[str, Any] | None = None) -> None:
        cfg = self.cfg
        bg_model, ef_model = self.predictors
        state = CrystalState(
            initial, self.allowed_elements(), t_start=cfg.t_start, abc_range=task.abc_range,
            angle_range=task.angle_range, coord_eps=task.coord_eps, generator=gen,
            tolerance=task.is_perovskite, device=self.device, table=self.oxidation_table())
        lrs = self._lrs
        groups = [([state.abc], lrs["lr_lattice"]), ([state.coords], lrs["lr_coords"]),
                  ([state.atoms], lrs["lr_atoms"]), ([state.ox], lrs["lr_ox"])]
        if not state.fixed_angles:
            groups.append(([state.angles], lrs["lr_angles"]))

        def new_optimizer() -> torch.optim.Adam:
            return torch.optim.Adam([{"params": ps, "lr": lr} for ps, lr in groups])

        opt = new_optimizer()
        if cfg.rebuild_every >= 1:
            rebuild = set(range(0, cfg.steps, cfg.rebuild_every))
        else:  # the sine schedule of earlier versions (last rebuild at step 147 of 200)
            rebuild = {0, *rebuild_steps(cfg.steps, cfg.n_rebuilds)}
        mutate = set(mutate_steps(cfg.steps, tuple(cfg.mutate_at))) if cfg.copy_mutate else set()
        cutoff = max(bg_model.cutoff, ef_model.cutoff)  # one graph serves both predictors
        n_b = state.num_samples
        alive = torch.ones(n_b, dtype=torch.bool, device=self.device)
        reasons = [""] * n_b
        hist = {k: np.full((cfg.steps, n_b), np.nan, dtype=np.float32)
                for k in ("band_gap", "formation_energy", "loss", "tolerance_factor")}
        best = _Best(n_b, state) if cfg.selection == "best" else None
        graph, last = None, None
        copies: list[list[str]] = [[] for _ in range(n_b)]
        parents: list[list[str]] = [[] for _ in range(n_b)]   # "step:parent sample" at every copy
        root = np.arange(offset, offset + n_b)                 # the start each sample descends from
        factors = lr_factors(cfg.steps, sorted(mutate) if cfg.restart_cosine else ())
        first = 0
        if resume is not None:   # continue exactly where the saved run was (resume.py)
            first = resume["step"]
            state.load_state_dict(resume["state"])
            opt.load_state_dict(resume["opt"])
            gen.set_state(resume["gen"])
            torch.set_rng_state(resume["torch_rng"])
            alive = resume["alive"].to(self.device)
            reasons, hist, copies, parents, root = (resume[k] for k in ("reasons", "hist", "copies", "parents", "root"))
            last = None if resume["last"] is None else tuple(None if x is None else x.to(self.device)
                                                             for x in resume["last"])
            if best is not None:
                best.restore(resume["best"])
            self._restore_extra(state, resume["extra"])
        bar = tqdm(range(first, cfg.steps), desc=f"SMOACS {task.name} {offset}-{offset + n_b - 1}",
                   total=cfg.steps, initial=first, disable=not cfg.progress, leave=False)
        for step in bar:
            if step in mutate and last is not None:
                pairs = self._copy_pairs(state, task, alive, *last, gen)
                scale = temperature(step, cfg.steps, cfg.t_start, cfg.t_end) if cfg.reinit_at_temperature else None
                state.copy_samples(pairs, gen, cfg.mutate_noise, scale, copy_ox=cfg.copy_ox)
                self._copied(state, pairs)
                new_root = root.copy()
                for dst, src in pairs:
                    if reasons[dst]:
                        copies[dst].append(f"replaced at step {step} after: {reasons[dst]}")
                    alive[dst], reasons[dst] = True, ""
                    copies[dst].append(f"copy of sample {offset + src} at step {step}")
                    parents[dst].append(f"{step}:{offset + src}")
                    new_root[dst] = root[src]
                root = new_root
                self._mutations.append({"samples_from": offset, "step": step, "copied": len(pairs)})
                opt = new_optimizer()
                graph = None
            if self._reshape(state, step, task, alive):   # subclasses may move the geometry (relaxation)
                for param in (state.abc, state.coords, *(() if state.fixed_angles else (state.angles,))):
                    opt.state.pop(param, None)                # Adam's moments of the old geometry are stale
                graph = None
            temp = temperature(step, cfg.steps, cfg.t_start, cfg.t_end)
            crystals, p, w = state.soft(temp)
            if graph is None or step in rebuild:
                graph = build_neighbor_graph(crystals.detach(), cutoff)
            bg, gap_loss = self._band_gap_loss(crystals, graph, cutoff, task, gen)
            ef = ef_model(crystals, graph)
            loss = gap_loss + self._ef_loss(ef, task)
            extra = self._extra_loss(state, crystals, step, task)
            if extra is not None:
                loss = loss + extra
            t = None
            if state.tolerance:
                t = state.tolerance_factor(p, w)
                loss = loss + self._tolerance_loss(t, task)
                hist["tolerance_factor"][step] = t.detach().cpu().numpy()
            finite = torch.isfinite(loss) & torch.isfinite(crystals.lattice).all(dim=(1, 2))
            for b in torch.nonzero(alive & ~finite).flatten().tolist():
                what = "lattice" if not torch.isfinite(crystals.lattice[b]).all() else "loss"
                reasons[b] = f"{what} became NaN at step {step}"
            alive &= finite
            opt.zero_grad()
            torch.where(alive, loss, torch.zeros_like(loss)).sum().backward()
            self._sanitize_grads(state, alive)
            factor = factors[step]
            for group, (_, lr) in zip(opt.param_groups, groups, strict=True):
                group["lr"] = lr * factor
            opt.step()
            state.project()
            last = (bg.detach(), ef.detach(), None if t is None else t.detach(), loss.detach())
            hist["band_gap"][step] = bg.detach().cpu().numpy()
            hist["formation_energy"][step] = ef.detach().cpu().numpy()
            hist["loss"][step] = loss.detach().cpu().numpy()
            if best is not None:
                best.update(step, *self._discrete(state, task, alive))
            if cfg.progress:
                live = loss.detach()[alive]
                bar.set_postfix(loss=f"{float(live.mean()) if live.numel() else float('nan'):.3f}",
                                failed=int((~alive).sum()))
            # save only where the next step rebuilds the graph, so that a resumed run builds the same one
            if self._ckpt is not None and step + 1 < cfg.steps and (step + 1 in rebuild or step + 1 in mutate) \
                    and self._ckpt.due():
                self._ckpt.save({
                    "offset": offset, "step": step + 1, "state": state.state_dict(), "opt": opt.state_dict(),
                    "gen": gen.get_state(), "torch_rng": torch.get_rng_state(), "alive": alive,
                    "reasons": reasons, "hist": hist, "copies": copies, "parents": parents, "root": root,
                    "last": last, "best": None if best is None else best.snapshot(),
                    "extra": self._resume_extra(state), "proposals": run.proposals, "history": run.history,
                    "mutations": self._mutations})
        for k, v in hist.items():
            run.history.setdefault(k, []).append(v)
        run.proposals += self._finalize(state, alive, reasons, hist, offset, best)
        for p, history, up, r in zip(run.proposals[-n_b:], copies, parents, root, strict=True):
            if history:
                p.meta["copies"] = history
            p.meta["lineage"] = int(r)
            p.meta["parents"] = ";".join(up)

    # -- hooks for variants (SMOACS itself: none of them acts) -------------------------------------------------
    def _resume_extra(self, state: CrystalState) -> dict[str, Any]:
        """What a variant keeps between steps, for a checkpoint (resume.py); restored by :meth:`_restore_extra`."""
        return {}

    def _restore_extra(self, state: CrystalState, extra: dict[str, Any]) -> None:
        """Restore what :meth:`_resume_extra` saved, for the resumed ``state``."""

    def _reshape(self, state: CrystalState, step: int, task: Task, alive: torch.Tensor) -> bool:
        """Before step ``step``: change the state's geometry in place (e.g. relax it); True when it changed."""
        return False

    def _copied(self, state: CrystalState, pairs: list[tuple[int, int]]) -> None:
        """After a copy-and-mutate step that overwrote sample ``dst`` with ``src`` for each (dst, src) pair."""

    def _band_gap_loss(self, crystals: SoftCrystals, graph, cutoff: float, task: Task,
                       gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(predicted band gap (B,) eV, band-gap loss (B,) eV): max(0, |y - ŷ| - h), ŷ clamped at 0 (``clamp_bg``)."""
        bg = self.predictors[0](crystals, graph)
        gap = bg.clamp(min=0.0) if self.cfg.clamp_bg else bg
        return bg, torch.relu((gap - task.target_bg).abs() - task.margin)

    def _ef_loss(self, ef: torch.Tensor, task: Task) -> torch.Tensor:
        """The formation-energy term (B,): λ ŷ_f (Eq. 13, eV/atom)."""
        return self.cfg.lam * ef

    def _tolerance_loss(self, t: torch.Tensor, task: Task) -> torch.Tensor:
        """The perovskite term (B,): |t - 0.9| (Eq. 17)."""
        return (t - task.tolerance_target).abs()

    def _extra_loss(self, state: CrystalState, crystals: SoftCrystals, step: int, task: Task) -> torch.Tensor | None:
        """A further per-sample loss term (B,) added at step ``step``, or None."""
        return None

    def _copy_pairs(self, state: CrystalState, task: Task, alive: torch.Tensor, bg: torch.Tensor,
                    ef: torch.Tensor, t: torch.Tensor | None, loss: torch.Tensor,
                    gen: torch.Generator) -> list[tuple[int, int]]:
        """(overwritten sample, kept sample) pairs of the copy-and-mutate step, from the last step's
        optimisation-time predictions: kept are the samples meeting the band-gap window, the E_f
        threshold and (perovskites) the tolerance window, plus the best ``keep_best`` of the rest by
        loss; every other sample becomes a copy of a random kept sample with as many sites, except that each
        is left alone with probability ``skip_copy_rate`` (the released ``group_C_use_rate``)."""
        meets = alive & ((bg - task.target_bg).abs() <= task.margin) & (ef < task.ef_max)
        if t is not None:
            lo, hi = task.tolerance_range
            meets &= (t >= lo) & (t <= hi)
        rest = torch.nonzero(alive & ~meets).flatten()
        n_best = int(np.ceil(self.cfg.keep_best * rest.numel()))
        kept = meets.clone()
        if n_best:
            kept[rest[torch.argsort(loss[rest], stable=True)[:n_best]]] = True
        kept_idx = torch.nonzero(kept).flatten().tolist()
        sites = np.array(state.n_sites)
        pairs = []
        for dst in torch.nonzero(~kept).flatten().tolist():
            if self.cfg.skip_copy_rate > 0 and float(torch.rand((), generator=gen)) < self.cfg.skip_copy_rate:
                continue   # the released group_C_use_rate: this one keeps its own crystal
            same = [k for k in kept_idx if sites[k] == sites[dst]]
            if same:
                pairs.append((dst, same[int(torch.randint(len(same), (1,), generator=gen))]))
        return pairs

    @torch.no_grad()
    def _discrete(self, state: CrystalState, task: Task, alive: torch.Tensor):
        """The crystal an argmax would give now, predicted on a fresh graph by the method's own predictors:
        (crystals, chosen patterns, band gap eV, E_f eV/atom, criteria met, loss). Criteria counted:
        (A) band gap, (B) E_f, (b) distances >= the task's minimum, (c) tolerance on perovskite tasks;
        neutrality, angles and coordinates hold by construction."""
        bg_model, ef_model = self.predictors
        crystals, chosen = state.discretize()
        ok = alive & torch.isfinite(crystals.lattice).all(dim=(1, 2))
        crystals.lattice = torch.where(ok[:, None, None], crystals.lattice, 5.0 * torch.eye(3, device=self.device))
        graph = build_neighbor_graph(crystals, max(bg_model.cutoff, ef_model.cutoff))
        bg, ef = bg_model(crystals, graph), ef_model(crystals, graph)
        dist = bond_vectors(crystals, graph).norm(dim=1)
        d_min = torch.full((state.num_samples,), torch.inf, device=self.device)
        d_min = d_min.scatter_reduce(0, crystals.batch[graph.src], dist, reduce="amin")
        met = ((bg - task.target_bg).abs() <= task.margin).int() + (ef < task.ef_max).int()
        met += (d_min >= task.min_dist).int()
        loss = torch.relu((bg - task.target_bg).abs() - task.margin) + self.cfg.lam * ef
        if state.tolerance:
            t = state.discrete_tolerance(crystals, torch.as_tensor(chosen, device=self.device))
            lo, hi = task.tolerance_range
            met += ((t >= lo) & (t <= hi)).int()
            loss = loss + (t - task.tolerance_target).abs()
        met = torch.where(ok & torch.isfinite(loss), met, -1)
        loss = torch.where(torch.isfinite(loss), loss, torch.inf)
        return crystals, chosen, bg, ef, met, loss

    @staticmethod
    def _sanitize_grads(state: CrystalState, alive: torch.Tensor) -> None:
        """Zero non-finite gradients and every gradient of frozen (failed) samples."""
        site_alive = alive[state.batch]
        for p in state.parameters():
            if p.grad is None:
                continue
            p.grad.nan_to_num_(0.0, 0.0, 0.0)
            rows = site_alive if p.shape[0] == site_alive.numel() else alive
            p.grad.mul_(rows.view(-1, *([1] * (p.grad.dim() - 1))).to(p.grad.dtype))

    @torch.no_grad()
    def _finalize(self, state: CrystalState, alive: torch.Tensor, reasons: list[str],
                  hist: dict[str, np.ndarray], offset: int, best: _Best | None = None) -> list[Proposal]:
        """Discretise (the last step, or each sample's best step), predict the one-hot crystals on a
        fresh graph, and package proposals."""
        bg_model, ef_model = self.predictors
        if best is not None:
            crystals, chosen, steps = best.crystals(), best.chosen.cpu().numpy(), best.step.cpu().numpy()
            ok = best.met >= 0
        else:
            crystals, chosen = state.discretize()
            steps = np.full(state.num_samples, self.cfg.steps - 1)
            ok = alive & torch.isfinite(crystals.lattice).all(dim=(1, 2))
        for b in torch.nonzero(~ok).flatten().tolist():
            reasons[b] = reasons[b] or "final lattice is not finite"
        # failed samples get a harmless lattice so that the batch can still be predicted
        safe = torch.where(ok[:, None, None], crystals.lattice, 5.0 * torch.eye(3, device=self.device))
        crystals.lattice = safe
        bg = bg_model(crystals).cpu().numpy()
        ef = ef_model(crystals).cpu().numpy()
        structures = crystals.to_structures()
        ok_np = ok.cpu().numpy()
        out = []
        for b in range(state.num_samples):
            meta = {"sample": offset + b, "pattern": int(chosen[b]), "reason": reasons[b],
                    "final_loss": float(hist["loss"][-1, b]), "step": int(steps[b])}
            if ok_np[b]:
                out.append(Proposal(structures[b], float(bg[b]), float(ef[b]), meta))
            else:
                out.append(Proposal(None, None, None, meta))
        return out


class _Best:
    """Per sample, the discrete crystal of the step meeting the most criteria (by the method's own
    predictors), ties broken by the smallest loss, then the earliest step."""

    def __init__(self, n_b: int, state: CrystalState):
        dev = state.abc.device
        self.batch = state.batch
        self.met = torch.full((n_b,), -1, dtype=torch.long, device=dev)
        self.loss = torch.full((n_b,), torch.inf, device=dev)
        self.step = torch.zeros(n_b, dtype=torch.long, device=dev)
        self.chosen = torch.zeros(n_b, dtype=torch.long, device=dev)
        self.lattice = torch.zeros(n_b, 3, 3, device=dev)
        self.frac = torch.zeros_like(state.coords)
        self.probs = torch.zeros_like(state.atoms)

    def update(self, step: int, crystals, chosen, bg, ef, met, loss) -> None:
        met = met.long()
        better = (met > self.met) | ((met == self.met) & (loss < self.loss))
        if not better.any():
            return
        self.met = torch.where(better, met, self.met)
        self.loss = torch.where(better, loss, self.loss)
        self.step = torch.where(better, step, self.step)
        self.chosen = torch.where(better, torch.as_tensor(chosen, device=better.device), self.chosen)
        self.lattice = torch.where(better[:, None, None], crystals.lattice, self.lattice)
        site = better[self.batch]
        self.frac = torch.where(site[:, None], crystals.frac_coords, self.frac)
        self.probs = torch.where(site[:, None], crystals.atom_probs, self.probs)

    FIELDS = ("met", "loss", "step", "chosen", "lattice", "frac", "probs")

    def snapshot(self) -> dict[str, torch.Tensor]:
        return {k: getattr(self, k) for k in self.FIELDS}

    def restore(self, saved: dict[str, torch.Tensor]) -> None:
        for k in self.FIELDS:
            setattr(self, k, saved[k].to(self.batch.device))

    def crystals(self):
        return SoftCrystals(self.lattice.clone(), self.frac.clone(), self.probs.clone(), self.batch)
