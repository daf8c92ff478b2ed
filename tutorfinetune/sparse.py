"""Sparse fine-tuning: difference vectors, lottery-ticket selection, composable SFTs (METHODS.md §4).

Ansell et al., "Composable Sparse Fine-Tuning for Cross-Lingual Transfer" (ACL 2022). A sparse
fine-tuning (SFT) is a sparse difference vector φ added to the pretrained weights θ0; two SFTs compose
by addition. Here:

* :class:`SparseDiff`: φ per tensor (flat int32 indices + fp32 values, or a dense tensor when more
  than half the entries moved), plus an optional dense copy of the classification head (the "abs"
  part). ``apply`` / ``revert`` (exact: ``revert`` puts back the stored original values), ``+`` /
  :func:`compose`, ``save`` / ``load`` as safetensors (never pickle), ``stored_bytes``, ``overlap``.
  Applying the same diff twice to one model is refused (the model remembers what is applied).
* :func:`maskable_names`: what LT-SFT may change: the encoder's embeddings and blocks, LayerNorm
  excluded (frozen), the head excluded (trained densely), adapters excluded.
* :func:`select_mask` (the K entries that moved most, pooled over all tensors) and
  :func:`random_mask` (the baseline with the same K).
* :func:`lt_sft`: the recipe (registry id ``"lt-sft"``: ``tutorfinetune.recipes.get("lt-sft")``): dense phase → select K →
  reset *every* parameter, head included → sparse phase with a fresh optimiser, only the K entries
  moving (the :class:`~tutorfinetune.methods.sparse.SparseUpdate` plug-in) → φ. Two calls of
  :func:`tutorfinetune.train`. The dense phase can be reused across K (``dense=``).
* :func:`domain_sft`: a domain (or language) SFT by masked-language modelling on unlabelled text;
  MiniLM has no MLM head, so a fresh head with an *untied, frozen* decoder is warmed, trained
  densely in both phases and discarded ([D], METHODS.md §4).
* :func:`evaluate_diffs`: θ0 + Σφ on a fresh backbone, evaluated on named eval sets and recorded in
  the results store (zero-shot transfer = θ0 + φ_target-domain + φ_task).

Deviations, all [D]: ``n_iterations > 1`` starts each round's dense phase from the previous round's
sparse model and unmasks K/n new entries per round; selection takes exactly K entries (``topk``;
ties broken by position) rather than ``δ ≥ τ``, which over-selects when many deltas tie at 0.
"""

from __future__ import annotations

import json
import math
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from . import results
from .backbones import Backbone, load_backbone
from .config import ConfigError, TrainConfig, coerce
from .data import Task, TaskError
from .engine import RunResult, evaluate_only, resolve_device, train
from .sublayer_fisher import model_id

__all__ = ["SparseError", "SparseDiff", "DensePhase", "SFTResult", "maskable_names", "resolve_k", "select_mask",
           "random_mask", "base_id", "compose", "lt_sft", "domain_sft", "evaluate_diffs", "cached_domain_sfts", "dense_phase", "zero_shot_transfer", "FORMAT"]

FORMAT = "tutorfinetune.sparse_diff/1"
_APPLIED = "_tutorfinetune_applied_diffs"
_BASE_ID = "_tutorfinetune_base_id"


class SparseError(ValueError):
    """Bad K, a diff that does not fit the model, a diff applied twice, or a corrupted diff file."""


# --------------------------------------------------------------------------------------------
# What may change
# --------------------------------------------------------------------------------------------
def maskable_names(model: nn.Module, blocks) -> list[str]:
    """Names of the parameters LT-SFT may change: embeddings and blocks, without LayerNorm, head
    or adapter parameters (METHODS.md §4)."""
    units = blocks.unit_of(model)
    norm = {id(p) for m in model.modules() if isinstance(m, nn.LayerNorm) for p in m.parameters(recurse=False)}
    out = []
    for n, p in model.named_parameters():
        if units.get(n) not in ("embeddings",) and not units.get(n, "").startswith("block"):
            continue
        if id(p) in norm or "adapter" in n.lower() or "layernorm" in n.lower():
            continue
        out.append(n)
    if not out:
        raise SparseError("This model has no maskable parameters (embeddings or blocks outside LayerNorm).")
    return out


