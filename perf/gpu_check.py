"""GPU figures for issue #43 (item 1): one prepared script for a lent GPU machine (one H200).

Parts, each in try/except with its own time cap (a part that fails or runs out of time records why; the rest runs):

1. SMOACS, 5-site perovskite task, 1.5 eV: 256 x 200 and 2,048 x 200 steps on CUDA (the 2,048 run as one batch,
   ``batch_size=2048``; with the default ``batch_size=256`` it is 8 sequential 256-sample batches, i.e. about 8x
   the 256 run): wall time, time per step, and a breakdown (predictor forward, backward, neighbour-graph
   building, soft pass, Adam, projection, finalisation, the judge's predictions of the proposals, writing the
   CIFs), from a second, instrumented run whose wrappers synchronise CUDA around each timed call (so its wall time
   is a little longer than the plain run's). The same 256 x 200 on the CPU for the GPU/CPU ratio (2,048 on the
   CPU only if the budget allows).
2. SMOACS-relax (``get_method("smoacs-relax")``) small (32 x 20) with ``device="cuda"``: the predictors run on
   CUDA, CHGNet on the CPU (the relaxers' device is ``$SMOACS_RELAX_DEVICE``, default cpu).
3. The relaxation stage (CHGNet 0.3.0, FIRE on a FrechetCellFilter, fmax 0.05, <= 300 steps) of the 256 (and,
   if time allows, 2,048) GPU proposals: ``evaluation.relax_runs.run_relaxations`` with one process per core (the
   stage's ``--relax-workers``) and one-process ``evaluation.relax.relax`` on the CPU, and the same with CHGNet on
   CUDA (``BatchedCHGNet(device="cuda")``, what ``SMOACS_RELAX_DEVICE=cuda`` selects) on a subset.
4. BatchTPE's predictor calls: ``predict_structures`` of both MEGNet predictors (as ``tpe.lockstep`` calls them)
   and the bare forward pass on 32 / 256 / 2,048 five-site perovskites, CUDA vs CPU.

The report (JSON + markdown) goes to ``$OUT`` when set, else ``perf/results/``; it is rewritten after every part,
so a run killed from outside still leaves what it had. Library code is not changed: timing wrappers are
monkeypatched in this process only.

    GIT_COMMIT=$(git rev-parse HEAD) PYTHONUNBUFFERED=1 python perf/gpu_check.py            # the device run
    python perf/gpu_check.py --quick                        # tiny sizes; CUDA parts skipped without CUDA
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections import defaultdict
from pathlib import Path

T0 = time.perf_counter()
ROOT = Path(__file__).resolve().parents[1]


def elapsed() -> float:
    return time.perf_counter() - T0


def log(msg: str) -> None:
    print(f"[{elapsed():6.1f}s] {msg}", flush=True)


# -- time caps ------------------------------------------------------------------------------------------------
class PartTimeout(Exception):
    pass


@contextlib.contextmanager
def cap(seconds: float):
    """Raise PartTimeout in the main thread after ``seconds`` (SIGALRM; torch ops return between bytecodes)."""
    seconds = max(float(seconds), 1.0)

    def handler(signum, frame):
        raise PartTimeout(f"time cap of {seconds:.0f} s reached")

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# -- report ---------------------------------------------------------------------------------------------------
class Report:
    def __init__(self, out_dir: Path, stem: str):
        self.out_dir, self.stem = out_dir, stem
        self.data: dict = {"meta": {}, "parts": {}, "notes": []}

    def part(self, name: str) -> dict:
        return self.data["parts"].setdefault(name, {})

    def write(self) -> None:
        self.data["meta"]["script_elapsed_s"] = round(elapsed(), 1)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / f"{self.stem}.json").write_text(json.dumps(self.data, indent=2, default=str))
        (self.out_dir / f"{self.stem}.md").write_text(markdown(self.data))


def fmt(x, unit: str = "", nd: int = 2) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{nd}f}{unit}"
    return f"{x}{unit}"


def markdown(d: dict) -> str:
    m = d["meta"]
    lines = [f"# GPU check (perf/gpu_check.py), {m.get('date_utc', '?')}", ""]
    lines.append("| | |\n| --- | --- |")
    for k in ("git_commit", "gpu", "torch", "cuda", "python", "cpu_count", "torch_threads", "quick", "budget_s",
              "script_elapsed_s"):
        lines.append(f"| {k} | {m.get(k, '-')} |")
    lines.append("")
    for name, part in d["parts"].items():
        lines.append(f"## {name}")
        lines.append("")
        for key, val in part.items():
            if isinstance(val, dict) and "breakdown" in val:
                lines.append(f"- **{key}**: " + ", ".join(f"{k} {fmt(v)}" for k, v in val.items()
                                                            if k not in ("breakdown", "warnings")))
                lines.append("")
                lines.append("  | where | calls | inclusive s | exclusive s | share of wall |")
                lines.append("  | --- | --- | --- | --- | --- |")
                for row in val["breakdown"]:
                    lines.append(f"  | {row['where']} | {row['calls']} | {row['inclusive_s']:.2f} | "
                                 f"{row['exclusive_s']:.2f} | {row['share']:.0%} |")
                lines.append("")
                if val.get("warnings"):
                    lines.append("  warnings: " + "; ".join(val["warnings"][:5]))
                    lines.append("")
            elif isinstance(val, dict) and any(isinstance(v, dict) for v in val.values()):
                lines.append(f"- **{key}**:")
                for k, v in val.items():
                    shown = ", ".join(f"{a} {fmt(b, nd=4)}" for a, b in v.items()) if isinstance(v, dict) else fmt(v)
                    lines.append(f"  - {k}: {shown}")
            elif isinstance(val, dict):
                lines.append(f"- **{key}**: " + ", ".join(f"{k} {fmt(v)}" for k, v in val.items()))
            else:
                lines.append(f"- **{key}**: {fmt(val)}")
        lines.append("")
    if d.get("notes"):
        lines.append("## notes")
        lines += [f"- {n}" for n in d["notes"]]
    return "\n".join(lines) + "\n"


# -- timing wrappers ------------------------------------------------------------------------------------------
class Breakdown:
    """Monkeypatched wrappers that time calls (inclusive and exclusive of nested timed calls), synchronising
    CUDA before and after each call so that asynchronous kernels are charged to the call that launched them."""

    def __init__(self, sync):
        self.sync = sync
        self.patches: list[tuple] = []
        self.active = False
        self.reset()

    def reset(self) -> None:
        self.incl: dict[str, float] = defaultdict(float)
        self.excl: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.stack: list[float] = []

    def wrap(self, owner, attr: str, label: str) -> None:
        saved = owner.__dict__[attr] if isinstance(owner, type) else getattr(owner, attr)
        if isinstance(saved, classmethod):
            raise TypeError(f"{owner}.{attr}: class methods are not wrapped here")
        orig = saved.__func__ if isinstance(saved, staticmethod) else saved
        bd = self

        def wrapper(*a, **k):
            if not bd.active:
                return orig(*a, **k)
            bd.sync()
            t0 = time.perf_counter()
            bd.stack.append(0.0)
            try:
                return orig(*a, **k)
            finally:
                bd.sync()
                dt_ = time.perf_counter() - t0
                child = bd.stack.pop()
                bd.incl[label] += dt_
                bd.excl[label] += dt_ - child
                bd.calls[label] += 1
                if bd.stack:
                    bd.stack[-1] += dt_

        wrapper.__wrapped__ = orig
        setattr(owner, attr, staticmethod(wrapper) if isinstance(saved, staticmethod) else wrapper)
        self.patches.append((owner, attr, saved))

    def restore(self) -> None:
        for owner, attr, orig in reversed(self.patches):
            setattr(owner, attr, orig)
        self.patches.clear()

    @contextlib.contextmanager
    def on(self):
        self.reset()
        self.active = True
        try:
            yield self
        finally:
            self.active = False

    def table(self, wall: float) -> list[dict]:
        rows = [{"where": k, "calls": self.calls[k], "inclusive_s": round(self.incl[k], 3),
                 "exclusive_s": round(self.excl[k], 3), "share": self.excl[k] / wall if wall else 0.0}
                for k in sorted(self.excl, key=lambda k: -self.excl[k])]
        top = sum(self.excl.values())
        rows.append({"where": "rest (untimed: loss terms, NaN checks, history copies, Python)", "calls": 0,
                     "inclusive_s": round(wall - top, 3), "exclusive_s": round(wall - top, 3),
                     "share": (wall - top) / wall if wall else 0.0})
        return rows


class StepClock:
    """Counts SMOACS steps (one ``CrystalState.soft`` call per step) and their times, always on (cheap)."""

    def __init__(self):
        self.times: list[float] = []

    def install(self, cls) -> None:
        orig = cls.soft
        clock = self

        def soft(self, *a, **k):
            clock.times.append(time.perf_counter())
            return orig(self, *a, **k)

        soft.__wrapped__ = orig
        cls.soft = soft

    def steady_per_step(self) -> float | None:
        """Median interval between consecutive steps (the first and the finalisation excluded)."""
        t = self.times
        if len(t) < 3:
            return None
        gaps = sorted(b - a for a, b in zip(t[1:-1], t[2:], strict=True))
        return gaps[len(gaps) // 2]


class WarningSet:
    """Unique warning messages seen (first line), instead of printing them."""

    def __init__(self):
        self.seen: dict[str, int] = {}

    @contextlib.contextmanager
    def collect(self):
        self.seen = {}
        with warnings.catch_warnings():
            warnings.simplefilter("default")

            def show(message, category, filename, lineno, file=None, line=None):
                key = f"{category.__name__}: {str(message).splitlines()[0][:160]}"
                self.seen[key] = self.seen.get(key, 0) + 1

            warnings.showwarning = show
            yield self

    def list(self) -> list[str]:
        return [f"{k} (x{v})" for k, v in self.seen.items()]


# -- main -----------------------------------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes (8 x 5), for a local CPU test")
    ap.add_argument("--budget", type=float, default=360.0, help="seconds for the whole script (parts are capped)")
    ap.add_argument("--out", default=None, help="folder for the report (default: $OUT, else perf/results)")
    ap.add_argument("--stem", default=None, help="file name stem (default gpu_check_<UTC date>)")
    ap.add_argument("--cpu-threads", type=int, default=None, help="torch threads for the CPU parts")
    args = ap.parse_args()

    warnings.simplefilter("ignore")
    import numpy as np
    import torch

    now = dt.datetime.now(dt.UTC)
    out_dir = Path(args.out or os.environ.get("OUT") or ROOT / "perf" / "results")
    stem = args.stem or f"gpu_check_{now:%Y-%m-%d}" + ("_quick" if args.quick else "")
    rep = Report(out_dir, stem)
    cuda = torch.cuda.is_available()
    if args.cpu_threads:
        torch.set_num_threads(args.cpu_threads)
    commit = os.environ.get("GIT_COMMIT")
    if not commit:
        try:
            commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                    timeout=10).stdout.strip() or None
        except Exception:  # noqa: BLE001
            commit = None
    rep.data["meta"] = {
        "date_utc": now.strftime("%Y-%m-%d %H:%M:%S UTC"), "git_commit": commit or "unknown",
        "gpu": torch.cuda.get_device_name(0) if cuda else "none (CUDA not available)",
        "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "quick": args.quick,
        "budget_s": args.budget, "host": platform.node(),
    }
    if cuda:
        props = torch.cuda.get_device_properties(0)
        rep.data["meta"]["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
    log(f"meta: {rep.data['meta']}")
    rep.write()

    Q = args.quick
    threads0 = torch.get_num_threads()
    steps = 5 if Q else 200
    n_small, n_large = (8, 16) if Q else (256, 2048)
    budget = args.budget

    def left() -> float:
        return budget - elapsed()

    def sync_cuda():
        if cuda:
            torch.cuda.synchronize()

    # imports (timed: model loading counts in the budget)
    t = time.perf_counter()
    from smoacs_bench.benchmark.judge import judge_structures
    from smoacs_bench.data.task import get_task
    from smoacs_bench.data.templates import random_perovskites
    from smoacs_bench.evaluation.io import atomic_write_text
    from smoacs_bench.methods import get_method
    from smoacs_bench.methods.predictors import SoftCrystals, get_predictor
    from smoacs_bench.methods.predictors import graph as pgraph
    from smoacs_bench.methods.predictors import megnet as pmegnet
    from smoacs_bench.methods.predictors.crystals import SoftCrystals as SC
    from smoacs_bench.methods.smoacs import method as smethod
    from smoacs_bench.methods.smoacs import state as sstate
    rep.data["meta"]["import_s"] = round(time.perf_counter() - t, 1)
    log(f"imports {rep.data['meta']['import_s']} s")
    task = get_task("perovskite", 1.5)

    clock = StepClock()
    clock.install(sstate.CrystalState)
    bd = Breakdown(sync_cuda)
    graph_fn = pgraph.build_neighbor_graph
    bd.wrap(pmegnet.MEGNetPredictor, "forward", "predictor forward (MEGNet, both)")
    bd.wrap(torch.Tensor, "backward", "backward (loss.sum().backward())")
    bd.wrap(pgraph, "build_neighbor_graph", "neighbour graph")
    # every module that imported the function by name gets the wrapped one
    wrapped_graph = pgraph.build_neighbor_graph
    import smoacs_bench.methods.smoacs.relaxing  # noqa: F401 - so that its name is rebound too
    for mod_name, mod in list(sys.modules.items()):
        if mod_name.startswith("smoacs_bench") and getattr(mod, "build_neighbor_graph", None) is graph_fn:
            mod.build_neighbor_graph = wrapped_graph
    bd.wrap(sstate.CrystalState, "soft", "soft pass (state.soft)")
    bd.wrap(sstate.CrystalState, "project", "projection (state.project)")
    bd.wrap(sstate.CrystalState, "tolerance_factor", "tolerance factor")
    bd.wrap(sstate.CrystalState, "copy_samples", "copy-and-mutate (copy_samples)")
    bd.wrap(smethod.SMOACS, "_copy_pairs", "copy-and-mutate (choosing pairs)")
    bd.wrap(smethod.SMOACS, "_sanitize_grads", "gradient sanitising")
    bd.wrap(smethod.SMOACS, "_finalize", "finalise (discretise, predict, to_structures)")
    bd.wrap(SC, "to_structures", "to_structures (pymatgen)")
    bd.wrap(torch.optim.Adam, "step", "Adam step")
    wset = WarningSet()

    # keep the 256 GPU proposals for the judge, writing and relaxation parts
    kept: dict = {}

    def smoacs_run(n: int, device: str, instrument: bool, cap_s: float, n_steps: int | None = None, **cfg) -> dict:
        """One SMOACS propose; returns figures (partial ones on a time cap)."""
        n_steps = n_steps or steps
        m = get_method("smoacs", steps=n_steps, progress=False, device=device, **cfg)
        t = time.perf_counter()
        _ = m.predictors
        load = time.perf_counter() - t
        clock.times.clear()
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        res: dict = {"n": n, "steps": n_steps, "device": device, "torch_threads": torch.get_num_threads(),
                     "model_load_s": round(load, 2)}
        res.update({k: v for k, v in cfg.items()})
        ctx = bd.on() if instrument else contextlib.nullcontext()
        t = time.perf_counter()
        props = None
        with wset.collect(), ctx:
            try:
                with cap(cap_s):
                    props = m.propose(task, n, seed=0)
                    sync_cuda() if device.startswith("cuda") else None
                res["status"] = "ok"
            except PartTimeout as err:
                res["status"] = f"stopped: {err}"
        wall = time.perf_counter() - t
        done = len(clock.times)
        res["wall_s"] = round(wall, 2)
        res["steps_done"] = done
        res["s_per_step_wall"] = round(wall / max(done, 1), 4)
        per = clock.steady_per_step()
        res["s_per_step_steady_median"] = None if per is None else round(per, 4)
        if res["status"] != "ok" and per is not None:
            res["wall_s_extrapolated"] = round(per * n_steps * int(np.ceil(n / cfg.get("batch_size", 256))), 1)
        if props is not None:
            res["finished"] = sum(not p.failed for p in props) if hasattr(props[0], "failed") else \
                sum(p.structure is not None for p in props)
        if device.startswith("cuda"):
            res["peak_gpu_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        if instrument:
            res["breakdown"] = bd.table(wall)
        res["warnings"] = wset.list()
        return res, props

    def run_part(name: str, key: str, min_left: float, fn) -> None:
        """Run ``fn()`` (returns a dict) as ``parts[name][key]``; skip when fewer than ``min_left`` s are left."""
        part = rep.part(name)
        if left() < min_left:
            part[key] = {"status": f"skipped: {left():.0f} s of the {budget:.0f} s budget left, needs ~{min_left:.0f} s"}
            log(f"{name}/{key}: skipped")
            rep.write()
            return
        log(f"{name}/{key}: start ({left():.0f} s left)")
        t = time.perf_counter()
        try:
            part[key] = fn()
        except Exception as err:  # noqa: BLE001 - record and go on
            part[key] = {"status": f"failed: {type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}",
                         "traceback": traceback.format_exc()[-2000:]}
        part[key].setdefault("part_s", round(time.perf_counter() - t, 1))
        if torch.get_num_threads() != threads0:   # run_relaxations with one chunk runs in-process at 1 thread
            torch.set_num_threads(threads0)
        shown = {k: v for k, v in part[key].items() if k not in ("breakdown", "traceback", "warnings")}
        log(f"{name}/{key}: {shown}")
        if "breakdown" in part[key]:
            for row in part[key]["breakdown"]:
                log(f"    {row['where']:<55} {row['calls']:>6} calls {row['exclusive_s']:8.2f} s  {row['share']:5.0%}")
        if "traceback" in part[key]:
            log(part[key]["traceback"])
        rep.write()

    # ---- 1. SMOACS on CUDA ------------------------------------------------------------------------------------
    P1 = "1 SMOACS perovskite 1.5 eV"
    if cuda:
        def warm():
            r, _ = smoacs_run(16, "cuda", False, 60, n_steps=10)
            return {"note": "warm-up 16 x 10 (kernels, allocator, model load); not a figure",
                    **{k: r[k] for k in ("status", "wall_s", "model_load_s")}}
        run_part(P1, "cuda warm-up", 30, warm)

        def gpu_small():
            r, props = smoacs_run(n_small, "cuda", False, min(90, left() - 20))
            kept["props"] = props
            return r
        run_part(P1, f"cuda {n_small}x{steps} plain", 60, gpu_small)

        def gpu_small_instr():
            r, props = smoacs_run(n_small, "cuda", True, min(90, left() - 20))
            if kept.get("props") is None:
                kept["props"] = props
            return r
        run_part(P1, f"cuda {n_small}x{steps} instrumented", 60, gpu_small_instr)
    else:
        rep.part(P1)["cuda"] = {"status": "skipped: CUDA not available"}

    # judge and writing, on the proposals of the plain CUDA run (or a CPU run when CUDA is absent)
    def judge_and_write():
        props = kept.get("props")
        if props is None:
            r, props = smoacs_run(n_small, "cpu", False, min(200, left() - 20))
            kept["props"] = props
        structures = [p.structure for p in props]
        res: dict = {"n": len(structures), "proposals_from": "cuda run" if cuda else "cpu run"}
        t = time.perf_counter()
        judge_structures(structures)   # loads the judge's pair on first use (CPU, as the runner does)
        res["judge_cpu_first_call_s"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        judge_structures(structures)
        res["judge_cpu_s"] = round(time.perf_counter() - t, 2)
        if cuda:
            bg, ef = get_predictor("megnet-bandgap", "cuda").eval(), get_predictor("megnet-eform", "cuda").eval()
            ok = [s for s in structures if s is not None]
            bg.predict_structures(ok)
            torch.cuda.synchronize()
            t = time.perf_counter()
            bg.predict_structures(ok)
            ef.predict_structures(ok)
            torch.cuda.synchronize()
            res["judge_cuda_s (same predictors on CUDA; the runner's judge runs on CPU)"] = round(time.perf_counter() - t, 2)
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            for i, p in enumerate(props):
                if p.structure is not None:
                    atomic_write_text(Path(tmp) / "structures" / f"{i}.cif", p.structure.to(fmt="cif"))
            res["write_cifs_s"] = round(time.perf_counter() - t, 2)
        res["status"] = "ok"
        return res
    run_part(P1, f"judge + writing of the {n_small} proposals", 30, judge_and_write)

    # ---- 4. predictor calls (BatchTPE): cheap, early -----------------------------------------------------------
    P4 = "4 predictor calls (BatchTPE: predict_structures of both MEGNets)"

    def predictor_calls():
        sizes = (8, 16) if Q else (32, 256, 2048)
        devices = ["cuda", "cpu"] if cuda else ["cpu"]
        res: dict = {"structures": "random_perovskites (5-site SrTiO3 cells, a,b,c ~ U(2,10) A)",
                     "batch_size": 256}
        pool = random_perovskites(max(sizes), seed=1)
        for dev in devices:
            bg, ef = get_predictor("megnet-bandgap", dev).eval(), get_predictor("megnet-eform", dev).eval()
            sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
            bg.predict_structures(pool[:8])
            ef.predict_structures(pool[:8])
            sync()
            for n in sizes:
                if left() < 25:
                    res[f"{dev} n={n}"] = "skipped (budget)"
                    continue
                structs = pool[:n]
                reps = 3 if (n <= 256 or dev == "cuda") else 1
                times = []
                for _ in range(reps):
                    t = time.perf_counter()
                    bg.predict_structures(structs)
                    ef.predict_structures(structs)
                    sync()
                    times.append(time.perf_counter() - t)
                t = time.perf_counter()
                crystals = SoftCrystals.from_structures(structs, dev, torch.float32)
                sync()
                conv = time.perf_counter() - t
                fwd = []
                with torch.no_grad():
                    for _ in range(reps):
                        t = time.perf_counter()
                        for k in range(0, n, 256):   # predict_structures' batches
                            sub = SoftCrystals.from_structures(structs[k:k + 256], dev, torch.float32) if n > 256 else crystals
                            bg(sub)
                            ef(sub)
                        sync()
                        fwd.append(time.perf_counter() - t)
                res[f"{dev} n={n}"] = {"predict_structures_both_s": round(float(np.median(times)), 4),
                                       "per_structure_ms": round(1e3 * float(np.median(times)) / n, 3),
                                       "forward_both_incl_graph_s": round(float(np.median(fwd)), 4),
                                       "from_structures_s": round(conv, 4)}
        for n in sizes:
            a, b = res.get(f"cuda n={n}"), res.get(f"cpu n={n}")
            if isinstance(a, dict) and isinstance(b, dict):
                res[f"cpu/cuda n={n}"] = round(b["predict_structures_both_s"] / a["predict_structures_both_s"], 2)
        res["status"] = "ok"
        return res
    with cap(max(10, min(60, left() - 10))):
        try:
            run_part(P4, "timings", 30, predictor_calls)
        except PartTimeout as err:
            rep.part(P4)["timings_cap"] = str(err)

    # ---- 1b. SMOACS 2,048 on CUDA -------------------------------------------------------------------------------
    if cuda:
        def gpu_large(instrument: bool):
            def run():
                r, _ = smoacs_run(n_large, "cuda", instrument, min(150, left() - 15), batch_size=n_large)
                return r
            return run
        run_part(P1, f"cuda {n_large}x{steps} plain (one batch)", 70, gpu_large(False))
        est = rep.part(P1).get(f"cuda {n_large}x{steps} plain (one batch)", {}).get("wall_s") or 1e9
        run_part(P1, f"cuda {n_large}x{steps} instrumented (one batch)", min(est * 1.3 + 90, 1e6), gpu_large(True))

    # ---- 1c. SMOACS on the CPU ----------------------------------------------------------------------------------
    def cpu_run(n: int):
        def run():
            r, props = smoacs_run(n, "cpu", False, min(120, left() - 100), batch_size=max(256, n) if n > 256 else 256)
            return r
        return run
    cpu_key = f"cpu {n_small}x{steps} ({threads0} threads)"
    run_part(P1, cpu_key, 60, cpu_run(n_small))
    g = rep.part(P1).get(f"cuda {n_small}x{steps} plain", {})
    c = rep.part(P1).get(cpu_key, {})
    if g.get("status") == "ok" and c.get("s_per_step_steady_median") and g.get("s_per_step_steady_median"):
        rep.part(P1)[f"cpu/cuda ratio {n_small}x{steps}"] = {
            "wall": round((c.get("wall_s_extrapolated") or c["wall_s"]) / g["wall_s"], 2),
            "steady_per_step": round(c["s_per_step_steady_median"] / g["s_per_step_steady_median"], 2)}
        rep.write()

    # ---- 3. relaxation stage ------------------------------------------------------------------------------------
    P3 = "3 relaxation stage (CHGNet 0.3.0, FIRE + FrechetCellFilter, fmax 0.05, <= 300 steps)"

    def stage(n: int):
        def run():
            from smoacs_bench.evaluation.relax import RelaxSettings
            from smoacs_bench.evaluation.relax_runs import run_relaxations
            props = kept.get("props") or []
            structures = [p.structure for p in props]
            if n > len(structures):   # more proposals: repeat the 256 (the cache is per run folder: fresh folder)
                structures = (structures * (n // max(len(structures), 1) + 1))[:n]
            workers = min(16, os.cpu_count() or 1)
            stats: dict = {}
            with tempfile.TemporaryDirectory() as tmp, cap(max(left() - 40, 10)):
                t = time.perf_counter()
                out = run_relaxations(structures, list(range(n)), RelaxSettings(), Path(tmp) / "state",
                                      workers=workers, progress=False, stats=stats)
                wall = time.perf_counter() - t
            conv = sum(bool(r["converged"]) for r in out.values())
            steps_ = sorted(int(r["steps"]) for r in out.values())
            return {"status": "ok", "n": n, "device": "cpu (SMOACS_RELAX_DEVICE unset)",
                    "path": f"evaluation.relax_runs.run_relaxations, {workers} spawn workers, chunks of 8, 1 torch thread each",
                    "wall_s": round(wall, 1), "s_per_structure": round(wall / n, 3), "converged": conv,
                    "median_fire_steps": steps_[len(steps_) // 2] if steps_ else None,
                    "note": "a 2,048 set repeats the 256 proposals" if n > len(props) else ""}
        return run
    run_part(P3, f"stage {n_small} proposals", 40, stage(n_small))

    def one_process(n_sub: int, device: str):
        def run():
            from smoacs_bench.evaluation.relax import RelaxSettings, load_relaxer, relax
            structures = [p.structure for p in (kept.get("props") or [])][:n_sub]
            base = load_relaxer("chgnet")
            torch.set_num_threads(1)   # as relax_speed.py and the stage's workers (restored after the part)
            relaxer = base if device == "cpu" else _cuda_chgnet(base, device)
            if device != "cpu":   # warm-up
                relaxer.efs([s for s in structures[:4] if s is not None])
            with cap(max(min(50, left() - 40), 10)):
                t = time.perf_counter()
                out = relax(structures, RelaxSettings(), relaxer)
                sync_cuda() if device != "cpu" else None
                wall = time.perf_counter() - t
            calls = sum(o.steps + 1 for o in out)
            return {"status": "ok", "n": len(structures), "device": device, "torch_threads": torch.get_num_threads(),
                    "path": "evaluation.relax.relax (one process, lockstep batches of 16)" + (
                        "; CHGNet call on CUDA (BatchedCHGNet(device=...), SMOACS_RELAX_DEVICE)"
                        if device != "cpu" else ""),
                    "wall_s": round(wall, 1), "s_per_structure": round(wall / max(len(structures), 1), 3),
                    "ms_per_structure_step": round(1e3 * wall / max(calls, 1), 2),
                    "converged": sum(o.converged for o in out)}
        return run

    # ---- 2. SMOACS-relax ----------------------------------------------------------------------------------------
    P2 = "2 SMOACS-relax (CUDA predictors, CHGNet on CPU)"

    def smoacs_relax():
        dev = "cuda" if cuda else "cpu"
        n, st = (4, 6) if Q else (32, 20)
        m = get_method("smoacs-relax", steps=st, progress=False, device=dev)
        _ = m.predictors
        clock.times.clear()
        with bd.on(), wset.collect(), cap(max(min(120, left() - 30), 10)):
            t = time.perf_counter()
            props = m.propose(task, n, seed=0)
            sync_cuda()
            wall = time.perf_counter() - t
        return {"status": "ok", "n": n, "steps": st, "device": dev, "wall_s": round(wall, 2),
                "s_per_step_wall": round(wall / st, 3), "finished": sum(p.structure is not None for p in props),
                "relax_log": m.config().get("relax_log"), "breakdown": bd.table(wall), "warnings": wset.list()}
    # relax/relax_cell/efs are timed too in this part
    from smoacs_bench.evaluation import relax as erelax
    from smoacs_bench.methods.smoacs import relaxing as srelaxing
    bd.wrap(erelax.BatchedCHGNet, "efs", "CHGNet efs (CPU)")
    for name in ("relax", "relax_cell"):
        bd.wrap(srelaxing, name, f"evaluation.relax.{name} (incl. CHGNet)")
    run_part(P2, f"{'4x6' if Q else '32x20'}", 40, smoacs_relax)

    n_sub = 8 if Q else 32
    run_part(P3, f"one process, {n_sub} proposals, cpu", 40, one_process(n_sub, "cpu"))
    if cuda:
        run_part(P3, f"one process, {n_sub} proposals, cuda probe", 40, one_process(n_sub, "cuda"))
    elif Q:   # exercise the probe's code path on the CPU
        run_part(P3, f"one process, {n_sub} proposals, subclass on cpu (quick test of the probe)", 20,
                 one_process(n_sub, "cpu-subclass"))

    # ---- larger CPU / relaxation runs if the budget allows --------------------------------------------------------
    big = rep.part(P3).get(f"stage {n_small} proposals", {})
    if big.get("status") == "ok":
        need = big["wall_s"] * n_large / n_small + 40
        run_part(P3, f"stage {n_large} proposals", need, stage(n_large))
    cpu_small = rep.part(P1).get(cpu_key, {})
    if cpu_small.get("status") == "ok":
        need = cpu_small["wall_s"] * n_large / n_small + 40
        run_part(P1, f"cpu {n_large}x{steps} ({threads0} threads, one batch)", need, cpu_run(n_large))
    else:
        rep.part(P1)[f"cpu {n_large}x{steps}"] = {"status": "skipped: the CPU 256 run did not finish within its cap"}

    bd.restore()
    rep.data["notes"].append(
        "instrumented runs synchronise CUDA around every timed call; their wall time is therefore above the plain "
        "run's; 'exclusive' excludes nested timed calls (e.g. the graph built inside a forward without a graph)")
    if not Q:
        rep.data["notes"].append(
            f"the {n_large}-sample SMOACS runs use batch_size={n_large} (one batch); with the default batch_size=256 "
            f"a {n_large}-sample run is {n_large // 256} sequential 256-sample batches, ~{n_large // 256}x the 256 run")
    rep.write()
    log(f"done; report in {out_dir}/{stem}.json and .md")
    print(markdown(rep.data))
    return 0


def _cuda_chgnet(base, device: str):
    """A BatchedCHGNet on ``device`` (the library's device option, a copy of the loaded model); graphs are still
    built on the CPU by CHGNet's converter. ``cpu-subclass`` runs the same path on the CPU (to test it without
    CUDA)."""
    import copy

    from smoacs_bench.evaluation.relax import BatchedCHGNet

    return BatchedCHGNet(copy.deepcopy(base.model), batch_size=base.batch_size,
                         device="cpu" if device == "cpu-subclass" else device)

if __name__ == "__main__":
    sys.exit(main())
