"""Sparse fine-tuning recipes: LT-SFT and domain SFTs (docs/methods.md §7; taught in
notebooks/06_sparse_finetuning.ipynb).

* :func:`lt_sft`: the recipe (registry id ``"lt-sft"``: ``tutorfinetune.recipes.get("lt-sft")``): dense
  phase → select K → reset *every* parameter, head included → sparse phase with a fresh optimiser, only
  the K entries moving (the :class:`~tutorfinetune.methods.sparse_update.SparseUpdate` plug-in) → φ.
  Two calls of :func:`tutorfinetune.train`. The dense phase can be reused across K (``dense=``).
* :func:`domain_sft`: a domain (or language) SFT by masked-language modelling on unlabelled text;
  MiniLM has no MLM head, so a fresh head with an *untied, frozen* decoder is warmed, trained
  densely in both phases and discarded ([D], docs/methods.md §7).
* :func:`evaluate_diffs`: θ0 + Σφ on a fresh backbone, evaluated on named eval sets and recorded in
  the results store (zero-shot transfer = θ0 + φ_target-domain + φ_task).

The difference vectors themselves (:class:`~tutorfinetune.diffs.SparseDiff`, masks, composition) are
primitives in :mod:`tutorfinetune.diffs`. Deviation [D]: ``n_iterations > 1`` starts each round's dense
phase from the previous round's sparse model and unmasks K/n new entries per round.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd
import torch
from torch import nn

from .. import results
from ..backbones import Backbone, apply_readout, load_backbone
from ..config import TrainConfig, as_config, coerce, did_you_mean
from ..data import Task, TaskError
from ..diffs import (
    SparseDiff,
    SparseError,
    base_id,
    compose,
    maskable_names,
    random_mask,
    random_mask_like,
    resolve_k,
    select_mask,
)
from ..distributed import current
from ..engine import RunResult, evaluate_only, train
from ..env import resolve_device
from ..methods.sparse_update import SparseUpdate
from ..mlm import mlm_head, mlm_loop

__all__ = ["DensePhase", "SFTResult", "SELECTIONS", "lt_sft", "domain_sft", "evaluate_diffs", "cached_domain_sfts",
           "dense_phase", "zero_shot_transfer"]

# --------------------------------------------------------------------------------------------
# The recipe
# --------------------------------------------------------------------------------------------
def _start(backbone: Backbone, start_from: SparseDiff | None = None, readout: str | None = None):
    """What every recipe does first: give the head its ``readout`` (before any snapshot, so that resets
    keep it), remember the pretrained backbone's id (before anything moves), apply ``start_from`` (no
    head), and return (model, blocks, maskable names, name -> parameter)."""
    if readout is not None:
        apply_readout(backbone, readout)
    model, blocks = backbone.model, backbone.blocks
    base_id(model, blocks)
    if start_from is not None:
        start_from.apply(model, blocks, with_head=False)
    return model, blocks, maskable_names(model, blocks), dict(model.named_parameters())


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: t.detach().clone() for n, t in model.state_dict().items()}


@dataclass
class DensePhase:
    """What the dense phase leaves: the state before it (to reset to), |θ1 − θ0| per maskable tensor,
    its run, and its dense diff (for the dense-composition comparison). Reusable across K."""

    prev: dict[str, torch.Tensor]
    deltas: dict[str, torch.Tensor]
    result: RunResult | None
    diff: SparseDiff
    base_id: str | None = None


@dataclass
class SFTResult:
    """A trained SFT: ``diff`` (φ, with the head), the sparse phase's ``result`` and the ``dense`` phase."""

    diff: SparseDiff
    result: RunResult
    dense: DensePhase | None
    k: int
    selection: str


#: how the K entries are chosen: the lottery ticket (moved most in the dense phase), K uniform over all
#: entries, or as many per tensor as the lottery ticket but at random positions (needs the dense phase)
SELECTIONS = ("lottery", "random", "random-per-tensor")