@torch.no_grad()
def base_id(model: nn.Module, blocks, reference: Mapping[str, torch.Tensor] | None = None) -> str:
    """The id of the *pretrained* backbone a model came from (:func:`~tutorfinetune.sublayer_fisher.model_id`
    of its weights before any diff or training). Remembered on the model the first time it is asked
    for (the recipes ask before training); ``reference`` gives the starting weights when it was not."""
    known = getattr(model, _BASE_ID, None)
    if known:
        return known
    if reference is None:
        mid = model_id(model, blocks)
    else:
        params = dict(model.named_parameters())
        now = {n: params[n].detach().clone() for n in reference if n in params}
        for n in now:
            params[n].copy_(reference[n])
        mid = model_id(model, blocks)
        for n, t in now.items():
            params[n].copy_(t)
    object.__setattr__(model, _BASE_ID, mid)
    return mid


def head_names(model: nn.Module, blocks) -> list[str]:
    ids = {id(p) for p in blocks.parameters("head")}
    return [n for n, p in model.named_parameters() if id(p) in ids]


def resolve_k(k: Any, n_maskable: int) -> int:
    """K as a count (int > 1... n_maskable) or a fraction in (0, 1] of the maskable entries."""
    try:
        val = coerce("k", k, float)
    except ConfigError as e:
        raise SparseError(str(e)) from None
    if math.isnan(val) or val <= 0:
        raise SparseError(f"K must be > 0 (a count of entries, or a fraction in (0, 1]); got {k!r}.")
    if val <= 1.0 and not (isinstance(k, int) and not isinstance(k, bool)):
        count = int(round(val * n_maskable))
    else:
        count = int(val)
        if count != val:
            raise SparseError(f"K as a count must be a whole number, got {k!r}.")
    if count > n_maskable:
        raise SparseError(f"K = {count:,} is larger than the {n_maskable:,} maskable entries; choose K <= "
                          f"{n_maskable:,} or a fraction such as 0.01.")
    return max(1, count)


def select_mask(deltas: Mapping[str, torch.Tensor], k: Any, exclude: Mapping[str, torch.Tensor] | None = None
                ) -> dict[str, torch.Tensor]:
    """The K entries with the largest |δ|, pooled over all tensors (exactly K; ties by position).

    ``exclude``: entries already chosen (for ``n_iterations > 1``), never chosen again.
    """
    names = list(deltas)
    sizes = [deltas[n].numel() for n in names]
    count = resolve_k(k, sum(sizes))
    flat = torch.cat([deltas[n].detach().reshape(-1).float().abs().cpu() for n in names])
    if exclude:
        ex = torch.cat([exclude[n].reshape(-1).cpu() if n in exclude else torch.zeros(s, dtype=torch.bool)
                        for n, s in zip(names, sizes)])
        if count > int((~ex).sum()):
            raise SparseError(f"K = {count:,} but only {int((~ex).sum()):,} entries are left to choose.")
        flat[ex] = -1.0
    idx = torch.topk(flat, count, sorted=False).indices
    chosen = torch.zeros(flat.numel(), dtype=torch.bool)
    chosen[idx] = True
    return {n: c.view(deltas[n].shape) for n, c in zip(names, torch.split(chosen, sizes))}


def random_mask(shapes: Mapping[str, Sequence[int] | torch.Size], k: Any, seed: int = 0) -> dict[str, torch.Tensor]:
    """K entries drawn uniformly without replacement over all tensors (the baseline of LT-SFT)."""
    names = list(shapes)
    sizes = [int(np.prod(shapes[n])) for n in names]
    count = resolve_k(k, sum(sizes))
    g = torch.Generator().manual_seed(int(seed))
    idx = torch.randperm(sum(sizes), generator=g)[:count]
    chosen = torch.zeros(sum(sizes), dtype=torch.bool)
    chosen[idx] = True
    return {n: c.view(tuple(shapes[n])) for n, c in zip(names, torch.split(chosen, sizes))}


