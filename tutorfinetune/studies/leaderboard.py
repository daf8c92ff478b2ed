"""One leaderboard of every method the package offers, under one protocol (notebooks/08_compare_all.ipynb).

The method notebooks (01-07) each use the settings that teach their method best, so their numbers are
not comparable with one another. The leaderboard runs every entry of :data:`ENTRIES` under one
protocol instead: the same task, backbone, seeds, evaluation sets and two regimes (low-data and
full-data, each with its own step budget). With ``protocol=`` (:class:`~.protocol.Protocol`, what
notebook 08 uses) the head reads the encoder the checkpoint's way, every run reports its test sets at
the best dev step, and each entry's learning rate is chosen per regime on dev from its grid
(:attr:`Entry.grid`); without it each entry trains at its fixed ``lr`` and reports the final step (the
first study's protocol). Every run goes to the results store and is *reused* when it is already there (plain runs by
fingerprint, as :func:`tutorfinetune.studies.sweep` does; the two-phase LT-SFT recipe by its tags), so
the notebook "reads the store and runs what is missing"; with ``run_missing=False`` it only reads. The
missing runs of every entry, regime and seed are scheduled together on one executor (``"serial"``,
or ``"ray"``: all cores of a machine, its GPUs, or a cluster; :mod:`.executors`).

Beside accuracy, :func:`costs` reports per entry and regime: trainable parameters (the most that
trained at any step; LT-SFT: K entries + the head), step time (train seconds per optimiser step, this
run's machine, noisy), and stored size (what must be kept to rebuild the fine-tuned model from the
pretrained one: 4 bytes per trained parameter in fp32; LT-SFT: 8 bytes per entry, an int32 index and
an fp32 value, plus the head).
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from .. import results
from ..backbones import backbone_for_task
from ..config import TrainConfig, did_you_mean
from ..data import Task
from ..engine.record import resolved_config
from ..methods.base import MethodError
from ..methods.intermediate import FromIntermediate
from ..methods.unfreezing import auto_k, protocol_k
from .executors import Executor, RunSpec, make_executor, recipe_key, run_specs, summarize
from .protocol import Protocol, choose_lr
from .runs import plan

__all__ = ["Entry", "ENTRIES", "FAMILIES", "Regime", "default_regimes", "entries", "run_leaderboard", "costs",
           "LeaderboardError"]


class LeaderboardError(ValueError):
    """Unknown entry names, or context an entry needs (Fisher scores, intermediate models) missing."""


@dataclass(frozen=True)
class Regime:
    """A training regime: how many training examples (None: all) and how many optimiser steps."""

    name: str
    n_train: int | None
    steps: int


def default_regimes(mode: str = "full") -> list[Regime]:
    """low-data: 128 reviews, 200 steps; full-data: every review, 600 steps (8 epochs of 1,198: long enough for
    the dev curves of notebook 02b to flatten under the fair protocol); ci: 8 steps."""
    if mode == "ci":
        return [Regime("low-data", 64, 8)]
    return [Regime("low-data", 128, 200), Regime("full-data", None, 600)]


@dataclass(frozen=True)
class Entry:
    """One leaderboard row: a name, a family, a learning rate and how to train it.

    ``methods(ctx)`` returns the plug-ins of a plain run (``ctx``: ``steps``, ``units_full``,
    ``units_adapter``, ``scores``, ``intermediates``, ``protocol`` (a bool), ``warmup_steps``, ``fisher_batches``); ``recipe`` is ``"train"`` (one run, reused by
    fingerprint), or ``"lt-sft"`` (two runs through :func:`tutorfinetune.recipes.lt_sft.lt_sft`).
    """

    name: str
    family: str
    lr: float
    methods: Callable[[dict], list] = field(default=lambda ctx: ["full"], compare=False)
    recipe: str = "train"
    notebook: str = ""
    needs: tuple[str, ...] = ()
    options: dict = field(default_factory=dict, compare=False)
    #: the protocol's learning-rate grid (:data:`~.protocol.LR_GRIDS`): "full" for methods that train the
    #: whole body, "light" for few trained parameters (adapters, LoRA, probe); "" = from ``lr``
    lr_grid: str = ""
    #: TrainConfig fields this entry sets over the regime's (its paper's recipe), e.g. ``{"warmup": 0.0}``
    overrides: dict = field(default_factory=dict, compare=False)

    @property
    def grid(self) -> str:
        return self.lr_grid or ("light" if self.lr >= 3e-4 else "full")


_NO_WARMUP = {"overrides": {"warmup": 0.0}}


def _k(ctx: dict, units_key: str) -> int:
    """The unfreezing interval of a schedule entry. Under the protocol: :func:`protocol_k` (the first unit
    joins after the warm-up, every unit trains at least half the run), unless the budget is too short for
    that rule (ci mode), where the short-run rule :func:`auto_k` stands, as it does without a protocol."""
    units = ctx[units_key]
    if ctx.get("protocol"):
        try:
            return protocol_k(ctx["steps"], units, ctx.get("warmup_steps", 0))
        except MethodError:
            pass
    return auto_k(ctx["steps"], units)


def _gu(body: str) -> Callable[[dict], list]:
    def make(ctx: dict) -> list:
        k = _k(ctx, "units_adapter" if body == "adapter" else "units_full")
        return (["adapter"] if body == "adapter" else []) + [("gu", {"k": k})]
    return make


def _from(name: str) -> Callable[[dict], list]:
    def make(ctx: dict) -> list:
        inter = (ctx.get("intermediates") or {}).get(name)
        if inter is None:
            raise LeaderboardError(f"Entry 'STILTs: {name}' needs the intermediate model {name!r}: pass "
                                   f"intermediates={{{name!r}: Intermediate}} (tft.recipes.stilts.cached_intermediate).")
        return [FromIntermediate(inter)]
    return make


def _guided(ctx: dict) -> list:
    scores = ctx.get("scores")
    if scores is None:
        raise LeaderboardError("Entry 'guided dropout' needs Fisher scores: pass scores=tft.sublayer_fisher."
                               "sublayer_scores(backbone, 'contrastive', ...).")
    return [("guided-dropout", {"scores": scores, "p_upper": 0.1})]


ENTRIES: list[Entry] = [
    Entry("full fine-tuning", "baseline", 1e-4, lambda c: ["full"], notebook="01"),
    Entry("frozen embeddings", "baseline", 1e-4, lambda c: ["freeze-embeddings"], notebook="01"),
    Entry("linear probe", "baseline", 1e-3, lambda c: ["linear-probe"], notebook="03"),
    Entry("task adapter (rf 16)", "adapters", 1e-3, lambda c: ["adapter"], notebook="02"),
    # LoRA (Hu et al.): alpha = r = 8 as in the paper; lr 10x full fine-tuning's (docs/methods.md §3, §0), from the light grid
    Entry("LoRA r=8", "lora", 1e-3, lambda c: [("lora", {"r": 8})], notebook="02b"),
    Entry("LoRA all-linear r=8", "lora", 1e-3, lambda c: [("lora", {"r": 8, "target_modules": "all-linear"})],
          notebook="02b"),
    # schedules train without warm-up, as Liu et al. (FUN) did: with 10% warm-up and 6-7 units no interval lets
    # the first unit join after the warm-up and the last by half the run (unfreezing.protocol_k)
    Entry("adapter + GU", "unfreezing", 1e-3, _gu("adapter"), notebook="03", **_NO_WARMUP),
    Entry("adapter + LPFT", "unfreezing", 1e-3,
          lambda c: ["adapter", ("lpft", {"k": _k(c, "units_adapter")})], notebook="03", **_NO_WARMUP),
    Entry("adapter + FUN", "unfreezing", 1e-3,
          lambda c: ["adapter", ("fun", {"k": _k(c, "units_adapter"), "fisher_batches": c.get("fisher_batches", 10)})],
          notebook="03",
          **_NO_WARMUP),
    Entry("full + GU", "unfreezing", 1e-4, _gu("full"), notebook="03", **_NO_WARMUP),
    Entry("full + FUN", "unfreezing", 1e-4,
          lambda c: [("fun", {"k": _k(c, "units_full"), "fisher_batches": c.get("fisher_batches", 10)})], notebook="03",
          **_NO_WARMUP),
    Entry("GradDrop element p=0.3", "graddrop", 1e-4, lambda c: ["full", ("graddrop", {"p": 0.3})], notebook="04"),
    Entry("GradDrop epoch p=0.3", "graddrop", 1e-4,
          lambda c: ["full", ("graddrop", {"p": 0.3, "variant": "epoch"})], notebook="04"),
    Entry("GradDrop layer p=0.3", "graddrop", 1e-4,
          lambda c: ["full", ("graddrop", {"p": 0.3, "variant": "layer"})], notebook="04"),
    Entry("GU + GradDrop p=0.3", "graddrop", 1e-4, lambda c: _gu("full")(c) + [("graddrop", {"p": 0.3})],
          notebook="04", **_NO_WARMUP),
    Entry("guided dropout", "dropout", 1e-4, _guided, notebook="05", needs=("scores",)),
    Entry("Gaussian dropout", "dropout", 1e-4, lambda c: [("gaussian-dropout", {"p": 0.1})], notebook="05"),
    Entry("LT-SFT K=2%", "sparse", 1e-4, recipe="lt-sft", notebook="06", options={"k": 0.02}),
    Entry("random-mask SFT K=2%", "sparse", 1e-4, recipe="lt-sft", notebook="06",
          options={"k": 0.02, "selection": "random"}),
    Entry("STILTs: real-vs-fake", "stilts", 1e-4, _from("real-vs-fake"), notebook="07", needs=("real-vs-fake",)),
    Entry("STILTs: domain", "stilts", 1e-4, _from("domain"), notebook="07", needs=("domain",)),
]
FAMILIES = list(dict.fromkeys(e.family for e in ENTRIES))


def entries(names: str | Iterable[str] = "all") -> list[Entry]:
    """Entries by name (``"all"``: every one), in leaderboard order; unknown names are refused."""
    by = {e.name: e for e in ENTRIES}
    if isinstance(names, str):
        names = list(by) if names == "all" else [names]
    out = []
    for n in names:
        if n in by:
            out.append(by[n])
        elif n in FAMILIES:
            out.extend(e for e in ENTRIES if e.family == n)
        else:
            raise LeaderboardError(f"Unknown leaderboard entry {n!r}.{did_you_mean(n, list(by) + FAMILIES)} "
                                   f"Entries: {list(by)}; families: {FAMILIES}.")
    return list(dict.fromkeys(out))


def _config(regime: Regime, entry: Entry, base: TrainConfig) -> TrainConfig:
    return base.replace(lr=entry.lr, max_steps=regime.steps, max_train_examples=regime.n_train, **entry.overrides)


def _done_recipe(store, study: str, entry: Entry, regime: Regime, seed: int, cfg: TrainConfig,
                 backbone: str) -> str | None:
    cfg = resolved_config(backbone, cfg.replace(seed=seed))  # records hold the readout "auto" resolved to
    return results.find_finished(store, study=study, seed=seed, config=cfg.to_dict(),
                                 tags={"entry": entry.name, "regime": regime.name, "phase": "sparse"})


def run_leaderboard(
    backbone: str,
    task: Task,
    chosen: Sequence[Entry],
    regimes: Sequence[Regime],
    seeds: Sequence[int],
    *,
    base: TrainConfig | None = None,
    store: str | os.PathLike = results.DEFAULT_STORE,
    study: str = "08_compare_all",
    scores: Any = None,
    intermediates: Mapping[str, Any] | None = None,
    run_missing: bool = True,
    protocol: Protocol | None = None,
    executor: str | Executor = "serial",
    workers: int | None = None,
    address: str | None = None,
    gpus_per_run: float | None = None,
    fisher_batches: int = 10,
) -> pd.DataFrame:
    """Train (or reuse) every entry x regime x seed; return their tidy rows with ``entry``, ``family``,
    ``regime`` and ``n_train`` columns (for LT-SFT: the sparse phase, i.e. the final model).

    Args:
        backbone, task: as for :func:`tutorfinetune.studies.sweep`.
        chosen: entries (from :func:`entries`).
        regimes: e.g. :func:`default_regimes`.
        seeds: seeds of every entry (paired across entries: same head initialisation and subsample).
        base: settings shared by every run (batch size, lengths, eval sets); lr, steps and the
            training-set size come from the entry and the regime.
        scores: Fisher scores for guided dropout; intermediates: name -> Intermediate for STILTs.
        run_missing: train what the store lacks (False: only read; missing runs are left out).
        protocol: the fair protocol (:class:`~.protocol.Protocol`): every run reads the encoder the
            checkpoint's way and reports its test sets at the best dev step, and each entry's learning
            rate is chosen per regime on dev from its grid (:attr:`Entry.grid`) on ``protocol.lr_seeds``
            before every seed runs at it. None: each entry's fixed ``lr``, final step, as before.
        fisher_batches: training batches per tr(F) estimate of the FUN entries (10; a notebook's ci mode: fewer).
        executor, workers, address, gpus_per_run: where the missing runs run, all of them scheduled
            together with one progress bar (``"serial"``, or ``"ray"``: see :mod:`.executors`). A run
            that fails is recorded as failed and listed in the printed summary; the others go on.

    Returns:
        The tidy rows; under a protocol ``attrs["lr_table"]`` holds every candidate's dev score per entry
        and regime as records (``pd.DataFrame(df.attrs["lr_table"])``; ``chosen`` marks the learning rate
        used) and the rows carry a ``chosen_lr`` column.
    """
    base = base or TrainConfig()
    bb_probe = backbone_for_task(backbone, task, seed=0)
    ctx0 = {"units_full": bb_probe.blocks.num_blocks + 1, "units_adapter": bb_probe.blocks.num_blocks,
            "scores": scores, "intermediates": intermediates or {}, "fisher_batches": int(fisher_batches)}
    del bb_probe
    pairs = [(e, r) for r in regimes for e in chosen]
    for entry, _ in pairs:
        if entry.recipe not in ("train", "lt-sft"):
            raise LeaderboardError(f"Entry {entry.name!r} has an unknown recipe {entry.recipe!r}.")

    def config(entry: Entry, regime: Regime, lr: float) -> TrainConfig:
        cfg = _config(regime, entry, base).replace(lr=lr)
        return protocol.configure(cfg, regime.n_train or len(task.train)) if protocol else cfg

    def candidates(entry: Entry) -> tuple[float, ...]:
        return protocol.grid(entry.grid) if protocol else (entry.lr,)

    ex = None

    def run(jobs: list[tuple[Entry, Regime, float, Sequence[int]]], desc: str) -> dict[tuple, list[str]]:
        """Run (or find) each job's seeds; (entry name, regime name, lr) -> run ids."""
        nonlocal ex
        found: dict[tuple, list[str]] = defaultdict(list)
        specs: list[tuple[tuple, RunSpec]] = []
        for entry, regime, lr, job_seeds in jobs:
            key = (entry.name, regime.name, lr)
            cfg = config(entry, regime, lr)
            tags = {"entry": entry.name, "family": entry.family, "regime": regime.name,
                    "n_train": regime.n_train or len(task.train)}
            if not run_missing:
                found[key].extend(_existing(store, study, entry, regime, job_seeds, lr))
            elif entry.recipe == "train":
                meths = entry.methods({**ctx0, "steps": regime.steps, "protocol": protocol is not None,
                                       "warmup_steps": int(round(cfg.warmup * regime.steps))})
                for _, seed, spec in plan(backbone, task, cfg, job_seeds, methods=meths, study=study, tags=tags):
                    spec.label = f"{entry.name} / {regime.name} / lr {lr:g} / seed {seed}"
                    specs.append((key, spec))
            else:  # lt-sft: two phases, found by their tags and config
                options = {"k": entry.options.get("k", 0.02), "selection": entry.options.get("selection", "lottery")}
                for seed in job_seeds:
                    rid = _done_recipe(store, study, entry, regime, seed, cfg, backbone)
                    if rid:
                        found[key].append(rid)
                        continue
                    c = cfg.replace(seed=seed)
                    specs.append((key, RunSpec(
                        backbone=backbone, task=task, config=c, study=study, tags=tags, recipe="lt-sft",
                        options=options, label=f"{entry.name} / {regime.name} / lr {lr:g} / seed {seed}",
                        key=recipe_key("lt-sft", backbone, task.name, c, options, study, tags))))
        if specs:
            ex = ex or make_executor(executor, workers=workers, address=address, gpus_per_run=gpus_per_run)
            outcomes = run_specs([sp for _, sp in specs], ex, store=store, done=results.finished_runs(store, study=study),
                                 desc=desc)
            labels = {sp.key: sp.label for _, sp in specs}
            print(f"{desc} {study!r}: {summarize(outcomes, labels, store=store, where=ex.describe())}")
            for key, sp in specs:
                o = outcomes.get(sp.key)
                if o is not None and o.status in ("finished", "reused"):
                    found[key].append(o.run_id)
        return found

    chosen_lr = {(e.name, r.name): candidates(e)[0] for e, r in pairs}
    lr_rows = []
    to_choose = [(e, r) for e, r in pairs if len(candidates(e)) > 1]
    if to_choose:  # stage 1: every candidate on the lr seeds, all entries at once; the choice reads dev only
        trials = run([(e, r, lr, list(protocol.lr_seeds)) for e, r in to_choose for lr in candidates(e)],
                     "leaderboard lr choice")
        every = results.load(store)
        for e, r in to_choose:
            ids = {rid for lr in candidates(e) for rid in trials.get((e.name, r.name, lr), [])}
            rows = every[every["run_id"].isin(ids)]
            if rows.empty:
                continue  # nothing finished (failures are listed above); the first candidate stands
            lr, table = choose_lr(rows)
            chosen_lr[(e.name, r.name)] = lr
            lr_rows.append(table.assign(entry=e.name, regime=r.name))
    # stage 2: every seed at the chosen learning rate (the lr seeds' runs are reused by fingerprint)
    found = run([(e, r, chosen_lr[(e.name, r.name)], seeds) for e, r in pairs], "leaderboard")
    ids = {rid for rs in found.values() for rid in rs}
    df = results.load(store)
    df = df[df["run_id"].isin(ids)].reset_index(drop=True)
    if protocol is not None:
        by_run = {rid: lr for (en, rn, lr), rs in found.items() for rid in rs}
        df["chosen_lr"] = df["run_id"].map(by_run)
        table = (pd.concat(lr_rows, ignore_index=True) if lr_rows else pd.DataFrame(
            [{"entry": en, "regime": rn, "lr": lr, "chosen": True} for (en, rn), lr in chosen_lr.items()]))
        df.attrs["lr_table"] = table.to_dict("records")  # plain records: pandas compares attrs when it concatenates
    return df


def _existing(store, study: str, entry: Entry, regime: Regime, seeds: Sequence[int], lr: float | None = None) -> list[str]:
    """Finished runs of this entry and regime in the store, with the regime's step budget and the entry's
    lr (or ``lr``)."""
    lr = entry.lr if lr is None else lr
    out = []
    for rec in results.load_records(store):
        t, cfg = rec.get("tags") or {}, rec.get("config") or {}
        if (rec.get("status") == "finished" and rec.get("study") == study and t.get("entry") == entry.name
                and t.get("regime") == regime.name and rec.get("seed") in set(seeds)
                and cfg.get("max_steps") == regime.steps and cfg.get("lr") == lr
                and (entry.recipe == "train" or t.get("phase") == "sparse")):
            out.append(rec["run_id"])
    return out


def costs(store: str | os.PathLike, run_ids: Iterable[str], head_params: int) -> pd.DataFrame:
    """Per run: trainable parameters, ms per optimiser step, stored size in MiB (see the module docstring).

    For LT-SFT runs the dense phase of the same seed (``phase == "dense"``, same entry and regime) is
    found in the store and its steps are counted too: the recipe trains twice."""
    ids = set(run_ids)
    recs = results.load_records(store)
    dense = {}
    for rec in recs:
        t = rec.get("tags") or {}
        if t.get("phase") == "dense" and rec.get("status") == "finished":
            dense[(t.get("entry"), t.get("regime"), rec.get("seed"))] = rec
    rows = []
    for rec in recs:
        if rec["run_id"] not in ids:
            continue
        t = rec.get("tags") or {}
        hist = pd.DataFrame(rec.get("history") or [])
        trainable = int(hist["trainable"].max()) if "trainable" in hist and len(hist) else math.nan
        tim = rec.get("timings") or {}
        secs, steps = float(tim.get("train_seconds") or math.nan), int(tim.get("steps") or 0)
        if t.get("phase") == "sparse" and "k" in t:
            k = int(t["k"])
            trainable = k + head_params
            stored = 8 * k + 4 * head_params
            d = dense.get((t.get("entry"), t.get("regime"), rec.get("seed")))
            if d is not None:
                secs += float((d.get("timings") or {}).get("train_seconds") or 0.0)
                steps += int((d.get("timings") or {}).get("steps") or 0)
        else:
            stored = 4 * trainable if np.isfinite(trainable) else math.nan
        rows.append({"run_id": rec["run_id"], "entry": t.get("entry"), "regime": t.get("regime"),
                     "seed": rec.get("seed"), "trainable": trainable, "steps": steps,
                     "ms_per_step": 1000 * secs / steps if steps else math.nan, "stored_mib": stored / 2 ** 20})
    return pd.DataFrame(rows)
