"""Hugging Face ``Trainer`` bridge: run tutorfinetune plug-ins inside your own Trainer.

One public :class:`transformers.TrainerCallback`, no private overrides (DESIGN.md, "Methods are
plug-ins"; CONVENTIONS.md on composable-sft)::

    bridge = MethodsCallback(["freeze-embeddings"], grad_clip=1.0)
    bridge.prepare(model)                                   # before the Trainer builds its optimiser
    args = TrainingArguments(..., max_grad_norm=0.0)        # the bridge clips, after the masks
    trainer = Trainer(model=model, args=args, train_dataset=ds, callbacks=[bridge],
                      optimizers=(bridge.create_optimizer(model, args), None))
    trainer.train()

Why the optimiser comes from the bridge: ``Trainer.create_optimizer`` keeps only the parameters that
require a gradient when it runs, so a unit unfrozen later (scheduled unfreezing) would never train
(docs/methods.md §0). Why ``max_grad_norm=0``: the Trainer clips before ``on_pre_optimizer_step``, but
gradient masks must come before clipping; the bridge applies the methods' ``after_backward`` hooks
and then clips to ``grad_clip`` itself. With ``max_grad_norm > 0`` it warns and leaves the order as
the Trainer has it.

**Several processes** (``accelerate launch`` / ``torchrun`` with the Trainer's own DDP): the Trainer's
DDP averages the gradients of the parameters that required a gradient when it wrapped the model; a
unit a schedule unfreezes later is averaged by the bridge before the methods' gradient hooks, Fisher
estimates are averaged over ranks before a schedule decides, and masks come from generators seeded
alike on every rank, so the replicas stay identical (``tests/test_distributed.py``). Weights the
plug-ins add (adapters, LoRA) start from the same seed on every rank; the Trainer's DDP broadcasts
rank 0's weights when it wraps the model.
"""

from __future__ import annotations

import warnings
from typing import Any, Iterable

import torch
from transformers import TrainerCallback

from .backbones import block_map, trainable_report
from .config import TrainConfig
from .distributed import current
from .engine import TrainState, build_optimizer, trainable_parameters
from .methods import Method, resolve

__all__ = ["MethodsCallback"]


