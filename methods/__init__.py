"""Inverse-design methods behind one interface. Adding a baseline: one module and one entry in METHODS."""

from __future__ import annotations

from importlib import import_module

METHODS: dict[str, str] = {
    "smoacs": "methods.smoacs:SMOACS",
    "tpe": "methods.tpe:TPE",
    "tpe-n": "methods.tpe:TPEWithoutNeutrality",
    "tpe+n": "methods.tpe:TPEExactNeutrality",
}


def get_method(name: str, **config):
    """Instantiate a registered method by name with its keyword configuration."""
    try:
        target = METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHODS)}") from None
    module, cls = target.split(":")
    return getattr(import_module(module), cls)(**config)
