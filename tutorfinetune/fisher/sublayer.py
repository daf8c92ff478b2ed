"""Per-sublayer Fisher scores of a pretraining-style loss, for guided dropout (docs/methods.md §6).

Sharma et al. (COLM 2024, "Information Guided Regularization for Fine-tuning Language Models")
score every dropout site of BERT by the Fisher information of the *pretraining* loss of the
sublayer that feeds it, on a small sample of unlabelled text, once per backbone:

1. per example (Recipe B of docs/methods.md §0: batch size 1, so squares of per-example gradients),
   F_θ = (1/n) Σ_i (∂ℓ(x_i)/∂θ)²;
2. a tensor's score is the mean of F over its entries; a sublayer's score is the mean of its
   tensors' scores (weights, biases and LayerNorm vectors count equally);
3. sites (:func:`dropout_sites`): the embeddings' dropout, and in each block the
   attention-probability dropout (scored by q, k, v), the attention-output dropout (dense + LN)
   and the FFN-output dropout (dense + LN). MiniLM-L6 has 1 + 3·6 = 19.

Sources of the loss (``source=``):

* ``"mlm"``: masked-LM with the checkpoint's own MLM head (faithful; mBERT, BERT, XLM-R ship one).
* ``"mlm-warm"`` [D]: MiniLM ships no MLM head, so train only the head's transform and bias on the
  text first (body frozen; :func:`tutorfinetune.mlm.warm_mlm_head`), then take the MLM Fisher.
* ``"contrastive"`` [D] (MiniLM's default): SimCSE-style in-batch-negatives loss on mean-pooled
  sentence embeddings, the positive being a second dropout pass of the same sentence; closest to
  MiniLM's own last training. Each example's loss is its row of the batch's InfoNCE loss.
* ``"task"``: the empirical Fisher of the labelled task loss; an ablation only (not task-agnostic).

Scores are cached as a small JSON file (site -> score, with backbone, source, corpus, n, seed and
the loss recorded) under ``~/.cache/tutorfinetune/fisher`` (``TUTORFINETUNE_CACHE`` overrides), so
the map costs nothing after the first time. A cache computed for another backbone is refused.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..backbones import Backbone, model_id
from ..config import did_you_mean
from ..data import load_task
from ..env import resolve_device
from ..mlm import mask_batch, mlm_head, mlm_loss, warm_mlm_head
from ..progress import progress_bar

__all__ = ["SOURCES", "DropoutSite", "dropout_sites", "SublayerScores", "sublayer_scores", "GuidanceError",
           "cache_dir", "backbone_id", "model_id"]

SOURCES = {
    "mlm": "masked-LM loss with the checkpoint's own MLM head (faithful where the checkpoint ships one)",
    "mlm-warm": "masked-LM loss after warming a fresh MLM head on the text, body frozen (MiniLM has none) [D]",
    "contrastive": "SimCSE-style in-batch-negatives loss, positives from a second dropout pass (MiniLM default) [D]",
    "task": "empirical Fisher of the labelled task loss (ablation only: no longer task-agnostic)",
}


class GuidanceError(ValueError):
    """Unknown source, no dropout sites, empty corpus, or a cache made for another backbone."""


@dataclass
class DropoutSite:
    """One dropout module of the encoder and the sublayer whose Fisher score it takes."""

    name: str                     # "embeddings", "block3.attention", "block3.attention_output", "block3.ffn_output"
    unit: str                     # "embeddings" or "block3"
    kind: str                     # "embeddings", "attention", "attention_output", "ffn_output"
    module: nn.Module             # the module whose dropout probability changes
    tensors: list[nn.Parameter] = field(repr=False, default_factory=list)

    @property
    def dropout(self) -> nn.Dropout | None:
        d = getattr(self.module, "dropout", None)
        return d if isinstance(d, nn.Module) and hasattr(d, "p") else None

    def get_p(self) -> float:
        """The probability the forward pass actually uses (SDPA attention reads ``dropout_prob``)."""
        if hasattr(self.module, "dropout_prob"):
            return float(self.module.dropout_prob)
        return float(self.dropout.p) if self.dropout is not None else float("nan")

    def set_p(self, p: float) -> None:
        """Set the effective probability: ``dropout.p`` and, for SDPA attention, ``dropout_prob`` too."""
        if self.dropout is not None:
            self.dropout.p = float(p)
        if hasattr(self.module, "dropout_prob"):
            self.module.dropout_prob = float(p)


def _params(*mods: nn.Module | None) -> list[nn.Parameter]:
    out, seen = [], set()
    for m in mods:
        if m is None:
            continue
        for p in m.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                out.append(p)
    return out


def _without_adapters(params: list[nn.Parameter], module: nn.Module) -> list[nn.Parameter]:
    ad = {id(p) for n, p in module.named_parameters() if "adapters." in n or "adapter_" in n}
    return [p for p in params if id(p) not in ad]


def dropout_sites(model: nn.Module, blocks) -> list[DropoutSite]:
    """The guided dropout sites of a BERT-family encoder (BERT, MiniLM, RoBERTa/XLM-R, ELECTRA), bottom
    to top, found through the BlockMap (never by module index). The head's dropout is not a site.

    Raises:
        GuidanceError: the model has no BlockMap or no dropout modules where BERT keeps them.
    """
    if blocks is None or not getattr(blocks, "blocks", None):
        raise GuidanceError(f"{type(model).__name__} has no BlockMap, so its dropout sites cannot be found.")
    sites: list[DropoutSite] = []
    emb = blocks.embeddings
    if isinstance(getattr(emb, "dropout", None), nn.Dropout):
        sites.append(DropoutSite("embeddings", "embeddings", "embeddings", emb, _params(emb)))
    for j, blk in enumerate(blocks.blocks):
        att = getattr(blk, "attention", None)
        self_att = getattr(att, "self", None)
        att_out = getattr(att, "output", None)
        ffn_out = getattr(blk, "output", None)
        found = 0
        if self_att is not None and isinstance(getattr(self_att, "dropout", None), nn.Dropout):
            sites.append(DropoutSite(f"block{j}.attention", f"block{j}", "attention", self_att,
                                     _params(getattr(self_att, "query", None), getattr(self_att, "key", None),
                                             getattr(self_att, "value", None))))
            found += 1
        for mod, kind in ((att_out, "attention_output"), (ffn_out, "ffn_output")):
            if mod is not None and isinstance(getattr(mod, "dropout", None), nn.Dropout):
                sites.append(DropoutSite(f"block{j}.{kind}", f"block{j}", kind, mod,
                                         _without_adapters(_params(getattr(mod, "dense", None),
                                                                   getattr(mod, "LayerNorm", None)), mod)))
                found += 1
        if not found:
            raise GuidanceError(
                f"Block {j} of {type(model).__name__} has no dropout modules where BERT keeps them "
                "(attention.self.dropout, attention.output.dropout, output.dropout). Guided dropout supports the "
                "BERT family (BERT, MiniLM, RoBERTa/XLM-R, ELECTRA).")
    if not sites:
        raise GuidanceError(f"No dropout modules found in {type(model).__name__}: nothing to guide.")
    return sites


# --------------------------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------------------------
def cache_dir() -> Path:
    return Path(os.environ.get("TUTORFINETUNE_CACHE", Path.home() / ".cache" / "tutorfinetune")) / "fisher"


def backbone_id(backbone: Backbone) -> str:
    """A fingerprint of the backbone's architecture and pretrained encoder weights (not its head)."""
    return model_id(backbone.model, backbone.blocks)


