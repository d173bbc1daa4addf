"""Random search over a task's search space: an example smoacs-bench plugin (see ``method.py``)."""

from .method import RandomSearch, RandomSearchConfig

__all__ = ["RandomSearch", "RandomSearchConfig"]
