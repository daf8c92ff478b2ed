"""Analysis of the results store (DESIGN.md layer "analysis"): statistics over seeds (:mod:`.stats`),
the standard figures (:mod:`.figures`) and assembled tables (:mod:`.tables`). Every name is also
available as ``tutorfinetune.analysis.<name>``."""

from .figures import *  # noqa: F403
from .figures import __all__ as _figures
from .stats import *  # noqa: F403
from .stats import __all__ as _stats
from .tables import *  # noqa: F403
from .tables import __all__ as _tables

__all__ = [*_stats, *_figures, *_tables]
