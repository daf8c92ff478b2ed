"""LoRA through Hugging Face PEFT (Hu et al., ICLR 2022; docs/methods.md §3): the ``"lora"`` plug-in,
saving and loading in PEFT's own format, and merging into the base weights.

A LoRA layer keeps a pretrained weight W₀ (d x k) frozen and learns a low-rank update::

    h = W₀ x + (alpha / r) · B A x        A: r x k (random), B: d x r (zeros at the start)

so training starts exactly at the pretrained function (B = 0), trains ``r (d + k)`` numbers per
adapted matrix instead of ``d k``, and after training ``W₀ + (alpha / r) B A`` can be merged into one
matrix: inference with no extra latency (:func:`merge_lora`). The paper adapts the attention query
and value projections (our default, ``target_modules="qv"``) and trains the classification head.

``LoRA`` (registry id ``"lora"``) injects PEFT's LoRA layers *in place*
(``peft.inject_adapter_in_model``), so ``backbone.model`` stays the same object and
:func:`tutorfinetune.train` (or the Hugging Face Trainer bridge) trains it like any other model;
everything but the LoRA matrices and the BlockMap head is frozen. The PEFT adapter is named
``"task"`` (``adapter_name``), like the task adapter of the ``"adapter"`` method, so scheduled
unfreezing, GradDrop's layer variant and the Fisher tracker find its per-block units (the LoRA
matrices inside block j are unit ``adapter{j}``; :func:`tutorfinetune.fisher.find_units`).

It prepares at stage ``"adapt"``: after ``"from-intermediate"`` (which loads an encoder into the
plain model) and the dropout plug-ins (guided dropout's Fisher scores are of the pretrained
sublayers; Gaussian dropout must not replace LoRA's own dropout), before schedules and trackers. Its
traits refuse ``"adapter"``, ``"full"``, ``"linear-probe"`` and ``"sparse-update"`` beside it, and a
second ``"lora"``; a schedule over the pretrained blocks (``units="blocks"`` or another
``adapter_name``) or with ``train_head=False`` is refused when the run prepares.

Saved LoRAs are PEFT's format (``adapter_config.json`` + ``adapter_model.safetensors``; the head is
stored the PEFT way, as ``modules_to_save``), so ``peft.PeftModel.from_pretrained(base_model, path)``
loads them outside this package; :func:`load_lora` loads them back into a plain backbone.

``peft`` is imported where it is used (importing it takes seconds). Checked with peft 0.21.2 and
transformers 4.57.6.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..backbones import Backbone, block_map, is_multiple_choice, refresh_head
from ..config import ConfigError, coerce, did_you_mean
from ..heads import adopt_readout, readout_of
from .base import STAGE, Method, MethodConfig, MethodError, option, probability, register

__all__ = ["LoRA", "LoRAConfig", "LoRAError", "save_lora", "load_lora", "merge_lora", "lora_parameters",
           "has_lora", "resolve_targets", "TARGETS", "BIASES", "FORMAT"]

#: ``target_modules`` shorthands
TARGETS = {
    "qv": "the attention query and value projections (the paper's choice): BERT/MiniLM/RoBERTa/XLM-R "
          "'query', 'value'; DistilBERT 'q_lin', 'v_lin'",
    "all-linear": "every linear layer of the transformer blocks (attention q, k, v, output; FFN in and out)",
}
#: PEFT's ``bias`` options
BIASES = ("none", "all", "lora_only")
#: the query/value projections per model family (``config.model_type``); BERT's names are the default
_QV = {"distilbert": ("q_lin", "v_lin")}
_QV_DEFAULT = ("query", "value")
#: PEFT's on-disk prefix of every key (a PeftModel wraps the model as ``base_model.model``)
_PREFIX = "base_model.model."
FORMAT = "tutorfinetune.lora/1"


class LoRAError(MethodError):
    """LoRA misuse: bad config, unknown target modules, a folder that is not a LoRA, another backbone."""


def _peft():
    try:
        import peft
    except ImportError:  # a hard dependency, but say what to do if it is missing
        raise LoRAError("The peft library is missing: pip install 'peft>=0.21,<0.22'.") from None
    return peft


# --------------------------------------------------------------------------------------------
# The config
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LoRAConfig(MethodConfig):
    """Settings of :class:`LoRA` (registry id ``"lora"``); :meth:`LoRA.peft_config` builds PEFT's ``LoraConfig``.

    Papermill strings are coerced (``r="8"``, ``target_modules="query,key,value"``); bad values raise
    :class:`LoRAError` saying what to change.
    """

    r: int = option(8, "rank of the update B·A (A: r x k, B: d x r); the paper: 1-64, 8 typical. Trainable "
                       "numbers per adapted d x k matrix: r·(d + k)")
    alpha: float = option(8.0, "the update is scaled by alpha / r (PEFT's lora_alpha). The paper sets alpha to the "
                               "first r it tries and does not tune it; changing alpha acts like changing the "
                               "learning rate")
    dropout: float = option(0.0, "dropout on the input of the LoRA branch (PEFT's lora_dropout), in [0, 1)")
    target_modules: str | tuple[str, ...] = option(
        "qv", "'qv' (the attention query and value projections of each block, named per family: BERT/MiniLM/"
              "RoBERTa/XLM-R query, value; DistilBERT q_lin, v_lin), 'all-linear' (every linear layer of the "
              "blocks), or names of linear layers in a block, e.g. ('query', 'key', 'value') or "
              "('attention.output.dense',). LoRA goes into the transformer blocks only")
    train_head: bool = option(True, "train the BlockMap head (BERT: pooler + classifier) in full, as the paper "
                                    "does; False keeps it frozen")
    bias: str = option("none", "PEFT's bias option: 'none' (no bias trains), 'lora_only' (biases of the adapted "
                               "layers), 'all' (every bias of the model)", choices=BIASES, what="LoRA bias")
    adapter_name: str = option("task", "the PEFT adapter's name in the model; schedules, GradDrop and the Fisher "
                                       "tracker find their units by it (their adapter_name)")

    error = LoRAError

    def validate(self) -> None:
        if self.r <= 0:
            raise LoRAError(f"r (the rank of the LoRA update) must be a positive integer, got {self.r}. "
                            "Typical values are 4, 8 or 16.")
        if not self.alpha > 0:
            raise LoRAError(f"alpha must be > 0 (the update is scaled by alpha / r), got {self.alpha}.")
        try:
            probability("dropout", self.dropout, " It is the dropout on the LoRA branch's input.")
        except MethodError as e:
            raise LoRAError(str(e)) from None
        if not self.adapter_name or "." in self.adapter_name:
            raise LoRAError(f"adapter_name must be a non-empty name without dots, got {self.adapter_name!r}.")
        self._set("target_modules", _check_targets(self.target_modules))


def _check_targets(value: Any) -> str | tuple[str, ...]:
    if isinstance(value, str) and value.strip() in TARGETS:
        return value.strip()
    try:
        names = coerce("target_modules", value, tuple[str, ...])
    except ConfigError as e:
        raise LoRAError(f"{e} Use 'qv', 'all-linear' or a list of linear-layer names.") from None
    names = tuple(n.strip() for n in names if n.strip())
    if not names:
        raise LoRAError("target_modules is empty: use 'qv', 'all-linear' or a list of linear-layer names.")
    if len(names) == 1 and names[0] in TARGETS:
        return names[0]
    return names


# --------------------------------------------------------------------------------------------
# Where the LoRA layers go
# --------------------------------------------------------------------------------------------
def _block_linears(blocks) -> list[tuple[int, str, nn.Module]]:
    """(block index, name inside the block, module) of every linear layer of the blocks."""
    return [(j, n, m) for j, blk in enumerate(blocks.blocks) for n, m in blk.named_modules()
            if isinstance(m, nn.Linear)]


def _matches(rel: str, name: str) -> bool:
    return rel == name or rel.endswith("." + name)


def resolve_targets(model: nn.Module, blocks, target_modules: str | tuple[str, ...] = "qv") -> list[str]:
    """PEFT ``target_modules`` (module-name suffixes) that select exactly the wanted linear layers of the blocks.

    ``"qv"`` resolves per family (BERT/MiniLM/RoBERTa/XLM-R ``query``/``value``, DistilBERT
    ``q_lin``/``v_lin``); ``"all-linear"`` takes every linear layer of the blocks; names are matched
    against the blocks' linear layers (``"query"`` or ``"attention.self.query"``). Each returned suffix
    is the shortest that matches no module outside the selection (BERT's pooler has a ``dense`` too,
    so all-linear gives ``output.dense`` and ``intermediate.dense``, never ``dense``).

    Raises:
        LoRAError: a name that matches no linear layer of the blocks (with the closest names), or a
            family whose query/value projections cannot be found.
    """
    if blocks is None or not getattr(blocks, "blocks", None):
        raise LoRAError(f"{type(model).__name__} has no BlockMap (transformer blocks), so LoRA cannot find its "
                        "layers. Supported families: BERT, RoBERTa/XLM-R, DistilBERT.")
    linears = _block_linears(blocks)
    rel_names = sorted({n for _, n, _ in linears})
    leaves = sorted({n.rsplit(".", 1)[-1] for n in rel_names})
    if target_modules == "all-linear":
        chosen = [m for _, _, m in linears]
    else:
        if target_modules == "qv":
            family = getattr(blocks, "family", "")
            wanted = _QV.get(family, _QV_DEFAULT)
            if not all(any(_matches(r, w) for r in rel_names) for w in wanted):
                found = [pair for pair in [_QV_DEFAULT, *_QV.values()]
                         if all(any(_matches(r, w) for r in rel_names) for w in pair)]
                if not found:
                    raise LoRAError(
                        f"Cannot find the attention query/value projections in the blocks of this {family!r} model; "
                        f"its linear layers are {rel_names}. Pass target_modules=[...] with the names to adapt.")
                wanted = found[0]
        else:
            wanted = target_modules
        chosen = []
        for w in wanted:
            hit = [m for _, r, m in linears if _matches(r, w)]
            if not hit:
                raise LoRAError(f"Unknown target module {w!r}: no linear layer of the blocks is called so."
                                f"{did_you_mean(w, leaves + rel_names)} Linear layers of each block: {rel_names} "
                                "(or use 'qv' / 'all-linear').")
            chosen += hit
    ids = {id(m) for m in chosen}
    named = list(model.named_modules())
    where = {id(m): n for n, m in named}
    out: set[str] = set()
    for mid in ids:
        parts = where[mid].split(".")
        for k in range(1, len(parts) + 1):
            suffix = ".".join(parts[-k:])
            if all(id(m) in ids for n, m in named if n == suffix or n.endswith("." + suffix)):
                out.add(suffix)
                break
    return sorted(out)


# --------------------------------------------------------------------------------------------
# Finding LoRA in a model (without importing peft)
# --------------------------------------------------------------------------------------------
def _lora_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules()
            if isinstance(getattr(m, "lora_A", None), nn.ModuleDict) and hasattr(m, "base_layer")]


def has_lora(model: nn.Module) -> bool:
    """True when PEFT LoRA layers are in the model (unmerged)."""
    return bool(_lora_layers(model))


def lora_parameters(model: nn.Module, adapter_name: str | None = None) -> dict[str, nn.Parameter]:
    """Name -> parameter of every LoRA matrix (``lora_A``/``lora_B``) in the model (of one adapter if named)."""
    out = {}
    for n, p in model.named_parameters():
        parts = n.split(".")
        for i in range(len(parts) - 1):
            if parts[i] in ("lora_A", "lora_B") and (adapter_name is None or parts[i + 1] == adapter_name):
                out[n] = p
                break
    return out


def _unwrap(model) -> tuple[nn.Module, str]:
    if isinstance(model, Backbone):
        return model.model, model.name
    return model, ""


def _head_names(model: nn.Module, blocks) -> list[str]:
    where = {id(m): n for n, m in model.named_modules()}  # head modules with weights (not BERT's head dropout)
    return [where[id(m)] for m in blocks.head if id(m) in where and any(True for _ in m.parameters())]


# --------------------------------------------------------------------------------------------
# The plug-in
# --------------------------------------------------------------------------------------------
@register("lora")
class LoRA(Method):
    """Train LoRA matrices (and the head) with the base model frozen; see the module docstring (options:
    :class:`LoRAConfig`).

    ``methods.get("lora", r=8)``, ``("lora", {"r": 4, "target_modules": "all-linear"})``,
    ``LoRA(r=4)``, ``LoRA(LoRAConfig(r=4))`` and a bare ``LoRAConfig(r=4)`` build the same plug-in.
    """

    name = "lora"
    Config = LoRAConfig
    #: after the dropout plug-ins and from-intermediate have seen the plain model, before schedules
    stage = STAGE["adapt"]
    traits = frozenset({"adds-adapters", "freezes-body"})
    excludes = {
        "adds-adapters": "{me!r} and {other!r} both add trainable modules to a frozen backbone; one run trains one "
                         "of them. Compare them in separate runs.",
        "trains-body": "{me!r} freezes the pretrained weights and trains low-rank updates; {other!r} trains every "
                       "weight: pick one (compare them in separate runs).",
        "head-only": "{other!r} trains the head only; with {me!r} the LoRA matrices train too: pick one (or use the "
                     "schedule 'lpft' with {me!r}: the head first, then the LoRA matrices).",
        "selects-entries": "{other!r} (sparse fine-tuning) changes entries of the pretrained weights; {me!r} freezes "
                           "them. Use one or the other.",
    }
    unique = True
    unique_message = "Two {me!r} plug-ins in one run: use one (set its target_modules to adapt more layers)."
    error = LoRAError

    def __init__(self, *args: Any, **config: Any) -> None:
        super().__init__(*args, **config)
        self.model: nn.Module | None = None
        self.targets: list[str] = []
        self.trainable: list[nn.Parameter] = []

    # set-up ----------------------------------------------------------------------------------
    def _check_schedules(self) -> None:
        """Rules that depend on a schedule's settings, which traits do not describe: checked against the
        run's other plug-ins (``self.peers``, set by ``resolve``) before anything is injected."""
        me = self.config
        for o in self.peers:
            if "schedules-units" not in o.traits:
                continue
            units, name = o.config.get("units", "auto"), o.config.get("adapter_name", me.adapter_name)
            if units == "blocks":
                raise LoRAError(f"Schedule {o.name!r} with units='blocks' would unfreeze the pretrained blocks under "
                                f"{self.name!r}; use units='auto' (the LoRA matrices of each block).")
            if name != me.adapter_name:
                raise LoRAError(f"Schedule {o.name!r} looks for adapter {name!r}, but the LoRA adapter is named "
                                f"{me.adapter_name!r}, so it would schedule the pretrained blocks: give both the "
                                "same adapter_name.")
            if not me.train_head:
                raise LoRAError(f"A schedule ({o.name!r}) always trains the head, so {self.name!r} with "
                                "train_head=False cannot hold: drop one of them.")

    def peft_config(self, target_modules: list[str]):
        """PEFT's ``LoraConfig`` for this plug-in (the module names resolved for a model)."""
        return _peft().LoraConfig(r=self.config.r, lora_alpha=self.config.alpha, lora_dropout=self.config.dropout,
                                  target_modules=list(target_modules), bias=self.config.bias)

    def prepare(self, model: nn.Module, blocks) -> None:
        self._check_schedules()
        peft = _peft()
        if has_lora(model):
            raise LoRAError("This model already holds LoRA layers (a LoRA trained or loaded before). Load a fresh "
                            "backbone, or merge the old one first (tft.methods.merge_lora(model)).")
        if getattr(getattr(model, "adapters_config", None), "adapters", None):
            raise LoRAError("This model holds AdapterHub adapters; LoRA needs a plain backbone. Load a fresh one.")
        self.targets = resolve_targets(model, blocks, self.config.target_modules)
        peft.inject_adapter_in_model(self.peft_config(self.targets), model, adapter_name=self.config.adapter_name)
        # PEFT froze everything but the LoRA matrices (and biases, per ``bias``); the head is ours to set
        for p in blocks.parameters("head"):
            p.requires_grad_(self.config.train_head)
        self.model = model
        self.trainable = [p for p in model.parameters() if p.requires_grad]
        if not lora_parameters(model, self.config.adapter_name):
            raise LoRAError(f"PEFT added no LoRA layer for target_modules={self.targets}.")

    def param_groups(self, model: nn.Module):
        return list(self.trainable)

    def finish(self, state) -> dict:
        n = sum(p.numel() for p in lora_parameters(self.model, self.config.adapter_name).values())
        return {"targets": list(self.targets), "lora_parameters": n}


