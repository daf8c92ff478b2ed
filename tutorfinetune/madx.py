"""MAD-X with domains: masked-LM domain adapters, stacked task adapters, and the zero-shot swap.

METHODS.md §6 (MAD-X) and §3 ("mlm-warm"); taught in notebooks/02_adapters.ipynb.

1. :func:`mlm_head` builds a masked-LM head for a BERT-family backbone. BERT's decoder is tied to
   the word embeddings, so only the transform (dense + LayerNorm) and the output bias are new.
   all-MiniLM-L6-v2 ships none of them; :func:`warm_mlm_head` trains just those on unlabelled text
   with the body frozen ("mlm-warm", [D]). Checkpoints that ship an MLM head (mBERT) load theirs.
   The decoder runs only at masked positions (METHODS.md: about 7x less work).
2. :func:`train_domain_adapter` trains a bottleneck adapter with MLM on a domain's (or language's)
   unlabelled text, base model and head frozen.
3. :func:`domain_transfer` is the one-call recipe: warm the head, train a ``source`` adapter on the
   source domains' text and one adapter per target domain, then per seed train a task adapter
   stacked on ``source`` (``Stack(source, task)``) and evaluate every held-out domain twice: with the
   source adapter and with the target domain's adapter swapped in (zero-shot).

Deviations from MAD-X, all [D]: the domain adapters use ``seq_bn`` with reduction factor 2 but no
invertible embedding adapters (our MLM head sits outside ``adapters``' head framework, so the
inverse pass MAD-X applies before the decoder would be missing); MLM training is a few hundred
steps on a few hundred sentences, not Wikipedia.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from . import results
from .backbones import Backbone, load_backbone
from .config import TrainConfig
from .data import Task, TaskError
from .engine import fingerprint, resolve_device, train
from .methods.adapter import (
    AdapterError,
    AdapterSwap,
    TaskAdapter,
    adapter_config,
    adapter_names,
    ensure_adapters,
    load_adapter,
    quiet_adapters,
    save_adapter,
)
from .progress import outer_bar, progress_bar

__all__ = ["mlm_head", "warm_mlm_head", "mlm_loss", "train_domain_adapter", "domain_transfer"]


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
        raise AdapterError(
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


def _encode_texts(tok, texts: Sequence[str], max_length: int) -> list[list[int]]:
    if not texts:
        raise TaskError("No unlabelled text to train on: pass a non-empty list of sentences.")
    return tok(list(texts), truncation=True, max_length=max_length)["input_ids"]


def _mask_batch(ids: list[list[int]], tok, rng: np.random.Generator, p: float = 0.15):
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


def _mlm_loop(model, head, tok, texts, params, steps, lr, batch_size, max_length, seed, desc, device,
              after_backward=None, after_step=None, head_params=(), head_lr=None):
    """MLM training of ``params`` (AdamW, no weight decay, clip 1.0); ``head_params`` (a subset of
    ``params``) may get their own ``head_lr``; ``after_backward()`` / ``after_step()`` are called
    around each optimiser step (gradient masks of sparse fine-tuning)."""
    ids = _encode_texts(tok, texts, max_length)
    rng = np.random.default_rng(seed)
    head_ids = {id(p) for p in head_params}
    groups = [{"params": [p for p in params if id(p) not in head_ids], "lr": lr}]
    if head_ids:
        groups.append({"params": [p for p in params if id(p) in head_ids], "lr": head_lr or lr})
    try:  # fused AdamW: one kernel over all tensors (much faster on CPU for a full body)
        opt = torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, weight_decay=0.0, fused=True)
    except (RuntimeError, TypeError, ValueError):
        opt = torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, weight_decay=0.0)
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
        inp, att, labels = (t.to(device) for t in _mask_batch(batch, tok, rng))
        loss = mlm_loss(model, head, inp, att, labels)
        if not math.isfinite(loss.item()):
            raise AdapterError(f"MLM loss became {loss.item()} at step {step + 1}; lower lr (now {lr:g}).")
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
        losses = _mlm_loop(backbone.model, head, backbone.tokenizer, texts, params, steps, lr, batch_size,
                           max_length, seed, "warm MLM head", resolve_device(device))
    finally:
        for n, p in backbone.model.named_parameters():
            p.requires_grad_(frozen[n])
        for p in params:
            p.requires_grad_(False)
    head.info = {"pretrained": pretrained, "warm_steps": steps, "losses": losses}
    return head, losses


def train_domain_adapter(backbone: Backbone, texts: Sequence[str], name: str, head: nn.Module,
                         config: Any = "seq_bn", reduction_factor: float = 2, steps: int = 300, lr: float = 1e-4,
                         batch_size: int = 32, max_length: int = 64, seed: int = 0,
                         device: str = "auto") -> list[float]:
    """Add adapter ``name`` and train it with MLM on ``texts`` (base model and head frozen).

    Returns the per-step MLM losses.
    """
    model = backbone.model
    ensure_adapters(model)
    if name in adapter_names(model):
        raise AdapterError(f"An adapter named {name!r} is already in the model; choose another name.")
    with quiet_adapters():
        model.add_adapter(name, config=adapter_config(config, reduction_factor))
        model.train_adapter(name)
    model.active_adapters = name
    params = [p for n, p in model.named_parameters() if f".{name}." in n]
    for n, p in model.named_parameters():
        p.requires_grad_(f".{name}." in n)
    torch.manual_seed(seed)
    losses = _mlm_loop(model, head, backbone.tokenizer, texts, params, steps, lr, batch_size, max_length, seed,
                       f"MLM adapter {name}", resolve_device(device))
    for p in params:
        p.requires_grad_(False)
    return losses


def domain_transfer(
    task: Task,
    config: TrainConfig,
    seeds: Iterable[int] = (0,),
    *,
    backbone: str = "minilm",
    source_domains: Sequence[str] | None = None,
    target_domains: Sequence[str] | None = None,
    warm_steps: int = 200,
    mlm_steps: int = 300,
    mlm_lr: float = 1e-4,
    task_reduction_factor: float = 16,
    domain_reduction_factor: float = 2,
    by: str = "domain",
    store: str | os.PathLike = results.DEFAULT_STORE,
    study: str = "madx",
    reuse: bool = True,
) -> pd.DataFrame:
    """The MAD-X pipeline in one call; returns the tidy results of its runs.

    ``by="domain"`` (default, what the English backbone can show): a ``source`` adapter on the source
    domains' unlabelled text and one adapter per held-out domain. ``by="lang"`` (MAD-X proper, for a
    multilingual backbone such as ``bert-base-multilingual-cased`` or ``xlm-roberta-base``): a
    ``source`` adapter on English text and one per target language.

    Domain adapters are trained once (seed 0) and cached under ``<store>/adapters/<key>/``; each seed
    then trains a task adapter stacked on ``source``. Eval sets: the task's, plus
    ``<shift>|source-adapter`` for every held-out domain (the same rows, evaluated without the swap).
    """
    if by not in ("domain", "lang"):
        raise TaskError(f"by must be 'domain' or 'lang', got {by!r}.")
    if by == "domain":
        source_domains = list(source_domains or task.meta.get("source_domains", []))
        targets = list(target_domains or task.meta.get("target_domains", []))
        if not source_domains or not targets:
            raise TaskError("domain_transfer needs source and target domains (task.meta or the arguments).")
        texts = {"source": [t for d in source_domains for t in task.texts(domain=d, lang="en")]}
        texts.update({d: task.texts(domain=d, lang="en") for d in targets})
    else:  # languages: MAD-X proper, for multilingual backbones
        targets = list(target_domains or task.meta.get("languages", []))
        if not targets:
            raise TaskError("domain_transfer(by='lang') needs target languages (task.meta['languages']).")
        texts = {"source": task.texts(lang="en")}
        texts.update({lg: task.texts(lang=lg) for lg in targets})
    names = ["source", *targets]
    cache = Path(store) / "adapters" / f"{backbone.replace('/', '_')}-{by}-w{warm_steps}-m{mlm_steps}-rf{domain_reduction_factor}"
    log_path = cache / "mlm_log.json"
    if not all((cache / n / "adapter_config.json").is_file() for n in names):
        bb = load_backbone(backbone, num_labels=task.num_labels, seed=0)
        all_text = [t for v in texts.values() for t in v]
        head, warm_losses = warm_mlm_head(bb, all_text, steps=warm_steps)
        log = {"warm": warm_losses, "pretrained_head": head.info["pretrained"]}
        for n in names:
            log[n] = train_domain_adapter(bb, texts[n], n, head, reduction_factor=domain_reduction_factor,
                                          steps=mlm_steps, lr=mlm_lr)
            save_adapter(bb.model, n, cache / n, backbone=backbone)
        cache.mkdir(parents=True, exist_ok=True)
        log_path.write_text(json.dumps(log))
    evals = {f"shift:{d}|source-adapter": task.eval_set(f"shift:{d}") for d in targets}
    full_task = task.with_eval_sets(evals)
    swap = {f"shift:{d}": d for d in targets}
    wanted = [s for s in full_task.eval_set_specs if not s.startswith("shift:") or s.split("|")[0][6:] in targets]
    if config.eval_sets:  # the caller's sets, plus the no-swap copies of the held-out ones
        wanted = list(config.eval_sets) + [s for s in evals if s not in config.eval_sets]
    cfg = config.replace(eval_sets=wanted)
    done = {}
    if reuse:
        done = {r.get("fingerprint"): r["run_id"] for r in results.load_records(store)
                if r.get("status") == "finished" and r.get("study") == study}
    run_ids = []
    bar = progress_bar(total=len(list(seeds)), desc="MAD-X task adapters")
    for seed in seeds:
        methods = [TaskAdapter(reduction_factor=task_reduction_factor, stack_on="source"),
                   AdapterSwap(default="source", by_eval_set=swap)]
        run_cfg = cfg.replace(seed=seed)
        n_train = len(full_task.subsample_train(run_cfg.max_train_examples, seed=seed).train)
        fp = fingerprint(backbone, full_task.name, n_train, run_cfg, methods)
        if fp in done:
            run_ids.append(done[fp])
            bar.update(1)
            continue
        bb = load_backbone(backbone, num_labels=task.num_labels, seed=seed, label_names=task.label_names)
        for n in names:
            load_adapter(bb.model, cache / n, name=n, set_active=False, with_head=False)
        with outer_bar():
            res = train(bb, full_task, run_cfg, methods, store=store, study=study,
                        tags={"experiment": f"madx-{by}", "cache": str(cache)}, verbose=False)
        run_ids.append(res.run_id)
        bar.update(1)
    bar.close()
    df = results.load(store)
    return df[df.run_id.isin(run_ids)].reset_index(drop=True)
