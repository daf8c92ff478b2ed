"""The plug-in behind both phases of sparse fine-tuning (LT-SFT, docs/methods.md §7).

``SparseUpdate(mask=None)`` is the dense phase: every maskable parameter trains (LayerNorm frozen,
head dense), with an optional L1 pull towards the weights at the start of the run. With a ``mask``
(name -> bool tensor, from :func:`tutorfinetune.diffs.select_mask` or ``random_mask``) it is the
sparse phase: after each backward the maskable gradients are multiplied by the mask, and after
each optimiser step the entries outside the mask are put back to their starting values. With a
fresh AdamW and weight decay 0 they would not move anyway (zero gradient, zero moments); with
weight decay > 0 (our ``TrainConfig`` default is 0.01) decoupled decay *would* shrink them, so the
put-back is what makes "exactly zero outside the mask" hold whatever the optimiser settings. It is
skipped when no optimiser group that holds a maskable tensor decays.

The recipe that calls :func:`tutorfinetune.train` twice is :func:`tutorfinetune.recipes.lt_sft.lt_sft`;
``methods.get("sparse-update", mask=..., l1=...)`` is this plug-in alone.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..diffs import SparseError, maskable_names
from ..distributed import current
from .base import STAGE, Method, MethodConfig, MethodError, option, register

__all__ = ["SparseUpdate", "SparseUpdateConfig"]


@dataclass(frozen=True)
class SparseUpdateConfig(MethodConfig):
    """Settings of :class:`SparseUpdate` (registry id ``"sparse-update"``)."""

    mask: dict | None = option(None, "parameter name -> bool tensor of the entries that train (from "
                               "tutorfinetune.diffs.select_mask or random_mask); None: the dense phase")
    l1: float = option(0.0, "strength of an L1 pull towards the weights at the start of the run, >= 0")
    freeze_layernorm: bool = option(True, "keep LayerNorm weights frozen (they are not maskable)")
    label: str | None = option(None, "the run's method name (default 'lt-sft', or 'lt-sft-dense' without a mask)")

    def validate(self) -> None:
        if not self.l1 >= 0:
            raise MethodError(f"l1 must be >= 0, got {self.l1!r}.")
        if self.mask is not None and not isinstance(self.mask, dict):
            raise MethodError("mask must be a dict of parameter name -> bool tensor (from tutorfinetune.diffs."
                              "select_mask or random_mask), or None for the dense phase.")


@register("sparse-update")
class SparseUpdate(Method):
    """Dense (``mask=None``) or masked training of the maskable parameters; see the module docstring
    (options: :class:`SparseUpdateConfig`)."""

    Config = SparseUpdateConfig
    stage = STAGE["select"]  # after adapters and schedules, before GradDrop (which refuses to run beside a mask)
    excludes = {"freezes-body": "Sparse fine-tuning changes entries of the pretrained weights; {other!r} freezes "
                                "them, so there would be nothing to select. Use one or the other."}
    unique = True
    unique_message = "Two sparse-update plug-ins in one run ({me!r} and {other!r}): use one."

    def __init__(self, *args: Any, **config: Any) -> None:
        super().__init__(*args, **config)
        mask = self.config.mask
        self.name = self.config.label or ("lt-sft" if mask is not None else "lt-sft-dense")
        self.k = int(sum(int(m.sum()) for m in mask.values())) if mask is not None else None
        self.mask_sha = None
        if mask is not None:
            h = hashlib.sha256()
            for n in sorted(mask):
                h.update(n.encode())
                h.update(torch.nonzero(mask[n].reshape(-1)).reshape(-1).numpy().tobytes())
            self.mask_sha = h.hexdigest()[:12]
        self._restore_needed: bool | None = None

    @property
    def traits(self) -> frozenset[str]:
        return frozenset({"selects-entries", *(("masks-gradients",) if self.config.mask is not None else ())})

    @property
    def mask(self) -> dict | None:
        return self.config.mask

    @property
    def l1(self) -> float:
        return self.config.l1

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "k": self.k, "l1": self.config.l1, "freeze_layernorm": self.config.freeze_layernorm,
                "mask_sha": self.mask_sha}

    def prepare(self, model: nn.Module, blocks) -> None:

        self.model = model
        names = maskable_names(model, blocks)
        params = dict(model.named_parameters())
        if self.config.freeze_layernorm:
            for m in model.modules():
                if isinstance(m, nn.LayerNorm):
                    for p in m.parameters(recurse=False):
                        p.requires_grad_(False)
        for n in names:
            params[n].requires_grad_(True)
        for p in blocks.parameters("head"):
            p.requires_grad_(True)
        self.names = names
        self.params = [params[n] for n in names]
        self.n_params = sum(p.numel() for p in self.params)
        self.reference = [p.detach().clone() for p in self.params] if (self.l1 or self.mask is not None) else None
        self.masks, self.kept_reference = None, None
        if self.mask is not None:
            missing = [n for n in names if n not in self.mask]
            extra = [n for n in self.mask if n not in params]
            if missing or extra:
                raise SparseError(f"The mask does not fit this model: missing {missing[:3]}, unknown {extra[:3]}. "
                                  "Build it from the same backbone (sparse.maskable_names).")
            masks = []
            for n, p in zip(names, self.params):
                m = self.mask[n]
                if tuple(m.shape) != tuple(p.shape):
                    raise SparseError(f"Mask {n!r} has shape {tuple(m.shape)}, the parameter {tuple(p.shape)}.")
                masks.append(m.to(p.device, torch.bool))
            self.masks = _same_on_every_rank(masks)
            masks = self.masks
            self.mask_f = [m.to(p.dtype) for m, p in zip(masks, self.params)]
            # the values to put back outside the mask; zero inside it
            self.kept_reference = [r * (~m).to(r.dtype) for r, m in zip(self.reference, masks)]

    # the two pieces of work, also called by the MLM loop of sparse.domain_sft --------------------
    @torch.no_grad()
    def apply_to_grads(self) -> None:
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            if self.l1:
                p.grad.add_(torch.sign(p.detach() - self.reference[i]), alpha=self.l1 / self.n_params)
            if self.masks is not None:
                p.grad.mul_(self.mask_f[i])

    @torch.no_grad()
    def restore(self) -> None:
        if self.masks is None:
            return
        for p, mf, kept in zip(self.params, self.mask_f, self.kept_reference):
            p.data.mul_(mf).add_(kept)

    # hooks --------------------------------------------------------------------------------------
    def after_backward(self, state) -> None:
        self.apply_to_grads()

    def after_step(self, state) -> None:
        if self.masks is None:
            return
        if self._restore_needed is None:
            ids = {id(p) for p in self.params}
            self._restore_needed = any(g.get("weight_decay", 0) > 0 and any(id(p) in ids for p in g["params"])
                                       for g in state.optimizer.param_groups) if state.optimizer else True
        if self._restore_needed:
            self.restore()

    def finish(self, state) -> dict[str, Any] | None:
        if self.masks is None:
            return {"phase": "dense", "maskable": self.n_params}
        moved = 0
        with torch.no_grad():
            for p, r in zip(self.params, self.reference):
                moved += int(torch.count_nonzero(p.detach() != r))
        return {"phase": "sparse", "k": self.k, "maskable": self.n_params, "moved": moved}


def _same_on_every_rank(masks: list[torch.Tensor]) -> list[torch.Tensor]:
    """Several processes: every rank trains rank 0's mask (a mask computed from replicas that drifted, or from
    another seed, would otherwise let the replicas move different entries). One process: ``masks`` as given."""
    dist = current()
    if not dist.active:
        return masks
    digest = hashlib.sha1(b"".join(m.cpu().numpy().tobytes() for m in masks)).hexdigest()
    if len(set(dist.gather_object(digest))) == 1:
        return masks
    out = []
    for m in masks:
        t = m.to(torch.uint8)
        torch.distributed.broadcast(t, src=0)
        out.append(t.bool())
    return out
