"""Diagonal Fisher information per unit: tr(F) of each task adapter or transformer block (docs/methods.md §0, §4).

Used by scheduled unfreezing (FUN picks the frozen unit with the largest tr(F)) and by the
``FisherTracker`` plug-in (tr(F) curves during training); guided dropout (docs/methods.md §6) uses the
per-element values. Taught in notebooks/03_scheduled_unfreezing.ipynb.

The recipe (Recipe A of docs/methods.md §0, what the FUN paper does): on each of a fixed set of training
batches, with the model in ``eval()`` mode (no dropout), compute the batch-mean negative
log-likelihood of labels

* ``"sample"`` drawn from the model's own predictive distribution (the *true* Fisher, the paper's
  choice and our default),
* ``"argmax"``: the model's top prediction (what the authors' released code does), or
* ``"empirical"``: the gold labels (the empirical Fisher),

take its gradient with ``torch.autograd.grad`` (the training gradients in ``.grad`` are never
touched), and accumulate ``grad**2 / batch_size`` in float32. A unit's tr(F) is the sum over its
parameters, averaged over the batches (so the value does not grow with the number of batches).
Frozen units get a score too: their ``requires_grad`` is switched on for the pass and restored after.
"""

from __future__ import annotations

import contextlib
from typing import Iterable, Sequence

import torch
from torch import nn

__all__ = ["FisherError", "LABEL_MODES", "find_units", "fisher_trace", "fisher_diagonal"]

LABEL_MODES = ("sample", "argmax", "empirical")


class FisherError(ValueError):
    """Bad Fisher settings or a model whose units cannot be found."""


#: module containers keyed by adapter name: AdapterHub's (``loras`` is its LoRA), then PEFT's LoRA matrices
_ADAPTER_CONTAINERS = ("adapters", "loras", "refs", "prefix_tunings", "shared_parameters", "lora_A", "lora_B")


def find_units(model: nn.Module, blocks, units: str = "auto", adapter_name: str = "task",
               include_embeddings: bool = True) -> dict[str, list[nn.Parameter]]:
    """The units that scheduled unfreezing and Fisher tracking work on, bottom to top.

    Args:
        model: the classifier (after methods such as ``"adapter"`` have added their modules).
        blocks: its :class:`~tutorfinetune.BlockMap`.
        units: ``"adapters"`` (the task adapter inside each block: ``adapter0`` ..; with PEFT's LoRA,
            the ``lora_A``/``lora_B`` matrices inside each block), ``"blocks"``
            (``embeddings``, ``block0`` ..: full fine-tuning), or ``"auto"`` (adapters when the model
            holds an adapter named ``adapter_name``, else blocks).
        adapter_name: the task adapter's name.
        include_embeddings: in ``"blocks"`` mode, count the embeddings as the lowest unit.

    Returns:
        Unit name -> its parameters; the head is never a unit (it always trains).

    Raises:
        FisherError: no BlockMap, unknown ``units`` value, or an adapter with no per-block parameters.
    """
    if blocks is None or not getattr(blocks, "blocks", None):
        raise FisherError(
            f"{type(model).__name__} has no BlockMap (embeddings and transformer blocks), so its units cannot be "
            "found. Supported families: BERT, RoBERTa/XLM-R, DistilBERT; see tutorfinetune.backbones.block_map."
        )
    if units not in ("auto", "adapters", "blocks"):
        raise FisherError(f"units must be 'auto', 'adapters' or 'blocks', got {units!r}.")
    names = list(getattr(getattr(model, "adapters_config", None), "adapters", {}) or [])
    peft = getattr(model, "peft_config", None)  # PEFT adapters injected in place (the "lora" plug-in)
    names += list(peft) if isinstance(peft, dict) else []
    if units == "auto":
        units = "adapters" if adapter_name in names else "blocks"
    out: dict[str, list[nn.Parameter]] = {}
    if units == "blocks":
        if include_embeddings:
            out["embeddings"] = list(blocks.parameters("embeddings"))
        for j in range(blocks.num_blocks):
            out[f"block{j}"] = list(blocks.parameters(f"block{j}"))
        return out
    if adapter_name not in names:
        raise FisherError(
            f"units='adapters' but the model has no adapter named {adapter_name!r} (it has {names or 'none'}). "
            "Put the 'adapter' (or 'lora') method before the schedule, or pass adapter_name=..."
        )
    for j, blk in enumerate(blocks.blocks):
        params = []
        for n, p in blk.named_parameters():
            parts = n.split(".")
            if any(parts[i] in _ADAPTER_CONTAINERS and parts[i + 1] == adapter_name for i in range(len(parts) - 1)):
                params.append(p)
        out[f"adapter{j}"] = params
    if not any(out.values()):
        raise FisherError(
            f"Adapter {adapter_name!r} has no parameters inside the transformer blocks (e.g. prefix tuning keeps "
            "them in one shared pool), so it has no per-layer units. Use a bottleneck or LoRA adapter."
        )
    return {k: v for k, v in out.items() if v}


