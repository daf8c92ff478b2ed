"""Scheduled unfreezing (GU, LPFT, random, bottom-up, fixed order, FUN) and Fisher tracking (docs/methods.md §4).

Liu et al. (NAACL 2024, "FUN with Fisher") train task adapters with a *schedule*: the head always
trains, and the units (the task adapter inside each block, or the blocks themselves for full
fine-tuning) join the trainable set one event at a time, every ``k`` optimiser steps. Algorithm 1:

    S = {head}
    for i in 0 .. N-1:
        if i % k == 0 and some unit is frozen:  S = S ∪ SELECT(i)    # never re-freeze
        train step on S

``SELECT`` is what the schedules differ in (:data:`SCHEDULES`). ``"fun"`` computes tr(F) of every
unit, frozen ones included, on a fixed seeded set of training batches in eval mode, and unfreezes
the frozen unit with the largest value (:mod:`tutorfinetune.fisher`).

Every parameter that may ever train is in the optimiser from the start (``param_groups``); a frozen
unit has ``requires_grad=False``, so its ``.grad`` stays ``None`` and AdamW leaves it alone (no
moments, no weight decay) until it joins. We follow the paper's schedule, where layer L-2 joins at
step k, not the released code's hard-coded GU branch, where it joins at 2k.

``FisherTracker`` logs tr(F) per unit every ``every`` steps into the run history, beside any method.
Taught in notebooks/03_scheduled_unfreezing.ipynb.
"""

from __future__ import annotations

import dataclasses
import hashlib
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from torch import nn

from ..config import did_you_mean
from ..distributed import SINGLE
from ..fisher import LABEL_MODES, FisherError, find_units, fisher_trace
from .base import STAGE, UNIT_KINDS, Method, MethodConfig, MethodError, option, register

__all__ = ["SCHEDULES", "ScheduledUnfreezing", "ScheduledUnfreezingConfig", "FisherTracker", "FisherTrackerConfig",
           "ScheduleWarning", "plan_schedule", "trainability", "trainability_from_history", "schedule_methods", "auto_k", "protocol_k",
           "n_units"]

SCHEDULES = {
    "standard": "all units train from step 0 (no schedule)",
    "gu": "gradual unfreezing, top-down: the top unit first, one lower unit every k steps",
    "lpft": "linear probe then fine-tune: the head alone for k steps, then every unit at once",
    "rand": "the top unit first, then one random frozen unit every k steps",
    "gu-rev": "bottom-up: the lowest unit first, one higher unit every k steps",
    "fixed": "a given order (the first unit starts trainable), one unit every k steps",
    "fun": "the top unit first, then the frozen unit with the largest tr(F) every k steps",
}


class ScheduleWarning(UserWarning):
    """A schedule that cannot finish within the training budget."""


def _check_schedule(schedule: Any) -> str:
    if not isinstance(schedule, str) or schedule not in SCHEDULES:
        raise MethodError(f"Unknown schedule {schedule!r}.{did_you_mean(schedule, SCHEDULES)} "
                          f"Schedules: {', '.join(SCHEDULES)}.")
    return schedule


def _run_seed(*parts: Any) -> int:
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:4], "little")


def plan_schedule(schedule: str, n_units: int, k: int, order: Sequence[int] | None = None,
                  seed: int = 0) -> tuple[list[int], list[tuple[int, list[int] | None]]]:
    """The initial trainable units and the unfreezing events of a schedule.

    Units are indexed bottom (0) to top (``n_units - 1``). Returns ``(initial, events)`` with events
    ``(step, units)``; for ``"fun"`` the units of an event are ``None`` (chosen by tr(F) at run time).
    """
    _check_schedule(schedule)
    top = n_units - 1
    if n_units < 1:
        return [], []
    if schedule == "standard":
        return list(range(n_units)), []
    if schedule == "lpft":
        return [], [(k, list(range(n_units)))]
    if schedule == "gu":
        seq = list(range(top, -1, -1))
    elif schedule == "gu-rev":
        seq = list(range(n_units))
    elif schedule == "rand":
        rest = np.random.default_rng(seed).permutation(top).tolist()
        seq = [top] + [int(u) for u in rest]
    elif schedule == "fixed":
        if order is None or sorted(order) != list(range(n_units)):
            raise MethodError(f"schedule='fixed' needs order= listing each of the {n_units} units once, got {order!r}.")
        seq = [int(u) for u in order]
    else:  # fun
        return [top], [(i * k, None) for i in range(1, n_units)]
    return [seq[0]], [(i * k, [u]) for i, u in enumerate(seq[1:], start=1)]