# --------------------------------------------------------------------------------------------
# The difference vector
# --------------------------------------------------------------------------------------------
@dataclass
class SparseDiff:
    """φ = θ − θ0 on some tensors, stored sparsely, plus an optional dense head ("abs" part).

    ``deltas``: name -> (flat indices (int32/int64) or ``None`` for a dense tensor, values, shape).
    ``meta``: ``model_id`` (which backbone it belongs to), ``kind`` ("task", "domain", "composed"),
    ``units`` (tensor -> BlockMap unit), and whatever the recipe recorded (K, selection, seed).
    """

    deltas: dict[str, tuple[torch.Tensor | None, torch.Tensor, tuple]]
    head: dict[str, torch.Tensor] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.meta.setdefault("id", uuid.uuid4().hex[:12])

    # construction ---------------------------------------------------------------------------
    @classmethod
    def from_models(cls, model: nn.Module, reference: Mapping[str, torch.Tensor], blocks=None, *,
                    names: Sequence[str] | None = None, with_head: bool = True, threshold: float = 1e-7,
                    meta: dict | None = None) -> "SparseDiff":
        """The difference ``model − reference`` over ``names`` (default: all of ``reference``);
        entries with ``|φ| <= threshold`` are dropped; the head is copied densely when ``with_head``."""
        params = dict(model.named_parameters())
        names = list(names or reference)
        deltas = {}
        for n in names:
            if n not in params:
                raise SparseError(f"The model has no parameter {n!r}.")
            d = (params[n].detach().float().cpu() - reference[n].float().cpu()).reshape(-1)
            idx = torch.nonzero(d.abs() > threshold).reshape(-1)
            if idx.numel() == 0:
                continue
            shape = tuple(params[n].shape)
            if idx.numel() > d.numel() // 2:
                deltas[n] = (None, d.clone(), shape)
            else:
                deltas[n] = (idx.to(torch.int32 if d.numel() < 2**31 else torch.int64), d[idx].clone(), shape)
        head = {}
        meta = dict(meta or {})
        if blocks is not None:
            meta.setdefault("model_id", base_id(model, blocks, reference))
            units = blocks.unit_of(model)
            meta.setdefault("units", {n: units.get(n, "other") for n in deltas})
            if with_head:
                head = {n: params[n].detach().float().cpu().clone() for n in head_names(model, blocks)}
        return cls(deltas, head, meta)

    # sizes ----------------------------------------------------------------------------------
    @property
    def nnz(self) -> int:
        """Entries stored (dense tensors count every entry)."""
        return int(sum(v.numel() for _, v, _ in self.deltas.values()))

    @property
    def changed(self) -> int:
        """Entries that differ from θ0 (a dense tensor counts only its non-zero entries)."""
        return int(sum(v.numel() if i is not None else int(torch.count_nonzero(v)) for i, v, _ in self.deltas.values()))

    @property
    def head_size(self) -> int:
        return int(sum(t.numel() for t in self.head.values()))

    def stored_bytes(self) -> int:
        """Bytes of the tensors a saved file holds (indices, values, head); the file adds a small header."""
        total = sum(v.numel() * v.element_size() + (i.numel() * i.element_size() if i is not None else 0)
                    for i, v, _ in self.deltas.values())
        return int(total + sum(t.numel() * t.element_size() for t in self.head.values()))

    def frame(self) -> pd.DataFrame:
        """One row per tensor: unit, entries changed, size, share of the tensor."""
        units = self.meta.get("units", {})
        rows = [{"tensor": n, "unit": units.get(n, "other"), "changed": int(v.numel() if i is not None
                 else torch.count_nonzero(v)), "size": int(np.prod(s))} for n, (i, v, s) in self.deltas.items()]
        df = pd.DataFrame(rows, columns=["tensor", "unit", "changed", "size"])
        df["share_of_tensor"] = df["changed"] / df["size"].clip(lower=1)
        return df

    def by_unit(self) -> pd.DataFrame:
        """Entries per BlockMap unit (embeddings, block0, ...) and their share of the diff."""
        df = self.frame().groupby("unit", sort=False)[["changed", "size"]].sum().reset_index()
        df["share_of_diff"] = df["changed"] / max(1, df["changed"].sum())
        df["density"] = df["changed"] / df["size"].clip(lower=1)
        return df

    def supports(self) -> dict[str, torch.Tensor]:
        """name -> sorted flat indices of the changed entries."""
        out = {}
        for n, (i, v, _) in self.deltas.items():
            out[n] = torch.sort(i.long()).values if i is not None else torch.nonzero(v).reshape(-1)
        return out

    def overlap(self, other: "SparseDiff") -> pd.DataFrame:
        """Per tensor: entries in this diff, in ``other``, in both; a final ``total`` row. Composing
        adds both deltas on the shared entries (METHODS.md §4: log the overlap)."""
        a, b = self.supports(), other.supports()
        rows = []
        for n in sorted(set(a) | set(b)):
            ia, ib = a.get(n, torch.empty(0, dtype=torch.long)), b.get(n, torch.empty(0, dtype=torch.long))
            shared = int(np.intersect1d(ia.numpy(), ib.numpy(), assume_unique=True).size) if len(ia) and len(ib) else 0
            rows.append({"tensor": n, "a": int(ia.numel()), "b": int(ib.numel()), "shared": shared})
        df = pd.DataFrame(rows, columns=["tensor", "a", "b", "shared"])
        tot = {"tensor": "total", "a": int(df.a.sum()), "b": int(df.b.sum()), "shared": int(df.shared.sum())}
        df = pd.concat([df, pd.DataFrame([tot])], ignore_index=True)
        df["shared_of_smaller"] = df["shared"] / df[["a", "b"]].min(axis=1).clip(lower=1)
        return df

    # applying -------------------------------------------------------------------------------
    def _check_fits(self, model: nn.Module, blocks=None) -> dict[str, nn.Parameter]:
        params = dict(model.named_parameters())
        if blocks is not None and self.meta.get("model_id") and self.meta["model_id"] != base_id(model, blocks):
            raise SparseError(
                f"This diff was made for another backbone (model_id {self.meta['model_id']}, this model "
                f"{base_id(model, blocks)}). Apply it to the backbone it was trained on "
                f"({self.meta.get('backbone', 'see diff.meta')}).")
        for n, (_, _, s) in self.deltas.items():
            if n not in params:
                raise SparseError(f"The model has no parameter {n!r}: this diff belongs to another architecture.")
            if tuple(params[n].shape) != tuple(s):
                raise SparseError(f"Parameter {n!r} has shape {tuple(params[n].shape)} but the diff expects {tuple(s)}.")
        for n, t in self.head.items():
            if n in params and tuple(params[n].shape) != tuple(t.shape):
                raise SparseError(f"Head parameter {n!r} has shape {tuple(params[n].shape)} but the diff's head "
                                  f"is {tuple(t.shape)} (another number of labels?).")
        return params

    def applied_to(self, model: nn.Module) -> bool:
        return any(e["id"] == self.meta["id"] for e in getattr(model, _APPLIED, []))

    @torch.no_grad()
    def apply(self, model: nn.Module, blocks=None, *, with_head: bool = True, allow_repeat: bool = False) -> nn.Module:
        """θ ← θ + φ in place (and copy the head when ``with_head``); returns the model.

        Refuses a diff already applied to this model (it would count twice) unless ``allow_repeat``.
        Pass the model's ``blocks`` to also check that the diff was made for this backbone.
        """
        if self.applied_to(model) and not allow_repeat:
            raise SparseError(f"Diff {self.meta['id']} is already applied to this model; applying it again would "
                              "add it twice. Call diff.revert(model) first, or pass allow_repeat=True.")
        params = self._check_fits(model, blocks)
        saved, saved_head = {}, {}
        for n, (i, v, _) in self.deltas.items():
            p = params[n].data
            flat = p.view(-1)
            if i is None:
                saved[n] = (flat.clone(), None)
                flat.add_(v.to(p.device, p.dtype))
                saved[n] = (saved[n][0], flat.clone())
            else:
                ii = i.long().to(p.device)
                old = flat[ii].clone()
                flat.index_add_(0, ii, v.to(p.device, p.dtype))
                saved[n] = (old, flat[ii].clone())
        if with_head:
            for n, t in self.head.items():
                if n in params:
                    saved_head[n] = params[n].data.clone()
                    params[n].data.copy_(t.to(params[n].device, params[n].dtype))
        entries = list(getattr(model, _APPLIED, []))
        entries.append({"id": self.meta["id"], "saved": saved, "saved_head": saved_head})
        object.__setattr__(model, _APPLIED, entries)
        return model

    @torch.no_grad()
    def revert(self, model: nn.Module) -> nn.Module:
        """Undo :meth:`apply`: subtract φ. Exact: an entry still holding the value ``apply`` wrote gets
        its original value back; an entry changed since (training, another diff) gets φ subtracted."""
        entries = list(getattr(model, _APPLIED, []))
        pos = [k for k, e in enumerate(entries) if e["id"] == self.meta["id"]]
        if not pos:
            raise SparseError(f"Diff {self.meta['id']} is not applied to this model: nothing to revert.")
        entry = entries.pop(pos[-1])
        params = dict(model.named_parameters())
        for n, (i, v, _) in self.deltas.items():
            flat = params[n].data.view(-1)
            old, written = entry["saved"][n]
            ii = None if i is None else i.long().to(flat.device)
            now = flat if ii is None else flat[ii]
            back = torch.where(now == written, old, now - v.to(flat.device, flat.dtype))
            if ii is None:
                flat.copy_(back)
            else:
                flat[ii] = back
        for n, t in entry["saved_head"].items():
            params[n].data.copy_(t)
        object.__setattr__(model, _APPLIED, entries)
        return model

    # composing ------------------------------------------------------------------------------
    def __add__(self, other: "SparseDiff") -> "SparseDiff":
        return compose(self, other)

    # storing --------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write a safetensors file (atomically: a temporary file, then a rename)."""
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors, shapes = {}, {}
        for n, (i, v, s) in self.deltas.items():
            tensors[f"values::{n}"] = v.contiguous()
            if i is not None:
                tensors[f"indices::{n}"] = i.contiguous()
            shapes[n] = list(s)
        for n, t in self.head.items():
            tensors[f"head::{n}"] = t.contiguous()
        meta = {"format": FORMAT, "shapes": json.dumps(shapes), "meta": json.dumps(self.meta, default=str)}
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:6]}.tmp")
        try:
            save_file(tensors, str(tmp), metadata=meta)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SparseDiff":
        """Read a file written by :meth:`save`, checking it entry by entry."""
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise SparseError(f"No diff file at {path}.")
        try:
            with safe_open(str(path), "pt") as f:
                header = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:  # safetensors raises its own error types for truncated or garbled files
            raise SparseError(f"{path} is not a readable diff file (corrupted or truncated?): {e}. Re-create it "
                              "with SparseDiff.save.") from None
        if header.get("format") != FORMAT:
            raise SparseError(f"{path} is a safetensors file but not a tutorfinetune sparse diff "
                              f"(format {header.get('format')!r}, expected {FORMAT!r}).")
        try:
            shapes = json.loads(header["shapes"])
            meta = json.loads(header["meta"])
        except (KeyError, json.JSONDecodeError) as e:
            raise SparseError(f"{path}: the diff header is damaged ({e}). Re-create the file.") from None
        deltas = {}
        for n, s in shapes.items():
            v = tensors.get(f"values::{n}")
            i = tensors.get(f"indices::{n}")
            size = int(np.prod(s))
            if v is None:
                raise SparseError(f"{path}: values of {n!r} are missing; the file is damaged.")
            if i is None and v.numel() != size:
                raise SparseError(f"{path}: dense values of {n!r} have {v.numel()} entries, shape {s} needs {size}.")
            if i is not None:
                if i.numel() != v.numel():
                    raise SparseError(f"{path}: {n!r} has {i.numel()} indices but {v.numel()} values; damaged file.")
                if i.numel() and (int(i.min()) < 0 or int(i.max()) >= size):
                    raise SparseError(f"{path}: indices of {n!r} fall outside its shape {s}; damaged file.")
            if not torch.isfinite(v).all():
                raise SparseError(f"{path}: {n!r} holds NaN or infinite values.")
            deltas[n] = (i, v, tuple(s))
        head = {k.removeprefix("head::"): t for k, t in tensors.items() if k.startswith("head::")}
        return cls(deltas, head, meta)

    def __repr__(self) -> str:
        return (f"SparseDiff({self.meta.get('kind', 'diff')}, {self.changed:,} entries in {len(self.deltas)} tensors, "
                f"head={'yes' if self.head else 'no'}, {self.stored_bytes() / 2**20:.2f} MiB)")


