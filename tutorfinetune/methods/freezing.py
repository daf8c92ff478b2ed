"""Baseline plug-ins: full fine-tuning, frozen embeddings, and linear probing.

``"full"`` trains every parameter (the baseline every later method is compared with,
notebooks/01_full_finetuning.ipynb). ``"freeze-embeddings"`` keeps the embedding layer frozen (a
common trick on small data: the vocabulary matrix is most of MiniLM's parameters). ``"linear-probe"``
trains the head only (LP, the first phase of LP-FT, docs/methods.md §1). None of them takes options.
"""

from __future__ import annotations

from torch import nn

from .base import Method, register


@register("full")
class FullFineTuning(Method):
    """Every parameter trains (nothing to change)."""

    name = "full"
    traits = frozenset({"trains-body"})
    unique = True

    def prepare(self, model: nn.Module, blocks) -> None:
        for p in model.parameters():
            p.requires_grad_(True)


@register("freeze-embeddings")
class FreezeEmbeddings(Method):
    """Freeze the embedding unit of the BlockMap; everything else trains as before."""

    name = "freeze-embeddings"
    traits = frozenset({"freezes-embeddings"})
    excludes = {"schedules-embeddings": "{me!r} and {other!r}, a schedule over blocks, both decide about the "
                                        "embeddings: pass include_embeddings=False to the schedule instead."}
    unique = True

    def prepare(self, model: nn.Module, blocks) -> None:
        for p in blocks.parameters("embeddings"):
            p.requires_grad_(False)


@register("linear-probe")
class LinearProbe(Method):
    """Train the head only: every unit but ``head`` is frozen."""

    name = "linear-probe"
    traits = frozenset({"head-only", "freezes-body"})
    excludes = {"trains-body": "{me!r} trains the head only and {other!r} trains everything: pick one."}
    unique = True

    def prepare(self, model: nn.Module, blocks) -> None:
        for p in model.parameters():
            p.requires_grad_(False)
        for p in blocks.parameters("head"):
            p.requires_grad_(True)
