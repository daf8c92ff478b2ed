"""Readouts: how the classification head reads the encoder (DESIGN.md "Protocol"; docs/methods.md §0).

A sequence classifier turns the last hidden states ``[batch, tokens, hidden]`` into one vector per
example before its linear classifier. How it should do that depends on how the checkpoint was
pretrained:

* ``"pooler"``: BERT's pooler, ``tanh(W h_[CLS] + b)``, what ``BertForSequenceClassification`` uses.
  Right for plain BERT-style checkpoints pretrained with next-sentence prediction on that vector.
* ``"cls"``: the raw hidden state of ``[CLS]`` (no dense layer, no tanh).
* ``"mean"``: the masked mean of the token states, ``Σ_t m_t h_t / Σ_t m_t`` (padding excluded).
  all-MiniLM-L6-v2 was trained as a sentence-transformers model whose pooling config says
  ``pooling_mode_mean_tokens``: its sentence meaning lives in the mean, not in ``[CLS]``.

``"auto"`` reads the checkpoint's sentence-transformers pooling config (``1_Pooling/config.json``)
where there is one, else uses the model's own pooler. :func:`set_readout` swaps the pooler module of a
BERT-family model for a parameter-free :class:`MeanReadout` or :class:`CLSReadout`; the attention mask
reaches it through a forward pre-hook on the base model, so the head works unchanged in
:func:`tutorfinetune.train`, inside a Hugging Face ``Trainer``, with AdapterHub adapters, PEFT LoRA and
sparse differences (it has no weights of its own; the classifier after it does).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from .config import did_you_mean

__all__ = ["READOUTS", "ReadoutError", "MeanReadout", "CLSReadout", "pretrained_readout", "set_readout",
           "readout_of", "adopt_readout"]

READOUTS = {
    "auto": "the checkpoint's own pooling: its sentence-transformers pooling config if it has one, else the pooler",
    "pooler": "BERT's pooler: tanh(W h_CLS + b) (plain BERT-style checkpoints)",
    "cls": "the raw [CLS] hidden state",
    "mean": "the masked mean of the token states (sentence-transformers checkpoints such as all-MiniLM-L6-v2)",
}


class ReadoutError(ValueError):
    """A readout this model cannot use; the message says which it can."""


class _MaskedReadout(nn.Module):
    """A pooler replacement that reads the attention mask stashed by the base model's pre-hook."""

    kind = ""

    def __init__(self) -> None:
        super().__init__()
        self._mask: torch.Tensor | None = None

    def extra_repr(self) -> str:
        return f"readout={self.kind!r}"


class MeanReadout(_MaskedReadout):
    """Masked mean of the last hidden states: ``[batch, tokens, hidden] -> [batch, hidden]``."""

    kind = "mean"

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        mask = self._mask
        if mask is None or mask.shape != hidden_states.shape[:2]:
            return hidden_states.mean(dim=1)
        m = mask.to(hidden_states.dtype).unsqueeze(-1)
        return (hidden_states * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)


class CLSReadout(_MaskedReadout):
    """The hidden state of the first token (``[CLS]``), unchanged: ``[batch, hidden]``."""

    kind = "cls"

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return hidden_states[:, 0]


def pretrained_readout(source: str | Path | None) -> str:
    """The readout a checkpoint folder was pretrained with: ``"mean"`` or ``"cls"`` from its
    sentence-transformers pooling config (``1_Pooling/config.json`` via ``modules.json``), else
    ``"pooler"`` (a plain transformers checkpoint, or no folder)."""
    if not source:
        return "pooler"
    folder = Path(source)
    pooling = folder / "1_Pooling" / "config.json"
    modules = folder / "modules.json"
    if modules.is_file():
        try:
            for mod in json.loads(modules.read_text()):
                if str(mod.get("type", "")).endswith("Pooling"):
                    pooling = folder / mod.get("path", "1_Pooling") / "config.json"
        except (ValueError, AttributeError):
            pass
    if not pooling.is_file():
        return "pooler"
    try:
        cfg = json.loads(pooling.read_text())
    except ValueError:
        return "pooler"
    if cfg.get("pooling_mode_mean_tokens"):
        return "mean"
    if cfg.get("pooling_mode_cls_token"):
        return "cls"
    return "pooler"


def readout_of(model: nn.Module) -> str:
    """The readout a model uses now (``"pooler"`` unless :func:`set_readout` changed it)."""
    return getattr(model, "_tutorfinetune_readout", "pooler")


def _stash_mask(module: nn.Module, args: tuple, kwargs: dict) -> None:
    readout = module.pooler
    if isinstance(readout, _MaskedReadout):
        readout._mask = kwargs.get("attention_mask")


def set_readout(model: nn.Module, readout: str, source: str | Path | None = None) -> str:
    """Make ``model`` read its encoder with ``readout`` (``"auto"`` resolved from ``source``); returns the
    readout used. Only BERT-family models (a base model with a ``pooler``) can change readout; others
    keep their own head and accept ``"auto"`` or ``"pooler"`` only."""
    if readout not in READOUTS:
        raise ReadoutError(f"Unknown readout {readout!r}.{did_you_mean(readout, READOUTS)} Use one of {list(READOUTS)}.")
    want = pretrained_readout(source) if readout == "auto" else readout
    base = getattr(model, getattr(model, "base_model_prefix", ""), None)
    if want == "pooler":
        return "pooler"
    if base is None or getattr(base, "pooler", None) is None:
        if readout == "auto":
            return "pooler"
        raise ReadoutError(
            f"readout={readout!r} needs a BERT-style model with a pooler module to replace; "
            f"{type(model).__name__} reads its encoder its own way: use readout='auto' (or 'pooler').")
    base.pooler = MeanReadout() if want == "mean" else CLSReadout()
    if not getattr(base, "_tutorfinetune_readout_hook", False):
        base.register_forward_pre_hook(_stash_mask, with_kwargs=True)
        base._tutorfinetune_readout_hook = True
    model._tutorfinetune_readout = want
    return want


def adopt_readout(model: nn.Module, readout: str | None, what: str) -> bool:
    """Give ``model`` the readout that ``what`` (a saved LoRA, adapter or sparse difference) was trained
    behind, before its head is loaded; True when the model changed. ``None`` (saved before readouts were
    recorded) changes nothing. A model whose pooler is already gone cannot take another readout: a
    :class:`ReadoutError` says which backbone to load instead of giving silently different logits."""
    have = readout_of(model)
    if readout is None or readout == have:
        return False
    if have != "pooler" or readout == "pooler":
        raise ReadoutError(
            f"{what} was trained behind readout {readout!r}, but this model reads its encoder with readout "
            f"{have!r} and its pooler is gone. Load a fresh backbone with load_backbone(name, readout={readout!r}).")
    set_readout(model, readout)
    return True
