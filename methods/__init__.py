"""Inverse-design methods behind one interface (:mod:`.base`), found by name (:mod:`.registry`)."""

from __future__ import annotations

if __name__ != "smoacs_bench.methods":  # the folder, imported bare from the repository root
    raise ImportError(f"{__name__!r}: this folder installs as smoacs_bench.methods; after `pip install -e .` "
                      "import smoacs_bench.methods")

from .base import Method, Proposal, deterministic
from .registry import METHODS, available_methods, get_method, get_method_class

__all__ = ["METHODS", "Method", "Proposal", "available_methods", "deterministic", "get_method", "get_method_class"]
