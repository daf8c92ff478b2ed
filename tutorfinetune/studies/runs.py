"""Studies: many runs over seeds and settings, each recorded in the store, re-used when already done.

Papermill runs no grids (CONVENTIONS.md), so notebooks drive sweeps through :func:`sweep`: a loop
over settings x seeds that loads a fresh backbone per run (its head seeded by the run seed), calls
:func:`tutorfinetune.train`, and skips any run whose finished record with the same fingerprint (config,
task, training-set size, backbone, methods) is already in the store. A rerun of a notebook after an
interruption therefore continues where it stopped, and a rerun with other parameters only trains
what is new.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import pandas as pd

from .. import results
from ..backbones import backbone_for_task
from ..config import TrainConfig
from ..data import Task
from ..engine import fingerprint, train
from ..methods import resolve
from ..progress import outer_bar, progress_bar

__all__ = ["sweep", "SweepRun"]


@dataclass
class SweepRun:
    """One run of a sweep: its settings, seed, and run id in the store (reused or new)."""

    settings: dict[str, Any]
    seed: int
    run_id: str
    reused: bool


def sweep(
    backbone: str,
    task: Task,
    config: TrainConfig,
    seeds: Sequence[int],
    grid: dict[str, Iterable[Any]] | None = None,
    methods: Any = ("full",),
    *,
    store: str | os.PathLike = results.DEFAULT_STORE,
    study: str = "",
    tags: dict[str, Any] | None = None,
    reuse: bool = True,
    methods_factory: Callable[[dict[str, Any]], Any] | None = None,
    verbose: bool = False,
) -> pd.DataFrame:
    """Train every combination of ``grid`` (TrainConfig fields) for every seed; return the tidy results.

    Args:
        backbone: backbone name for :func:`load_backbone` (a fresh copy per run).
        task: the task.
        config: base settings; ``grid`` values and the seed replace its fields.
        seeds: seeds to run (each also seeds the head initialisation and the training subsample).
        grid: e.g. ``{"lr": [2e-5, 1e-4]}`` or ``{"max_train_examples": [64, 256, None]}``.
        methods: methods for every run (ignored when ``methods_factory`` is given).
        store, study, tags: where and how the runs are recorded; the grid values join the tags.
        reuse: skip runs already finished in ``store`` with the same fingerprint.
        methods_factory: builds the methods from a run's settings (for method knobs in the grid).

    Returns:
        The tidy rows (``results.load``) of exactly the runs of this sweep.
    """
    grid = dict(grid or {})
    keys = list(grid)
    combos = [dict(zip(keys, vals)) for vals in itertools.product(*[list(grid[k]) for k in keys])] or [{}]
    done = results.finished_runs(store, study=study) if reuse else {}
    runs: list[SweepRun] = []
    plan = [(c, s) for c in combos for s in seeds]
    bar = progress_bar(total=len(plan), desc=f"sweep {study or ''}".strip())
    for settings, seed in plan:
        cfg_fields = {k: v for k, v in settings.items() if k in TrainConfig.__dataclass_fields__}
        cfg = config.replace(**cfg_fields, seed=seed)
        meths = resolve(methods_factory(settings) if methods_factory else methods)
        n_train = len(task.subsample_train(cfg.max_train_examples, seed=cfg.seed).train)
        fp = fingerprint(backbone, task.name, n_train, cfg, meths)
        if fp in done:
            runs.append(SweepRun(settings, seed, done[fp], True))
        else:
            bb = backbone_for_task(backbone, task, seed=seed)
            with outer_bar():
                res = train(bb, task, cfg, meths, store=store, study=study,
                            tags={**(tags or {}), **{k: _tag(v) for k, v in settings.items()}}, verbose=verbose)
            runs.append(SweepRun(settings, seed, res.run_id, False))
            del bb
        bar.update(1)
        bar.set_postfix_str(", ".join(f"{k}={v}" for k, v in {**settings, "seed": seed}.items()))
    bar.close()
    ids = {r.run_id for r in runs}
    df = results.load(store)
    n_new = sum(not r.reused for r in runs)
    print(f"sweep {study!r}: {len(runs)} runs ({n_new} trained now, {len(runs) - n_new} reused from {store}).")
    return df[df["run_id"].isin(ids)].reset_index(drop=True)


def _tag(v: Any) -> Any:
    return "all" if v is None else v
