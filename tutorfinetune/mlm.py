"""Masked-language modelling: an MLM head, BERT masking, the loss, and one MLM training loop
(docs/methods.md §6 "mlm-warm", §7 domain SFTs, §2 MAD-X).

Used by three recipes and one score: MAD-X's domain adapters (:mod:`tutorfinetune.recipes.madx`),
domain SFTs (:mod:`tutorfinetune.recipes.lt_sft`) and guided dropout's MLM Fisher scores
(:mod:`tutorfinetune.fisher.sublayer`). Taught in notebooks/02_adapters.ipynb.

* :func:`mlm_head` builds a masked-LM head for a BERT-family backbone. BERT's decoder is tied to the
  word embeddings, so only the transform (dense + LayerNorm) and the output bias are new.
  all-MiniLM-L6-v2 ships none of them; :func:`warm_mlm_head` trains just those on unlabelled text
  with the body frozen ("mlm-warm", [D]). Checkpoints that ship an MLM head (mBERT) load theirs.
  The decoder runs only at masked positions (about 7x less work).
* :func:`mask_batch`: BERT's masking (15% of the non-special tokens: 80% [MASK], 10% random, 10% kept).
* :func:`mlm_loop`: AdamW over the given parameters, no weight decay, clipping at 1.0, with hooks
  around each optimiser step (the gradient masks of sparse fine-tuning). It is not the task loop of
  :func:`tutorfinetune.train`: a different objective, no eval sets, no run record.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .backbones import Backbone
from .data import TaskError
from .env import adamw, resolve_device
from .progress import progress_bar

__all__ = ["MLMError", "mlm_head", "warm_mlm_head", "mlm_loss", "mask_batch", "encode_texts", "mlm_loop"]


class MLMError(ValueError):
    """A backbone without a masked-LM head we can build, or an MLM loss that diverged."""


def mlm_head(backbone: Backbone) -> tuple[nn.Module, bool]:
    """An MLM head tied to the backbone's word embeddings; returns (head, pretrained?).

    BERT family (MiniLM, mBERT, the tiny test model) and RoBERTa/XLM-R. Pretrained head weights
    (``cls.predictions.*`` or ``lm_head.*``) are loaded when the checkpoint ships them; otherwise
    the head needs :func:`warm_mlm_head`.
    """
    family = backbone.blocks.family
    cfg = backbone.model.config
    if family == "bert":
        from transformers.models.bert.modeling_bert import BertOnlyMLMHead

        head, prefix, decoder = BertOnlyMLMHead(cfg), "cls.", "predictions.decoder"
    elif family in ("roberta", "xlm-roberta"):
        from transformers.models.roberta.modeling_roberta import RobertaLMHead

        head, prefix, decoder = RobertaLMHead(cfg), "lm_head.", "decoder"
    else:
        raise MLMError(
            f"MLM domain/language adapters support BERT and RoBERTa/XLM-R backbones; {backbone.name!r} is "
            f"{family!r}. Use 'minilm', 'bert-base-multilingual-cased' or 'xlm-roberta-base'."
        )
    head.get_submodule(decoder).weight = backbone.model.base_model.embeddings.word_embeddings.weight
    pretrained = False
    weights = Path(backbone.source) / "model.safetensors"
    if weights.is_file():
        from safetensors import safe_open

        with safe_open(str(weights), "pt") as f:
            keys = {k for k in f.keys() if k.startswith(prefix) and not k.endswith("decoder.weight")}
            if keys:
                state = {k.removeprefix(prefix): f.get_tensor(k) for k in keys}
                missing, _ = head.load_state_dict(state, strict=False)
                pretrained = not [m for m in missing if not m.endswith("decoder.weight")]
    elif backbone.name not in ("minilm", "tiny"):  # a hub id: its masked-LM checkpoint holds the head
        from transformers import AutoModelForMaskedLM

        try:
            mlm = AutoModelForMaskedLM.from_pretrained(backbone.source)
            src = mlm.cls if family == "bert" else mlm.lm_head
            state = {k: v for k, v in src.state_dict().items() if not k.endswith("decoder.weight")}
            head.load_state_dict(state, strict=False)
            pretrained = True
        except (OSError, AttributeError, ValueError):
            pretrained = False
    for n, p in head.named_parameters():
        if "decoder.weight" not in n:  # the tied word embeddings keep their own flag
            p.requires_grad_(False)
    return head, pretrained


def encode_texts(tok, texts: Sequence[str], max_length: int) -> list[list[int]]:
    if not texts:
        raise TaskError("No unlabelled text to train on: pass a non-empty list of sentences.")
    return tok(list(texts), truncation=True, max_length=max_length)["input_ids"]


def mask_batch(ids: list[list[int]], tok, rng: np.random.Generator, p: float = 0.15):
    """BERT masking: p of the non-special tokens; of those 80% [MASK], 10% random, 10% unchanged."""
    width = max(len(x) for x in ids)
    inp = np.full((len(ids), width), tok.pad_token_id, dtype=np.int64)
    att = np.zeros_like(inp)
    for r, x in enumerate(ids):
        inp[r, :len(x)] = x
        att[r, :len(x)] = 1
    special = np.isin(inp, list(tok.all_special_ids)) | (att == 0)
    chosen = (rng.random(inp.shape) < p) & ~special
    for r in range(len(ids)):  # at least one masked token per row
        if not chosen[r].any():
            cand = np.flatnonzero(~special[r])
            if len(cand):
                chosen[r, rng.choice(cand)] = True
    labels = np.where(chosen, inp, -100)
    roll = rng.random(inp.shape)
    inp = np.where(chosen & (roll < 0.8), tok.mask_token_id, inp)
    rand_tok = rng.integers(0, tok.vocab_size, inp.shape)
    inp = np.where(chosen & (roll >= 0.8) & (roll < 0.9), rand_tok, inp)
    return torch.from_numpy(inp), torch.from_numpy(att), torch.from_numpy(labels)


def mlm_loss(model: nn.Module, head: nn.Module, inp, att, labels) -> torch.Tensor:
    """Cross-entropy of the MLM head at the masked positions only."""
    hidden = model.base_model(input_ids=inp, attention_mask=att).last_hidden_state
    sel = labels != -100
    logits = head(hidden[sel])
    return nn.functional.cross_entropy(logits.float(), labels[sel])


def mlm_loop(model, head, tok, texts, params, steps, lr, batch_size, max_length, seed, desc, device,
              after_backward=None, after_step=None, head_params=(), head_lr=None):
    """MLM training of ``params`` (AdamW, no weight decay, clip 1.0); ``head_params`` (a subset of
    ``params``) may get their own ``head_lr``; ``after_backward()`` / ``after_step()`` are called
    around each optimiser step (gradient masks of sparse fine-tuning)."""
    ids = encode_texts(tok, texts, max_length)
    rng = np.random.default_rng(seed)
    head_ids = {id(p) for p in head_params}
    groups = [{"params": [p for p in params if id(p) not in head_ids], "lr": lr}]
    if head_ids:
        groups.append({"params": [p for p in params if id(p) in head_ids], "lr": head_lr or lr})
    opt = adamw([g for g in groups if g["params"]], lr=lr, weight_decay=0.0)  # fused where it can be
    model.to(device)
    head.to(device)
    was = model.training
    model.train()
    losses = []
    bar = progress_bar(total=steps, desc=desc)
    order = rng.permutation(len(ids))
    for step in range(steps):
        start = (step * batch_size) % len(ids)
        if start + batch_size > len(ids):
            order = rng.permutation(len(ids))
            start = 0
        batch = [ids[i] for i in order[start:start + batch_size]]
        inp, att, labels = (t.to(device) for t in mask_batch(batch, tok, rng))
        loss = mlm_loss(model, head, inp, att, labels)
        if not math.isfinite(loss.item()):
            raise MLMError(f"MLM loss became {loss.item()} at step {step + 1}; lower lr (now {lr:g}).")
        loss.backward()
        if after_backward is not None:
            after_backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if after_step is not None:
            after_step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.item()))
        bar.update(1)
    bar.close()
    model.train(was)
    return losses


def warm_mlm_head(backbone: Backbone, texts: Sequence[str], steps: int = 200, lr: float = 1e-3,
                  batch_size: int = 32, max_length: int = 64, seed: int = 0, device: str = "auto"):
    """Train only the MLM head's transform and bias, body frozen ("mlm-warm"). Returns (head, losses)."""
    head, pretrained = mlm_head(backbone)
    params = [p for n, p in head.named_parameters() if "decoder.weight" not in n]
    for p in params:
        p.requires_grad_(True)
    frozen = {n: p.requires_grad for n, p in backbone.model.named_parameters()}
    for p in backbone.model.parameters():
        p.requires_grad_(False)
    try:
        torch.manual_seed(seed)
        losses = mlm_loop(backbone.model, head, backbone.tokenizer, texts, params, steps, lr, batch_size,
                           max_length, seed, "warm MLM head", resolve_device(device))
    finally:
        for n, p in backbone.model.named_parameters():
            p.requires_grad_(frozen[n])
        for p in params:
            p.requires_grad_(False)
    head.info = {"pretrained": pretrained, "warm_steps": steps, "losses": losses}
    return head, losses