# --------------------------------------------------------------------------------------------
# Save, load, merge
# --------------------------------------------------------------------------------------------
def _adapter_name(model: nn.Module, adapter_name: str | None) -> str:
    names = list(getattr(model, "peft_config", None) or {})
    if not names or not has_lora(model):
        raise LoRAError("The model holds no LoRA layers (train with methods=['lora'], or load_lora first; a merged "
                        "LoRA is part of the base weights and is saved with the whole model).")
    if adapter_name is None:
        if len(names) > 1:
            raise LoRAError(f"The model holds several PEFT adapters {names}: pass adapter_name=...")
        return names[0]
    if adapter_name not in names:
        raise LoRAError(f"No LoRA adapter named {adapter_name!r}; the model has {names}.")
    return adapter_name


def save_lora(model: nn.Module | Backbone, path: str | Path, backbone: str = "",
              adapter_name: str | None = None) -> Path:
    """Save a LoRA and the head in PEFT's format, plus ``tutorfinetune.json`` (backbone name and shape).

    Writes ``adapter_config.json`` (PEFT's ``LoraConfig``, the head listed as ``modules_to_save``) and
    ``adapter_model.safetensors`` (PEFT's key layout: ``base_model.model.<module>.lora_A.weight`` ...
    and the head's weights), so ``peft.PeftModel.from_pretrained(fresh_model, path)`` rebuilds the
    fine-tuned classifier, and :func:`load_lora` loads it into a backbone.

    Args:
        model: the model (or a :class:`~tutorfinetune.Backbone`, whose name is recorded) holding the LoRA.
        path: the folder to write (created).
        backbone: the backbone's name for the metadata (default: the Backbone's name).
        adapter_name: the PEFT adapter to save (default: the only one).
    """
    model, name = _unwrap(model)
    backbone = backbone or name
    peft = _peft()
    adapter = _adapter_name(model, adapter_name)
    blocks = block_map(model)
    heads = _head_names(model, blocks)
    state = {_PREFIX + k: v for k, v in peft.get_peft_model_state_dict(model, adapter_name=adapter).items()}
    modules = dict(model.named_modules())
    for h in heads:
        for k, v in modules[h].state_dict().items():
            state[f"{_PREFIX}{h}.{k}"] = v
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().to("cpu").contiguous() for k, v in state.items()}, str(path / "adapter_model.safetensors"),
              metadata={"format": "pt"})
    cfg = copy.deepcopy(model.peft_config[adapter])
    cfg.modules_to_save = heads
    cfg.task_type = None if is_multiple_choice(model) else "SEQ_CLS"
    cfg.base_model_name_or_path = str(getattr(model.config, "_name_or_path", "") or "") or None
    cfg.inference_mode = True
    cfg.save_pretrained(str(path))
    (path / "tutorfinetune.json").write_text(json.dumps({
        "format": FORMAT, "backbone": backbone, "model_type": model.config.model_type,
        "hidden_size": model.config.hidden_size, "num_hidden_layers": model.config.num_hidden_layers,
        "adapter_name": adapter, "head": heads, "readout": readout_of(model), "peft_version": peft.__version__},
        indent=1))
    return path


