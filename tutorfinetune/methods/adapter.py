"""Task adapters through AdapterHub's `adapters` library (docs/methods.md §0, §2; notebooks/02_adapters.ipynb).

``TaskAdapter`` (registry id ``"adapter"``) adds one adapter to the backbone and trains only it and
the head: the default is MAD-X's task adapter, ``SeqBnConfig(reduction_factor=16)``: one bottleneck
(down-projection, ReLU, up-projection, residual) after the feed-forward sublayer of every block.
Any config that ``adapters`` accepts passes through (``"lora"``, ``"prefix_tuning"``,
``"seq_bn_inv"``, a config object). ``stack_on="domain"`` stacks it on an adapter that is already in
the model (MAD-X: ``Stack(domain, task)``); ``AdapterSwap`` (registry id ``"adapter-swap"``) swaps the
lower adapter per eval set at evaluation time (zero-shot transfer to a target domain or language).

The BlockMap head (BERT's pooler and classifier) always trains: ``adapters``' ``train_adapter``
keeps the classifier trainable but freezes the pooler, which docs/methods.md §0 counts as head.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import nn

from ..backbones import adapter_summary, block_map
from ..heads import adopt_readout, readout_of
from .base import Method, MethodConfig, MethodError, literal_dict, option, register

__all__ = ["TaskAdapter", "TaskAdapterConfig", "AdapterSwap", "AdapterSwapConfig", "AdapterError", "ensure_adapters",
           "adapter_config", "adapter_summary", "save_adapter", "load_adapter", "KNOWN_CONFIGS"]


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


@dataclass(frozen=True)
class TaskAdapterConfig(MethodConfig):
    """Settings of :class:`TaskAdapter` (registry id ``"adapter"``)."""

    config: Any = option("seq_bn", "an `adapters` config name ('seq_bn': MAD-X's task adapter, 'lora', "
                         "'prefix_tuning', 'seq_bn_inv', ...) or a config object such as "
                         "adapters.SeqBnConfig(reduction_factor=16)")
    reduction_factor: int | float | None = option(16, "bottleneck reduction (hidden size / bottleneck size) "
                                                  "for bottleneck configs named by text; > 0")
    name: str = option("task", "the adapter's name in the model")
    stack_on: str | None = option(None, "an adapter already in the model to stack below this one "
                                  "(MAD-X: Stack(domain, task))")

    error = AdapterError

    def validate(self) -> None:
        rf = self.reduction_factor
        if rf is not None and not (math.isfinite(rf) and rf > 0):
            raise AdapterError(f"reduction_factor must be > 0 (hidden size / bottleneck size; MAD-X uses 16, "
                               f"larger is a smaller adapter), got {rf!r}.")
        own = getattr(self.config, "reduction_factor", None)
        if not isinstance(self.config, str) and isinstance(own, (int, float)) and not own > 0:
            raise AdapterError(f"The adapter config object has reduction_factor={own!r}; it must be > 0.")
        adapter_config(self.config, rf)  # an unknown config name fails here, with the known ones


@register("adapter")
class TaskAdapter(Method):
    """Train one adapter (and the head) with the base model frozen (options: :class:`TaskAdapterConfig`)."""

    name = "adapter"
    Config = TaskAdapterConfig
    traits = frozenset({"adds-adapters", "freezes-body"})
    excludes = {
        "trains-body": "{me!r} freezes the base model and trains an adapter; it cannot run beside {other!r}, "
                       "which trains every parameter: use one.",
        "head-only": "{me!r} freezes the base model and trains an adapter and the head; it cannot run beside "
                     "{other!r}, which trains the head only: use one.",
    }
    unique = "name"
    unique_message = "Two TaskAdapters named {key!r}: give each a different name=."
    error = AdapterError

    def __init__(self, *args: Any, **config: Any) -> None:
        super().__init__(*args, **config)
        self._config_obj = adapter_config(self.config.config, self.config.reduction_factor)

    @property
    def adapter_name(self) -> str:
        return self.config.name

    @property
    def stack_on(self) -> str | None:
        return self.config.stack_on

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
        c = self.config
        return {"name": self.name, "config": c.config if isinstance(c.config, str) else repr(c.config),
                "reduction_factor": c.reduction_factor, "adapter_name": c.name, "stack_on": c.stack_on}


@dataclass(frozen=True)
class AdapterSwapConfig(MethodConfig):
    """Settings of :class:`AdapterSwap` (registry id ``"adapter-swap"``)."""

    task_adapter: str = option("task", "the task adapter (top of the stack)")
    default: str = option("source", "the lower adapter for eval sets not in by_eval_set (the source adapter)")
    by_eval_set: dict[str, str] = option(help="eval-set name -> lower adapter, e.g. {'shift:hotels': 'hotels'}",
                                         default_factory=dict)

    error = AdapterError

    def validate(self) -> None:
        self._set("by_eval_set", literal_dict("by_eval_set", self.by_eval_set, AdapterError))


@register("adapter-swap")
class AdapterSwap(Method):
    """At evaluation, swap the lower adapter of a ``Stack(lower, task)`` per eval set (MAD-X zero-shot;
    options: :class:`AdapterSwapConfig`)."""

    name = "adapter-swap"
    Config = AdapterSwapConfig
    traits = frozenset({"swaps-adapters"})
    unique = True
    error = AdapterError

    def __init__(self, *args: Any, **config: Any) -> None:
        super().__init__(*args, **config)
        self.model = None

    def prepare(self, model: nn.Module, blocks) -> None:
        self.model = model

    def before_eval(self, state, eval_set: str) -> None:
        adapters = _lib()
        names = adapter_names(self.model)
        c = self.config
        lower = c.by_eval_set.get(eval_set, c.default)
        for n in (lower, c.task_adapter):
            if n not in names:
                raise AdapterError(f"Cannot swap in adapter {n!r} for {eval_set!r}: the model has {names}.")
        self.model.active_adapters = adapters.Stack(lower, c.task_adapter)


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
        "num_hidden_layers": model.config.num_hidden_layers, "adapter": name, "readout": readout_of(model)}))
    return path


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise AdapterError(f"{path} is damaged ({e}); save the adapter again.") from None
    if not isinstance(data, dict):
        raise AdapterError(f"{path} is damaged (not a JSON object); save the adapter again.")
    return data


_WEIGHT_FILES = ("adapter.safetensors", "pytorch_adapter.safetensors", "pytorch_adapter.bin")


def _adapter_weight_shapes(path: Path) -> dict[str, tuple]:
    """Names and shapes of the adapter's weights (AdapterHub writes adapter.safetensors, older versions
    pytorch_adapter.bin); AdapterError when the file is missing, truncated or not readable."""
    for name in _WEIGHT_FILES:
        f = path / name
        if not f.is_file():
            continue
        try:
            if f.suffix == ".safetensors":
                from safetensors import safe_open

                with safe_open(str(f), "pt") as sf:
                    return {k: tuple(sf.get_slice(k).get_shape()) for k in sf.keys()}
            import torch

            return {k: tuple(v.shape) for k, v in torch.load(f, map_location="cpu", weights_only=True).items()}
        except Exception as e:  # truncated safetensors, a zip archive cut short, a pickle payload
            raise AdapterError(f"{f} is damaged or truncated, or not an adapter file this package can read safely "
                               f"({type(e).__name__}: {str(e)[:160]}). Save or download the adapter again.") from None
    raise AdapterError(f"{path} holds no adapter weights ({' or '.join(_WEIGHT_FILES)}): the folder is incomplete.")


def _check_adapter_folder(model: nn.Module, path: Path) -> None:
    """Before loading, so that nothing loads partially: the adapter's weights are readable, made for this
    model type and hidden size (adapter_config.json), and cover exactly this model's blocks (an adapter
    from a backbone with more or fewer blocks would otherwise load into some blocks only). Other shape
    mismatches are refused by ``adapters`` itself (reported as an AdapterError below)."""
    conf = _read_json(path / "adapter_config.json")
    cfg = model.config
    mine = {"model_type": getattr(cfg, "model_type", None), "hidden_size": getattr(cfg, "hidden_size", None)}
    other = {k: conf.get(k) for k in mine if conf.get(k) is not None}
    diff = {k: (v, mine[k]) for k, v in other.items() if v != mine[k]}
    if diff:
        raise AdapterError(f"The adapter in {path} was made for another backbone ({conf.get('model_name') or conf.get('model_class') or 'unknown'}): "
                           + ", ".join(f"{k} {a} != {b}" for k, (a, b) in diff.items())
                           + ". Load it into the backbone it was trained for.")
    shapes = _adapter_weight_shapes(path)
    n_blocks = int(getattr(cfg, "num_hidden_layers", 0) or len(block_map(model).blocks))
    layers = {int(m.group(1)) for k in shapes for m in [re.search(r"\.(?:layer|layers|h|block)\.(\d+)\.", k)] if m}
    leave_out = {int(i) for i in ((conf.get("config") or {}).get("leave_out") or []) if str(i).lstrip("-").isdigit()}
    expected = set(range(n_blocks)) - {i % n_blocks for i in leave_out} if n_blocks else set()
    if layers and layers != expected:
        have = max(layers) + 1
        raise AdapterError(
            f"The adapter in {path} has weights for blocks {sorted(layers)[:8]}{' ...' if len(layers) > 8 else ''} "
            f"(a backbone of at least {have} blocks), but this model has {n_blocks} blocks"
            + (f" (leave_out {sorted(leave_out)})" if leave_out else "")
            + ": it would load only partially. Load it into the backbone it was trained for "
            f"({conf.get('model_name') or conf.get('model_class') or 'see adapter_config.json'}).")


def load_adapter(model: nn.Module, path: str | Path, name: str | None = None, set_active: bool = True,
                 with_head: bool = True) -> str:
    """Load an adapter saved by :func:`save_adapter` (or AdapterHub) into ``model``; returns its name.

    With ``with_head`` the saved classification head (pooler + classifier) replaces the model's, and the
    model is given the readout the adapter was trained behind (mean pooling for MiniLM); a Backbone's
    ``blocks`` follow on its next ``train``, or call ``backbones.apply_readout(bb, "auto")``.

    Raises AdapterError when the folder is not an adapter, when it was trained for a backbone of
    another type, width or number of blocks (checked with or without tutorfinetune's metadata file, so
    that nothing loads partially), or when one of its files is damaged or truncated.
    """
    path = Path(path)
    if not (path / "adapter_config.json").is_file():
        raise AdapterError(f"{path} holds no adapter_config.json: not an AdapterHub adapter folder.")
    ensure_adapters(model)
    tag = path / "tutorfinetune.json"
    meta: dict = {}
    if tag.is_file():
        meta = _read_json(tag)
        mine = {"model_type": model.config.model_type, "hidden_size": model.config.hidden_size,
                "num_hidden_layers": model.config.num_hidden_layers}
        diff = {k: (meta.get(k), v) for k, v in mine.items() if meta.get(k) != v}
        if diff:
            raise AdapterError(
                f"Adapter in {path} was trained for another backbone ({meta.get('backbone') or 'unknown'}): "
                + ", ".join(f"{k} {a} != {b}" for k, (a, b) in diff.items())
                + ". Load it into the backbone it was trained for."
            )
    _check_adapter_folder(model, path)
    if name and name in adapter_names(model):
        raise AdapterError(f"An adapter named {name!r} is already in the model; pass another name.")
    try:
        with quiet_adapters():
            loaded = model.load_adapter(str(path), load_as=name, set_active=set_active, use_safetensors=True)
    except (RuntimeError, ValueError, KeyError) as e:
        raise AdapterError(f"Could not load the adapter in {path} into this backbone: {e}") from None
    if with_head and (path / "head.safetensors").is_file():
        adopt_readout(model, meta.get("readout"), f"The adapter in {path}")  # the head it was trained behind
        try:
            state = load_file(str(path / "head.safetensors"))
        except Exception as e:  # safetensors' own error type for a truncated or garbled file
            raise AdapterError(f"{path}/head.safetensors is damaged or truncated ({e}); save the adapter again, or "
                               "pass with_head=False to load the adapter alone.") from None
        for i, m in enumerate(block_map(model).head):
            part = {k.split(".", 1)[1]: v for k, v in state.items() if k.split(".", 1)[0] == str(i)}
            try:
                m.load_state_dict(part)
            except RuntimeError as e:
                raise AdapterError(f"The head saved in {path} does not fit this model ({e}); "
                                   "pass with_head=False to load the adapter alone.") from None
    return loaded