def trainability(schedule: str, n_units: int, k: int, total_steps: int, order: Sequence[int] | None = None,
                 seed: int = 0) -> np.ndarray:
    """Boolean matrix ``[unit, step]``: which units train at each optimiser step (bottom unit first).

    For ``"fun"`` pass the order a run chose (``order=``, every unit in unfreezing order); without it
    the top-down order is shown (FUN's order is only known after training).
    """
    if schedule == "fun":
        schedule = "fixed" if order is not None else "gu"
    initial, events = plan_schedule(schedule, n_units, k, order=order, seed=seed)
    mat = np.zeros((n_units, total_steps), dtype=bool)
    for u in initial:
        mat[u, :] = True
    for step, us in events:
        for u in us or []:
            if step < total_steps:
                mat[u, step:] = True
    return mat


def trainability_from_history(history, units: Sequence[str]) -> np.ndarray:
    """Rebuild the ``[unit, step]`` matrix from a run history's ``trainable_units`` column."""
    col = history["trainable_units"].fillna("")
    return np.array([[u in str(s).split(",") for s in col] for u in units], dtype=bool)


def n_units(blocks, body: str = "adapter", include_embeddings: bool = True) -> int:
    """How many units a schedule works on: one adapter per block, or the blocks (plus embeddings)."""
    return blocks.num_blocks + (1 if body == "full" and include_embeddings else 0)


