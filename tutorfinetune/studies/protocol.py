"""The fair protocol (DESIGN.md "Protocol"; issue 21): comparisons whose verdicts come from the methods,
not from the set-up.

* the head reads the encoder the way the checkpoint was pretrained (``readout="auto"``: mean pooling for
  all-MiniLM-L6-v2, :mod:`tutorfinetune.heads`);
* every run evaluates its dev set about ``evaluations`` times and reports the test sets at the best dev
  step (``select_best``; the final-step metrics stay in the record), optionally stopping early;
* each entry's learning rate is chosen on dev from a small grid (:data:`LR_GRIDS`), on ``lr_seeds``,
  then every seed runs at the chosen rate; the choice and the dev score of every candidate are kept;
* at least 5 seeds in full mode; paired differences, intervals and the minimal detectable effect are
  computed by :mod:`tutorfinetune.analysis`.

:func:`run_entry` does it for one method (one entry): an lr sweep on dev, then the seeds. Runs go through
:func:`tutorfinetune.studies.sweep`, so everything already in the store is reused (the lr-choice runs of
``lr_seeds`` at the chosen rate are the same runs the comparison needs) and any executor works.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Sequence

import pandas as pd

from .. import results
from ..config import ConfigError, TrainConfig
from ..data import Task
from .runs import sweep

__all__ = ["Protocol", "LR_GRIDS", "ProtocolResult", "run_entry", "choose_lr"]

#: learning-rate grids per family: methods that train the whole body, and light methods that train few
#: parameters (adapters, LoRA, linear probe, sparse phases): the grids of issue 21
LR_GRIDS: dict[str, tuple[float, ...]] = {
    "full": (3e-5, 1e-4, 3e-4),
    "light": (3e-4, 1e-3, 3e-3),
}


@dataclass(frozen=True)
class Protocol:
    """Settings of the fair protocol; :meth:`for_mode` gives the full study's and the quick ci version.

    Attributes:
        readout: the head's readout (``"auto"``: the checkpoint's own pooling).
        select_best: report test metrics at the best dev step.
        evaluations: dev evaluations per run (``eval_every`` = steps / evaluations, rounded up).
        early_stopping: stop after this many evaluations without a better dev score (0: never).
        seeds: seeds of every comparison (>= 5 in full mode).
        lr_seeds: seeds on which the learning rate is chosen (dev only).
        lr_grids: family -> candidate learning rates.
    """

    readout: str = "auto"
    select_best: bool = True
    evaluations: int = 10
    early_stopping: int = 0
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    lr_seeds: tuple[int, ...] = (0,)
    lr_grids: Mapping[str, tuple[float, ...]] = field(default_factory=lambda: dict(LR_GRIDS))

    @classmethod
    def for_mode(cls, mode: str, **overrides: Any) -> "Protocol":
        """``"full"``: 5 seeds, the whole lr grids. ``"ci"``: the same code path with smaller numbers (one
        seed, each grid's middle value only, so nothing is chosen)."""
        if mode == "full":
            return replace(cls(), **overrides)
        if mode == "ci":
            grids = {k: (v[len(v) // 2],) for k, v in LR_GRIDS.items()}
            return replace(cls(seeds=(0,), lr_seeds=(0,), evaluations=2, lr_grids=grids), **overrides)
        raise ConfigError(f"mode must be 'ci' or 'full', got {mode!r}.")

    def grid(self, family: str) -> tuple[float, ...]:
        if family not in self.lr_grids:
            raise ConfigError(f"No learning-rate grid for family {family!r}; grids: {list(self.lr_grids)}.")
        return tuple(self.lr_grids[family])

    def configure(self, config: TrainConfig, n_train: int) -> TrainConfig:
        """``config`` with the protocol's readout, model selection and dev-evaluation schedule."""
        total = config.total_steps(n_train)
        every = max(1, math.ceil(total / max(1, int(self.evaluations))))
        return config.replace(readout=self.readout, select_best=self.select_best, eval_every=every,
                              early_stopping=self.early_stopping if self.select_best else 0)


@dataclass
class ProtocolResult:
    """One entry under the protocol: the tidy results of its seeds at the chosen lr (``frame``, with a
    ``chosen_lr`` column), the chosen lr, and the dev score of every candidate (``lr_table``)."""

    frame: pd.DataFrame
    chosen_lr: float
    lr_table: pd.DataFrame


def choose_lr(frame: pd.DataFrame, selection_set: str = "dev", metric: str = "accuracy") -> tuple[float, pd.DataFrame]:
    """The learning rate with the best mean dev score (at each run's best dev step) over the lr seeds; ties
    go to the smaller rate. Only rows of ``selection_set`` are read: a test set never decides."""
    d = frame[(frame["eval_set"] == selection_set) & (frame["metric"] == metric)]
    if d.empty:
        raise ConfigError(f"No {selection_set!r} results to choose a learning rate from; the task needs a dev split.")
    table = d.groupby("lr")["value"].agg(["mean", "count"]).rename(columns={"mean": f"{selection_set} {metric}",
                                                                         "count": "seeds"}).reset_index()
    best = table[f"{selection_set} {metric}"].max()
    chosen = float(table.loc[table[f"{selection_set} {metric}"] == best, "lr"].min())
    table["chosen"] = table["lr"] == chosen
    return chosen, table


def run_entry(
    backbone: str,
    task: Task,
    config: TrainConfig,
    methods: Any = ("full",),
    *,
    family: str = "full",
    protocol: Protocol | None = None,
    lrs: Sequence[float] | None = None,
    store: str | os.PathLike = results.DEFAULT_STORE,
    study: str = "",
    tags: dict[str, Any] | None = None,
    methods_factory=None,
    **sweep_kw: Any,
) -> ProtocolResult:
    """Run one entry (a list of plug-ins) under the protocol: choose its learning rate on dev from the
    family's grid (or ``lrs``) on ``protocol.lr_seeds``, then run every seed at the chosen rate.

    Args:
        backbone, task, config, methods, store, study, tags, methods_factory: as for
            :func:`tutorfinetune.studies.sweep` (``config`` gives the budget and everything else).
        family: which grid of :attr:`Protocol.lr_grids` (``"full"`` or ``"light"``).
        protocol: the protocol (default :class:`Protocol`: full mode).
        lrs: candidate learning rates instead of the family's grid.
        **sweep_kw: passed to :func:`~tutorfinetune.studies.sweep` (``executor``, ``workers`` ...).
    """
    protocol = protocol or Protocol()
    n_train = len(task.subsample_train(config.max_train_examples, seed=config.seed).train)
    cfg = protocol.configure(config, n_train)
    grid = tuple(float(x) for x in (lrs if lrs is not None else protocol.grid(family)))
    if not grid:
        raise ConfigError("No learning rate to try: pass lrs=[...] or a family with a grid.")
    tags = {**(tags or {}), "protocol": "fair"}
    common = dict(methods=methods, store=store, study=study, methods_factory=methods_factory, **sweep_kw)
    if len(grid) > 1:
        # one sweep over the candidates (run in parallel by a parallel executor) with the same tags as the
        # comparison's runs (no grid or phase tag), so the lr seeds' runs at the chosen rate are the same
        # configuration as the other seeds' and aggregate with them
        dev = sweep(backbone, task, cfg, seeds=list(protocol.lr_seeds), grid={"lr": list(grid)}, tag_grid=False,
                    **common, tags=tags)
        chosen, table = choose_lr(dev)
    else:
        chosen, table = grid[0], pd.DataFrame({"lr": [grid[0]], "chosen": [True]})
    # runs are reused by fingerprint (config, task, backbone, methods; not tags): the lr seeds' runs at the
    # chosen rate are the comparison's runs for those seeds, not trained again
    df = sweep(backbone, task, cfg.replace(lr=chosen), seeds=list(protocol.seeds), tags=tags, **common)
    df = df.assign(chosen_lr=chosen)
    return ProtocolResult(frame=df, chosen_lr=chosen, lr_table=table)
