"""Sparse difference vectors: what a sparse fine-tuning is, how it is selected, applied and composed
(docs/methods.md §7).

Ansell et al., "Composable Sparse Fine-Tuning for Cross-Lingual Transfer" (ACL 2022). A sparse
fine-tuning (SFT) is a sparse difference vector φ added to the pretrained weights θ0; two SFTs compose
by addition. This module holds the primitives; the recipes that train SFTs (LT-SFT, domain SFTs) are
in :mod:`tutorfinetune.recipes.lt_sft`, the plug-in that keeps a sparse phase sparse is
:class:`tutorfinetune.methods.sparse_update.SparseUpdate`.

* :class:`SparseDiff`: φ per tensor (flat int32 indices + fp32 values, or a dense tensor when more
  than half the entries moved), plus an optional dense copy of the classification head (the "abs"
  part). ``apply`` / ``revert`` (exact: ``revert`` puts back the stored original values), ``+`` /
  :func:`compose`, ``save`` / ``load`` as safetensors (never pickle), ``stored_bytes``, ``overlap``.
  Applying the same diff twice to one model is refused (the model remembers what is applied).
* :func:`maskable_names`: what LT-SFT may change: the encoder's embeddings and blocks, LayerNorm
  excluded (frozen), the head excluded (trained densely), adapters excluded.
* :func:`select_mask` (the K entries that moved most, pooled over all tensors) and
  :func:`random_mask` (the baseline with the same K).

Deviation [D]: selection takes exactly K entries (``topk``; ties broken by position) rather than
``δ ≥ τ``, which over-selects when many deltas tie at 0.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from .backbones import BackboneError, block_map, model_id
from .config import ConfigError, coerce
from .heads import adopt_readout, readout_of

__all__ = ["SparseError", "SparseDiff", "maskable_names", "resolve_k", "select_mask", "random_mask", "random_mask_like", "base_id",
           "head_names", "compose", "FORMAT"]


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
    or adapter parameters (docs/methods.md §7)."""
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
    """The id of the *pretrained* backbone a model came from (:func:`~tutorfinetune.fisher.sublayer.model_id`
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


def random_mask_like(mask: Mapping[str, torch.Tensor], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random entries with the same number per tensor as ``mask`` (the per-tensor baseline of LT-SFT).

    :func:`random_mask` spreads K uniformly over all entries, so most of it lands in the embedding
    matrix, whose rows rarely get a gradient; this baseline keeps the lottery-ticket mask's allocation
    over tensors and randomises only *which* entries inside each tensor, so "lottery ticket beats
    random" compares selection, not allocation."""
    g = torch.Generator().manual_seed(int(seed))
    out = {}
    for n, m in mask.items():
        count = int(m.sum())
        chosen = torch.zeros(m.numel(), dtype=torch.bool)
        if count:
            chosen[torch.randperm(m.numel(), generator=g)[:count]] = True
        out[n] = chosen.view(m.shape)
    return out


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
        if with_head:
            meta.setdefault("readout", readout_of(model))  # the head is read behind this readout
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
        adds both deltas on the shared entries (docs/methods.md §7: log the overlap)."""
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
    def _check_fits(self, model: nn.Module, blocks=None, with_head: bool = True) -> dict[str, nn.Parameter]:
        params = dict(model.named_parameters())
        if blocks is None:  # every apply checks the backbone: find the blocks when they are not given
            try:
                blocks = block_map(model)
            except BackboneError as e:
                if self.meta.get("model_id") or (with_head and self.head):
                    raise SparseError(f"Cannot check that this diff fits the model ({e}); pass its blocks: "
                                      "diff.apply(backbone.model, backbone.blocks).") from None
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
        if with_head and self.head and blocks is not None:
            heads = set(head_names(model, blocks))
            wrong = sorted(n for n in self.head if n in params and n not in heads)
            if wrong:
                raise SparseError(
                    f"The diff's head holds {wrong[:3]}, which are not head parameters of this model (encoder "
                    "weights): applying it would overwrite them. The diff file is damaged or was edited; "
                    "re-create it with SparseDiff.save.")
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
        if with_head and self.head and adopt_readout(model, self.meta.get("readout"), f"Diff {self.meta['id']}"):
            blocks = block_map(model) if blocks is not None else None  # the head it was trained behind
        params = self._check_fits(model, blocks, with_head=with_head)
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
        _check_file_keys(path, tensors, shapes, meta)
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
        for n, t in head.items():
            if not torch.isfinite(t).all():
                raise SparseError(f"{path}: head tensor {n!r} holds NaN or infinite values; re-create the file.")
        return cls(deltas, head, meta)

    def __repr__(self) -> str:
        return (f"SparseDiff({self.meta.get('kind', 'diff')}, {self.changed:,} entries in {len(self.deltas)} tensors, "
                f"head={'yes' if self.head else 'no'}, {self.stored_bytes() / 2**20:.2f} MiB)")


def _check_file_keys(path: Path, tensors: Mapping[str, torch.Tensor], shapes: Any, meta: Any) -> None:
    """A diff file holds ``values::``/``indices::`` tensors of the names in its header and ``head::``
    tensors that are not among them (a head entry naming an encoder weight would overwrite it)."""
    if not isinstance(shapes, dict) or not all(isinstance(s, list) and all(isinstance(d, int) for d in s)
                                               for s in shapes.values()) or not isinstance(meta, dict):
        raise SparseError(f"{path}: the diff header is damaged (shapes or meta of the wrong type). Re-create the file.")
    allowed = {f"{kind}::{n}" for n in shapes for kind in ("values", "indices")}
    unexpected = sorted(k for k in tensors if k not in allowed and not k.startswith("head::"))
    if unexpected:
        raise SparseError(f"{path} holds tensors a sparse diff never has ({unexpected[:3]}): the file is damaged or "
                          "was edited. Re-create it with SparseDiff.save.")
    units = meta.get("units") if isinstance(meta.get("units"), dict) else {}
    heads = [k.removeprefix("head::") for k in tensors if k.startswith("head::")]
    encoder = sorted(n for n in heads if n in shapes or n in units)  # names of the diff's own (encoder) tensors
    if encoder:
        raise SparseError(f"{path}: the head entries {encoder[:3]} name tensors of the encoder, which a diff's head "
                          "never holds (applying them would overwrite encoder weights). The file is damaged or was "
                          "edited; re-create it with SparseDiff.save.")


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
