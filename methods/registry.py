"""Methods by name: the built-in ones, installed plugins and ``package.module:Class``.

Adding a baseline is one module with a :class:`~smoacs_bench.methods.base.Method` subclass: register
it here, expose it through the entry-point group ``smoacs_bench.methods`` of your own package, or
name it on the command line as ``--method package.module:Class``.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import entry_points

from .base import Method

ENTRY_POINT_GROUP = "smoacs_bench.methods"

METHODS: dict[str, str] = {
    "smoacs": "smoacs_bench.methods.smoacs:SMOACS",
    "smoacs-relax": "smoacs_bench.methods.smoacs:RelaxingSMOACS",
    "tpe": "smoacs_bench.methods.tpe:TPE",
    "tpe-n": "smoacs_bench.methods.tpe:TPEWithoutNeutrality",
    "random": "smoacs_bench.methods.tpe:RandomSearch",
    "tpe+n": "smoacs_bench.methods.tpe:TPEExactNeutrality",
    "ftcp": "smoacs_bench.methods.ftcp:FTCP",
    "reference": "smoacs_bench.methods.reference:ReferenceCrystals",
    "screening": "smoacs_bench.methods.screening:Screening",
    "screening-relax": "smoacs_bench.methods.screening:RelaxedScreening",
}


def plugin_methods() -> dict[str, str]:
    """Methods installed by other packages under the entry-point group ``smoacs_bench.methods``."""
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_methods() -> dict[str, str]:
    """Name -> ``module:Class`` of every built-in and installed method."""
    return METHODS | plugin_methods()


def _load(target: str, name: str) -> type[Method]:
    module, _, attr = target.partition(":")
    try:
        cls = getattr(_import(module), attr)
    except ModuleNotFoundError as err:
        raise ValueError(f"method {name!r}: cannot import {target!r} ({err}): put {module.split('.')[0]}.py (or its "
                         "package folder) in the current folder, add its folder to PYTHONPATH, or pip install the "
                         "package that holds it") from None
    except (ImportError, AttributeError) as err:
        raise ValueError(f"method {name!r}: cannot import {target!r} ({err})") from None
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise ValueError(f"method {name!r}: {target!r} is not a subclass of smoacs_bench.methods.Method")
    return cls


def _import(module: str):
    """``module`` imported as ``python -m`` would: installed packages, then the current folder (a console
    script does not put the current folder on the path)."""
    import os
    import sys

    try:
        return import_module(module)
    except ModuleNotFoundError as err:
        here = os.getcwd()
        if err.name != module.split(".")[0] or here in sys.path or "" in sys.path:
            raise
        sys.path.append(here)   # after the installed packages: a local file never shadows one
        return import_module(module)


def get_method_class(name: str) -> type[Method]:
    """The class of a method: a registered or installed name, or ``package.module:Class``."""
    known = available_methods()
    if name in known:
        return _load(known[name], name)
    if ":" in name:
        return _load(name, name)
    raise ValueError(f"unknown method {name!r}; choose from {', '.join(known)} or give package.module:Class")


def get_method(name: str, **config) -> Method:
    """Instantiate a method by name with its keyword configuration."""
    return get_method_class(name)(**config)


def trainable_methods() -> list[type[Method]]:
    """The classes of every available method that trains a model of its own (``smoacs-bench train NAME``)."""
    out = []
    for name in available_methods():
        try:
            cls = get_method_class(name)
        except ValueError:
            continue
        if cls.trainable and cls not in out:
            out.append(cls)
    return out
