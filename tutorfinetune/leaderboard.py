"""Deprecated alias: the leaderboard moved to :mod:`tutorfinetune.studies.leaderboard`, its table to
:func:`tutorfinetune.analysis.leaderboard_table` (moved in 0.2; this path goes in 0.3)."""

import warnings

from .analysis.tables import leaderboard_table  # noqa: F401
from .studies.leaderboard import *  # noqa: F401,F403
from .studies.leaderboard import __all__ as _lb
from .studies.leaderboard import _done_recipe, _existing  # noqa: F401

warnings.warn("tutorfinetune.leaderboard moved to tutorfinetune.studies.leaderboard (leaderboard_table to "
              "tutorfinetune.analysis); the old path goes in tutorfinetune 0.3.", DeprecationWarning, stacklevel=2)
__all__ = [*_lb, "leaderboard_table"]
