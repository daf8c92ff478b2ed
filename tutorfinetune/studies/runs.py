"""Studies: many runs over seeds and settings, each recorded in the store, re-used when already done.

Papermill runs no grids (CONVENTIONS.md), so notebooks drive sweeps through :func:`sweep`: a loop
over settings x seeds that loads a fresh backbone per run (its head seeded by the run seed), calls
:func:`tutorfinetune.train`, and skips any run whose finished record with the same fingerprint (config,
task, training-set size, backbone, methods) is already in the store. A rerun of a notebook after an
interruption therefore continues where it stopped, and a rerun with other parameters only trains
what is new. ``executor="ray"`` spreads the missing runs over this machine's cores, its GPUs or a Ray
cluster (:mod:`.executors`); the results are the same rows.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import pandas as pd

from .. import results
from ..config import TrainConfig
from ..data import Task
from ..engine import fingerprint
from ..methods import resolve
from .executors import Executor, Outcome, RunSpec, make_executor, run_specs, summarize

__all__ = ["sweep", "plan", "collect", "SweepRun", "StudyError"]


class StudyError(RuntimeError):
    """Every run a study had to train failed; the message gives the first error."""


@dataclass
class SweepRun:
    """One run of a sweep: its settings, seed, and run id in the store (reused or new)."""

    settings: dict[str, Any]
    seed: int
    run_id: str
    reused: bool


def plan(
    backbone: str,
    task: Task,
    config: TrainConfig,
    seeds: Sequence[int],
    grid: dict[str, Iterable[Any]] | None = None,
    methods: Any = ("full",),
    *,
    study: str = "",
    tags: dict[str, Any] | None = None,
    methods_factory: Callable[[dict[str, Any]], Any] | None = None,
    verbose: bool = False,
    tag_grid: bool = True,
) -> list[tuple[dict[str, Any], int, RunSpec]]:
    """The runs of a sweep, in order: (grid settings, seed, :class:`~.executors.RunSpec` keyed by fingerprint).
    Settings and methods are checked here, in the driver, so a typo fails before anything runs."""
    grid = dict(grid or {})
    keys = list(grid)
    combos = [dict(zip(keys, vals)) for vals in itertools.product(*[list(grid[k]) for k in keys])] or [{}]
    out = []
    for settings in combos:
        for seed in seeds:
            cfg_fields = {k: v for k, v in settings.items() if k in TrainConfig.__dataclass_fields__}
            cfg = config.replace(**cfg_fields, seed=seed)
            spec_methods = methods_factory(settings) if methods_factory else methods
            meths = resolve(spec_methods)
            n_train = len(task.subsample_train(cfg.max_train_examples, seed=cfg.seed).train)
            fp = fingerprint(backbone, task.name, n_train, cfg, meths)
            label = ", ".join(f"{k}={v}" for k, v in {**settings, "seed": seed}.items())
            out.append((settings, seed, RunSpec(
                backbone=backbone, task=task, config=cfg, methods=spec_methods, study=study,
                tags={**(tags or {}), **({k: _tag(v) for k, v in settings.items()} if tag_grid else {})},
                key=fp, label=label,
                verbose=verbose)))
    return out


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
    executor: str | Executor = "serial",
    workers: int | None = None,
    address: str | None = None,
    gpus_per_run: float | None = None,
    tag_grid: bool = True,
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
        executor: ``"serial"`` (one run after another here), ``"ray"`` (in parallel: this machine's cores,
            its GPUs with ``gpus_per_run``, or a cluster at ``address``), or an
            :class:`~.executors.Executor`; ``workers``: runs at once (see :mod:`.executors`).
        tag_grid: add each run's grid values to its tags (the default). False when the grid only varies
            config fields (already in each run's config) and the runs must aggregate with runs of the same
            configuration made without a grid, as :func:`~.protocol.run_entry` does for its learning rates.

    Returns:
        The tidy rows (``results.load``) of exactly the finished runs of this sweep. A run that fails is
        recorded as failed, the others go on, and the printed summary lists the failures (the frame's
        ``attrs["failed"]`` too: label -> error); when every run to train failed, :class:`StudyError`.
    """
    runs_plan = plan(backbone, task, config, seeds, grid, methods, study=study, tags=tags,
                     methods_factory=methods_factory, verbose=verbose, tag_grid=tag_grid)
    ex = make_executor(executor, workers=workers, address=address, gpus_per_run=gpus_per_run)
    done = results.finished_runs(store, study=study) if reuse else {}
    outcomes = run_specs([spec for _, _, spec in runs_plan], ex, store=store, done=done,
                         desc=f"sweep {study or ''}".strip())
    labels = {spec.key: spec.label or "(no grid)" for _, _, spec in runs_plan}
    print(f"sweep {study!r}: {summarize(outcomes, labels, store=store, n=len(runs_plan), where=ex.describe())}")
    return collect(store, outcomes, labels)


def collect(store: str | os.PathLike, outcomes: dict[str, Outcome], labels: dict[str, str]) -> pd.DataFrame:
    """The tidy rows of the finished (or reused) runs among ``outcomes``; failures in ``attrs["failed"]``.
    Raises :class:`StudyError` when runs were to be trained and every one of them failed."""
    failed = {labels.get(k, k): o.error for k, o in outcomes.items() if o.status == "failed"}
    ok = [o for o in outcomes.values() if o.status in ("finished", "reused")]
    if failed and not ok:
        last = next(o for o in reversed(list(outcomes.values())) if o.status == "failed")
        raise StudyError(f"Every run failed ({len(failed)}); the runs are recorded as failed in {store}. "
                         f"First error: {next(iter(failed.values()))}\n{last.traceback}")
    ids = {o.run_id for o in ok}
    df = results.load(store)
    df = df[df["run_id"].isin(ids)].reset_index(drop=True)
    df.attrs["failed"] = failed
    return df


def _tag(v: Any) -> Any:
    return "all" if v is None else v