def compose(*diffs: SparseDiff) -> SparseDiff:
    """φ_1 + φ_2 + ...: the sum (entries in several supports add up); the head of the last diff that
    has one. Refuses diffs made for different backbones. ``meta["overlap"]``: shared entries."""
    if not diffs:
        raise SparseError("compose() needs at least one diff.")
    ids = {d.meta.get("model_id") for d in diffs} - {None}
    if len(ids) > 1:
        raise SparseError(f"These diffs were made for different backbones (model_ids {sorted(ids)}); compose "
                          "only diffs trained from the same pretrained model.")
    shapes: dict[str, tuple] = {}
    parts: dict[str, list] = {}
    for d in diffs:
        for n, (i, v, s) in d.deltas.items():
            if n in shapes and shapes[n] != tuple(s):
                raise SparseError(f"Tensor {n!r} has shape {shapes[n]} in one diff and {tuple(s)} in another.")
            shapes[n] = tuple(s)
            parts.setdefault(n, []).append((i, v))
    deltas = {}
    shared = 0
    for n, ps in parts.items():
        size = int(np.prod(shapes[n]))
        if len(ps) == 1:
            deltas[n] = (ps[0][0], ps[0][1].clone(), shapes[n])
            continue
        dense = torch.zeros(size)
        hits = torch.zeros(size, dtype=torch.int16)
        for i, v in ps:
            if i is None:
                dense += v
                hits += (v != 0).to(torch.int16)
            else:
                dense.index_add_(0, i.long(), v)
                hits.index_add_(0, i.long(), torch.ones(i.numel(), dtype=torch.int16))
        shared += int((hits > 1).sum())
        idx = torch.nonzero(hits > 0).reshape(-1)
        if idx.numel() > size // 2:
            deltas[n] = (None, dense, shapes[n])
        else:
            deltas[n] = (idx.to(torch.int32 if size < 2**31 else torch.int64), dense[idx], shapes[n])
    head: dict[str, torch.Tensor] = {}
    for d in diffs:
        if d.head:
            head = {k: t.clone() for k, t in d.head.items()}
    units: dict[str, str] = {}
    for d in diffs:
        units.update(d.meta.get("units", {}))
    meta = {"kind": "composed", "model_id": next(iter(ids), None), "parts": [d.meta.get("id") for d in diffs],
            "overlap": shared, "units": units, "backbone": diffs[0].meta.get("backbone")}
    return SparseDiff(deltas, head, meta)


