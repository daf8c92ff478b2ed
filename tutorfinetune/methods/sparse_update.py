"""The plug-in behind both phases of sparse fine-tuning (LT-SFT, METHODS.md §4).

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
from typing import Any

import torch
from torch import nn

from ..config import ConfigError, coerce
from ..diffs import SparseError, maskable_names
from .base import Method, MethodError, register


@register("sparse-update")
class SparseUpdate(Method):
    """Dense (``mask=None``) or masked training of the maskable parameters; see the module docstring."""

    stage = 25  # after adapters and schedules, before GradDrop (which refuses to run beside a mask)

    def __init__(self, mask: dict[str, torch.Tensor] | None = None, l1: float = 0.0, freeze_layernorm: bool = True,
                 label: str | None = None) -> None:
        try:
            l1 = coerce("l1", l1, float)
        except ConfigError as e:
            raise MethodError(str(e)) from None
        if not l1 >= 0:
            raise MethodError(f"l1 must be >= 0, got {l1!r}.")
        if mask is not None and not isinstance(mask, dict):
            raise MethodError("mask must be a dict of parameter name -> bool tensor (from tutorfinetune.diffs."
                              "select_mask or random_mask), or None for the dense phase.")
        self.mask = mask
        self.name = label or ("lt-sft" if mask is not None else "lt-sft-dense")
        self.masks_gradients = mask is not None
        k = int(sum(int(m.sum()) for m in mask.values())) if mask is not None else None
        sha = None
        if mask is not None:
            h = hashlib.sha256()
            for n in sorted(mask):
                h.update(n.encode())
                h.update(torch.nonzero(mask[n].reshape(-1)).reshape(-1).numpy().tobytes())
            sha = h.hexdigest()[:12]
        super().__init__(k=k, l1=l1, freeze_layernorm=bool(freeze_layernorm), mask_sha=sha)
        self.l1 = l1
        self._restore_needed: bool | None = None

    def check_compatible(self, others: list[Method]) -> None:
        from .freezing import LinearProbe

        for o in others:
            if isinstance(o, SparseUpdate):
                raise MethodError("Two sparse-update plug-ins in one run: use one.")
            if isinstance(o, LinearProbe) or getattr(o, "name", "") == "adapter":
                raise MethodError(f"Sparse fine-tuning changes entries of the pretrained weights; {o.name!r} freezes "
                                  "them, so there would be nothing to select. Use one or the other.")

    def prepare(self, model: nn.Module, blocks) -> None:

        self.model = model
        names = maskable_names(model, blocks)
        params = dict(model.named_parameters())
        if self.config["freeze_layernorm"]:
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
            self.masks = masks
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
        return {"phase": "sparse", "k": self.config["k"], "maskable": self.n_params, "moved": moved}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, **self.config}