@contextlib.contextmanager
def _grad_enabled_for(params: Iterable[nn.Parameter]):
    params = list(params)
    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(True)
        yield
    finally:
        for p, f in zip(params, flags):
            p.requires_grad_(f)


def _labels(logits: torch.Tensor, gold: torch.Tensor | None, mode: str, generator: torch.Generator | None):
    if mode == "empirical":
        if gold is None:
            raise FisherError("label_mode='empirical' needs gold labels in the Fisher batches.")
        return gold
    if mode == "argmax":
        return logits.argmax(-1)
    probs = torch.softmax(logits.detach().float(), -1).cpu()
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1).to(logits.device)


def fisher_diagonal(model: nn.Module, batches: Sequence[dict], params: dict[str, list[nn.Parameter]],
                    label_mode: str = "sample", seed: int = 0, autocast_dtype: torch.dtype | None = None
                    ) -> dict[str, list[torch.Tensor]]:
    """Per-element diagonal Fisher (float32, averaged over ``batches``) of every parameter in ``params``.

    ``batches`` are dicts of model inputs (``labels`` is used only by ``label_mode="empirical"``).
    The model is put in eval mode for the pass and its mode and ``requires_grad`` flags restored;
    ``.grad`` of every parameter is left as it was.
    """
    if label_mode not in LABEL_MODES:
        raise FisherError(f"Unknown label_mode {label_mode!r}; use one of {LABEL_MODES}.")
    if not batches:
        raise FisherError("No batches to estimate the Fisher information on (need at least one).")
    flat = [p for ps in params.values() for p in ps]
    if not flat:
        raise FisherError("No parameters to estimate the Fisher information of.")
    acc = [torch.zeros_like(p, dtype=torch.float32) for p in flat]
    gen = torch.Generator().manual_seed(int(seed))
    was_training = model.training
    model.eval()
    device = flat[0].device
    try:
        with _grad_enabled_for(flat), torch.enable_grad():
            for batch in batches:
                inputs = {k: v for k, v in batch.items() if k != "labels"}
                with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                    logits = model(**inputs).logits.float()
                y = _labels(logits, batch.get("labels"), label_mode, gen)
                loss = nn.functional.cross_entropy(logits, y)
                grads = torch.autograd.grad(loss, flat, allow_unused=True)
                size = float(logits.shape[0])
                for a, g in zip(acc, grads):
                    if g is not None:
                        a.addcmul_(g.float(), g.float(), value=1.0 / size)
    finally:
        model.train(was_training)
    n = float(len(batches))
    out: dict[str, list[torch.Tensor]] = {}
    i = 0
    for unit, ps in params.items():
        out[unit] = [a.div_(n) for a in acc[i:i + len(ps)]]
        i += len(ps)
    return out


def fisher_trace(model: nn.Module, batches: Sequence[dict], params: dict[str, list[nn.Parameter]],
                 label_mode: str = "sample", seed: int = 0, autocast_dtype: torch.dtype | None = None
                 ) -> dict[str, float]:
    """tr(F) of every unit: the sum of its parameters' diagonal Fisher (see :func:`fisher_diagonal`)."""
    diag = fisher_diagonal(model, batches, params, label_mode=label_mode, seed=seed, autocast_dtype=autocast_dtype)
    return {unit: float(sum(float(d.sum()) for d in ds)) for unit, ds in diag.items()}
