"""Intermediate-task transfer (STILTs): fine-tune on an intermediate task, carry the encoder, drop the
head, fine-tune on the target with a fresh head (METHODS.md §5; taught in
notebooks/07_intermediate_tasks.ipynb).

A multi-phase recipe (DESIGN.md): :func:`stilts` (registry id ``"stilts"`` in
:mod:`tutorfinetune.recipes`) calls :func:`tutorfinetune.train` twice. The pieces are usable alone:

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
  guided dropout ...) and goes through :func:`tutorfinetune.study.sweep` like any method: the
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
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from . import results
from .backbones import Backbone, backbone_for_task, is_multiple_choice
from .config import TrainConfig
from .data import Task, TaskError, stratified_sample
from .engine import RunResult, fingerprint, train
from .methods.base import Method, MethodError, register, resolve

__all__ = ["STILTsError", "Intermediate", "STILTsResult", "FromIntermediate", "train_intermediate",
           "cached_intermediate", "stilts", "domain_task", "task_digest", "backbone_signature", "encoder_state",
           "intermediate_tasks", "train_intermediates", "INTERMEDIATE_TASKS", "FORMAT"]

FORMAT = "tutorfinetune.intermediate/1"
#: plug-ins whose training leaves the encoder's weights unchanged: an intermediate phase with them carries nothing
_CARRY_NOTHING = {"adapter": "a task adapter trains its own small modules and leaves the encoder frozen",
                  "linear-probe": "a linear probe trains the head only"}


class STILTsError(ValueError):
    """An intermediate model that cannot be carried to this target; the message says what to change."""


# --------------------------------------------------------------------------------------------
# Identity: what makes two backbones "the same" for carrying weights
# --------------------------------------------------------------------------------------------
_SIGNATURE_FIELDS = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                     "vocab_size", "max_position_embeddings", "type_vocab_size")


def backbone_signature(model: nn.Module) -> dict[str, Any]:
    """Architecture and checkpoint of a model (its config's shape fields and ``name_or_path``), the same for
    the classification and the multiple-choice head on one checkpoint."""
    cfg = model.config
    sig = {k: getattr(cfg, k, None) for k in _SIGNATURE_FIELDS}
    sig["name_or_path"] = str(getattr(cfg, "_name_or_path", "") or "")
    return sig


def _describe_signature(sig: dict[str, Any]) -> str:
    where = sig.get("name_or_path") or "a model built from a config"
    return (f"{sig.get('model_type')} with {sig.get('num_hidden_layers')} blocks of width {sig.get('hidden_size')}, "
            f"vocabulary {sig.get('vocab_size')}, from {where}")


def task_digest(task: Task) -> str:
    """A short hash of a task's training rows (text, pair, choices, label) and label names: two tasks
    with one name but other data (another seed of the synthetic task) get other digests."""
    h = hashlib.sha256(json.dumps(list(task.label_names)).encode())
    tr = task.train
    cols = [c for c in ("text", "text_pair", "choices", "label") if c in tr.columns]
    for row in tr[cols].itertuples(index=False):
        h.update(json.dumps([str(v) if not isinstance(v, list) else v for v in row], ensure_ascii=False).encode())
        h.update(b"\x00")
    return h.hexdigest()[:16]


def encoder_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Copies (on the CPU) of the weights under the model's base-model attribute (BERT: ``model.bert``)."""
    base = getattr(model, model.base_model_prefix, None)
    if base is None:
        raise STILTsError(f"{type(model).__name__} has no base model {model.base_model_prefix!r} to carry.")
    return {k: v.detach().cpu().clone() for k, v in base.state_dict().items()}


def _head_state(model: nn.Module) -> dict[str, torch.Tensor]:
    prefix = model.base_model_prefix
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if not k.startswith(prefix + ".")}


