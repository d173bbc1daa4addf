"""A killed SMOACS run resumes where it was: the optimisation state saved at step boundaries.

With ``storage`` (the harness sets it to ``<run folder>/smoacs_state``) SMOACS writes, at most every
``checkpoint_s`` seconds and only after a step whose successor rebuilds the neighbour graph, one file holding
everything the next step depends on: the state's parameters and buffers, Adam's moments, the random
generators, the history, copy lineages, the finished batches' proposals and what a variant keeps
(SMOACS-relax: its relaxed checkpoints and cache). A resumed run therefore gives the proposals an uninterrupted
one gives. The file carries the run's settings; one written under other settings is ignored. It is deleted
when the run finishes.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Any

import torch

FILENAME = "checkpoint.pt"


class Checkpointer:
    """Saves and loads one run's optimisation state in ``folder`` (None: never saves, never resumes)."""

    def __init__(self, folder: str | os.PathLike | None, fingerprint: dict[str, Any], every_s: float):
        self.path = Path(folder) / FILENAME if folder else None
        self.fingerprint = fingerprint
        self.every_s = float(every_s)
        self._last = time.monotonic()
        self._started = time.monotonic()
        self.seconds_before = 0.0     # wall time the run had spent before this process resumed it (s)

    def load(self) -> dict[str, Any] | None:
        """The saved state of this run, or None (no file, unreadable, or written under other settings)."""
        if self.path is None or not self.path.is_file():
            return None
        try:
            data = torch.load(self.path, map_location="cpu", weights_only=False)
        except Exception as err:  # noqa: BLE001 - a truncated or foreign file: start afresh, say why
            warnings.warn(f"{self.path}: unreadable checkpoint ({type(err).__name__}); the run starts afresh",
                          stacklevel=2)
            return None
        if not isinstance(data, dict) or data.get("fingerprint") != self.fingerprint:
            warnings.warn(f"{self.path}: checkpoint of other settings; the run starts afresh", stacklevel=2)
            return None
        self.seconds_before = float(data.get("elapsed_s", 0.0))
        return data

    def due(self) -> bool:
        """Whether a save is due now (``checkpoint_s`` since the last one or since the start)."""
        return self.path is not None and time.monotonic() - self._last >= self.every_s

    def elapsed(self) -> float:
        """Wall time of the run so far, across resumes (s)."""
        return self.seconds_before + time.monotonic() - self._started

    def save(self, data: dict[str, Any]) -> None:
        """Write ``data`` atomically (a kill during the write leaves the previous file)."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        torch.save({**data, "fingerprint": self.fingerprint, "elapsed_s": self.elapsed()}, tmp)
        os.replace(tmp, self.path)
        self._last = time.monotonic()

    def clear(self) -> None:
        """Remove the file (the run finished)."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path.with_name(self.path.name + ".tmp").unlink(missing_ok=True)   # a write cut short by a kill
            try:
                self.path.parent.rmdir()
            except OSError:
                pass
