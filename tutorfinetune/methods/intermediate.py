"""The ``"from-intermediate"`` plug-in and the :class:`Intermediate` model it starts from (STILTs'
second phase, docs/methods.md §8; taught in notebooks/07_intermediate_tasks.ipynb).

An :class:`Intermediate` is what an intermediate-task run leaves: the encoder's weights (everything
under the model's base-model attribute: embeddings, blocks and, for BERT, the pooler [D]), optionally
the classification head, and a manifest (backbone, architecture signature, task, run id, dev metrics),
saved as safetensors + JSON. :class:`FromIntermediate` loads those weights into a freshly loaded
target model in ``prepare()``, before any other plug-in, so the target phase composes with every
plug-in that makes sense there. Training the intermediate model is a recipe
(:mod:`tutorfinetune.recipes.stilts`); this module only reads, checks and applies it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..backbones import is_multiple_choice
from ..data import Task
from .base import STAGE, Method, MethodConfig, MethodError, option, register

__all__ = ["STILTsError", "Intermediate", "FromIntermediate", "FromIntermediateConfig", "task_digest", "backbone_signature",
           "encoder_state", "FORMAT"]


class STILTsError(ValueError):
    """An intermediate model that cannot be carried to this target; the message says what to change."""


FORMAT = "tutorfinetune.intermediate/1"

# --------------------------------------------------------------------------------------------
# Identity: what makes two backbones "the same" for carrying weights
# --------------------------------------------------------------------------------------------
_SIGNATURE_FIELDS = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                     "vocab_size", "max_position_embeddings", "type_vocab_size")


def backbone_signature(model: nn.Module) -> dict[str, Any]:
    """Architecture and checkpoint of a model (its config's shape fields and ``name_or_path``), the same for
    the classification and the multiple-choice head on one checkpoint."""
    cfg = model.config
    sig = {k: getattr(cfg, k, None) for k in _SIGNATURE_FIELDS}
    sig["name_or_path"] = str(getattr(cfg, "_name_or_path", "") or "")
    return sig


def _describe_signature(sig: dict[str, Any]) -> str:
    where = sig.get("name_or_path") or "a model built from a config"
    return (f"{sig.get('model_type')} with {sig.get('num_hidden_layers')} blocks of width {sig.get('hidden_size')}, "
            f"vocabulary {sig.get('vocab_size')}, from {where}")


def task_digest(task: Task) -> str:
    """A short hash of a task's training rows (text, pair, choices, label) and label names: two tasks
    with one name but other data (another seed of the synthetic task) get other digests."""
    h = hashlib.sha256(json.dumps(list(task.label_names)).encode())
    tr = task.train
    cols = [c for c in ("text", "text_pair", "choices", "label") if c in tr.columns]
    for row in tr[cols].itertuples(index=False):
        h.update(json.dumps([str(v) if not isinstance(v, list) else v for v in row], ensure_ascii=False).encode())
        h.update(b"\x00")
    return h.hexdigest()[:16]


def encoder_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Copies (on the CPU) of the weights under the model's base-model attribute (BERT: ``model.bert``)."""
    base = getattr(model, model.base_model_prefix, None)
    if base is None:
        raise STILTsError(f"{type(model).__name__} has no base model {model.base_model_prefix!r} to carry.")
    return {k: v.detach().cpu().clone() for k, v in base.state_dict().items()}


def _head_state(model: nn.Module) -> dict[str, torch.Tensor]:
    prefix = model.base_model_prefix
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if not k.startswith(prefix + ".")}


