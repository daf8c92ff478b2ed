"""Multi-phase recipes: plain functions that call :func:`tutorfinetune.train` more than once (DESIGN.md).

``recipes.get("lt-sft")`` returns :func:`tutorfinetune.sparse.lt_sft`, ``recipes.get("stilts")``
:func:`tutorfinetune.stilts.stilts`; ``recipes.available()`` lists the ids. A recipe is not a plug-in: it decides when to reset, which phase trains what, and
returns its own result object (for LT-SFT an :class:`~tutorfinetune.sparse.SFTResult` with the diff, for
STILTs a :class:`~tutorfinetune.stilts.STILTsResult`).
"""

from __future__ import annotations

from typing import Callable

from .config import did_you_mean

__all__ = ["get", "available", "register", "RecipeError"]


class RecipeError(ValueError):
    """Unknown recipe id."""


def _lt_sft(*args, **kwargs):
    from .sparse import lt_sft

    return lt_sft(*args, **kwargs)


def _stilts(*args, **kwargs):
    from .stilts import stilts

    return stilts(*args, **kwargs)


_lt_sft.__doc__ = "Lottery-ticket sparse fine-tuning: see tutorfinetune.sparse.lt_sft."
_stilts.__doc__ = "Intermediate-task transfer (STILTs): see tutorfinetune.stilts.stilts."
_RECIPES: dict[str, Callable] = {"lt-sft": _lt_sft, "stilts": _stilts}


def register(recipe_id: str, fn: Callable) -> Callable:
    if recipe_id in _RECIPES:
        raise RecipeError(f"Recipe id {recipe_id!r} is registered twice.")
    _RECIPES[recipe_id] = fn
    return fn


def available() -> list[str]:
    return sorted(_RECIPES)


def get(recipe_id: str) -> Callable:
    if recipe_id not in _RECIPES:
        raise RecipeError(f"Unknown recipe {recipe_id!r}.{did_you_mean(recipe_id, _RECIPES)} Available: {available()}.")
    return _RECIPES[recipe_id]
