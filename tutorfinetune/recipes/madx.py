"""MAD-X with domains: masked-LM domain adapters, stacked task adapters, and the zero-shot swap.

docs/methods.md §2 (MAD-X) and §6 ("mlm-warm"); taught in notebooks/02_adapters.ipynb.

1. :func:`~tutorfinetune.mlm.mlm_head` builds a masked-LM head for a BERT-family backbone and
   :func:`~tutorfinetune.mlm.warm_mlm_head` warms it on unlabelled text, body frozen ("mlm-warm", [D])
   (both in :mod:`tutorfinetune.mlm`, shared with domain SFTs and guided dropout's scores).
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
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd
import torch
from torch import nn

from .. import results
from ..backbones import Backbone, load_backbone
from ..config import TrainConfig
from ..data import Task, TaskError
from ..distributed import current
from ..engine import fingerprint, train
from ..env import resolve_device
from ..methods.adapter import (
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
from ..mlm import mlm_loop, warm_mlm_head
from ..progress import outer_bar, progress_bar

__all__ = ["train_domain_adapter", "domain_transfer"]


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
    losses = mlm_loop(model, head, backbone.tokenizer, texts, params, steps, lr, batch_size, max_length, seed,
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
        dist = current()
        all_text = [t for v in texts.values() for t in v]
        head, warm_losses = warm_mlm_head(bb, all_text, steps=warm_steps)
        log = {"warm": warm_losses, "pretrained_head": head.info["pretrained"]}
        for n in names:
            log[n] = train_domain_adapter(bb, texts[n], n, head, reduction_factor=domain_reduction_factor,
                                          steps=mlm_steps, lr=mlm_lr)
            if dist.is_main:  # several processes: rank 0 writes the cache
                save_adapter(bb.model, n, cache / n, backbone=backbone)
        if dist.is_main:
            cache.mkdir(parents=True, exist_ok=True)
            log_path.write_text(json.dumps(log))
        dist.barrier()
    evals = {f"shift:{d}|source-adapter": task.eval_set(f"shift:{d}") for d in targets}
    full_task = task.with_eval_sets(evals)
    swap = {f"shift:{d}": d for d in targets}
    wanted = [s for s in full_task.eval_set_specs if not s.startswith("shift:") or s.split("|")[0][6:] in targets]
    if config.eval_sets:  # the caller's sets, plus the no-swap copies of the held-out ones
        wanted = list(config.eval_sets) + [s for s in evals if s not in config.eval_sets]
    cfg = config.replace(eval_sets=wanted)
    done = results.finished_runs(store, study=study) if reuse else {}
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
        bb = load_backbone(backbone, num_labels=task.num_labels, seed=seed, label_names=task.label_names,
                           readout=run_cfg.readout)
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