# --------------------------------------------------------------------------------------------
# The intermediate model
# --------------------------------------------------------------------------------------------
@dataclass
class Intermediate:
    """An encoder fine-tuned on an intermediate task, ready to be carried to a target task.

    Attributes:
        state: the encoder's weights (base-model state dict, CPU tensors).
        head: the intermediate head's weights (for ``carry_head``), or ``None``.
        meta: ``id``, ``backbone``, ``signature``, ``task``, ``task_digest``, ``kind``
            (``"classification"``/``"multiple-choice"``), ``label_names``, ``run_id``, ``metrics``,
            ``config``, ``methods``, ``seed``, ``format``.
        result: the intermediate run (``None`` when loaded from disk).
    """

    state: dict[str, torch.Tensor]
    head: dict[str, torch.Tensor] | None
    meta: dict[str, Any]
    result: Any = field(default=None, repr=False)  # the intermediate run (a RunResult) when trained here

    @property
    def id(self) -> str:
        return str(self.meta["id"])

    @property
    def task(self) -> str:
        return str(self.meta.get("task", ""))

    def dev_accuracy(self, eval_set: str = "dev") -> float:
        """Accuracy of the intermediate model on one of its task's eval sets (NaN if not evaluated)."""
        return float((self.meta.get("metrics") or {}).get(eval_set, {}).get("accuracy", float("nan")))

    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``encoder.safetensors`` (+ ``head.safetensors``) and ``meta.json`` into ``folder``
        atomically: a reader sees the old folder or the complete new one."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = folder.parent / f".tmp-{folder.name}-{uuid.uuid4().hex[:6]}"
        tmp.mkdir()
        try:
            save_file({k: v.contiguous() for k, v in self.state.items()}, str(tmp / "encoder.safetensors"))
            if self.head:
                save_file({k: v.contiguous() for k, v in self.head.items()}, str(tmp / "head.safetensors"))
            (tmp / "meta.json").write_text(json.dumps({**self.meta, "format": FORMAT}, indent=1, default=str))
            if folder.exists():
                shutil.rmtree(folder)
            os.replace(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "Intermediate":
        """Read a folder written by :meth:`save`; a missing or damaged file is a clear STILTsError."""
        from safetensors.torch import load_file

        folder = Path(folder)
        meta_path, enc_path = folder / "meta.json", folder / "encoder.safetensors"
        if not meta_path.is_file() or not enc_path.is_file():
            raise STILTsError(f"{folder} is not an intermediate model (needs meta.json and encoder.safetensors).")
        try:
            meta = json.loads(meta_path.read_text())
            state = load_file(str(enc_path))
            head = load_file(str(folder / "head.safetensors")) if (folder / "head.safetensors").is_file() else None
        except Exception as e:  # OSError, JSON errors, safetensors' own error type for a truncated file
            raise STILTsError(f"Cannot read the intermediate model in {folder} ({type(e).__name__}: {e}); delete "
                              "the folder and train it again.") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or "id" not in meta:
            raise STILTsError(f"{folder}/meta.json is not a {FORMAT} manifest; delete the folder and train again.")
        inter = cls(state=state, head=head, meta=meta)
        _check_weights(inter, f"in {folder}")
        return inter

    def __repr__(self) -> str:
        return (f"Intermediate({self.id}, task={self.task!r}, backbone={self.meta.get('backbone')!r}, "
                f"kind={self.meta.get('kind')}, dev accuracy={self.dev_accuracy():.3f})")


def _check_weights(inter: Intermediate, where: str, prefix: str | None = None) -> None:
    """Every value finite (a NaN in rows no text uses would be carried silently, and one anywhere would
    later look like a learning-rate problem); the head holds no encoder weight (it would overwrite one)."""
    for part, tensors in (("encoder", inter.state), ("head", inter.head or {})):
        for k, t in tensors.items():
            if t.is_floating_point() and not torch.isfinite(t).all():
                bad = int((~torch.isfinite(t)).sum())
                raise STILTsError(
                    f"The intermediate model {where}: {part} weight {k!r} holds {bad} NaN or infinite values "
                    "(the intermediate run diverged, or the file is damaged). Delete it and train the intermediate "
                    "task again (with a lower lr if it diverged).")
    heads = list(inter.head or {})
    encoder = [k for k in heads if (prefix is not None and k.startswith(prefix + ".")) or k.partition(".")[2] in inter.state]
    if encoder:
        raise STILTsError(
            f"The intermediate model {where}: its head holds encoder weights ({encoder[:3]}), which would "
            "overwrite the carried encoder. A head holds only the classification layers; the files are damaged or "
            "were edited. Delete them and train the intermediate task again.")


# --------------------------------------------------------------------------------------------
# The plug-in that starts a target run from an intermediate model
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FromIntermediateConfig(MethodConfig):
    """Settings of :class:`FromIntermediate` (registry id ``"from-intermediate"``)."""

    intermediate: Intermediate | str | os.PathLike = option(
        help="an Intermediate (tft.stilts.train_intermediate) or the folder one was saved in")
    carry_head: bool = option(False, "also copy the intermediate classification head (label sets must be equal)")
    check_backbone: bool = option(True, "refuse a target model whose architecture or checkpoint differs from the one "
                                  "the intermediate model was trained from (turn off only for the same model under "
                                  "another path)")
    carry_pooler: bool = option(True, "also carry BERT's pooler ([D]: it is part of the base model, and Phang et al. "
                                "replace only the output layer); False keeps the target's pretrained pooler (an "
                                "ablation)")

    def validate(self) -> None:
        if isinstance(self.intermediate, (str, os.PathLike)):
            self._set("intermediate", Intermediate.load(self.intermediate))
        if not isinstance(self.intermediate, Intermediate):
            raise MethodError(f"'from-intermediate' needs an Intermediate (train_intermediate) or its folder, got "
                              f"{type(self.intermediate).__name__}.")


@register("from-intermediate")
class FromIntermediate(Method):
    """Start from an intermediate model's encoder (STILTs' second phase); the head stays freshly
    initialised unless ``carry_head=True`` (options: :class:`FromIntermediateConfig`). It prepares
    before every other plug-in (stage ``"load"``), so adapters and schedules see the carried encoder.
    """

    name = "from-intermediate"
    Config = FromIntermediateConfig
    stage = STAGE["load"]
    traits = frozenset({"loads-encoder"})
    unique = True
    unique_message = "Two {me!r} plug-ins: a target run starts from one intermediate model."

    @property
    def intermediate(self) -> Intermediate:
        return self.config.intermediate

    def describe(self) -> dict[str, Any]:
        out = {"name": self.name, "intermediate": self.intermediate.id, "intermediate_task": self.intermediate.task,
               "carry_head": self.config.carry_head}
        if not self.config.carry_pooler:  # only when set, so that runs with the default keep their fingerprints
            out["carry_pooler"] = False
        return out

    def __repr__(self) -> str:
        c = self.config
        return (f"FromIntermediate(intermediate={self.intermediate.id!r}, carry_head={c.carry_head!r}, "
                f"check_backbone={c.check_backbone!r}, carry_pooler={c.carry_pooler!r})")

    @torch.no_grad()
    def prepare(self, model: nn.Module, blocks) -> None:
        inter = self.intermediate
        sig = backbone_signature(model)
        if self.config.check_backbone and sig != inter.meta.get("signature"):
            raise STILTsError(
                f"The intermediate model {inter.id} ({inter.task!r}) was trained from backbone "
                f"{inter.meta.get('backbone')!r} ({_describe_signature(inter.meta.get('signature') or {})}), but the "
                f"target model is {_describe_signature(sig)}. Load the target with "
                f"load_backbone({inter.meta.get('backbone')!r}, ...), or train the intermediate task on this backbone.")
        base = getattr(model, model.base_model_prefix)
        own = base.state_dict()
        _check_weights(inter, f"{inter.id} ({inter.task!r})", prefix=model.base_model_prefix)
        # The pooler belongs to the readout, not to the encoder: a target that reads by mean or [CLS] has
        # none (its intermediate pooler is not needed), and an intermediate trained that way has none to
        # give (the target keeps its pretrained pooler). Every other weight must be there.
        pooler = "pooler."
        missing = sorted(k for k in set(own) - set(inter.state) if not k.startswith(pooler))
        extra = sorted(k for k in set(inter.state) - set(own) if not k.startswith(pooler))
        shapes = [k for k in own if k in inter.state and tuple(own[k].shape) != tuple(inter.state[k].shape)]
        if missing or extra or shapes:
            raise STILTsError(
                f"The intermediate encoder does not fit this model: missing {missing[:3]}, unexpected {extra[:3]}, "
                f"other shapes {shapes[:3]}. Use the backbone it was trained from ({inter.meta.get('backbone')!r}).")
        for k, t in own.items():
            if k in inter.state and (self.config.carry_pooler or not k.startswith(pooler)):
                t.copy_(inter.state[k].to(t.device, t.dtype))
        if self.config.carry_head:
            if inter.head is None:
                raise STILTsError(
                    f"carry_head=True, but the intermediate model {inter.id} has a {inter.meta.get('kind')} head, "
                    "which scores choices and cannot serve as a classifier. Use carry_head=False (a fresh head, as "
                    "STILTs does).")
            if is_multiple_choice(model):
                raise STILTsError("carry_head=True needs a classification target; this target model is multiple-choice.")
            names = [str(model.config.id2label[i]) for i in range(int(model.config.num_labels))]
            if names != list(inter.meta.get("label_names") or []):
                raise STILTsError(
                    f"carry_head=True needs the same labels: the intermediate task {inter.task!r} has "
                    f"{inter.meta.get('label_names')}, the target head has {names}. Use carry_head=False (a fresh head).")
            sd = model.state_dict()
            for k, t in inter.head.items():
                if k not in sd or tuple(sd[k].shape) != tuple(t.shape):
                    raise STILTsError(f"The intermediate head ({k}) does not fit the target head; use carry_head=False.")
                sd[k].copy_(t.to(sd[k].device, sd[k].dtype))
