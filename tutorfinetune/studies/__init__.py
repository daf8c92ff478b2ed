"""Studies: many runs, each recorded in the store and reused when already there (DESIGN.md layer
"studies").

* :mod:`.runs`: :func:`sweep`, a grid of training runs x seeds (one fresh backbone per run);
* :mod:`.notebooks`: :func:`notebook_sweep`, one notebook executed over a grid of papermill parameters;
* :mod:`.leaderboard`: every method under one protocol (notebook 08).
"""

from . import leaderboard, notebooks, runs
from .notebooks import SweepError, notebook_sweep
from .runs import SweepRun, sweep

__all__ = ["sweep", "SweepRun", "notebook_sweep", "SweepError", "runs", "notebooks", "leaderboard"]