def dense_phase(backbone: Backbone, task: Task, config: TrainConfig, *, l1: float = 0.0, label: str = "dense-ft",
                start_from: SparseDiff | None = None, store: str | os.PathLike | None = results.DEFAULT_STORE,
                study: str = "", tags: dict[str, Any] | None = None, verbose: bool = False) -> DensePhase:
    """Dense fine-tuning of the maskable parameters (LayerNorm frozen, head dense) from the model as it
    is (plus ``start_from``): LT-SFT's first phase, and the dense diff its composition is compared with.
    ``backbone.model`` ends trained; ``.prev`` holds the state to reset to."""

    model, blocks, names, params = _start(backbone, start_from, config.readout)
    prev = _snapshot(model)
    start = {n: params[n].detach().clone() for n in names}
    res = train(backbone, task, config, [SparseUpdate(l1=l1, label=label)], store=store, study=study,
                tags=dict(tags or {}), verbose=verbose)
    deltas = {n: (params[n].detach() - start[n]).abs().cpu() for n in names}
    diff = SparseDiff.from_models(model, start, blocks, names=names,
                                  meta={"kind": "task-dense", "backbone": backbone.name, "task": task.name,
                                        "seed": config.seed, "run_id": res.run_id})
    return DensePhase(prev, deltas, res, diff, start_from.meta["id"] if start_from is not None else None)


def lt_sft(
    backbone: Backbone,
    task: Task,
    config: TrainConfig,
    k: Any = 0.01,
    *,
    dense_config: TrainConfig | None = None,
    selection: str = "lottery",
    l1: float = 0.0,
    n_iterations: int = 1,
    dense: DensePhase | None = None,
    start_from: SparseDiff | None = None,
    store: str | os.PathLike | None = results.DEFAULT_STORE,
    study: str = "",
    tags: dict[str, Any] | None = None,
    verbose: bool = False,
) -> SFTResult:
    """Lottery-ticket sparse fine-tuning of ``backbone.model`` on ``task`` (docs/methods.md §7).

    Args:
        backbone, task, config: as for :func:`tutorfinetune.train`; ``config`` sets the sparse phase.
        k: entries that may change: a count, or a fraction in (0, 1] of the maskable entries (default 1%).
        dense_config: the dense phase's settings (default ``config``).
        selection: ``"lottery"`` (the K entries that moved most in the dense phase), ``"random"`` (the
            baseline: K entries drawn uniformly over all maskable entries, seeded by ``config.seed``; no
            dense phase) or ``"random-per-tensor"`` (as many entries per tensor as the lottery ticket,
            at random positions: :func:`~tutorfinetune.diffs.random_mask_like`).
        l1: λ of the optional L1 pull towards θ0, in both phases (λ·Σ|θ−θ0| / N).
        n_iterations: rounds of dense → select K/n more → sparse [D: see the module docstring].
        dense: a :class:`DensePhase` from an earlier call on the same start (reuse it across K).
        start_from: a diff applied before training (the paper's source-language SFT); φ is then
            measured from θ0 + ``start_from``.

    Returns:
        :class:`SFTResult`; ``backbone.model`` ends as θ0 (+ ``start_from``) + φ.
    """
    if selection not in SELECTIONS:
        raise SparseError(f"Unknown selection {selection!r}.{did_you_mean(selection, SELECTIONS)} Use one of {list(SELECTIONS)}.")
    n_iterations = int(coerce("n_iterations", n_iterations, int))
    if n_iterations < 1:
        raise SparseError(f"n_iterations must be >= 1, got {n_iterations}.")
    config = as_config(config)
    dense_config = dense_config or config
    model, blocks, names, params = _start(backbone, start_from, config.readout)
    k_count = resolve_k(k, sum(params[n].numel() for n in names))
    theta0 = {n: params[n].detach().clone() for n in names}
    start_id = start_from.meta["id"] if start_from is not None else None
    tags = dict(tags or {})
    common = dict(store=store, study=study, verbose=verbose)
    kind_tags = {"k": k_count, "k_fraction": k_count / sum(t.numel() for t in theta0.values()), "selection": selection,
                 "l1": float(l1), "start_from": start_id}
    if selection != "lottery":
        n_iterations = 1
    mask: dict[str, torch.Tensor] | None = None
    result = None
    first_dense = dense
    for r in range(n_iterations):
        k_round = k_count if n_iterations == 1 else (k_count * (r + 1)) // n_iterations - (k_count * r) // n_iterations
        if selection == "random":
            new = random_mask({n: t.shape for n, t in theta0.items()}, k_round, seed=config.seed)
            prev = _snapshot(model)
        else:
            if dense is None or r > 0:
                dense = dense_phase(backbone, task, dense_config, l1=l1, label="lt-sft-dense",
                                    tags={**tags, **kind_tags, "phase": "dense", "round": r}, **common)
                dense.base_id = start_id
                prev = dense.prev
                if r == 0:
                    first_dense = dense
            else:
                if dense.base_id != start_id:
                    raise SparseError("The dense phase passed in started from another diff (start_from); run it again.")
                if set(dense.deltas) != set(names):
                    raise SparseError("The dense phase passed in belongs to another model.")
                prev = dense.prev
            new = select_mask(dense.deltas, k_round, exclude=mask)
            if selection == "random-per-tensor":
                new = random_mask_like(new, seed=config.seed)
        mask = new if mask is None else {n: mask[n] | new[n] for n in names}
        model.load_state_dict(prev)  # reset every parameter, the head included
        label = {"lottery": "lt-sft", "random": "random-sft", "random-per-tensor": "random-sft-per-tensor"}[selection]
        result = train(backbone, task, config, [SparseUpdate(mask=mask, l1=l1, label=label)],
                       tags={**tags, **kind_tags, "phase": "sparse", "round": r}, **common)
    diff = SparseDiff.from_models(model, theta0, blocks, names=names,
                                  meta={"kind": "task", "backbone": backbone.name, "task": task.name, **kind_tags,
                                        "seed": config.seed, "run_id": result.run_id})
    return SFTResult(diff, result, first_dense, k_count, selection)