# --------------------------------------------------------------------------------------------
# The intermediate model
# --------------------------------------------------------------------------------------------
@dataclass
class Intermediate:
    """An encoder fine-tuned on an intermediate task, ready to be carried to a target task.

    Attributes:
        state: the encoder's weights (base-model state dict, CPU tensors).
        head: the intermediate head's weights (for ``carry_head``), or ``None``.
        meta: ``id``, ``backbone``, ``signature``, ``task``, ``task_digest``, ``kind``
            (``"classification"``/``"multiple-choice"``), ``label_names``, ``run_id``, ``metrics``,
            ``config``, ``methods``, ``seed``, ``format``.
        result: the intermediate run (``None`` when loaded from disk).
    """

    state: dict[str, torch.Tensor]
    head: dict[str, torch.Tensor] | None
    meta: dict[str, Any]
    result: RunResult | None = field(default=None, repr=False)

    @property
    def id(self) -> str:
        return str(self.meta["id"])

    @property
    def task(self) -> str:
        return str(self.meta.get("task", ""))

    def dev_accuracy(self, eval_set: str = "dev") -> float:
        """Accuracy of the intermediate model on one of its task's eval sets (NaN if not evaluated)."""
        return float((self.meta.get("metrics") or {}).get(eval_set, {}).get("accuracy", float("nan")))

    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``encoder.safetensors`` (+ ``head.safetensors``) and ``meta.json`` into ``folder``
        atomically: a reader sees the old folder or the complete new one."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = folder.parent / f".tmp-{folder.name}-{uuid.uuid4().hex[:6]}"
        tmp.mkdir()
        try:
            save_file({k: v.contiguous() for k, v in self.state.items()}, str(tmp / "encoder.safetensors"))
            if self.head:
                save_file({k: v.contiguous() for k, v in self.head.items()}, str(tmp / "head.safetensors"))
            (tmp / "meta.json").write_text(json.dumps({**self.meta, "format": FORMAT}, indent=1, default=str))
            if folder.exists():
                shutil.rmtree(folder)
            os.replace(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "Intermediate":
        """Read a folder written by :meth:`save`; a missing or damaged file is a clear STILTsError."""
        from safetensors.torch import load_file

        folder = Path(folder)
        meta_path, enc_path = folder / "meta.json", folder / "encoder.safetensors"
        if not meta_path.is_file() or not enc_path.is_file():
            raise STILTsError(f"{folder} is not an intermediate model (needs meta.json and encoder.safetensors).")
        try:
            meta = json.loads(meta_path.read_text())
            state = load_file(str(enc_path))
            head = load_file(str(folder / "head.safetensors")) if (folder / "head.safetensors").is_file() else None
        except Exception as e:  # OSError, JSON errors, safetensors' own error type for a truncated file
            raise STILTsError(f"Cannot read the intermediate model in {folder} ({type(e).__name__}: {e}); delete "
                              "the folder and train it again.") from None
        if meta.get("format") != FORMAT or "id" not in meta:
            raise STILTsError(f"{folder}/meta.json is not a {FORMAT} manifest; delete the folder and train again.")
        return cls(state=state, head=head, meta=meta)

    def __repr__(self) -> str:
        return (f"Intermediate({self.id}, task={self.task!r}, backbone={self.meta.get('backbone')!r}, "
                f"kind={self.meta.get('kind')}, dev accuracy={self.dev_accuracy():.3f})")


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
    if isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    if not isinstance(task, Task):
        raise STILTsError(f"The intermediate task must be a Task (load_task, domain_task, real_fake_task), got "
                          f"{type(task).__name__}.")
    meths = resolve(methods)
    _check_intermediate_methods(meths)
    name = backbone if isinstance(backbone, str) else backbone.name
    key = _intermediate_key(name, task, config, meths)
    bb = backbone_for_task(backbone, task, seed=config.seed) if isinstance(backbone, str) else backbone
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
    if isinstance(config, dict):
        config = TrainConfig.from_dict(config)
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
    inter.save(path)
    return inter


# --------------------------------------------------------------------------------------------
# The plug-in that starts a target run from an intermediate model
# --------------------------------------------------------------------------------------------
@register("from-intermediate")
class FromIntermediate(Method):
    """Start from an intermediate model's encoder (STILTs' second phase); the head stays freshly
    initialised unless ``carry_head=True``.

    Args:
        intermediate: an :class:`Intermediate`, or the folder one was saved in.
        carry_head: also copy the intermediate classification head (label sets must be equal).
        check_backbone: refuse a target model whose architecture or checkpoint differs from the one
            the intermediate model was trained from (default; turn off only for the same model under
            another path).
        carry_pooler: also carry BERT's pooler (default [D]: it is part of the base model, and Phang
            et al. replace only the output layer); False keeps the target's pretrained pooler (an ablation).
    """

    name = "from-intermediate"
    stage = -10  # before adapters (0) and schedules (10): they see the carried encoder

    def __init__(self, intermediate: Intermediate | str | os.PathLike, carry_head: bool = False,
                 check_backbone: bool = True, carry_pooler: bool = True) -> None:
        if isinstance(intermediate, (str, os.PathLike)):
            intermediate = Intermediate.load(intermediate)
        if not isinstance(intermediate, Intermediate):
            raise MethodError(f"'from-intermediate' needs an Intermediate (train_intermediate) or its folder, got "
                              f"{type(intermediate).__name__}.")
        super().__init__(intermediate=intermediate.id, carry_head=bool(carry_head), check_backbone=bool(check_backbone),
                         carry_pooler=bool(carry_pooler))
        self.intermediate = intermediate
        self.carry_head = bool(carry_head)
        self.check_backbone = bool(check_backbone)
        self.carry_pooler = bool(carry_pooler)

    def describe(self) -> dict[str, Any]:
        out = {"name": self.name, "intermediate": self.intermediate.id, "intermediate_task": self.intermediate.task,
               "carry_head": self.carry_head}
        if not self.carry_pooler:  # only when set, so that runs with the default keep their fingerprints
            out["carry_pooler"] = False
        return out

    def check_compatible(self, others: list[Method]) -> None:
        if any(isinstance(o, FromIntermediate) for o in others):
            raise MethodError("Two 'from-intermediate' plug-ins: a target run starts from one intermediate model.")

    @torch.no_grad()
    def prepare(self, model: nn.Module, blocks) -> None:
        inter = self.intermediate
        sig = backbone_signature(model)
        if self.check_backbone and sig != inter.meta.get("signature"):
            raise STILTsError(
                f"The intermediate model {inter.id} ({inter.task!r}) was trained from backbone "
                f"{inter.meta.get('backbone')!r} ({_describe_signature(inter.meta.get('signature') or {})}), but the "
                f"target model is {_describe_signature(sig)}. Load the target with "
                f"load_backbone({inter.meta.get('backbone')!r}, ...), or train the intermediate task on this backbone.")
        base = getattr(model, model.base_model_prefix)
        own = base.state_dict()
        missing, extra = sorted(set(own) - set(inter.state)), sorted(set(inter.state) - set(own))
        shapes = [k for k in own if k in inter.state and tuple(own[k].shape) != tuple(inter.state[k].shape)]
        if missing or extra or shapes:
            raise STILTsError(
                f"The intermediate encoder does not fit this model: missing {missing[:3]}, unexpected {extra[:3]}, "
                f"other shapes {shapes[:3]}. Use the backbone it was trained from ({inter.meta.get('backbone')!r}).")
        for k, t in own.items():
            if self.carry_pooler or not k.startswith("pooler."):
                t.copy_(inter.state[k].to(t.device, t.dtype))
        if self.carry_head:
            if inter.head is None:
                raise STILTsError(
                    f"carry_head=True, but the intermediate model {inter.id} has a {inter.meta.get('kind')} head, "
                    "which scores choices and cannot serve as a classifier. Use carry_head=False (a fresh head, as "
                    "STILTs does).")
            if is_multiple_choice(model):
                raise STILTsError("carry_head=True needs a classification target; this target model is multiple-choice.")
            names = [str(model.config.id2label[i]) for i in range(int(model.config.num_labels))]
            if names != list(inter.meta.get("label_names") or []):
                raise STILTsError(
                    f"carry_head=True needs the same labels: the intermediate task {inter.task!r} has "
                    f"{inter.meta.get('label_names')}, the target head has {names}. Use carry_head=False (a fresh head).")
            sd = model.state_dict()
            for k, t in inter.head.items():
                if k not in sd or tuple(sd[k].shape) != tuple(t.shape):
                    raise STILTsError(f"The intermediate head ({k}) does not fit the target head; use carry_head=False.")
                sd[k].copy_(t.to(sd[k].device, sd[k].dtype))


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
    if isinstance(config, dict):
        config = TrainConfig.from_dict(config)
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
    bb = backbone_for_task(backbone, target_task, seed=config.seed)
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
    from .config import ConfigError
    from .data import load_task
    from .synthetic import real_fake_task

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
            from .config import did_you_mean

            raise ConfigError(f"Unknown intermediate task {name!r}.{did_you_mean(name, INTERMEDIATE_TASKS)} Use "
                              f"{list(INTERMEDIATE_TASKS)} or the path of a task file or folder.")
    return out


def train_intermediates(backbone: str, tasks: Mapping[str, Task], folder: str | os.PathLike, *, lr: float = 1e-4,
                        epochs: float = 2.0, batch_size: int = 16, max_length: int = 64, max_steps: int | None = None,
                        max_examples: int | None = None, eval_every: int = 20, max_eval_examples: int | None = None,
                        seed: int = 0, store: str | os.PathLike | None = results.DEFAULT_STORE, study: str = "",
                        ) -> dict[str, Intermediate]:
    """:func:`cached_intermediate` for each task with one recipe (``epochs`` over the training rows, or
    ``max_steps``; dev accuracy every ``eval_every`` steps for the learning curve). Notebooks 07 and 08
    share it, so they share the cached models."""
    out = {}
    for name, t in tasks.items():
        n = len(t.train) if not max_examples else min(len(t.train), int(max_examples))
        steps = max_steps or max(1, int(math.ceil(epochs * n / batch_size)))
        cfg = TrainConfig(lr=lr, batch_size=batch_size, max_length=max_length, max_steps=steps,
                          max_train_examples=max_examples or None, eval_every=max(1, min(eval_every, steps // 4)),
                          curve_eval_set="dev" if "dev" in t.eval_set_specs else next(iter(t.eval_set_specs)),
                          seed=seed, max_eval_examples=max_eval_examples)
        out[name] = cached_intermediate(backbone, t, cfg, folder, store=store, study=study, tags={"intermediate": name})
    return out
