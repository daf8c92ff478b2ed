"""Deprecated alias: the sparse-diff primitives moved to :mod:`tutorfinetune.diffs`, the LT-SFT and
domain-SFT recipes to :mod:`tutorfinetune.recipes.lt_sft` (moved in 0.2; this path goes in 0.3)."""

import warnings

from .diffs import *  # noqa: F401,F403
from .diffs import __all__ as _diffs
from .recipes.lt_sft import *  # noqa: F401,F403
from .recipes.lt_sft import __all__ as _recipe

warnings.warn("tutorfinetune.sparse moved: SparseDiff and masks to tutorfinetune.diffs, lt_sft and domain SFTs to "
              "tutorfinetune.recipes.lt_sft; the old path goes in tutorfinetune 0.3.", DeprecationWarning, stacklevel=2)
__all__ = [*_diffs, *_recipe]
