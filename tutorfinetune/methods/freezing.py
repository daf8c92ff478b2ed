"""Baseline plug-ins: full fine-tuning, frozen embeddings, and linear probing.

``"full"`` trains every parameter (the baseline every later method is compared with,
notebooks/01_full_finetuning.ipynb). ``"freeze-embeddings"`` keeps the embedding layer frozen (a
common trick on small data: the vocabulary matrix is most of MiniLM's parameters). ``"linear-probe"``
trains the head only (LP, the first phase of LP-FT, METHODS.md §1).
"""

from __future__ import annotations

from torch import nn

from .base import Method, MethodError, register


@register("full")
class FullFineTuning(Method):
    """Every parameter trains (nothing to change)."""

    name = "full"

    def prepare(self, model: nn.Module, blocks) -> None:
        for p in model.parameters():
            p.requires_grad_(True)


@register("freeze-embeddings")
class FreezeEmbeddings(Method):
    """Freeze the embedding unit of the BlockMap; everything else trains as before."""

    name = "freeze-embeddings"

    def prepare(self, model: nn.Module, blocks) -> None:
        for p in blocks.parameters("embeddings"):
            p.requires_grad_(False)


@register("linear-probe")
class LinearProbe(Method):
    """Train the head only: every unit but ``head`` is frozen."""

    name = "linear-probe"

    def prepare(self, model: nn.Module, blocks) -> None:
        for p in model.parameters():
            p.requires_grad_(False)
        for p in blocks.parameters("head"):
            p.requires_grad_(True)

    def check_compatible(self, others) -> None:
        if any(isinstance(o, FullFineTuning) for o in others):
            raise MethodError("'linear-probe' trains the head only and 'full' trains everything: pick one.")
