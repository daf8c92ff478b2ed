"""Intermediate-task transfer (STILTs): fine-tune on an intermediate task, carry the encoder, drop the
head, fine-tune on the target with a fresh head (docs/methods.md §8; taught in
notebooks/07_intermediate_tasks.ipynb).

A multi-phase recipe (DESIGN.md): :func:`stilts` (registry id ``"stilts"`` in
:mod:`tutorfinetune.recipes`) calls :func:`tutorfinetune.train` twice. The plug-in and the saved model
it starts from live with the other plug-ins (:mod:`tutorfinetune.methods.intermediate`). The pieces:

* :func:`train_intermediate` trains a backbone on any intermediate task (classification or
  multiple-choice) and returns an :class:`Intermediate`: the encoder's weights (everything under the
  model's base-model attribute: embeddings, blocks and, for BERT, the pooler [D]), optionally the
  classification head, and a manifest (backbone, architecture signature, task, run id, dev metrics).
  :func:`cached_intermediate` saves it (safetensors + JSON, atomically) and loads it on later calls
  with the same settings, so one intermediate model serves a whole grid of target runs (as in Chang &
  Lu, who fine-tune 36 target runs from each intermediate checkpoint).
* The ``"from-intermediate"`` plug-in (:class:`FromIntermediate`) loads those weights into a freshly
  loaded target model in ``prepare()``, before any other plug-in (stage -10), so the target phase
  composes with every plug-in that makes sense there (task adapters, scheduled unfreezing, GradDrop,
  guided dropout ...) and goes through :func:`tutorfinetune.studies.sweep` like any method: the
  intermediate model's id is part of the run's fingerprint.
* Intermediate tasks: :func:`tutorfinetune.synthetic.real_fake_task` (Chang & Lu's synthetic
  real-vs-fake task, multiple-choice), :func:`domain_task` (which domain is this text from?, from a
  task's unlabelled text), or any user :class:`~tutorfinetune.data.Task` (e.g. RTE).

What is refused, with the fix in the message: an intermediate phase that would carry nothing (task
adapters or a linear probe leave the encoder as it was), a target backbone other than the one the
intermediate model was trained from (another name, architecture or vocabulary), carrying the head
(``carry_head=True``) when the label sets differ or the intermediate head is multiple-choice.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from .. import results
from ..backbones import Backbone, backbone_for_task, is_multiple_choice
from ..config import ConfigError, TrainConfig, as_config, did_you_mean
from ..data import Task, TaskError, load_task, stratified_sample
from ..distributed import current
from ..engine import RunResult, fingerprint, train
from ..methods.base import Method, resolve
from ..methods.intermediate import (
    FORMAT,
    FromIntermediate,
    Intermediate,
    STILTsError,
    _head_state,
    backbone_signature,
    encoder_state,
    task_digest,
)
from ..synthetic import real_fake_task

__all__ = ["STILTsError", "Intermediate", "STILTsResult", "FromIntermediate", "train_intermediate",
           "cached_intermediate", "stilts", "domain_task", "task_digest", "backbone_signature", "encoder_state",
           "intermediate_tasks", "train_intermediates", "INTERMEDIATE_TASKS", "FORMAT"]

#: plug-ins whose training leaves the encoder's weights unchanged: an intermediate phase with them carries nothing
_CARRY_NOTHING = {"adapter": "a task adapter trains its own small modules and leaves the encoder frozen",
                  "linear-probe": "a linear probe trains the head only",
                  "lora": "LoRA trains low-rank matrices beside the frozen encoder (merge them into it with "
                          "tft.methods.merge_lora to carry them)"}


# --------------------------------------------------------------------------------------------
# The intermediate phase
# --------------------------------------------------------------------------------------------
def _check_intermediate_methods(methods: list[Method]) -> None:
    for m in methods:
        if m.name in _CARRY_NOTHING:
            raise STILTsError(
                f"The intermediate phase cannot use {m.name!r}: {_CARRY_NOTHING[m.name]}, so STILTs would carry the "
                "pretrained encoder unchanged. Train the intermediate task with full fine-tuning (or a plug-in that "
                f"updates the encoder's weights), and use {m.name!r} in the target phase instead.")


def _intermediate_key(backbone: str, task: Task, config: TrainConfig, methods: list[Method]) -> str:
    desc = {"backbone": backbone, "task": task.name, "digest": task_digest(task),
            "fingerprint": fingerprint(backbone, task.name, len(task.subsample_train(config.max_train_examples,
                                                                                    seed=config.seed).train),
                                       config, methods)}
    return hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:16]


def train_intermediate(
    backbone: str | Backbone,
    task: Task,
    config: TrainConfig | dict,
    methods: Iterable[Any] | str | Method | None = ("full",),
    *,
    store: str | os.PathLike | None = results.DEFAULT_STORE,
    study: str = "",
    tags: dict[str, Any] | None = None,
    verbose: bool = False,
) -> Intermediate:
    """Fine-tune ``backbone`` on the intermediate ``task`` and keep its encoder.

    Args:
        backbone: a backbone name (loaded with the head the task needs, seeded by ``config.seed``) or a
            loaded :class:`~tutorfinetune.Backbone` with the right head.
        task: any classification or multiple-choice task.
        config: the intermediate phase's settings.
        methods: plug-ins of this phase (not ``"adapter"`` or ``"linear-probe"``: they would carry nothing).
        store, study, tags: where the run is recorded (tag ``phase="intermediate"`` is added).

    Returns:
        :class:`Intermediate` with the encoder's weights and the run.
    """
    config = as_config(config)
    if not isinstance(task, Task):
        raise STILTsError(f"The intermediate task must be a Task (load_task, domain_task, real_fake_task), got "
                          f"{type(task).__name__}.")
    meths = resolve(methods)
    _check_intermediate_methods(meths)
    name = backbone if isinstance(backbone, str) else backbone.name
    key = _intermediate_key(name, task, config, meths)
    bb = backbone_for_task(backbone, task, seed=config.seed, readout=config.readout) if isinstance(backbone, str) else backbone
    signature = backbone_signature(bb.model)
    res = train(bb, task, config, meths, store=store, study=study,
                tags={**(tags or {}), "phase": "intermediate", "intermediate_task": task.name}, verbose=verbose)
    mc = is_multiple_choice(bb.model)
    meta = {"id": key, "backbone": name, "signature": signature, "task": task.name, "task_digest": task_digest(task),
            "kind": "multiple-choice" if mc else "classification", "label_names": list(task.label_names),
            "run_id": res.run_id, "metrics": res.metrics, "config": config.to_dict(),
            "methods": [m.describe() for m in meths], "seed": config.seed, "n_train": int(len(task.train)),
            "format": FORMAT}
    return Intermediate(state=encoder_state(bb.model), head=None if mc else _head_state(bb.model), meta=meta, result=res)


def cached_intermediate(
    backbone: str,
    task: Task,
    config: TrainConfig | dict,
    folder: str | os.PathLike,
    methods: Iterable[Any] | str | Method | None = ("full",),
    **kw: Any,
) -> Intermediate:
    """:func:`train_intermediate`, saved under ``<folder>/<id>`` and loaded from there when a model with the
    same settings (backbone, task data, config, methods) was trained before."""
    config = as_config(config)
    meths = resolve(methods)
    _check_intermediate_methods(meths)
    key = _intermediate_key(backbone, task, config, meths)
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in task.name)[:60]
    path = Path(folder) / f"{safe}-{key}"
    if (path / "meta.json").is_file():
        inter = Intermediate.load(path)
        if inter.id == key:
            return inter
    inter = train_intermediate(backbone, task, config, meths, **kw)
    dist = current()
    if dist.is_main:  # several processes: rank 0 writes the cache, the others wait for it
        inter.save(path)
    dist.barrier()
    return inter


# --------------------------------------------------------------------------------------------
# The recipe
# --------------------------------------------------------------------------------------------
@dataclass
class STILTsResult:
    """The two phases of a STILTs run: the :class:`Intermediate` and the target run."""

    intermediate: Intermediate
    result: RunResult
    backbone: Backbone = field(repr=False)


def stilts(
    backbone: str,
    intermediate_task: Task | None,
    target_task: Task,
    config: TrainConfig | dict,
    *,
    intermediate_config: TrainConfig | dict | None = None,
    intermediate_methods: Iterable[Any] | str | Method | None = ("full",),
    methods: Iterable[Any] | str | Method | None = ("full",),
    intermediate: Intermediate | None = None,
    carry_head: bool = False,
    store: str | os.PathLike | None = results.DEFAULT_STORE,
    study: str = "",
    tags: dict[str, Any] | None = None,
    verbose: bool = False,
) -> STILTsResult:
    """STILTs (Phang et al. 2018): pretrained → intermediate task → target task with a fresh head.

    Args:
        backbone: the backbone name, used for both phases (the target model is loaded fresh, with the
            target task's head, seeded by ``config.seed``).
        intermediate_task: the intermediate task (ignored when ``intermediate`` is given).
        target_task: the target task (classification).
        config: the target phase's settings; ``intermediate_config`` the intermediate phase's (default
            ``config``).
        intermediate_methods, methods: plug-ins of each phase; the target phase may use any plug-in
            (adapters, schedules, GradDrop, ...), the intermediate phase one that updates the encoder.
        intermediate: an :class:`Intermediate` trained before (one intermediate model, many targets).
        carry_head: keep the intermediate classification head (same labels only).

    Returns:
        :class:`STILTsResult`. Both runs are recorded in ``store``; the target run carries the tags
        ``intermediate_task`` and ``intermediate`` (the intermediate model's id).
    """
    config = as_config(config)
    if not isinstance(target_task, Task):
        raise STILTsError(f"target_task must be a Task, got {type(target_task).__name__}.")
    if target_task.multiple_choice and carry_head:
        raise STILTsError("carry_head=True needs a classification target task.")
    if intermediate is None:
        if intermediate_task is None:
            raise STILTsError("Pass an intermediate_task to train, or an intermediate model trained before.")
        intermediate = train_intermediate(backbone, intermediate_task, intermediate_config or config,
                                          intermediate_methods, store=store, study=study, tags=tags, verbose=verbose)
    elif intermediate.meta.get("backbone") != backbone:
        raise STILTsError(
            f"The intermediate model {intermediate.id} was trained from backbone {intermediate.meta.get('backbone')!r}, "
            f"but the target backbone is {backbone!r}. STILTs carries the encoder, so both phases need one backbone: "
            f"pass backbone={intermediate.meta.get('backbone')!r}, or train the intermediate task on {backbone!r}.")
    if carry_head and list(intermediate.meta.get("label_names") or []) != list(target_task.label_names):
        raise STILTsError(
            f"carry_head=True needs the same labels: intermediate task {intermediate.task!r} has "
            f"{intermediate.meta.get('label_names')}, target task {target_task.name!r} has {target_task.label_names}. "
            "Use carry_head=False: STILTs drops the intermediate head and trains a fresh one.")
    bb = backbone_for_task(backbone, target_task, seed=config.seed, readout=config.readout)
    plug = FromIntermediate(intermediate, carry_head=carry_head)
    res = train(bb, target_task, config, [plug, *resolve(methods)], store=store, study=study,
                tags={**(tags or {}), "phase": "target", "intermediate_task": intermediate.task,
                      "intermediate": intermediate.id}, verbose=verbose)
    return STILTsResult(intermediate=intermediate, result=res, backbone=bb)


# --------------------------------------------------------------------------------------------
# Intermediate tasks from bundled data
# --------------------------------------------------------------------------------------------
def domain_task(task: Task, *, lang: str | None = "en", domains: Sequence[str] | None = None, dev_fraction: float = 0.1,
                per_domain: int | None = None, seed: int = 0, name: str = "domain-classification") -> Task:
    """Which domain is this text from? A classification task built from ``task``'s *unlabelled* text
    (its sentiment labels are never used), one label per domain, with a seeded, stratified dev split.

    Args:
        task: a task with unlabelled text tagged by domain (the bundled ``reviews``).
        lang: keep texts of this language (None: all).
        domains: the domains to tell apart (default: all with text).
        per_domain: keep at most this many texts per domain (seeded).
    """
    if task.unlabelled is None or task.unlabelled.empty:
        raise TaskError(f"Task {task.name!r} has no unlabelled text to build a domain task from.")
    df = task.unlabelled
    if lang is not None:
        df = df[df["lang"] == lang]
    avail = sorted(df["domain"].unique())
    domains = list(domains) if domains is not None else avail
    unknown = [d for d in domains if d not in avail]
    if unknown:
        raise TaskError(f"No unlabelled {lang or ''} text for domains {unknown}; available: {avail}.")
    if len(domains) < 2:
        raise TaskError(f"A domain-classification task needs at least two domains, got {domains}.")
    if not 0 < dev_fraction < 1:
        raise TaskError(f"dev_fraction must be in (0, 1), got {dev_fraction}.")
    df = df[df["domain"].isin(domains)].reset_index(drop=True)
    frame = pd.DataFrame({"text": df["text"].astype(str), "label": df["domain"].map({d: i for i, d in enumerate(domains)}),
                          "domain": df["domain"], "lang": df["lang"]})
    if per_domain is not None:
        frame = pd.concat([g.sample(n=min(len(g), int(per_domain)), random_state=seed)
                           for _, g in frame.groupby("label")]).sort_index()
    dev = stratified_sample(frame, max(len(domains), int(round(dev_fraction * len(frame)))), seed=seed)
    frame["split"] = np.where(frame.index.isin(dev.index), "dev", "train")
    return Task(name=name, frame=frame.reset_index(drop=True), label_names=list(domains),
                eval_set_specs={"dev": {"split": "dev"}}, meta={"kind": "domain-classification", "source": task.name,
                                                                 "lang": lang, "seed": seed})


INTERMEDIATE_TASKS = ("real-vs-fake", "domain")


def intermediate_tasks(task: Task, names: Sequence[str] = INTERMEDIATE_TASKS, *, n_fakes: int = 3,
                       corpus: str = "unlabelled", seed: int = 0) -> dict[str, Task]:
    """The intermediate tasks notebooks 07 and 08 use, by name: ``"real-vs-fake"`` (Chang & Lu's synthetic
    task on ``task``'s unlabelled English text; ``corpus="unlabelled+train"`` adds the training texts,
    labels unused), ``"domain"`` (:func:`domain_task`), or a path to a user task (:func:`load_task`)."""
    if corpus not in ("unlabelled", "unlabelled+train"):
        raise ConfigError(f"corpus must be 'unlabelled' or 'unlabelled+train', got {corpus!r}.")
    out: dict[str, Task] = {}
    for name in names:
        if name == "real-vs-fake":
            texts = task.texts(lang="en") + (task.train["text"].tolist() if corpus == "unlabelled+train" else [])
            out[name] = real_fake_task(texts, n_fakes=n_fakes, seed=seed)
        elif name == "domain":
            out[name] = domain_task(task, seed=seed)
        elif os.path.exists(os.path.expanduser(name)):
            out[name] = load_task(name)
        else:

            raise ConfigError(f"Unknown intermediate task {name!r}.{did_you_mean(name, INTERMEDIATE_TASKS)} Use "
                              f"{list(INTERMEDIATE_TASKS)} or the path of a task file or folder.")
    return out


def train_intermediates(backbone: str, tasks: Mapping[str, Task], folder: str | os.PathLike, *, lr: float = 1e-4,
                        epochs: float = 2.0, batch_size: int = 16, max_length: int = 64, max_steps: int | None = None,
                        max_examples: int | None = None, eval_every: int = 20, max_eval_examples: int | None = None,
                        seed: int = 0, store: str | os.PathLike | None = results.DEFAULT_STORE, study: str = "",
                        select_best: bool = False) -> dict[str, Intermediate]:
    """:func:`cached_intermediate` for each task with one recipe (``epochs`` over the training rows, or
    ``max_steps``; dev accuracy every ``eval_every`` steps for the learning curve). Notebooks 07 and 08
    share it, so they share the cached models. ``select_best=True`` (the fair protocol) keeps the encoder of
    the best dev step instead of the last one (a task without a dev split keeps the last)."""
    out = {}
    for name, t in tasks.items():
        n = len(t.train) if not max_examples else min(len(t.train), int(max_examples))
        steps = max_steps or max(1, int(math.ceil(epochs * n / batch_size)))
        cfg = TrainConfig(lr=lr, batch_size=batch_size, max_length=max_length, max_steps=steps,
                          max_train_examples=max_examples or None, eval_every=max(1, min(eval_every, steps // 4)),
                          curve_eval_set="dev" if "dev" in t.eval_set_specs else next(iter(t.eval_set_specs)),
                          seed=seed, max_eval_examples=max_eval_examples,
                          select_best=bool(select_best) and "dev" in t.eval_set_specs)
        out[name] = cached_intermediate(backbone, t, cfg, folder, store=store, study=study, tags={"intermediate": name})
    return out
