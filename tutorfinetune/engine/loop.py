"""The one training loop of the project (DESIGN.md, "Engine").

``train(backbone, task, config, methods=[...])`` fine-tunes ``backbone.model`` in place and returns
a :class:`~tutorfinetune.engine.state.RunResult`. What it does, in order:

1. resolve the methods and call their ``prepare(model, blocks)`` hooks, then print the parameter
   summary (so nobody trains a "frozen" model by accident);
2. build AdamW (fused kernel where available) over every parameter that may ever train
   (methods' ``param_groups`` hooks, else everything that requires a gradient), with no weight
   decay on biases and LayerNorm weights, and a linear warm-up/decay schedule;
3. tokenise once, then for every optimiser step draw a length-grouped batch (seeded per epoch),
   pad it dynamically, run forward under bf16 autocast on GPUs, check the loss is finite,
   backward, call ``after_backward`` hooks (gradient masks), clip, step, call ``after_step`` hooks;
4. evaluate the curve set every ``eval_every`` steps (or each epoch) and every named eval set at the
   end; save checkpoints (safetensors + ``torch.load(weights_only=True)`` state) and resume from them;
5. record the run in the results store, whatever happens (finished / failed / interrupted): the
   :class:`~tutorfinetune.engine.record.RunRecorder` owns the record.

On CPU a run is deterministic: the same seed and config give the same metrics, and a run resumed
from a checkpoint ends where an uninterrupted run ends. Taught in notebooks/01_full_finetuning.ipynb.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
import torch

from ..backbones import Backbone, apply_readout, trainable_report
from ..config import TrainConfig, as_config
from ..data import Task, TaskError
from ..distributed import Dist, current
from ..env import autocast_dtype, resolve_device
from ..errors import NonFiniteLossError, TrainingError
from ..methods import Method, resolve
from ..progress import progress_bar
from ..results import DEFAULT_STORE
from .batches import Encoded, cap_rows, collate, encode, make_batches
from .checkpoints import latest_checkpoint, load_checkpoint, save_checkpoint
from .evaluation import check_head, evaluate
from .optim import build_optimizer, lr_factor, trainable_parameters
from .record import RunRecorder, fingerprint, method_name, resolved_config
from .state import RunResult, TrainState

__all__ = ["train", "evaluate_only"]


def train(
    backbone: Backbone,
    task: Task,
    config: TrainConfig | dict | None = None,
    methods: Iterable[Any] | str | Method | None = ("full",),
    *,
    store: str | os.PathLike | None = DEFAULT_STORE,
    study: str = "",
    tags: dict[str, Any] | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    resume_from: str | os.PathLike | None = None,
    verbose: bool = True,
) -> RunResult:
    """Fine-tune ``backbone.model`` on ``task`` in place, with plug-in ``methods``.

    Args:
        backbone: from :func:`tutorfinetune.load_backbone`.
        task: from :func:`tutorfinetune.load_task`.
        config: a :class:`TrainConfig` (or a dict of its fields).
        methods: method ids, :class:`~tutorfinetune.methods.Method` objects or ``(id, config)`` pairs;
            default full fine-tuning.
        store: results store folder (``None``: do not record the run).
        study: a label stored with the record (e.g. the notebook's name), for filtering.
        tags: extra fields stored with the record (e.g. ``{"regime": "low-data"}``).
        checkpoint_dir: where checkpoints go (default ``<store>/checkpoints/<fingerprint>``).
        resume_from: a checkpoint folder, ``"auto"`` (the newest in ``checkpoint_dir`` if any), or None.
        verbose: print the parameter summary and a closing line.

    Returns:
        :class:`RunResult`; the run is also recorded in ``store``.

    Raises:
        TrainingError, NonFiniteLossError, TaskError, ConfigError, MethodError: with the fix in the message.
    """
    config = _resolved(_as_config(config), backbone)
    methods = _check_run(backbone, task, config, methods)
    dist = current(resolve_device(config.device))  # one process, or this process's rank under a launcher
    dist.check_batch(config.batch_size, config.grad_accum_steps)
    device = dist.device if dist.active else resolve_device(config.device)
    task = task.subsample_train(config.max_train_examples, seed=config.seed)
    fprint = fingerprint(backbone.name, task.name, len(task.train), config, methods)
    auto_checkpoints = checkpoint_dir is None and store is not None
    if auto_checkpoints:
        checkpoint_dir = Path(store) / "checkpoints" / fprint
    elif checkpoint_dir is None and config.checkpoint_every:
        warnings.warn(f"checkpoint_every={config.checkpoint_every} but store=None and no checkpoint_dir: no "
                      "checkpoint will be written. Pass checkpoint_dir=... (or a store).", stacklevel=2)
    if not dist.is_main:  # rank 0 records the run and writes the checkpoints; the other ranks only train
        store, auto_checkpoints = None, False
    recorder = RunRecorder(store, study=study, method=method_name(methods), task=task.name, backbone=backbone.name,
                           seed=config.seed, config=config.to_dict(), methods=[m.describe() for m in methods],
                           tags=tags, device=str(device), fingerprint=fprint, world_size=dist.world_size).start()
    t_start = time.perf_counter()
    with recorder:
        state, data = _setup(backbone, task, config, methods, device, verbose and dist.is_main, dist)
        scheduler = torch.optim.lr_scheduler.LambdaLR(state.optimizer, lr_factor(config, state.total_steps))
        selection: dict = {}
        start = _resume(resume_from, checkpoint_dir, state, scheduler, methods, fprint, recorder, verbose and dist.is_main,
                        selection)
        loop = _Loop(state, data, methods, scheduler, recorder.history, checkpoint_dir, fprint)
        loop.restore_selection(selection)
        loop.run(start)
        selected = loop.select_best() if config.select_best else {}
        artifacts = {m.name: out for m in methods if (out := m.finish(state))}
        if selected.get("best_step", -1) == selected.get("final_step"):  # the best dev step is the last: the
            metrics, eval_seconds = {k: dict(v) for k, v in selected["final_metrics"].items()}, 0.0  # same weights
        else:
            metrics, eval_seconds = _final_eval(state, data, methods)
        timings = {"train_seconds": loop.train_seconds, "eval_seconds": loop.eval_seconds + eval_seconds,
                   "total_seconds": time.perf_counter() - t_start,
                   "train_samples_per_second": loop.seen / loop.train_seconds if loop.train_seconds > 0 else None,
                   "steps": (loop.stopped_at or state.total_steps) - start}
        recorder.finish(metrics, timings, artifacts, **selected)
    if auto_checkpoints and Path(checkpoint_dir).is_dir():  # finished: its default checkpoints are spent
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    if verbose and dist.is_main:
        accs = ", ".join(f"{k} {v['accuracy']:.3f}" for k, v in metrics.items())
        print(f"done in {timings['train_seconds']:.0f}s train + {timings['eval_seconds']:.0f}s eval | accuracy: {accs}")
    rec = recorder.record
    return RunResult(run_id=rec["run_id"], method=rec["method"], task=task.name, backbone=backbone.name,
                     config=config, metrics=metrics, history=pd.DataFrame(recorder.history), timings=timings,
                     versions=rec["versions"], device=str(device), artifacts=artifacts, methods=rec["methods"],
                     tags=rec["tags"], world_size=dist.world_size)


# --------------------------------------------------------------------------------------------
# The steps of train()
# --------------------------------------------------------------------------------------------
def _as_config(config: TrainConfig | dict | None) -> TrainConfig:
    if config is not None and not isinstance(config, (TrainConfig, dict)):
        raise TrainingError(f"config must be a TrainConfig or a dict, got {type(config).__name__}.")
    return as_config(config)


def _resolved(config: TrainConfig, backbone: Backbone) -> TrainConfig:
    """``readout="auto"`` resolved for this backbone, so the record (and the fingerprint) say which readout ran."""
    return resolved_config(backbone.name, config) if isinstance(backbone, Backbone) else config


def position_limit(model) -> int | None:
    """The most tokens the backbone's position embeddings can take (RoBERTa/XLM-R reserve 2), or None."""
    n = getattr(model.config, "max_position_embeddings", None)
    if n is None:
        return None
    return int(n) - 2 if getattr(model.config, "model_type", "") in ("roberta", "xlm-roberta", "camembert") else int(n)


def _check_run(backbone: Backbone, task: Task, config: TrainConfig, methods: Any) -> list[Method]:
    """Check the inputs before anything is recorded; return the resolved methods."""
    if not isinstance(backbone, Backbone):
        raise TrainingError(f"backbone must come from load_backbone(...), got {type(backbone).__name__}.")
    if not isinstance(task, Task):
        raise TrainingError(f"task must come from load_task(...), got {type(task).__name__}.")
    check_head(backbone, task)
    methods = resolve(methods)
    limit = position_limit(backbone.model)
    if limit is not None and config.max_length > limit:
        raise TrainingError(f"max_length={config.max_length} is more than {backbone.name!r} can read ({limit} "
                            f"positions); use max_length <= {limit}.")
    if task.train.empty:
        raise TaskError(f"Task {task.name!r} has no training rows (split == 'train').")
    for name in _wanted_sets(task, config) + ([config.curve_eval_set] if config.eval_every else []):
        if name not in task.eval_set_specs:
            raise TrainingError(f"Unknown eval set {name!r}; task {task.name!r} has {list(task.eval_set_specs)}.")
    if config.select_best:
        spec = task.eval_set_specs.get(config.curve_eval_set)
        if spec is None or spec.get("split") != "dev":
            raise TrainingError(
                f"select_best=True chooses the step on the curve set, which must be a dev split: curve_eval_set="
                f"{config.curve_eval_set!r} is {'not an eval set' if spec is None else f'{spec}'} of task {task.name!r}. "
                "Give the task a dev split (split == 'dev') and set curve_eval_set to it; a test set is never used "
                "to choose anything.")
    if config.curve_eval_set not in task.eval_set_specs and config.curve_eval_set != TrainConfig.curve_eval_set:
        warnings.warn(f"curve_eval_set={config.curve_eval_set!r} is not an eval set of task {task.name!r} "
                      f"({list(task.eval_set_specs)}): no learning curve will be recorded.", stacklevel=3)
    return methods


def _wanted_sets(task: Task, config: TrainConfig) -> list[str]:
    return list(config.eval_sets) or list(task.eval_set_specs)


@dataclass
class _Data:
    """A run's encoded data: the training rows, the eval sets evaluated at the end (``final``), and the
    curve set (``curve``: evaluated during training; None when the task has none)."""

    train: Encoded
    evals: dict[str, Encoded]
    final: list[str]
    curve: str | None
    tokenizer: Any


def _prepare_data(tok, task: Task, config: TrainConfig) -> _Data:
    """Tokenise the training rows and every eval set once (capped eval sets: the same rows every run)."""
    final = _wanted_sets(task, config)
    curve = config.curve_eval_set if config.curve_eval_set in task.eval_set_specs else None
    names = final + ([curve] if curve and curve not in final else [])
    evals = {name: encode(tok, cap_rows(task.eval_set(name), config.max_eval_examples), config.max_length)
             for name in names}
    for name, enc in evals.items():
        if len(enc) == 0:
            raise TaskError(f"Eval set {name!r} of task {task.name!r} is empty.")
    return _Data(encode(tok, task.train, config.max_length), evals, final, curve, tok)


def _setup(backbone: Backbone, task: Task, config: TrainConfig, methods: list[Method], device: torch.device,
           verbose: bool, dist: Dist) -> tuple[TrainState, _Data]:
    """Seed, prepare the methods (then print what trains), build the optimiser, encode the data. Under several
    processes every replica then takes rank 0's weights, and the global RNG (dropout) is seeded per rank."""
    apply_readout(backbone, config.readout)  # before the plug-ins prepare: they see the head that will train
    model = backbone.model
    state = TrainState(model=model, blocks=backbone.blocks, config=config, task=task, device=device, dist=dist)
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    model.to(device)
    model.train()
    dist.broadcast_module(model)  # several processes: the plug-ins prepare on identical weights
    for m in methods:
        m.prepare(model, backbone.blocks)
    if verbose:
        print(trainable_report(model, backbone.blocks, f"{method_name(methods)}: parameters after prepare()"))
    state.optimizer = build_optimizer(model, trainable_parameters(model, methods), config, device)
    if dist.active:
        dist.broadcast_module(model)  # and what they added (adapters, LoRA) starts identical too
        torch.manual_seed(config.seed + 1_000_003 * dist.rank)  # dropout noise differs per rank, as in any DDP run
    data = _prepare_data(backbone.tokenizer, task, config)
    state.train_data, state.pad_id = data.train, backbone.tokenizer.pad_token_id
    state.autocast_dtype = autocast_dtype(config, device)
    state.steps_per_epoch = config.steps_per_epoch(len(data.train))
    state.total_steps = config.total_steps(len(data.train))
    return state, data


def _resume(resume_from, checkpoint_dir, state: TrainState, scheduler, methods: list[Method], fprint: str,
            recorder: RunRecorder, verbose: bool, selection: dict) -> int:
    """Load the checkpoint to resume from, if any (its model selection on dev goes into ``selection``);
    return the step to start at."""
    start = 0
    if resume_from is not None:
        auto = str(resume_from) == "auto"
        ckpt = (latest_checkpoint(checkpoint_dir) if checkpoint_dir else None) if auto else Path(resume_from)
        if ckpt is not None:
            if not (ckpt / "trainer_state.pt").is_file():
                raise TrainingError(f"{ckpt} is not a checkpoint folder (no trainer_state.pt).")
            start, history = load_checkpoint(ckpt, state, scheduler, methods, fprint, selection)
            recorder.history[:] = history
            if verbose:
                print(f"Resumed from {ckpt} at step {start}/{state.total_steps}.")
    recorder.set(resumed_from_step=start)
    return start


class _Loop:
    """The optimiser steps of one run, from ``start`` to ``state.total_steps``; keeps the history rows."""

    def __init__(self, state: TrainState, data: _Data, methods: list[Method], scheduler, history: list[dict],
                 checkpoint_dir, fprint: str) -> None:
        self.state, self.data, self.methods, self.scheduler = state, data, methods, scheduler
        self.history, self.checkpoint_dir, self.fprint = history, checkpoint_dir, fprint
        self.params = [p for g in state.optimizer.param_groups for p in g["params"]]
        self.train_seconds = self.eval_seconds = 0.0
        self.seen = 0
        #: model selection on dev (``select_best``): the best dev score so far, its step, the weights then
        self.best: tuple[float, int] | None = None
        self.best_weights: list[torch.Tensor] | None = None
        self.since_best = 0
        self.stopped_at: int | None = None

    def run(self, start: int) -> None:
        st, cfg = self.state, self.state.config
        t0 = time.perf_counter()
        batches, batches_epoch = None, -1
        bar = progress_bar(total=st.total_steps, initial=start, desc=f"train {method_name(self.methods)} seed={cfg.seed}")
        for step in range(start, st.total_steps):
            epoch, b = divmod(step, st.steps_per_epoch)
            if epoch != batches_epoch:
                batches = make_batches(self.data.train.lengths, cfg.batch_size, cfg.seed, epoch, cfg.group_by_length)
                batches_epoch = epoch
            row = self.step(step, epoch, b, batches[b])
            end_of_epoch = b == st.steps_per_epoch - 1 or step == st.total_steps - 1
            last = step == st.total_steps - 1
            if self.data.curve and ((cfg.eval_every and (step + 1) % cfg.eval_every == 0)
                                    or (not cfg.eval_every and end_of_epoch) or (cfg.select_best and last)):
                row.update(self.curve_point())
                if cfg.select_best:
                    self.consider(step + 1, row[f"{self.data.curve}_accuracy"])
            self.history.append({k: (float(v) if isinstance(v, (np.floating, np.integer)) else v)
                                 for k, v in row.items()})
            if end_of_epoch:
                for m in self.methods:
                    m.on_epoch_end(st)
            if cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0 and self.checkpoint_dir:
                save_checkpoint(Path(self.checkpoint_dir), st, self.scheduler, self.methods, self.history, self.fprint,
                                selection=self.selection())
            bar.update(1)
            if (step + 1) % 10 == 0 or step == st.total_steps - 1:
                bar.set_postfix(loss=f"{row['loss']:.3f}")
            if cfg.early_stopping and self.since_best >= cfg.early_stopping:
                self.stopped_at = step + 1
                break
        bar.close()
        self.train_seconds = time.perf_counter() - t0 - self.eval_seconds

    def selection(self) -> dict | None:
        """Model selection on dev so far, for a checkpoint (None before the first dev evaluation)."""
        if self.best is None:
            return None
        return {"score": self.best[0], "step": self.best[1], "since_best": self.since_best,
                "weights": self.best_weights}

    def restore_selection(self, sel: dict) -> None:
        """Resume the model selection a checkpoint saved (the best dev step before it, and its weights)."""
        if not sel:
            return
        weights = sel.get("weights") or []
        if len(weights) != len(self.params) or any(w.shape != p.shape for w, p in zip(weights, self.params)):
            raise TrainingError("The checkpoint's best-dev-step weights do not fit this run's trainable parameters; "
                                "resume with the same methods, or start fresh with resume_from=None.")
        self.best = (float(sel["score"]), int(sel["step"]))
        self.since_best = int(sel.get("since_best", 0))
        self.best_weights = [w.to("cpu") for w in weights]

    def consider(self, step: int, score: float) -> None:
        """Model selection on dev: keep the weights of the best dev score so far (the earliest on ties)."""
        if self.best is None or score > self.best[0]:
            self.best, self.since_best = (float(score), step), 0
            self.best_weights = [p.detach().to("cpu", copy=True) for p in self.params]
        else:
            self.since_best += 1

    def select_best(self) -> dict:
        """Evaluate every eval set at the final step (kept in the record as ``final_metrics``), then put
        back the weights of the best dev step; the run's ``metrics`` are then taken there."""
        final, seconds = _final_eval(self.state, self.data, self.methods)
        self.eval_seconds += seconds
        out = {"final_metrics": final, "final_step": self.stopped_at or self.state.total_steps}
        if self.best is not None and self.best[1] != out["final_step"]:
            with torch.no_grad():
                for p, w in zip(self.params, self.best_weights):
                    p.copy_(w.to(p.device))
        if self.best is not None:
            out.update(best_step=self.best[1], best_dev=self.best[0], selected_on=self.data.curve)
        if self.stopped_at is not None:
            out["stopped_early_at"] = self.stopped_at
        return out

    def step(self, step: int, epoch: int, b: int, idx: np.ndarray) -> dict:
        """One optimiser step on the rows ``idx`` (the global batch): forward, finite-loss check, backward
        (per micro-batch of this rank's share), gradients summed over ranks, hooks, clip, step."""
        st, cfg, model, methods, dist = self.state, self.state.config, self.state.model, self.methods, self.state.dist
        st.step, st.epoch, st.row = step, epoch, {}
        for m in methods:
            m.on_step_start(st)
        pad_to = cfg.max_length if cfg.pad_to_max_length else None
        if not dist.active and cfg.grad_accum_steps == 1:  # one process, one batch: the plain step
            batch = collate(self.data.train, idx, st.pad_id, st.device, pad_to=pad_to)
            st.batch = batch
            loss = self._forward(batch)
            loss_value = float(loss.detach().float().item())
            self._check_finite(loss_value, step, epoch)
            loss.backward()
            tokens = int(batch["attention_mask"].numel())
        else:
            loss_value, tokens = self._accumulate(idx, pad_to, step, epoch)
        st.loss = loss_value
        for m in methods:
            m.after_backward(st)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)) if cfg.grad_clip > 0 else None
        lr_now = st.optimizer.param_groups[0]["lr"]
        st.optimizer.step()
        for m in methods:
            m.after_step(st)
        self.scheduler.step()
        st.optimizer.zero_grad(set_to_none=True)
        self.seen += len(idx)
        row = {"step": step + 1, "epoch": epoch + (b + 1) / st.steps_per_epoch, "loss": loss_value, "lr": lr_now,
               "grad_norm": grad_norm, "trainable": int(sum(p.numel() for p in model.parameters() if p.requires_grad)),
               "batch_tokens": tokens}
        row.update(st.row)
        return row

    def _forward(self, batch: dict) -> torch.Tensor:
        amp = self.state.autocast_dtype
        with torch.autocast(self.state.device.type, dtype=amp, enabled=amp is not None):
            return self.state.model(**batch).loss

    def _check_finite(self, loss_value: float, step: int, epoch: int) -> None:
        if not math.isfinite(loss_value):
            cfg = self.state.config
            raise NonFiniteLossError(
                f"The loss became {loss_value} at step {step + 1} (epoch {epoch + 1}). Likely fixes: lower "
                f"lr (now {cfg.lr:g}), keep grad_clip > 0 (now {cfg.grad_clip:g}), use "
                "precision='fp32', and check the inputs and labels of that batch.")

    def _accumulate(self, idx: np.ndarray, pad_to: int | None, step: int, epoch: int) -> tuple[float, int]:
        """This rank's share of the global batch in ``grad_accum_steps`` micro-batches, each loss weighted by
        its share of the global rows, then the gradients summed over ranks: the gradient of the global batch's
        mean loss, as in one process. Returns the global mean loss and the tokens of the global batch."""
        st, cfg, dist = self.state, self.state.config, self.state.dist
        mine = dist.shard(idx)
        total = torch.zeros(2, dtype=torch.float64, device=st.device)  # [weighted loss, tokens]
        for part in np.array_split(mine, cfg.grad_accum_steps):
            if len(part) == 0:
                continue
            batch = collate(self.data.train, part, st.pad_id, st.device, pad_to=pad_to)
            st.batch = batch
            loss = self._forward(batch) * (len(part) / len(idx))
            loss.backward()
            total[0] += loss.detach().double()
            total[1] += batch["attention_mask"].numel()
        total = dist.sum(total)
        loss_value = float(total[0].item())
        self._check_finite(loss_value, step, epoch)  # every rank sees the same sum, so every rank raises
        dist.sum_grads(self.params)
        return loss_value, int(total[1].item())

    def curve_point(self) -> dict:
        """Evaluate the curve set now (its accuracy and loss join this step's history row)."""
        st, curve = self.state, self.data.curve
        t0 = time.perf_counter()
        for m in self.methods:
            m.before_eval(st, curve)
        ev = evaluate(st.model, self.data.evals[curve], self.data.tokenizer, st.config, st.device, st.task.num_labels,
                      dist=st.dist)
        self.eval_seconds += time.perf_counter() - t0
        return {f"{curve}_accuracy": ev["accuracy"], f"{curve}_loss": ev["loss"]}


