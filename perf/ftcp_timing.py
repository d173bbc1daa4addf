"""FTCP figures: training seconds per epoch, time to sample 256 structures, held-out reconstruction.

    python perf/ftcp_timing.py [--model models/ftcp-perov_5] [--device cpu|cuda]

Training speed is measured on 1024 random (240, 63) matrices for 2 epochs of batch 256 (the per-epoch
time of a real run scales with its training-set size: perov_5's 80 % split is 5,213 crystals) and also
read from the model's history.json. Needs $SMOACS_DATA_DIR (the model's dataset) and $SMOACS_MODEL_DIR.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/ftcp-perov_5")
    ap.add_argument("--device", default=None)
    args = ap.parse_args()

    import torch

    from smoacs_bench.data.task import get_task
    from smoacs_bench.methods.ftcp import FTCP
    from smoacs_bench.methods.ftcp.heldout import heldout
    from smoacs_bench.methods.ftcp.network import FTCPVAE, keras

    dev = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    print(f"keras {keras.__version__} backend {keras.backend.backend()}, device {dev}, "
          f"torch threads {torch.get_num_threads()}")
    keras.utils.set_random_seed(0)
    vae = FTCPVAE()
    vae.compile(optimizer=keras.optimizers.RMSprop(1e-4))
    x = np.random.default_rng(0).random((1024, 240, 63)).astype("float32")
    y = np.random.default_rng(1).random((1024, 2)).astype("float32")
    vae.fit(x[:256], y[:256], batch_size=256, epochs=1, verbose=0)          # warm-up
    t0 = time.perf_counter()
    vae.fit(x, y, batch_size=256, epochs=2, verbose=0)
    per = (time.perf_counter() - t0) / 2
    print(f"training: {per:.2f} s per epoch of 1024 crystals ({per / 4:.3f} s per batch of 256); "
          f"perov_5 (5,213 training crystals) ≈ {per * 5213 / 1024:.1f} s/epoch")
    hist = Path(args.model) / "history.json"
    if hist.is_file():
        secs = [float(r["seconds"]) for r in json.loads(hist.read_text())]
        print(f"{hist}: {len(secs)} epochs, median {np.median(secs):.1f} s/epoch, total {sum(secs) / 60:.1f} min")

    method = FTCP(model=args.model, device=dev, progress=False)
    for task in ("perovskite", "free"):
        t0 = time.perf_counter()
        props = method.propose(get_task(task, 1.5, 0.04), 256, 0)
        dt = time.perf_counter() - t0
        ok = sum(not p.failed for p in props)
        print(f"sampling 256 ({task}): {dt:.1f} s including MEGNet predictions (and, the first time, reading "
              "the training split and finding its ideal perovskites); "
              f"{ok} decoded to crystals")
    h = heldout(args.model, "test")
    print(f"held-out test split ({h.n} crystals): element accuracy {h.element_accuracy:.3f}, site-count "
          f"accuracy {h.site_count_accuracy:.3f}, coordinate MAE {h.coord_mae:.4f}, abc MAPE {h.abc_mape:.2f} %, "
          f"angle MAE {h.angle_mae:.2f}°; property MAE FTCP {h.mae_ftcp}, MEGNet {h.mae_megnet}")


if __name__ == "__main__":
    main()
