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
from smoacs_bench.methods.predictors import DEFAULT_PAIR, allowed_elements, build_neighbor_graph, load_pair

from .schedules import rebuild_steps, temperature
from .state import CrystalState, InitialCrystal


@dataclass
class SMOACSConfig:
    """Settings of one SMOACS run. Learning rates are Adam step sizes: lattice in Å, angles in
    degrees, coordinates in fractional units, A and o in logit-times-temperature units; None takes
    the task's default (``Task.method_defaults["smoacs"]``)."""

    steps: int = 200
    lr_lattice: float | None = None
    lr_angles: float | None = None
    lr_coords: float | None = None
    lr_atoms: float | None = None
    lr_ox: float | None = None
    lam: float = 1.0                   # λ, weight of the formation energy
    t_start: float = 0.01
    t_end: float = 0.0001
    n_rebuilds: int = 32
    batch_size: int = 256              # samples optimised together
    band_gap_model: str = DEFAULT_PAIR[0]
    formation_energy_model: str = DEFAULT_PAIR[1]
    device: str | None = None          # default: CUDA when available
    pool: str | None = None            # initial pool (data.pools.get_pool); None: the task's default
    progress: bool = True


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

    def __init__(self, **config: Any):
        self.cfg = SMOACSConfig(**config)
        dev = self.cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.device = torch.device(dev)
        self._predictors = None
        self._artifacts: dict[str, Any] = {}
        self._pool_info: dict[str, Any] = {}
        self._lrs: dict[str, float] = {}

    def config(self) -> dict[str, Any]:
        return asdict(self.cfg) | {"device": str(self.device), "pool_used": self._pool_info,
                                   "learning_rates_used": self._lrs}

    def predictor_names(self) -> tuple[str, ...]:
        return (self.cfg.band_gap_model, self.cfg.formation_energy_model)

    def learning_rates(self, task: Task) -> dict[str, float]:
        """The configured learning rates, the task's defaults where unset (an error where neither is)."""
        defaults = task.defaults_for(self.name)
        out = {}
        for key in ("lr_lattice", "lr_angles", "lr_coords", "lr_atoms", "lr_ox"):
            value = getattr(self.cfg, key)
            if value is None:
                if key not in defaults:
                    raise ValueError(f"task {task.name!r} has no default {key} for SMOACS; set it "
                                     f"(--param {key}=...)")
                value = defaults[key]
            out[key] = float(value)
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
        with deterministic():
            for start in range(0, n_samples, self.cfg.batch_size):
                self._optimize(initial[start:start + self.cfg.batch_size], task, gen, run, offset=start)
        for p, d in zip(run.proposals, drawn, strict=True):
            p.meta["source"] = d.source
        self._artifacts = {"history": {k: np.concatenate(v, axis=1) for k, v in run.history.items()}}
        self._artifacts["history"]["temperature"] = np.array(
            [temperature(s, self.cfg.steps, self.cfg.t_start, self.cfg.t_end) for s in range(self.cfg.steps)])
        return run.proposals

    def allowed_elements(self) -> np.ndarray:
        """(98,) bool: elements both predictors can embed."""
        return allowed_elements(self.predictors)

    def _optimize(self, initial: list[InitialCrystal], task: Task, gen: torch.Generator, run: _Run,
                  offset: int) -> None:
        cfg = self.cfg
        bg_model, ef_model = self.predictors
        state = CrystalState(
            initial, self.allowed_elements(), t_start=cfg.t_start, abc_range=task.abc_range,
            angle_range=task.angle_range, coord_eps=task.coord_eps, generator=gen,
            tolerance=task.is_perovskite, device=self.device)
        lrs = self._lrs
        groups = [{"params": [state.abc], "lr": lrs["lr_lattice"]},
                  {"params": [state.coords], "lr": lrs["lr_coords"]},
                  {"params": [state.atoms], "lr": lrs["lr_atoms"]},
                  {"params": [state.ox], "lr": lrs["lr_ox"]}]
        if not state.fixed_angles:
            groups.append({"params": [state.angles], "lr": lrs["lr_angles"]})
        opt = torch.optim.Adam(groups)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.steps)
        rebuild = set(rebuild_steps(cfg.steps, cfg.n_rebuilds))
        cutoff = max(bg_model.cutoff, ef_model.cutoff)  # one graph serves both predictors
        n_b = state.num_samples
        alive = torch.ones(n_b, dtype=torch.bool, device=self.device)
        reasons = [""] * n_b
        hist = {k: np.full((cfg.steps, n_b), np.nan, dtype=np.float32)
                for k in ("band_gap", "formation_energy", "loss", "tolerance_factor")}
        graph = None
        bar = tqdm(range(cfg.steps), desc=f"SMOACS {task.name} {offset}-{offset + n_b - 1}",
                   disable=not cfg.progress, leave=False)
        for step in bar:
            temp = temperature(step, cfg.steps, cfg.t_start, cfg.t_end)
            crystals, p, w = state.soft(temp)
            if step == 0 or step in rebuild:
                graph = build_neighbor_graph(crystals.detach(), cutoff)
            bg = bg_model(crystals, graph)
            ef = ef_model(crystals, graph)
            loss = torch.relu((bg - task.target_bg).abs() - task.margin) + cfg.lam * ef
            if state.tolerance:
                t = state.tolerance_factor(p, w)
                loss = loss + (t - task.tolerance_target).abs()
                hist["tolerance_factor"][step] = t.detach().cpu().numpy()
            finite = torch.isfinite(loss) & torch.isfinite(crystals.lattice).all(dim=(1, 2))
            for b in torch.nonzero(alive & ~finite).flatten().tolist():
                what = "lattice" if not torch.isfinite(crystals.lattice[b]).all() else "loss"
                reasons[b] = f"{what} became NaN at step {step}"
            alive &= finite
            opt.zero_grad()
            torch.where(alive, loss, torch.zeros_like(loss)).sum().backward()
            self._sanitize_grads(state, alive)
            opt.step()
            sched.step()
            state.project()
            hist["band_gap"][step] = bg.detach().cpu().numpy()
            hist["formation_energy"][step] = ef.detach().cpu().numpy()
            hist["loss"][step] = loss.detach().cpu().numpy()
            if cfg.progress:
                live = loss.detach()[alive]
                bar.set_postfix(loss=f"{float(live.mean()) if live.numel() else float('nan'):.3f}",
                                failed=int((~alive).sum()))
        for k, v in hist.items():
            run.history.setdefault(k, []).append(v)
        run.proposals += self._finalize(state, alive, reasons, hist, offset)

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
                  hist: dict[str, np.ndarray], offset: int) -> list[Proposal]:
        """Discretise, predict the one-hot crystals on a fresh graph, and package proposals."""
        bg_model, ef_model = self.predictors
        crystals, chosen = state.discretize()
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
                    "final_loss": float(hist["loss"][-1, b])}
            if ok_np[b]:
                out.append(Proposal(structures[b], float(bg[b]), float(ef[b]), meta))
            else:
                out.append(Proposal(None, None, None, meta))
        return out
