"""Task adapters through AdapterHub's `adapters` library (METHODS.md §0, §6; notebooks/02_adapters.ipynb).

``TaskAdapter`` (registry id ``"adapter"``) adds one adapter to the backbone and trains only it and
the head: the default is MAD-X's task adapter, ``SeqBnConfig(reduction_factor=16)``: one bottleneck
(down-projection, ReLU, up-projection, residual) after the feed-forward sublayer of every block.
Any config that ``adapters`` accepts passes through (``"lora"``, ``"prefix_tuning"``,
``"seq_bn_inv"``, a config object). ``stack_on="domain"`` stacks it on an adapter that is already in
the model (MAD-X: ``Stack(domain, task)``); ``AdapterSwap`` swaps the lower adapter per eval set at
evaluation time (zero-shot transfer to a target domain or language).

The BlockMap head (BERT's pooler and classifier) always trains: ``adapters``' ``train_adapter``
keeps the classifier trainable but freezes the pooler, which METHODS.md §0 counts as head.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import nn

from ..backbones import adapter_summary, block_map
from .base import Method, MethodError, register

__all__ = ["TaskAdapter", "AdapterSwap", "AdapterError", "ensure_adapters", "adapter_config",
           "adapter_summary", "save_adapter", "load_adapter", "KNOWN_CONFIGS"]


class AdapterError(MethodError):
    """Adapter misuse: unknown config, name collision, missing adapter, wrong backbone."""


def _lib():
    try:
        import adapters
    except ImportError:  # a hard dependency, but say what to do if it is missing
        raise AdapterError("The adapters library is missing: pip install 'adapters>=1.3,<1.4'.") from None
    return adapters


def KNOWN_CONFIGS() -> list[str]:  # noqa: N802 - reads like a constant
    return sorted(_lib().ADAPTER_CONFIG_MAP)


@contextlib.contextmanager
def quiet_adapters():
    """Silence ``adapters``' "none are activated" warning while we add adapters (we set them next)."""
    log = logging.getLogger("adapters.model_mixin")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def ensure_adapters(model: nn.Module) -> nn.Module:
    """Give a Hugging Face model adapter support in place (``adapters.init``), once."""
    if not hasattr(model, "adapters_config"):
        _lib().init(model)
    return model


def adapter_config(config: Any = "seq_bn", reduction_factor: float | None = 16):
    """Resolve a config name or object; ``reduction_factor`` applies to bottleneck configs."""
    adapters = _lib()
    if not isinstance(config, str):
        return config
    try:
        cfg = adapters.AdapterConfig.load(config)
    except (ValueError, TypeError, OSError) as e:
        raise AdapterError(
            f"Unknown adapter config {config!r} ({e}). Use one of {KNOWN_CONFIGS()} or a config object "
            "such as adapters.SeqBnConfig(reduction_factor=16)."
        ) from None
    if reduction_factor is not None and hasattr(cfg, "reduction_factor"):
        cfg = cfg.replace(reduction_factor=reduction_factor)
    return cfg


def adapter_names(model: nn.Module) -> list[str]:
    cfg = getattr(model, "adapters_config", None)
    return list(cfg.adapters) if cfg is not None else []


def _head_trainable(model: nn.Module, blocks) -> None:
    for p in blocks.parameters("head"):
        p.requires_grad_(True)


@register("adapter")
class TaskAdapter(Method):
    """Train one adapter (and the head) with the base model frozen.

    Args:
        config: an ``adapters`` config name or object (default ``"seq_bn"``: MAD-X task adapter).
        reduction_factor: bottleneck reduction (hidden size / bottleneck size) for bottleneck configs.
        name: the adapter's name in the model.
        stack_on: name of an adapter already in the model to stack below this one (MAD-X).
    """

    name = "adapter"

    def __init__(self, config: Any = "seq_bn", reduction_factor: float | None = 16, name: str = "task",
                 stack_on: str | None = None) -> None:
        super().__init__(config=config if isinstance(config, str) else repr(config),
                         reduction_factor=reduction_factor, adapter_name=name, stack_on=stack_on)
        self._config_obj = adapter_config(config, reduction_factor)
        self.adapter_name = name
        self.stack_on = stack_on

    def prepare(self, model: nn.Module, blocks) -> None:
        adapters = _lib()
        ensure_adapters(model)
        existing = adapter_names(model)
        if self.adapter_name in existing:
            raise AdapterError(
                f"An adapter named {self.adapter_name!r} is already in the model. Pass name='...' to add "
                f"another, or remove it with model.delete_adapter({self.adapter_name!r})."
            )
        if self.stack_on is not None and self.stack_on not in existing:
            raise AdapterError(
                f"Cannot stack on adapter {self.stack_on!r}: the model has {existing or 'no adapters'}. "
                "Train or load it first (tft.madx.train_domain_adapter or tft.methods.adapter.load_adapter)."
            )
        with quiet_adapters():  # both log a spurious "none are activated" while they set the adapter up
            model.add_adapter(self.adapter_name, config=self._config_obj)
            model.train_adapter(self.adapter_name)  # freezes everything else; resets the active setup
        if self.stack_on is not None:
            model.active_adapters = adapters.Stack(self.stack_on, self.adapter_name)
        _head_trainable(model, blocks)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, **self.config}

    def check_compatible(self, others) -> None:
        names = [o.adapter_name for o in others if isinstance(o, TaskAdapter)]
        if self.adapter_name in names:
            raise AdapterError(f"Two TaskAdapters named {self.adapter_name!r}: give each a different name=.")
        from .freezing import FullFineTuning, LinearProbe

        if any(isinstance(o, (FullFineTuning, LinearProbe)) for o in others):
            raise AdapterError("'adapter' freezes the base model; it cannot run beside 'full' or 'linear-probe'.")