# --------------------------------------------------------------------------------------------
# The recipe
# --------------------------------------------------------------------------------------------
def _start(backbone: Backbone, start_from: SparseDiff | None = None):
    """What every recipe does first: remember the pretrained backbone's id (before anything moves),
    apply ``start_from`` (no head), and return (model, blocks, maskable names, name -> parameter)."""
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


SELECTIONS = ("lottery", "random")


def dense_phase(backbone: Backbone, task: Task, config: TrainConfig, *, l1: float = 0.0, label: str = "dense-ft",
                start_from: SparseDiff | None = None, store: str | os.PathLike | None = results.DEFAULT_STORE,
                study: str = "", tags: dict[str, Any] | None = None, verbose: bool = False) -> DensePhase:
    """Dense fine-tuning of the maskable parameters (LayerNorm frozen, head dense) from the model as it
    is (plus ``start_from``): LT-SFT's first phase, and the dense diff its composition is compared with.
    ``backbone.model`` ends trained; ``.prev`` holds the state to reset to."""
    from .methods.sparse import SparseUpdate

    model, blocks, names, params = _start(backbone, start_from)
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
    """Lottery-ticket sparse fine-tuning of ``backbone.model`` on ``task`` (METHODS.md §4).

    Args:
        backbone, task, config: as for :func:`tutorfinetune.train`; ``config`` sets the sparse phase.
        k: entries that may change: a count, or a fraction in (0, 1] of the maskable entries (default 1%).
        dense_config: the dense phase's settings (default ``config``).
        selection: ``"lottery"`` (the K entries that moved most in the dense phase) or ``"random"``
            (the baseline: K entries drawn at random, seeded by ``config.seed``; no dense phase).
        l1: λ of the optional L1 pull towards θ0, in both phases (λ·Σ|θ−θ0| / N).
        n_iterations: rounds of dense → select K/n more → sparse [D: see the module docstring].
        dense: a :class:`DensePhase` from an earlier call on the same start (reuse it across K).
        start_from: a diff applied before training (the paper's source-language SFT); φ is then
            measured from θ0 + ``start_from``.

    Returns:
        :class:`SFTResult`; ``backbone.model`` ends as θ0 (+ ``start_from``) + φ.
    """
    from .methods.sparse import SparseUpdate

    if selection not in SELECTIONS:
        from .config import did_you_mean

        raise SparseError(f"Unknown selection {selection!r}.{did_you_mean(selection, SELECTIONS)} Use one of {list(SELECTIONS)}.")
    n_iterations = int(coerce("n_iterations", n_iterations, int))
    if n_iterations < 1:
        raise SparseError(f"n_iterations must be >= 1, got {n_iterations}.")
    if isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    dense_config = dense_config or config
    model, blocks, names, params = _start(backbone, start_from)
    k_count = resolve_k(k, sum(params[n].numel() for n in names))
    theta0 = {n: params[n].detach().clone() for n in names}
    start_id = start_from.meta["id"] if start_from is not None else None
    tags = dict(tags or {})
    common = dict(store=store, study=study, verbose=verbose)
    kind_tags = {"k": k_count, "k_fraction": k_count / sum(t.numel() for t in theta0.values()), "selection": selection,
                 "l1": float(l1), "start_from": start_id}
    if selection == "random":
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
        mask = new if mask is None else {n: mask[n] | new[n] for n in names}
        model.load_state_dict(prev)  # reset every parameter, the head included
        label = "lt-sft" if selection == "lottery" else "random-sft"
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
    bb = load_backbone(backbone, num_labels=task.num_labels, seed=config.seed,
                       label_names=task.label_names) if isinstance(backbone, str) else backbone
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
    from .madx import mlm_head

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
    from .madx import _mlm_loop
    from .methods.sparse import SparseUpdate

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
            log["warm"] = _mlm_loop(model, head, tok, texts, head_params, warm_steps, head_lr, batch_size, max_length,
                                    seed, f"warm MLM head ({name})", dev)
        head_start = {n: t.detach().clone() for n, t in head.state_dict().items()}
        theta0 = {n: params[n].detach().clone() for n in names}

        def phase(mask, label, n_steps):
            plug = SparseUpdate(mask=mask, l1=l1, label=label)
            plug.prepare(model, blocks)
            body = [params[n] for n in names]
            for p in body:
                p.requires_grad_(True)
            return _mlm_loop(model, head, tok, texts, body + head_params, n_steps, lr, batch_size, max_length,
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
        folder.mkdir(parents=True, exist_ok=True)
        spath.write_text(json.dumps(settings, default=str))
        s_diff.save(sp_)
        if d_diff is not None:
            d_diff.save(dp_)
            dense[name] = d_diff
        (folder / f"{name}.log.json").write_text(json.dumps(log))
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
    bb = load_backbone(backbone, num_labels=task.num_labels, seed=config.seed,
                       label_names=task.label_names) if isinstance(backbone, str) else backbone
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

