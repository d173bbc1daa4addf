"""The one interface every optimiser implements (like an Optuna sampler: small and swappable).

A method receives a task (search space + band-gap target) and returns proposals: pymatgen
Structures, optionally with the method's own predicted properties, and per-sample metadata. A method
need only return structures: the shared judge predicts every proposal's band gap and formation energy
from its structure and judges it on those; numbers a method reports are kept aside (``own_*`` columns)
and flagged when they disagree. Tensors never leave the method.

What a method declares, so that the harness needs no knowledge of it:

- ``name`` (registry key) and ``display_name``; ``label`` adds the predictor family,
  e.g. ``SMOACS(MEGNet)``;
- ``config_class``: a dataclass of its options (keyword arguments of the constructor); the CLI's
  ``--param KEY=VALUE`` and generic flags (``--device``, ``--workers``, ...) are checked against it;
- ``budget``: the option that counts its work (``steps`` or ``trials``), set by ``--steps``/``--trials``;
- ``state_dir``: a folder inside the run folder for resumable state; the harness passes its path as
  the ``storage`` option and deletes it on ``--force``;
- ``result_neutral``: options that do not change the output (left out of a run's identity).

The harness passes only options the method declares: ``progress`` (bool) when it has one.
"""

from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pymatgen.core import Structure

from smoacs_bench.data.task import Task

from .predictors.base import deterministic  # noqa: F401 - part of the Method API (methods import it from here)


@dataclass
class Proposal:
    """One proposed crystal. ``structure`` is None when the sample failed (``meta['reason']`` says why)."""

    structure: Structure | None
    band_gap: float | None = None          # eV, the method's own prediction (kept aside; never judged on)
    formation_energy: float | None = None  # eV/atom, the method's own prediction (kept aside)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.structure is None