def auto_k(total_steps: int, units: int, share: float = 1 / 3) -> int:
    """An unfreezing interval for short runs: every unit trainable after about ``share`` of training
    (docs/methods.md §4: k ~ N / (3L) at small scale; the paper's k was 800 on runs of many thousand steps)."""
    return max(1, int(total_steps * share) // max(1, units))


def protocol_k(total_steps: int, units: int, warmup_steps: int = 0, train_share: float = 0.5) -> int:
    """The unfreezing interval of the fair protocol (issue 21): the first unit joins after the learning-rate
    warm-up has ended (k > warmup_steps, so the top unit's head start is not spent at a tiny lr), and the
    last one by ``1 - train_share`` of the run (every unit trains for at least ``train_share`` of it): the
    largest such k, as the papers use long intervals. Raises MethodError when no k satisfies both."""
    total, n, warm = int(total_steps), max(1, int(units)), int(warmup_steps)
    latest = int(total * (1 - train_share)) // n  # n events at k, 2k, ..., n k <= (1 - share) total
    if latest <= warm:
        raise MethodError(
            f"No unfreezing interval fits {total} steps, {n} units and {warm} warm-up steps: the first unit must join "
            f"after the warm-up (k > {warm}) and the last by step {int(total * (1 - train_share))}. Train longer "
            f"(>= {int((warm + 1) * n / (1 - train_share)) + 1} steps) or shorten the warm-up.")
    return latest


def schedule_methods(schedule: str, body: str = "adapter", k: int = 50, *, fisher_batches: int = 40,
                     label_mode: str = "sample", track_every: int | None = None, track_batches: int = 5,
                     adapter: Any = "adapter") -> list:
    """The methods list of one schedule on one body, as notebooks and sweeps use it.

    ``body`` is ``"adapter"`` (units: the task adapter of each block) or ``"full"`` (units: the
    embeddings and blocks); ``"standard"`` is the body alone. With ``track_every`` a
    :class:`FisherTracker` logs tr(F) per unit.
    """
    _check_schedule(schedule)
    if body not in ("adapter", "full"):
        raise MethodError(f"body must be 'adapter' or 'full', got {body!r}.")
    out: list = [adapter if body == "adapter" else "full"]
    if schedule != "standard":
        cfg: dict[str, Any] = {"k": int(k)}
        if schedule == "fun":
            cfg.update(fisher_batches=int(fisher_batches), label_mode=label_mode)
        out.append((schedule, cfg))
    if track_every:
        out.append(("fisher-tracker", {"every": int(track_every), "batches": int(track_batches),
                                       "label_mode": label_mode}))
    return out


def _unit_index(order: Any, names: list[str]) -> list[int]:
    if isinstance(order, str):
        order = [o.strip() for o in order.strip("[]").split(",") if o.strip()]
    out = []
    for o in order:
        if isinstance(o, str) and o.strip("'\"") in names:
            out.append(names.index(o.strip("'\"")))
        else:
            try:
                out.append(int(o))
            except (TypeError, ValueError):
                raise MethodError(f"order names unit {o!r}; units are {names} (names or indices 0..{len(names) - 1}).") from None
    return out


def _head_params(blocks) -> list[nn.Parameter]:
    return list(blocks.parameters("head"))


@dataclass(frozen=True)
class ScheduledUnfreezingConfig(MethodConfig):
    """Settings of :class:`ScheduledUnfreezing` (registry ids ``"gu"``, ``"lpft"``, ``"fun"``, ``"rand"``,
    ``"gu-rev"``, ``"fixed"``: one per schedule, each with its own config class)."""

    schedule: str = option("gu", "which units join when: " + "; ".join(f"{k}: {v}" for k, v in SCHEDULES.items()),
                           choices=SCHEDULES)
    k: int = option(50, "unfreezing interval in optimiser steps, >= 1 (the paper searched 25-1000; 800 typical)")
    order: tuple | str | None = option(None, "for 'fixed': every unit once, in unfreezing order (names such as "
                                       "'adapter3' or indices, bottom unit 0); the first starts trainable")
    units: str = option("auto", "what a unit is: " + "; ".join(f"{k}: {v}" for k, v in UNIT_KINDS.items()),
                        choices=UNIT_KINDS)
    adapter_name: str = option("task", "the task adapter whose per-block parts are the units")
    include_embeddings: bool = option(True, "in blocks mode, the embeddings are the lowest unit")
    fisher_batches: int = option(40, "FUN: training batches per tr(F) estimate, >= 1 (the paper: 40)")
    fun_score: str = option("trace", "FUN: how a unit is scored: 'trace' (tr(F), the sum over its parameters: the "
                            "paper) or 'per-parameter' (tr(F) / its parameter count, so the embeddings do not win "
                            "by size alone) [D]", choices=("trace", "per-parameter"))
    label_mode: str = option("sample", "FUN: labels of the Fisher estimate: 'sample' (the paper), 'argmax' (the "
                             "authors' code) or 'empirical' (the gold labels)", choices=LABEL_MODES)
    seed: int | None = option(None, "seeds the random order of 'rand' and FUN's label sampling (None: the run seed)")
    verbose: bool = option(False, "print the units and each unfreezing event")

    def validate(self) -> None:
        if self.k < 1:
            raise MethodError(f"k (the unfreezing interval, in optimiser steps) must be >= 1, got {self.k}.")
        if self.fisher_batches < 1:
            raise MethodError(f"fisher_batches must be >= 1, got {self.fisher_batches}.")
        if self.schedule == "fixed" and self.order is None:
            raise MethodError("schedule='fixed' needs order=[...]: every unit once, the first starts trainable.")
        if self.order is not None and not isinstance(self.order, str):
            if not isinstance(self.order, (list, tuple)):
                raise MethodError(f"order must list the units (names or indices), got {self.order!r}.")
            self._set("order", tuple(self.order))


class ScheduledUnfreezing(Method):
    """Generalised scheduled unfreezing (docs/methods.md §4, Algorithm 1 of Liu et al. 2024); options:
    :class:`ScheduledUnfreezingConfig`. Registered once per schedule (``"gu"``, ``"fun"``, ...); this
    class takes ``schedule=`` itself."""

    Config = ScheduledUnfreezingConfig
    stage = STAGE["schedule"]
    excludes = {
        "schedules-units": "Two unfreezing schedules in one run ({me!r} and {other!r}): pick one.",
        "head-only": "{other!r} freezes every unit for good; use the schedule 'lpft' instead of combining it "
                     "with {me!r}.",
    }

    def __init__(self, *args: Any, **config: Any) -> None:
        super().__init__(*args, **config)
        self.name = self.config.schedule
        self.unit_params: dict[str, list[nn.Parameter]] = {}
        self.unit_names: list[str] = []
        self.trainable: set[int] = set()
        self.events: list[dict] = []
        self.plan: list[tuple[int, list[int] | None]] | None = None
        self.initial: list[int] = []
        self.model = None
        self.blocks = None
        self._warned = False
        self._warned_warmup = False
        self._started = False

    @property
    def traits(self) -> frozenset[str]:
        c = self.config
        return frozenset({"schedules-units", *(("schedules-embeddings",) if c.units != "adapters"
                                                and c.include_embeddings else ())})

    @property
    def schedule(self) -> str:
        return self.config.schedule

    @property
    def k(self) -> int:
        return self.config.k

    @property
    def verbose(self) -> bool:
        return self.config.verbose

    def describe(self) -> dict[str, Any]:
        c = self.config
        out: dict[str, Any] = {"name": self.name, "schedule": c.schedule, "k": c.k, "units": c.units,
                               "adapter_name": c.adapter_name}
        if c.units != "adapters":
            out["include_embeddings"] = c.include_embeddings
        if c.order is not None:
            out["order"] = c.order if isinstance(c.order, str) else list(c.order)
        if c.schedule == "fun":
            out.update(fisher_batches=c.fisher_batches, label_mode=c.label_mode)
            if c.fun_score != "trace":  # only when set, so runs without it keep their fingerprints
                out["fun_score"] = c.fun_score
        if c.seed is not None:
            out["seed"] = c.seed
        return out

    # set-up ----------------------------------------------------------------------------------
    def _set(self, idx: int, on: bool) -> None:
        for p in self.unit_params[self.unit_names[idx]]:
            p.requires_grad_(on)

    def prepare(self, model: nn.Module, blocks) -> None:
        try:
            self.unit_params = find_units(model, blocks, self.config.units, self.config.adapter_name,
                                          self.config.include_embeddings)
        except FisherError as e:
            raise MethodError(str(e)) from None
        self.unit_names = list(self.unit_params)
        n = len(self.unit_names)
        if self.schedule == "fun" and n < 2:
            raise MethodError(f"FUN needs at least two units to choose between; this model has {self.unit_names}.")
        order = _unit_index(self.config.order, self.unit_names) if self.config.order is not None else None
        self.initial, self.plan = plan_schedule(self.schedule, n, self.k, order=order, seed=0)
        self.model, self.blocks = model, blocks
        for i in range(n):
            self._set(i, False)
        for p in _head_params(blocks):
            p.requires_grad_(True)
        self.trainable = set(self.initial)
        for i in self.initial:
            self._set(i, True)
        self.events = [{"step": 0, "units": [self.unit_names[i] for i in self.initial]}]
        self._started = False
        if self.verbose:
            print(f"{self.name}: units bottom to top {self.unit_names}; trainable at step 0: "
                  f"head + {[self.unit_names[i] for i in self.initial] or 'nothing else'}")

    def param_groups(self, model: nn.Module):
        seen: dict[int, nn.Parameter] = {}
        for ps in self.unit_params.values():
            for p in ps:
                seen[id(p)] = p
        for p in _head_params(self.blocks):
            seen[id(p)] = p
        return list(seen.values())

    # the schedule ----------------------------------------------------------------------------
    def _seed(self, state) -> int:
        return int(self.config.seed if self.config.seed is not None else state.config.seed)

    def _start(self, state) -> None:
        if self.schedule == "rand":  # the random order depends on the run seed
            self.initial, self.plan = plan_schedule("rand", len(self.unit_names), self.k, seed=self._seed(state))
        total = int(state.total_steps or 0)
        cfg = getattr(state, "config", None)
        warm = int(round(float(getattr(cfg, "warmup", 0.0) or 0.0) * total)) if total else 0
        if self.plan and warm and self.plan[0][0] < warm and not self._warned_warmup:
            warnings.warn(
                f"Schedule {self.name!r}: the first unit joins at step {self.plan[0][0]}, inside the learning-rate "
                f"warm-up ({warm} steps), so the units trainable from the start get little head start at a tiny lr. "
                "Use k > the warm-up steps (tutorfinetune.methods.unfreezing.protocol_k) or warmup=0.",
                ScheduleWarning, stacklevel=3)
            self._warned_warmup = True
        late = [(s, us) for s, us in self.plan if s >= total] if total else []
        if late and not self._warned:
            n_late = sum(len(us) if us is not None else 1 for _, us in late)
            events = len(self.plan)
            best = (total - 1) // events if events else total
            warnings.warn(
                f"Schedule {self.name!r} with k={self.k} and {total} optimiser steps: {n_late} of "
                f"{len(self.unit_names)} units never unfreeze (the last event would be at step {self.plan[-1][0]}). "
                f"Use k <= {max(1, best)} or train for at least {self.plan[-1][0] + 1} steps.",
                ScheduleWarning, stacklevel=3)
            self._warned = True

    def on_step_start(self, state) -> None:
        if self.plan is None:
            raise MethodError(f"{self.name}: prepare(model, blocks) was not called before training.")
        if not self._started:
            self._started = True
            self._start(state)
        step = state.step
        frozen = [i for i in range(len(self.unit_names)) if i not in self.trainable]
        if step > 0 and step % self.k == 0 and frozen:
            chosen: list[int] = []
            scores: dict[str, float] | None = None
            if self.schedule == "fun":
                batches = state.fixed_batches(self.config.fisher_batches)
                scores = fisher_trace(self.model, batches, self.unit_params, label_mode=self.config.label_mode,
                                      seed=_run_seed(self._seed(state), step),
                                      autocast_dtype=getattr(state, "autocast_dtype", None))
                dist = getattr(state, "dist", SINGLE)
                scores = dist.mean(scores)  # several processes: one estimate, averaged over ranks, before deciding
                if self.config.fun_score == "per-parameter":
                    scores = {u: v / max(1, sum(p.numel() for p in self.unit_params[u])) for u, v in scores.items()}
                best = dist.broadcast_object(max(frozen, key=lambda i: scores[self.unit_names[i]]))  # rank 0 decides
                chosen = [best]
                state.log(**{f"fun_trF:{u}": v for u, v in scores.items()})
            else:
                for s, us in self.plan:
                    if s == step:
                        chosen = [u for u in (us or []) if u not in self.trainable]
            for i in chosen:
                self._set(i, True)
                self.trainable.add(i)
            if chosen:
                names = [self.unit_names[i] for i in chosen]
                ev: dict[str, Any] = {"step": step, "units": names}
                if scores is not None:
                    ev["trF"] = scores
                self.events.append(ev)
                state.log(unfrozen=",".join(names))
                if self.verbose:
                    print(f"step {step}: unfroze {names}")
        state.log(trainable_units=",".join(self.unit_names[i] for i in sorted(self.trainable)))

    def unfreeze_order(self) -> list[str]:
        """Units in the order they joined (initial ones first)."""
        return [u for ev in self.events for u in ev["units"]]

    def finish(self, state) -> dict:
        return {"schedule": self.schedule, "k": self.k, "units": self.unit_names,
                "unit_kind": "adapter" if self.unit_names and self.unit_names[0].startswith("adapter") else "block",
                "events": self.events, "order": self.unfreeze_order(),
                "label_mode": self.config.label_mode if self.schedule == "fun" else None}

    def state_dict(self) -> dict:
        return {"trainable": sorted(self.trainable), "events": self.events,
                "plan": [[s, us] for s, us in (self.plan or [])]}

    def load_state_dict(self, state: dict) -> None:
        self.trainable = set(int(i) for i in state["trainable"])
        self.events = list(state["events"])
        self.plan = [(int(s), us) for s, us in state["plan"]]
        self._started = True
        for i in range(len(self.unit_names)):
            self._set(i, i in self.trainable)


def _schedule_class(sid: str) -> type:
    """The plug-in registered as ``sid``: :class:`ScheduledUnfreezing` with ``schedule`` fixed to ``sid``."""

    def validate(self) -> None:
        if self.schedule != sid:
            raise MethodError(f"Method {sid!r} is the schedule {sid!r}; use ScheduledUnfreezing(schedule=...) to pick "
                              "another.")
        ScheduledUnfreezingConfig.validate(self)

    suffix = sid.replace("-", "_")
    cfg = dataclasses.make_dataclass(
        f"ScheduledUnfreezingConfig_{suffix}", [("schedule", str, option(sid, f"fixed: {SCHEDULES[sid]}"))],
        bases=(ScheduledUnfreezingConfig,), frozen=True,
        namespace={"validate": validate, "__doc__": f"Settings of the {sid!r} schedule ({SCHEDULES[sid]})."})
    cls = type(f"ScheduledUnfreezing_{suffix}", (ScheduledUnfreezing,),
               {"Config": cfg, "__doc__": f"Scheduled unfreezing, schedule {sid!r}: {SCHEDULES[sid]}."})
    for c in (cfg, cls):  # importable by name, like any class of this module
        c.__module__ = __name__
        globals()[c.__name__] = c
    return register(sid)(cls)


for _sid in ("gu", "lpft", "fun", "rand", "gu-rev", "fixed"):
    _schedule_class(_sid)


@dataclass(frozen=True)
class FisherTrackerConfig(MethodConfig):
    """Settings of :class:`FisherTracker` (registry id ``"fisher-tracker"``)."""

    every: int = option(100, "optimiser steps between estimates (step 0 included), >= 1")
    batches: int = option(10, "training batches per estimate (a fixed seeded set, the same at every estimate), >= 1")
    label_mode: str = option("sample", "labels of the Fisher estimate: 'sample', 'argmax' or 'empirical' "
                             "(see tutorfinetune.fisher)", choices=LABEL_MODES)
    units: str = option("auto", "what a unit is: " + "; ".join(f"{k}: {v}" for k, v in UNIT_KINDS.items()),
                        choices=UNIT_KINDS)
    adapter_name: str = option("task", "the task adapter whose per-block parts are the units")
    include_embeddings: bool = option(True, "in blocks mode, the embeddings are the lowest unit")

    def validate(self) -> None:
        if self.every < 1 or self.batches < 1:
            raise MethodError(f"every and batches must be >= 1, got every={self.every}, batches={self.batches}.")


@register("fisher-tracker")
class FisherTracker(Method):
    """Log tr(F) of every unit every ``every`` optimiser steps into the run history (options:
    :class:`FisherTrackerConfig`).

    Columns ``trF:<unit>`` for each unit, ``trF_trainable`` (the sum over trainable units divided by
    their number, the paper's curve) and ``trF_total``. Costs about ``batches / every`` extra
    forward+backward passes per step. The default, 10 batches every 100 steps, keeps the paper's
    time resolution at about a quarter of its cost (measured 1.08-1.09x on CPU against the paper's
    40 batches at 1.3x); 10 batches estimate tr(F) within the spread of 40-batch estimates with
    sampled labels, 5 batches rank the units the same but miss the level by about a third
    (benchmarks/README.md).
    """

    name = "fisher-tracker"
    Config = FisherTrackerConfig
    stage = STAGE["watch"]
    traits = frozenset({"tracks-fisher"})
    unique = True
    unique_message = ("Two Fisher trackers in one run: use one ({me!r}: every= sets how often it measures, "
                      "batches= how precisely).")

    def __init__(self, *args: Any, **config: Any) -> None:
        super().__init__(*args, **config)
        self.unit_params: dict[str, list[nn.Parameter]] = {}
        self.model = None

    def prepare(self, model: nn.Module, blocks) -> None:
        try:
            self.unit_params = find_units(model, blocks, self.config.units, self.config.adapter_name,
                                          self.config.include_embeddings)
        except FisherError as e:
            raise MethodError(str(e)) from None
        self.model = model

    def measure(self, state) -> dict[str, float]:
        """tr(F) per unit now (averaged over ranks when several processes train: the same numbers on every rank)."""
        scores = fisher_trace(self.model, state.fixed_batches(self.config.batches), self.unit_params,
                              label_mode=self.config.label_mode, seed=_run_seed(state.config.seed, state.step, "track"),
                              autocast_dtype=getattr(state, "autocast_dtype", None))
        return getattr(state, "dist", SINGLE).mean(scores)

    def on_step_start(self, state) -> None:
        if state.step % self.config.every:
            return
        scores = self.measure(state)
        live = [u for u, ps in self.unit_params.items() if any(p.requires_grad for p in ps)]
        state.log(**{f"trF:{u}": v for u, v in scores.items()},
                  trF_trainable=(sum(scores[u] for u in live) / len(live)) if live else 0.0,
                  trF_total=sum(scores.values()))