def load_lora(model: nn.Module | Backbone, path: str | Path, adapter_name: str = "task", with_head: bool = True) -> str:
    """Load a LoRA saved by :func:`save_lora` (or by PEFT's ``save_pretrained``) into a plain model; returns
    the adapter's name. With ``with_head`` the saved head replaces the model's. The model stays a plain
    Hugging Face model (no ``PeftModel`` wrapper); only the LoRA matrices require a gradient afterwards.

    The model is given the readout the LoRA was trained behind (recorded in ``tutorfinetune.json``), so
    a LoRA trained with mean pooling loads into a fresh backbone with its pooler; PEFT's own loader
    does not know about readouts: give the base model the same readout first
    (``load_backbone(name, readout="mean")``).

    Raises:
        LoRAError: not a LoRA folder, a LoRA of another backbone (type or size), weights that do not fit.
        ReadoutError: the model's pooler is gone and it reads otherwise than the LoRA was trained.
    """
    holder = model if isinstance(model, Backbone) else None
    model, _ = _unwrap(model)
    peft = _peft()
    path = Path(path)
    if not (path / "adapter_config.json").is_file() or not (path / "adapter_model.safetensors").is_file():
        raise LoRAError(f"{path} is not a PEFT LoRA folder (needs adapter_config.json and adapter_model.safetensors).")
    tag = path / "tutorfinetune.json"
    meta: dict = {}
    if tag.is_file():
        meta = json.loads(tag.read_text())
        mine = {"model_type": model.config.model_type, "hidden_size": model.config.hidden_size,
                "num_hidden_layers": model.config.num_hidden_layers}
        diff = {k: (meta.get(k), v) for k, v in mine.items() if meta.get(k) != v}
        if diff:
            raise LoRAError(f"The LoRA in {path} was trained for another backbone ({meta.get('backbone') or 'unknown'}): "
                            + ", ".join(f"{k} {a} != {b}" for k, (a, b) in diff.items())
                            + ". Load it into the backbone it was trained for.")
    cfg = peft.PeftConfig.from_pretrained(str(path))
    if str(getattr(cfg, "peft_type", "")).split(".")[-1] != "LORA":
        raise LoRAError(f"{path} holds a PEFT {cfg.peft_type} adapter, not a LoRA.")
    if has_lora(model):
        raise LoRAError("This model already holds LoRA layers; load into a fresh backbone (or merge_lora first).")
    if with_head and adopt_readout(model, meta.get("readout"), f"The LoRA in {path}") and holder is not None:
        refresh_head(holder)  # the head the LoRA was trained behind (mean pooling for MiniLM)
    heads = list(cfg.modules_to_save or [])
    inject = copy.deepcopy(cfg)
    inject.modules_to_save, inject.task_type, inject.inference_mode = None, None, False
    try:
        peft.inject_adapter_in_model(inject, model, adapter_name=adapter_name)
    except ValueError as e:
        raise LoRAError(f"The LoRA in {path} does not fit this model ({e}).") from None
    state = {k[len(_PREFIX):] if k.startswith(_PREFIX) else k: v for k, v in load_file(str(path / "adapter_model.safetensors")).items()}
    modules = dict(model.named_modules())
    head_names = [n for n in modules if any(n == h or n.endswith("." + h) for h in heads)]
    in_head = {k for k in state if any(k.startswith(h + ".") for h in head_names)}
    lora_state = {k: v for k, v in state.items() if k not in in_head}
    result = peft.set_peft_model_state_dict(model, lora_state, adapter_name=adapter_name)
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    missing = [k for k in getattr(result, "missing_keys", []) or [] if f".lora_A.{adapter_name}." in k
               or f".lora_B.{adapter_name}." in k]
    if unexpected or missing:
        raise LoRAError(f"The LoRA weights in {path} do not fit this model: unexpected {unexpected[:3]}, missing "
                        f"{missing[:3]}.")
    if with_head and in_head:
        with torch.no_grad():
            for h in head_names:
                part = {k[len(h) + 1:]: v for k, v in state.items() if k.startswith(h + ".")}
                if not part:
                    continue
                try:
                    modules[h].load_state_dict(part)
                except RuntimeError as e:
                    raise LoRAError(f"The head saved in {path} does not fit this model ({e}); pass with_head=False "
                                    "to load the LoRA alone.") from None
    return adapter_name


@torch.no_grad()
def merge_lora(model: nn.Module | Backbone) -> nn.Module:
    """Merge every LoRA layer into its base weight (W₀ + (alpha / r) B A) and remove the LoRA layers, in place.

    The model is then a plain Hugging Face model again, with the same forward function (up to float
    rounding) and no extra latency. Returns the model (the same object).
    """
    model, _ = _unwrap(model)
    layers = _lora_layers(model)
    if not layers:
        raise LoRAError("The model holds no LoRA layers to merge.")
    for name, layer in layers:
        layer.merge()
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, layer.get_base_layer())
    if hasattr(model, "peft_config"):
        del model.peft_config
    return model