class Method(abc.ABC):
    """An inverse-design method. Subclasses set ``name`` and implement :meth:`propose`."""

    name: ClassVar[str]
    display_name: ClassVar[str] = ""       # shown in tables; defaults to ``name``
    config_class: ClassVar[type | None] = None   # dataclass of options, or None
    budget: ClassVar[str | None] = None    # option counting the work: "steps", "trials", ...
    state_dir: ClassVar[str | None] = None  # folder in the run folder for resumable state ("storage")
    result_neutral: ClassVar[tuple[str, ...]] = ("progress",)
    contract_options: ClassVar[dict[str, Any]] = {}   # options that make the shared contract test's run tiny
    history_unit: ClassVar[str] = "step"   # what a row of ``artifacts()["history"]`` is
    revision: ClassVar[int] = 0            # bumped when default behaviour changes: stored runs are then not reused
    # the configurations the tuning protocol tries (``smoacs-bench reproduce tuning``), the first the default;
    # every method with a hyperparameter lists the same number (TUNING_CONFIGS)
    tuning: ClassVar[tuple[dict[str, Any], ...]] = ()

    trainable: ClassVar[bool] = False      # whether ``smoacs-bench train NAME`` trains a model for it

    @classmethod
    def train_model(cls, dataset: str, out: str, epochs: int | None, seed: int = 0, **options: Any) -> Any:
        """Train the method's own model on a dataset into folder ``out`` (methods with ``trainable``; ``epochs``
        None: its own recipe)."""
        raise NotImplementedError(f"method {cls.name!r} has no model to train")

    @classmethod
    def default_model(cls) -> Any:
        """The folder of the method's own trained model used by default, or None (trainable methods)."""
        return None

    @classmethod
    def owns_model(cls, folder: Any) -> bool:
        """Whether ``folder`` holds a model this method trained (``smoacs-bench heldout`` asks each method)."""
        return False

    @classmethod
    def heldout_markdown(cls, folder: Any, split: str = "test") -> str:
        """Held-out errors of the method's model in ``folder`` as a Markdown table (a Table 1 row)."""
        raise NotImplementedError(f"method {cls.name!r} has no held-out check")

    @abc.abstractmethod
    def propose(self, task: Task, n_samples: int, seed: int) -> list[Proposal]:
        """``n_samples`` proposals for ``task``; the same seed gives the same proposals."""

    def row_note(self) -> str:
        """What a caption says about this method's rows: :meth:`caption_note`, then :meth:`hyperparameter_note`."""
        return " ".join(x for x in (self.caption_note(), self.hyperparameter_note()) if x)

    def hyperparameter_note(self) -> str:
        """One sentence naming the tuned hyperparameters (those in ``tuning``) that this run sets away from
        their defaults, read from its resolved config ('' when none)."""
        keys = dict.fromkeys(k for c in self.tuning for k in c)
        cfg, defaults = self.config(), self.options()
        changed = [f"{k}={cfg[k]} (default {defaults[k]})" for k in keys if k in cfg and cfg[k] != defaults.get(k)]
        return f"{self.label} runs with {', '.join(changed)}." if changed else ""

    @classmethod
    def options(cls) -> dict[str, Any]:
        """Option name -> default (``dataclasses.MISSING`` when required), from ``config_class``."""
        if cls.config_class is None:
            return {}
        out = {}
        for f in dataclasses.fields(cls.config_class):
            if f.default is not dataclasses.MISSING:
                out[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                out[f.name] = f.default_factory()
            else:
                out[f.name] = dataclasses.MISSING
        return out

    @classmethod
    def option_help(cls) -> dict[str, tuple[str, Any, str]]:
        """Option name -> (type as written, default, one line of help). The help is the field's
        ``metadata["help"]`` or else the comment after it in the ``config_class`` source."""
        if cls.config_class is None:
            return {}
        comments = _field_comments(cls.config_class)
        defaults = cls.options()
        out = {}
        for f in dataclasses.fields(cls.config_class):
            kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
            out[f.name] = (kind, defaults[f.name],
                           f.metadata.get("help") or comments.get(f.name) or COMMON_HELP.get(f.name, ""))
        return out

    @classmethod
    def check_option_types(cls, config: dict[str, Any]) -> None:
        """ValueError naming the option and its expected type for a value of the wrong kind."""
        info = cls.option_help()
        for key, value in config.items():
            if key in info and not _fits(info[key][0], value):
                raise ValueError(f"{cls.name} option {key} expects {info[key][0]}, got {value!r}")

    def predictor_names(self) -> tuple[str, ...]:
        """Registered names of the predictors the method optimises with (empty if none)."""
        return ()

    @property
    def label(self) -> str:
        """Row label: display name and predictor family, e.g. ``SMOACS(MEGNet)``."""
        base = self.display_name or self.name
        names = self.predictor_names()
        if not names:
            return base
        from .predictors import family_label

        return f"{base}({family_label(names)})"

    def config(self) -> dict[str, Any]:
        """Settings worth recording in a run's config.json."""
        return {}

    def artifacts(self) -> dict[str, Any]:
        """Extra results of the last :meth:`propose` call (e.g. optimisation history arrays)."""
        return {}

    def caption_note(self) -> str:
        """A sentence table captions must carry about this method's rows (how it departs from the paper or
        from the common protocol); empty when there is none. Called after :meth:`propose`."""
        return ""


COMMON_HELP = {   # options several methods share, where their config class has no comment
    "progress": "show a progress bar",
    "device": "torch device (default: CUDA when available, else CPU)",
    "band_gap_model": "registered band-gap predictor the method optimises with (eV)",
    "formation_energy_model": "registered formation-energy predictor (eV/atom)",
    "batch_size": "structures per predictor call",
    "workers": "processes at once (results do not depend on it)",
    "storage": "folder for resumable state (set by the harness inside the run folder)",
    "split": "dataset split the crystals come from",
}


def _field_comments(config_class: type) -> dict[str, str]:
    """The ``# comment`` after each field of a dataclass's source (and of its dataclass bases)."""
    import inspect
    import re

    out: dict[str, str] = {}
    for klass in reversed(config_class.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        for m in re.finditer(r"^\s+(\w+)\s*:[^=\n]*=[^\n#]*#\s*(.+)$", source, flags=re.MULTILINE):
            out[m.group(1)] = m.group(2).strip()
    return out


def _fits(kind: str, value: Any) -> bool:
    """Whether ``value`` (as the CLI parsed it) fits a field written as ``kind`` (``float | None``, ...)."""
    parts = {p.strip() for p in str(kind).replace("Optional[", "").rstrip("]").split("|")}
    if value is None:
        return "None" in parts or not parts & {"int", "float", "bool", "str"}
    if "bool" in parts and isinstance(value, bool):
        return True
    if "float" in parts and isinstance(value, (int, float)) and not isinstance(value, bool):
        return True
    if "int" in parts and isinstance(value, int) and not isinstance(value, bool):
        return True
    if "str" in parts and isinstance(value, str):
        return True
    known = {"int", "float", "bool", "str", "None"}
    return not parts <= known   # tuples, paths, ...: not checked here