def _corpus_sha(texts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()[:12]


@dataclass
class SublayerScores:
    """Fisher score per dropout site, with what it was computed from."""

    scores: dict[str, float]
    meta: dict[str, Any]

    def frame(self) -> pd.DataFrame:
        """One row per site: site, unit, kind, score (blocks as ``block3``)."""
        rows = []
        for s, v in self.scores.items():
            unit, _, kind = s.partition(".")
            rows.append({"site": s, "unit": unit, "kind": kind or "embeddings", "score": v})
        return pd.DataFrame(rows)

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({"scores": self.scores, **self.meta}, indent=1))
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, backbone: Backbone | None = None) -> "SublayerScores":
        """Read a cached score file; with ``backbone``, refuse one computed for another backbone."""
        out = cls.read(path)
        if backbone is not None:
            out.check(model_id(backbone.model, backbone.blocks), backbone.name, path)
        return out

    def check(self, mid: str, name: str, where: Any = "these scores") -> None:
        """Refuse scores computed for another backbone (a stale cache)."""
        if self.meta.get("backbone_id") not in (None, mid):
            raise GuidanceError(
                f"{where} was computed for backbone {self.meta.get('backbone')!r} (id {self.meta.get('backbone_id')}), "
                f"not for {name!r} (id {mid}): a stale cache. Delete it, or compute the scores for this backbone "
                "(recompute=True).")

    @classmethod
    def read(cls, path: str | os.PathLike) -> "SublayerScores":
        """Read a score file without checking which backbone it belongs to."""
        path = Path(path)
        try:
            blob = json.loads(path.read_text())
            scores = {str(k): float(v) for k, v in blob.pop("scores").items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise GuidanceError(f"{path} is not a Fisher score file ({type(e).__name__}: {e}). Delete it and "
                                "compute the scores again (recompute=True).") from None
        if not scores or not all(math.isfinite(v) for v in scores.values()):
            raise GuidanceError(f"{path} holds no usable scores (empty or not finite). Delete it and recompute.")
        return cls(scores, blob)


# --------------------------------------------------------------------------------------------
# Losses, one example at a time
# --------------------------------------------------------------------------------------------
def _mean_pool(hidden: torch.Tensor, att: torch.Tensor) -> torch.Tensor:
    m = att.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1)