class MethodsCallback(TrainerCallback):
    """Calls tutorfinetune method hooks at the Trainer's matching events.

    Args:
        methods: method ids, Method objects or ``(id, config)`` pairs.
        grad_clip: global gradient-norm clip applied after the methods' ``after_backward`` hooks
            (set the Trainer's ``max_grad_norm=0``); 0 turns it off.
    """

    def __init__(self, methods: Iterable[Any] | str | Method, grad_clip: float = 1.0) -> None:
        self.methods = resolve(methods)
        self.grad_clip = float(grad_clip)
        self.model = None
        self.blocks = None
        self.state: TrainState | None = None
        self.artifacts: dict[str, Any] = {}
        self.history: list[dict] = []
        self._synced: set[int] = set()

    # set-up ----------------------------------------------------------------------------------
    def prepare(self, model, blocks=None, verbose: bool = True) -> "MethodsCallback":
        """Run the methods' ``prepare`` hooks on ``model`` (call before building the Trainer)."""
        self.model = model
        self.blocks = blocks if blocks is not None else block_map(model)
        for m in self.methods:
            m.prepare(model, self.blocks)
        if verbose:
            names = "+".join(m.name for m in self.methods)
            print(trainable_report(model, self.blocks, f"{names}: parameters after prepare()"))
        return self

    def create_optimizer(self, model, args) -> torch.optim.Optimizer:
        """AdamW over every parameter that may ever train, with the Trainer's lr and weight decay."""
        if self.model is None:
            self.prepare(model)
        cfg = self._config(args)
        device = next(model.parameters()).device
        return build_optimizer(model, trainable_parameters(model, self.methods), cfg, device)

    def _config(self, args) -> TrainConfig:
        return TrainConfig(lr=args.learning_rate, weight_decay=args.weight_decay, seed=args.seed,
                           batch_size=args.per_device_train_batch_size, grad_clip=self.grad_clip,
                           fused_adamw=False)

    # events ----------------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        if self.model is None:
            raise RuntimeError(
                "MethodsCallback.prepare(model) was not called before the Trainer built its optimiser. Call "
                "bridge.prepare(model) first and pass optimizers=(bridge.create_optimizer(model, args), None)."
            )
        if optimizer is not None:
            in_opt = {id(p) for g in optimizer.param_groups for p in g["params"]}
            missing = [p for p in trainable_parameters(self.model, self.methods) if id(p) not in in_opt]
            if missing:
                raise RuntimeError(
                    f"{len(missing)} parameters that these methods may train are not in the Trainer's optimiser, "
                    "so they would never update. Pass optimizers=(bridge.create_optimizer(model, args), None)."
                )
        if args.max_grad_norm and args.max_grad_norm > 0 and self.grad_clip > 0:
            warnings.warn("The Trainer clips gradients (max_grad_norm > 0) before the methods' gradient hooks; "
                          "set max_grad_norm=0 and let the bridge clip after them.", stacklevel=2)
        loader = kwargs.get("train_dataloader")
        try:  # optimiser steps per epoch, where the dataloader has a length (GradDrop's epoch variant)
            per_epoch = len(loader) // max(1, args.gradient_accumulation_steps) if loader is not None else 0
        except TypeError:
            per_epoch = 0
        device = next(self.model.parameters()).device
        dist = current(device)
        # under DDP the Trainer wrapped the model before this event: its reducer averages exactly these
        self._synced = {id(p) for p in self.model.parameters() if p.requires_grad} if dist.active else set()
        self.state = TrainState(model=self.model, blocks=self.blocks, config=self._config(args), task=None,
                                optimizer=optimizer, total_steps=state.max_steps, steps_per_epoch=per_epoch,
                                device=device, dist=dist,
                                batch_source=self._batch_source(kwargs.get("train_dataloader")))

    def _batch_source(self, loader):
        """Fisher batches (FUN, FisherTracker) from the Trainer's own training dataloader, drawn once
        without disturbing the global RNG the Trainer's sampler and dropout use."""
        if loader is None:
            return None

        def draw(n: int) -> list[dict]:
            out: list[dict] = []
            device = next(self.model.parameters()).device
            with torch.random.fork_rng(devices=[]):
                while len(out) < n:
                    before = len(out)
                    for batch in loader:
                        out.append({k: v.to(device) for k, v in batch.items() if torch.is_tensor(v)})
                        if len(out) == n:
                            break
                    if len(out) == before:
                        raise RuntimeError("The Trainer's training dataloader yielded no batches.")
            return out

        return draw

    def on_step_begin(self, args, state, control, **kwargs):
        self.state.step, self.state.epoch, self.state.row = state.global_step, int(state.epoch or 0), {}
        for m in self.methods:
            m.on_step_start(self.state)

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        dist = self.state.dist
        if dist.active:  # units unfrozen after the Trainer wrapped the model: DDP does not average them
            dist.mean_grads([p for p in self.model.parameters() if p.requires_grad and id(p) not in self._synced])
        for m in self.methods:
            m.after_backward(self.state)
        if self.grad_clip > 0:
            params = [p for p in self.model.parameters() if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, self.grad_clip)

    def on_optimizer_step(self, args, state, control, **kwargs):
        for m in self.methods:
            m.after_step(self.state)

    def on_step_end(self, args, state, control, **kwargs):
        if self.state.row:
            self.history.append({"step": state.global_step, **self.state.row})

    def on_epoch_end(self, args, state, control, **kwargs):
        for m in self.methods:
            m.on_epoch_end(self.state)

    def on_train_end(self, args, state, control, **kwargs):
        for m in self.methods:
            out = m.finish(self.state)
            if out:
                self.artifacts[m.name] = out