class AdapterSwap(Method):
    """At evaluation, swap the lower adapter of a ``Stack(lower, task)`` per eval set (MAD-X zero-shot).

    Args:
        task_adapter: name of the task adapter (top of the stack).
        default: lower adapter for eval sets not in ``by_eval_set`` (the source adapter).
        by_eval_set: eval-set name -> lower adapter, e.g. ``{"shift:hotels": "hotels"}``.
    """

    name = "adapter-swap"

    def __init__(self, task_adapter: str = "task", default: str = "source",
                 by_eval_set: dict[str, str] | None = None) -> None:
        super().__init__(task_adapter=task_adapter, default=default, by_eval_set=dict(by_eval_set or {}))
        self.model = None

    def prepare(self, model: nn.Module, blocks) -> None:
        self.model = model

    def before_eval(self, state, eval_set: str) -> None:
        adapters = _lib()
        names = adapter_names(self.model)
        lower = self.config["by_eval_set"].get(eval_set, self.config["default"])
        for n in (lower, self.config["task_adapter"]):
            if n not in names:
                raise AdapterError(f"Cannot swap in adapter {n!r} for {eval_set!r}: the model has {names}.")
        self.model.active_adapters = adapters.Stack(lower, self.config["task_adapter"])


def save_adapter(model: nn.Module, name: str, path: str | Path, backbone: str = "") -> Path:
    """Save one adapter (and the head) in AdapterHub's format (safetensors), plus a backbone tag."""
    if name not in adapter_names(model):
        raise AdapterError(f"No adapter named {name!r} to save; the model has {adapter_names(model)}.")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_adapter(str(path), name, use_safetensors=True)
    head = {f"{i}.{k}": v.detach().contiguous().cpu() for i, m in enumerate(block_map(model).head)
            for k, v in m.state_dict().items()}
    save_file(head, str(path / "head.safetensors"))  # the model's own head: pooler + classifier
    (path / "tutorfinetune.json").write_text(json.dumps({
        "backbone": backbone, "model_type": model.config.model_type, "hidden_size": model.config.hidden_size,
        "num_hidden_layers": model.config.num_hidden_layers, "adapter": name}))
    return path


def load_adapter(model: nn.Module, path: str | Path, name: str | None = None, set_active: bool = True,
                 with_head: bool = True) -> str:
    """Load an adapter saved by :func:`save_adapter` (or AdapterHub) into ``model``; returns its name.

    With ``with_head`` the saved classification head (pooler + classifier) replaces the model's.

    Raises AdapterError when the folder is not an adapter, or when it was trained for a backbone of
    another type or size.
    """
    path = Path(path)
    if not (path / "adapter_config.json").is_file():
        raise AdapterError(f"{path} holds no adapter_config.json: not an AdapterHub adapter folder.")
    ensure_adapters(model)
    tag = path / "tutorfinetune.json"
    if tag.is_file():
        meta = json.loads(tag.read_text())
        mine = {"model_type": model.config.model_type, "hidden_size": model.config.hidden_size,
                "num_hidden_layers": model.config.num_hidden_layers}
        diff = {k: (meta.get(k), v) for k, v in mine.items() if meta.get(k) != v}
        if diff:
            raise AdapterError(
                f"Adapter in {path} was trained for another backbone ({meta.get('backbone') or 'unknown'}): "
                + ", ".join(f"{k} {a} != {b}" for k, (a, b) in diff.items())
                + ". Load it into the backbone it was trained for."
            )
    if name and name in adapter_names(model):
        raise AdapterError(f"An adapter named {name!r} is already in the model; pass another name.")
    try:
        with quiet_adapters():
            loaded = model.load_adapter(str(path), load_as=name, set_active=set_active, use_safetensors=True)
    except (RuntimeError, ValueError, KeyError) as e:
        raise AdapterError(f"Could not load the adapter in {path} into this backbone: {e}") from None
    if with_head and (path / "head.safetensors").is_file():
        state = load_file(str(path / "head.safetensors"))
        for i, m in enumerate(block_map(model).head):
            part = {k.split(".", 1)[1]: v for k, v in state.items() if k.split(".", 1)[0] == str(i)}
            try:
                m.load_state_dict(part)
            except RuntimeError as e:
                raise AdapterError(f"The head saved in {path} does not fit this model ({e}); "
                                   "pass with_head=False to load the adapter alone.") from None
    return loaded