def _accumulate(acc: list[torch.Tensor], loss: torch.Tensor, params: list[nn.Parameter], retain: bool = False) -> None:
    grads = torch.autograd.grad(loss, params, retain_graph=retain, allow_unused=True)
    for a, g in zip(acc, grads):
        if g is not None:
            a += g.detach().float().pow(2).mean()


def _pad(ids: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(x) for x in ids)
    inp = torch.full((len(ids), width), pad_id, dtype=torch.long)
    att = torch.zeros_like(inp)
    for r, x in enumerate(ids):
        inp[r, :len(x)] = torch.tensor(x)
        att[r, :len(x)] = 1
    return inp.to(device), att.to(device)


def sublayer_scores(backbone: Backbone, source: str = "contrastive", texts: Sequence[str] | None = None, *,
                    n: int = 256, seed: int = 0, corpus: str | None = None, batch_size: int = 16,
                    max_length: int = 64, warm_steps: int = 200, temperature: float = 0.05, task=None,
                    cache: bool = True, recompute: bool = False, path: str | os.PathLike | None = None,
                    device: str = "auto") -> SublayerScores:
    """Fisher score of every dropout site of ``backbone`` (computed once, then read from the cache).

    Args:
        backbone: from :func:`tutorfinetune.load_backbone` (its head is not scored).
        source: ``"contrastive"`` (default), ``"mlm-warm"``, ``"mlm"`` or ``"task"`` (:data:`SOURCES`).
        texts: unlabelled sentences (default: the bundled ``reviews`` text); ``n`` are sampled with ``seed``.
        n: examples in the estimate (the paper: about 1% of the pretraining corpus).
        corpus: a label for the texts recorded with the scores (default: "reviews" or "user").
        batch_size: sentences per in-batch-negatives batch (``"contrastive"``).
        max_length: tokens per sentence.
        warm_steps: MLM head warm-up steps (``"mlm-warm"``).
        temperature: InfoNCE temperature (``"contrastive"``; SimCSE's 0.05).
        task: a labelled :class:`~tutorfinetune.Task` for ``source="task"``.
        cache, recompute, path: read/write the JSON cache (``path`` overrides the cache file).
        device: where to compute.

    Raises:
        GuidanceError: unknown source, too little text, a backbone without an MLM head for ``"mlm"``,
            or a cached file for another backbone.
    """
    if not isinstance(source, str) or source not in SOURCES:
        raise GuidanceError(f"Unknown Fisher source {source!r}.{did_you_mean(source, SOURCES)} Use one of {list(SOURCES)}.")
    n, batch_size, max_length, warm_steps = int(n), int(batch_size), int(max_length), int(warm_steps)
    if n < 2:
        raise GuidanceError(f"n must be >= 2 examples, got {n}.")
    if source == "task":
        if task is None:
            raise GuidanceError("source='task' needs the labelled task: sublayer_scores(..., task=task).")
        rows = task.train
        texts_all = rows["text"].tolist()
        corpus = corpus or f"task:{task.name}"
    else:
        if texts is None:
            texts_all, corpus = load_task("reviews").texts(), corpus or "reviews"
        else:
            if isinstance(texts, str):
                raise GuidanceError("texts must be a list of sentences, not one string (use load_text(path) for a file).")
            texts_all, corpus = [t for t in texts if isinstance(t, str) and t.strip()], corpus or "user"
    if len(texts_all) < 2:
        raise GuidanceError(f"The corpus has {len(texts_all)} usable sentences; Fisher scores need at least 2 "
                            f"(n={n} asked). Pass more text (texts=[...]) or lower n.")
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(texts_all), size=min(n, len(texts_all)), replace=False)
    chosen = [texts_all[i] for i in pick]
    labels = task.train["label"].to_numpy()[pick] if source == "task" else None
    n_used = len(chosen)
    meta = {"backbone": backbone.name, "backbone_id": backbone_id(backbone), "source": source, "corpus": corpus,
            "corpus_sha": _corpus_sha(chosen), "n": n_used, "seed": int(seed), "max_length": max_length,
            "recipe": "per-example squared gradients (Recipe B), mean over a tensor's entries, mean over a sublayer's tensors"}
    if source == "contrastive":
        meta.update(loss=f"SimCSE in-batch InfoNCE, mean pooling, temperature {temperature}, batch {batch_size}",
                    batch_size=batch_size, temperature=temperature)
    elif source in ("mlm", "mlm-warm"):
        meta.update(loss="masked-LM cross-entropy at 15% masked tokens (BERT 80/10/10)")
        if source == "mlm-warm":
            meta["warm_steps"] = warm_steps
    else:
        meta.update(loss="cross-entropy of the task labels (empirical Fisher)")
    key = f"{backbone.name.replace('/', '_')}-{source}-{corpus.replace('/', '_').replace(':', '_')}-{meta['corpus_sha']}-n{n_used}-s{seed}"
    if source == "mlm-warm":
        key += f"-w{warm_steps}"
    cache_path = Path(path) if path is not None else cache_dir() / f"{key}.json"
    if cache and not recompute and cache_path.is_file():
        return SublayerScores.load(cache_path, backbone)

    sites = dropout_sites(backbone.model, backbone.blocks)
    dev = resolve_device(device)
    model, tok = backbone.model, backbone.tokenizer
    flags = {id(p): p.requires_grad for p in model.parameters()}
    was_training = model.training
    model.to(dev)
    t0 = time.perf_counter()
    tensors: list[nn.Parameter] = []
    seen: set[int] = set()
    for s in sites:
        for p in s.tensors:
            if id(p) not in seen:
                seen.add(id(p))
                tensors.append(p)
    acc = [torch.zeros((), dtype=torch.float32, device=dev) for _ in tensors]
    try:
        for p in tensors:
            p.requires_grad_(True)
        ids = tok(chosen, truncation=True, max_length=max_length)["input_ids"]
        bar = progress_bar(total=n_used, desc=f"Fisher ({source})")
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            torch.manual_seed(seed)
            if source == "contrastive":
                model.train()  # the positive is a second *dropout* pass (SimCSE)
                for start in range(0, n_used, batch_size):
                    chunk = ids[start:start + batch_size]
                    if len(chunk) < 2:  # a lone sentence has no negatives: fold it into the previous batch
                        chunk = ids[max(0, start - batch_size + 1):start + 1]
                        rows_ = [len(chunk) - 1]
                    else:
                        rows_ = list(range(len(chunk)))
                    inp, att = _pad(chunk, tok.pad_token_id, dev)
                    z1 = _mean_pool(model.base_model(input_ids=inp, attention_mask=att).last_hidden_state, att)
                    z2 = _mean_pool(model.base_model(input_ids=inp, attention_mask=att).last_hidden_state, att)
                    sim = nn.functional.cosine_similarity(z1.unsqueeze(1), z2.unsqueeze(0), dim=-1) / temperature
                    per = nn.functional.cross_entropy(sim.float(), torch.arange(len(chunk), device=dev), reduction="none")
                    for k, r in enumerate(rows_):
                        _accumulate(acc, per[r], tensors, retain=k < len(rows_) - 1)
                        bar.update(1)
            elif source in ("mlm", "mlm-warm"):

                if source == "mlm":
                    head, pretrained = mlm_head(backbone)
                    if not pretrained:
                        raise GuidanceError(
                            f"{backbone.name!r} ships no pretrained MLM head, so source='mlm' would score a random "
                            "head's gradients. Use source='mlm-warm' (warms a head first) or 'contrastive'.")
                else:
                    head, _ = warm_mlm_head(backbone, texts_all, steps=warm_steps, seed=seed, max_length=max_length,
                                            device=str(dev))
                    meta["warm_final_loss"] = float(np.mean(head.info["losses"][-20:]))
                for p in tensors:  # warm_mlm_head restores the flags it found: switch ours back on
                    p.requires_grad_(True)
                head.to(dev)
                model.eval()
                mrng = np.random.default_rng([seed, 15])
                for x in ids:
                    inp, att, lab = (t.to(dev) for t in mask_batch([x], tok, mrng))
                    _accumulate(acc, mlm_loss(model, head, inp, att, lab), tensors)
                    bar.update(1)
            else:
                model.eval()
                for x, y in zip(ids, labels):
                    inp, att = _pad([x], tok.pad_token_id, dev)
                    out = model(input_ids=inp, attention_mask=att, labels=torch.tensor([int(y)], device=dev))
                    _accumulate(acc, out.loss, tensors)
                    bar.update(1)
        bar.close()
    finally:
        for p in model.parameters():
            p.requires_grad_(flags.get(id(p), True))
        model.train(was_training)
    per_tensor = {id(p): float(a) / n_used for p, a in zip(tensors, acc)}
    scores = {s.name: float(np.mean([per_tensor[id(p)] for p in s.tensors])) for s in sites if s.tensors}
    bad = [k for k, v in scores.items() if not math.isfinite(v)]
    if bad:
        raise GuidanceError(f"Fisher scores are not finite for {bad}: the {source} loss diverged; try another source.")
    meta.update(seconds=round(time.perf_counter() - t0, 2), created=time.strftime("%Y-%m-%dT%H:%M:%S"),
                device=str(dev))
    result = SublayerScores(scores, meta)
    if cache:
        result.save(cache_path)
        result.meta["path"] = str(cache_path)
    return result