# --------------------------------------------------------------------------------------------
# Domain / language SFTs by masked-language modelling
# --------------------------------------------------------------------------------------------
def zero_shot_transfer(
    backbone: str | Backbone,
    task: Task,
    config: TrainConfig,
    task_diffs: Mapping[str, SparseDiff],
    domain_diffs: Mapping[str, Mapping[str, SparseDiff]],
    targets: Sequence[str],
    *,
    store: str | os.PathLike | None = results.DEFAULT_STORE,
    study: str = "",
    tags: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """For each kind (e.g. ``"sparse"``, ``"dense"``) and held-out domain ``d``, evaluate on ``shift:d``:
    θ0 + φ_task ("task only"), θ0 + φ_source + φ_task ("+ source"), θ0 + φ_d + φ_task ("+ target": the
    zero-shot composition). ``domain_diffs[kind]`` maps "source" and each target to its diff. Each
    evaluation is recorded (method ``"<kind>: <combo>"``); returns the tidy rows of this call."""
    bb = load_backbone(backbone, num_labels=task.num_labels, seed=config.seed, label_names=task.label_names,
                       readout=config.readout) if isinstance(backbone, str) else backbone
    rows = []
    for kind, tdiff in task_diffs.items():
        doms = domain_diffs[kind]
        for d in targets:
            if d not in doms or "source" not in doms:
                raise SparseError(f"No {kind} domain SFT for {d!r} or 'source'; have {sorted(doms)}.")
            for combo, parts in (("task only", [tdiff]), ("+ source", [doms["source"], tdiff]),
                                 ("+ target", [doms[d], tdiff])):
                m = evaluate_diffs(bb, task, config, parts, method=f"{kind}: {combo}", eval_sets=[f"shift:{d}"],
                                   store=store, study=study,
                                   tags={**(tags or {}), "kind": kind, "combo": combo, "target": d})
                for metric, v in m[f"shift:{d}"].items():
                    rows.append({"kind": kind, "combo": combo, "target": d, "eval_set": f"shift:{d}",
                                 "seed": config.seed, "metric": metric, "value": v})
    return pd.DataFrame(rows)


def _untied_mlm_head(backbone: Backbone) -> nn.Module:

    head, _ = mlm_head(backbone)
    decoder = head.predictions.decoder if hasattr(head, "predictions") else head.decoder
    decoder.weight = nn.Parameter(decoder.weight.detach().clone(), requires_grad=False)  # untied, frozen
    return head


def domain_sft(
    backbone: Backbone,
    texts: Sequence[str],
    k: Any = 0.01,
    *,
    steps: int = 200,
    dense_steps: int | None = None,
    warm_steps: int = 200,
    lr: float = 5e-5,
    head_lr: float = 1e-3,
    l1: float = 0.0,
    batch_size: int = 32,
    max_length: int = 64,
    seed: int = 0,
    selection: str = "lottery",
    name: str = "domain",
    device: str = "auto",
) -> tuple[SparseDiff, SparseDiff | None, dict]:
    """A domain (or language) SFT: LT-SFT with masked-LM on unlabelled ``texts``.

    A fresh MLM head with an untied, frozen decoder is warmed on the text (body frozen,
    ``warm_steps``), then trained densely in both phases and discarded. Returns
    ``(sparse_diff, dense_diff, log)``: φ without a head, the dense phase's diff (``None`` for
    ``selection="random"``), and the MLM losses. ``backbone.model`` is left unchanged.
    """

    if not texts:
        raise TaskError("domain_sft needs unlabelled text: pass a non-empty list of sentences.")
    if selection not in SELECTIONS:
        raise SparseError(f"Unknown selection {selection!r}; use one of {list(SELECTIONS)}.")
    model, blocks, names, params = _start(backbone)
    tok = backbone.tokenizer
    dev = resolve_device(device)
    model.to(dev)
    k_count = resolve_k(k, sum(params[n].numel() for n in names))
    original = _snapshot(model)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    torch.manual_seed(seed)
    head = _untied_mlm_head(backbone).to(dev)
    head_params = [p for n, p in head.named_parameters() if "decoder" not in n]
    log: dict[str, Any] = {"k": k_count, "selection": selection, "seed": seed, "n_texts": len(texts)}
    t0 = time.perf_counter()
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        for p in head_params:
            p.requires_grad_(True)
        if warm_steps > 0:
            log["warm"] = mlm_loop(model, head, tok, texts, head_params, warm_steps, head_lr, batch_size, max_length,
                                    seed, f"warm MLM head ({name})", dev)
        head_start = {n: t.detach().clone() for n, t in head.state_dict().items()}
        theta0 = {n: params[n].detach().clone() for n in names}

        def phase(mask, label, n_steps):
            plug = SparseUpdate(mask=mask, l1=l1, label=label)
            plug.prepare(model, blocks)
            body = [params[n] for n in names]
            for p in body:
                p.requires_grad_(True)
            return mlm_loop(model, head, tok, texts, body + head_params, n_steps, lr, batch_size, max_length,
                             seed + 1, f"{label} ({name})", dev, after_backward=plug.apply_to_grads,
                             after_step=plug.restore, head_params=head_params, head_lr=head_lr)

        dense_diff = None
        if selection == "lottery":
            log["dense"] = phase(None, "mlm dense", dense_steps or steps)
            deltas = {n: (params[n].detach() - theta0[n]).abs().cpu() for n in names}
            dense_diff = SparseDiff.from_models(model, theta0, blocks, names=names, with_head=False,
                                                meta={"kind": "domain-dense", "name": name, "backbone": backbone.name,
                                                      "seed": seed})
            mask = select_mask(deltas, k_count)
            with torch.no_grad():
                for n in names:
                    params[n].data.copy_(theta0[n])
                head.load_state_dict(head_start)
        else:
            mask = random_mask({n: t.shape for n, t in theta0.items()}, k_count, seed=seed)
        log["sparse"] = phase(mask, "mlm sparse", steps)
        diff = SparseDiff.from_models(model, theta0, blocks, names=names, with_head=False,
                                      meta={"kind": "domain", "name": name, "backbone": backbone.name, "seed": seed,
                                            "k": k_count, "selection": selection, "mlm_steps": steps})
    finally:
        model.load_state_dict(original)
        for n, p in model.named_parameters():
            p.requires_grad_(flags[n])
    log["seconds"] = time.perf_counter() - t0
    return diff, dense_diff, log


def cached_domain_sfts(backbone: str, texts: Mapping[str, Sequence[str]], folder: str | os.PathLike, *,
                       num_labels: int = 2, **kw) -> tuple[dict[str, SparseDiff], dict[str, SparseDiff], dict]:
    """:func:`domain_sft` for each named text collection (e.g. ``{"source": ..., "hotels": ...}``),
    saved as ``<folder>/<name>.sft`` (sparse) and ``<name>.dense.sft`` (the dense phase) and loaded from
    there on later calls with the same settings (``<folder>/settings.json`` must match; otherwise the
    folder is refused, never overwritten). Returns (sparse diffs, dense diffs, logs)."""
    folder = Path(folder)
    settings = {"backbone": backbone, **{k: v for k, v in kw.items()}, "texts": {n: len(t) for n, t in texts.items()}}
    spath = folder / "settings.json"
    if spath.is_file():
        old = json.loads(spath.read_text())
        if old != json.loads(json.dumps(settings, default=str)):
            raise SparseError(f"{folder} holds domain SFTs made with other settings ({old}); use another folder "
                              "or delete it.")
    sparse, dense, logs = {}, {}, {}
    bb = None
    for name, tx in texts.items():
        sp_, dp_ = folder / f"{name}.sft", folder / f"{name}.dense.sft"
        if sp_.is_file() and (dp_.is_file() or kw.get("selection", "lottery") == "random"):
            sparse[name] = SparseDiff.load(sp_)
            if dp_.is_file():
                dense[name] = SparseDiff.load(dp_)
            logs[name] = json.loads((folder / f"{name}.log.json").read_text()) if (folder / f"{name}.log.json").is_file() else {}
            continue
        if bb is None:
            bb = load_backbone(backbone, num_labels=num_labels, seed=0)
        s_diff, d_diff, log = domain_sft(bb, tx, name=name, **kw)
        dist = current()
        if dist.is_main:  # several processes: rank 0 writes the cache, the others wait for it
            folder.mkdir(parents=True, exist_ok=True)
            spath.write_text(json.dumps(settings, default=str))
            s_diff.save(sp_)
            if d_diff is not None:
                d_diff.save(dp_)
            (folder / f"{name}.log.json").write_text(json.dumps(log))
        dist.barrier()
        if d_diff is not None:
            dense[name] = d_diff
        sparse[name], logs[name] = s_diff, log
    return sparse, dense, logs


# --------------------------------------------------------------------------------------------
# Evaluating compositions
# --------------------------------------------------------------------------------------------
def evaluate_diffs(
    backbone: str | Backbone,
    task: Task,
    config: TrainConfig,
    diffs: Sequence[SparseDiff],
    *,
    method: str,
    eval_sets: Sequence[str] | None = None,
    store: str | os.PathLike | None = results.DEFAULT_STORE,
    study: str = "",
    tags: dict[str, Any] | None = None,
) -> dict[str, dict[str, float]]:
    """Evaluate θ0 + Σ ``diffs`` (heads: the last diff that carries one) on ``eval_sets``, record it
    under ``method`` in the store, and return the metrics. A loaded ``backbone`` is reverted after."""
    if not diffs:
        raise SparseError("evaluate_diffs needs at least one diff.")
    if not any(d.head for d in diffs):
        raise SparseError("None of these diffs carries a classification head: include a task SFT.")
    bb = load_backbone(backbone, num_labels=task.num_labels, seed=config.seed, label_names=task.label_names,
                       readout=config.readout) if isinstance(backbone, str) else backbone
    applied = []
    try:
        for d in diffs:
            d.apply(bb.model, bb.blocks, with_head=bool(d.head))
            applied.append(d)
        small = sum(d.nnz for d in diffs) < 5_000_000  # the overlap of dense diffs is everything: skip the cost
        overlap = int(compose(*diffs).meta["overlap"]) if len(diffs) > 1 and small else None
        return evaluate_only(bb, task, config, eval_sets=eval_sets, method=method, store=store, study=study,
                             tags={**(tags or {}), "diffs": [d.meta.get("id") for d in diffs],
                                   "diff_kinds": [d.meta.get("kind") for d in diffs], "overlap": overlap})
    finally:
        for d in reversed(applied):
            d.revert(bb.model)

