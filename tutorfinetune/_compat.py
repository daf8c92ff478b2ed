"""Deprecated module aliases: the module paths used before the package was layered keep working for one
release (0.2), each with a DeprecationWarning naming the new path. Not part of the layering: an alias
module may point anywhere (tests/test_layers.py skips them)."""

from __future__ import annotations

import importlib
import sys
import warnings

__all__ = ["alias"]


def alias(old: str, new: str) -> None:
    """Make the module being imported as ``old`` the module ``new`` (the same object), with a warning."""
    warnings.warn(f"{old} moved to {new}; the old path goes in tutorfinetune 0.3. Import {new} instead.",
                  DeprecationWarning, stacklevel=3)
    sys.modules[old] = importlib.import_module(new)