def _final_eval(state: TrainState, data: _Data, methods: list[Method]) -> tuple[dict, float]:
    """Every named eval set at the end of training; returns (metrics, seconds)."""
    t0 = time.perf_counter()
    metrics = {}
    for name in data.final:
        for m in methods:
            m.before_eval(state, name)
        metrics[name] = evaluate(state.model, data.evals[name], data.tokenizer, state.config, state.device,
                                 state.task.num_labels, dist=state.dist)
    return metrics, time.perf_counter() - t0


# --------------------------------------------------------------------------------------------
# Evaluation without training
# --------------------------------------------------------------------------------------------
def evaluate_only(
    backbone: Backbone,
    task: Task,
    config: TrainConfig | dict | None = None,
    *,
    method: str,
    eval_sets: Iterable[str] | None = None,
    store: str | os.PathLike | None = DEFAULT_STORE,
    study: str = "",
    tags: dict[str, Any] | None = None,
) -> dict[str, dict[str, float]]:
    """Evaluate ``backbone.model`` as it is (no training) on named eval sets and record the result
    under ``method`` like a run (``timings.steps == 0``). For models assembled without training:
    composed sparse diffs, swapped adapters. Returns eval set -> metrics."""
    config = _as_config(config)
    if not isinstance(backbone, Backbone) or not isinstance(task, Task):
        raise TrainingError("evaluate_only needs a Backbone (load_backbone) and a Task (load_task).")
    check_head(backbone, task)
    wanted = list(eval_sets or config.eval_sets or task.eval_set_specs)
    for name in wanted:
        if name not in task.eval_set_specs:
            raise TrainingError(f"Unknown eval set {name!r}; task {task.name!r} has {list(task.eval_set_specs)}.")
    dist = current(resolve_device(config.device))
    device = dist.device if dist.active else resolve_device(config.device)
    if not dist.is_main:  # several processes: every rank evaluates (the same numbers), rank 0 records
        store = None
    recorder = RunRecorder(store, study=study, method=method, task=task.name, backbone=backbone.name,
                           seed=config.seed, config=config.to_dict(), tags=tags, device=str(device))
    backbone.model.to(device)
    t0 = time.perf_counter()
    metrics = {}
    for name in wanted:
        enc = encode(backbone.tokenizer, cap_rows(task.eval_set(name), config.max_eval_examples), config.max_length)
        if len(enc) == 0:
            raise TaskError(f"Eval set {name!r} of task {task.name!r} is empty.")
        metrics[name] = evaluate(backbone.model, enc, backbone.tokenizer, config, device, task.num_labels)
    recorder.finish(metrics, {"eval_seconds": time.perf_counter() - t0, "train_seconds": 0.0, "steps": 0})
    return metrics
