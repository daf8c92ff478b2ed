"""Multi-phase recipes: plain functions that call :func:`tutorfinetune.train` more than once (DESIGN.md).

* :mod:`.lt_sft`: lottery-ticket sparse fine-tuning and domain SFTs (``recipes.get("lt-sft")``);
* :mod:`.stilts`: intermediate-task transfer (``recipes.get("stilts")``);
* :mod:`.madx`: MAD-X with domain adapters and the zero-shot swap.

A recipe is not a plug-in: it decides when to reset, which phase trains what, and returns its own
result object (for LT-SFT an :class:`~tutorfinetune.recipes.lt_sft.SFTResult` with the diff, for STILTs
a :class:`~tutorfinetune.recipes.stilts.STILTsResult`). ``recipes.available()`` lists the ids.
"""

from __future__ import annotations

from typing import Callable

from ..config import did_you_mean
from . import lt_sft, madx, stilts  # the submodules: tutorfinetune.recipes.lt_sft, .madx, .stilts

__all__ = ["get", "available", "register", "RecipeError", "madx", "stilts", "lt_sft"]


class RecipeError(ValueError):
    """Unknown recipe id."""


_RECIPES: dict[str, Callable] = {"lt-sft": lt_sft.lt_sft, "stilts": stilts.stilts}


def register(recipe_id: str, fn: Callable) -> Callable:
    """Make ``recipes.get(recipe_id)`` return ``fn``."""
    if recipe_id in _RECIPES:
        raise RecipeError(f"Recipe id {recipe_id!r} is registered twice.")
    _RECIPES[recipe_id] = fn
    return fn


def available() -> list[str]:
    """Registered recipe ids."""
    return sorted(_RECIPES)


def get(recipe_id: str) -> Callable:
    """The recipe function registered as ``recipe_id``."""
    if recipe_id not in _RECIPES:
        raise RecipeError(f"Unknown recipe {recipe_id!r}.{did_you_mean(recipe_id, _RECIPES)} Available: {available()}.")
    return _RECIPES[recipe_id]
