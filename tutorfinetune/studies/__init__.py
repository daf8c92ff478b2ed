"""Studies: many runs, each recorded in the store and reused when already there (DESIGN.md layer
"studies").

* :mod:`.runs`: :func:`sweep`, a grid of training runs x seeds (one fresh backbone per run);
* :mod:`.notebooks`: :func:`notebook_sweep`, one notebook executed over a grid of papermill parameters;
* :mod:`.leaderboard`: every method under one protocol (notebook 08);
* :mod:`.protocol`: the fair protocol (readout, model selection on dev, lr chosen on dev, >= 5 seeds);
* :mod:`.executors`: where the runs run: ``"serial"`` (here, one after another) or ``"ray"`` (this
  machine's cores, its GPUs, or a Ray cluster); every study above takes ``executor=``.
"""

from . import executors, leaderboard, notebooks, protocol, runs
from .executors import ExecutorError, RayExecutor, SerialExecutor, make_executor
from .notebooks import SweepError, notebook_sweep, run_notebooks
from .protocol import Protocol, choose_lr, run_entry
from .runs import StudyError, SweepRun, sweep

__all__ = ["sweep", "SweepRun", "StudyError", "notebook_sweep", "run_notebooks", "SweepError", "make_executor",
           "SerialExecutor", "RayExecutor", "ExecutorError", "runs", "notebooks", "leaderboard", "executors",
           "protocol", "Protocol", "run_entry", "choose_lr"]
