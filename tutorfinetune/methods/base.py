"""The plug-in protocol and the method registry (DESIGN.md, "Methods are plug-ins").

A method is an object with a ``name``, a ``config`` dict and any of these hooks, called by
:func:`tutorfinetune.train` (and by the Hugging Face Trainer bridge) at fixed points:

``prepare(model, blocks)``
    once, before the optimiser exists: add modules, wrap dropout, freeze.
``param_groups(model)``
    the parameters that may *ever* train (a list of tensors or of ``{"params": [...], ...}``
    dicts). The optimiser is built over these, so a unit unfrozen later is already in it.
    Return ``None`` to let the engine take every parameter that requires a gradient.
``on_step_start(state)``
    before each optimiser step's forward pass (schedules, Fisher passes).
``after_backward(state)``
    after backward, before gradient clipping and the optimiser step (gradient masks).
``after_step(state)``
    right after ``optimizer.step()`` (put back entries a mask says must not move).
``on_epoch_end(state)`` and ``finish(state)``
    bookkeeping and artifacts (``finish`` may return a dict that lands in ``RunResult.artifacts``).
``before_eval(state, eval_set)``
    before each evaluation of a named eval set (e.g. swap a MAD-X domain adapter).
``state_dict()`` / ``load_state_dict(d)``
    what a checkpoint must hold to resume exactly (generators, schedules).

Register a method with :func:`register`; ``methods.get("id", **config)`` builds it.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable

from torch import nn

from ..config import ConfigError, coerce, did_you_mean

__all__ = ["Method", "MethodError", "register", "get", "available", "resolve", "choice", "probability"]


class MethodError(ValueError):
    """Unknown method, bad method config, or methods that cannot be combined."""


class Method:
    """Base class: every hook is optional and does nothing by default."""

    name: str = "method"
    #: preparation order: methods that add modules (adapters, stage 0) prepare before methods that
    #: schedule or watch them (scheduled unfreezing 10, Fisher tracking 20); ties keep the given order.
    stage: int = 0

    def __init__(self, **config: Any) -> None:
        self.config: dict[str, Any] = dict(config)

    # hooks ---------------------------------------------------------------------------------
    def prepare(self, model: nn.Module, blocks) -> None:  # noqa: D401 - hook
        return None

    def param_groups(self, model: nn.Module):
        return None

    def on_step_start(self, state) -> None:
        return None

    def after_backward(self, state) -> None:
        return None

    def after_step(self, state) -> None:
        return None

    def on_epoch_end(self, state) -> None:
        return None

    def finish(self, state) -> dict | None:
        return None

    def before_eval(self, state, eval_set: str) -> None:
        return None

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        return None

    def check_compatible(self, others: list["Method"]) -> None:
        """Raise :class:`MethodError` if this method cannot run beside ``others``."""
        return None

    # description ---------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return {"name": self.name, **self.config}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        return f"{type(self).__name__}({args})"


_REGISTRY: dict[str, Callable[..., Method]] = {}


def register(method_id: str) -> Callable[[type], type]:
    """Class decorator: make ``methods.get(method_id)`` build this class."""

    def deco(cls: type) -> type:
        if method_id in _REGISTRY:
            raise MethodError(f"Method id {method_id!r} is registered twice.")
        _REGISTRY[method_id] = cls
        return cls

    return deco


def available() -> list[str]:
    """Registered method ids."""
    return sorted(_REGISTRY)


def get(method_id: str, **config: Any) -> Method:
    """Build a registered method by id, e.g. ``get("freeze-embeddings")``."""
    if not isinstance(method_id, str):
        raise MethodError(f"A method id is a string, got {type(method_id).__name__}.")
    if method_id not in _REGISTRY:
        raise MethodError(f"Unknown method {method_id!r}.{did_you_mean(method_id, _REGISTRY)} Available: {available()}.")
    try:
        return _REGISTRY[method_id](**config)
    except TypeError as e:
        raise MethodError(f"Bad config for method {method_id!r}: {e}.") from None


def resolve(methods: Iterable[Any] | str | Method | None) -> list[Method]:
    """Turn ``"full"``, ``["freeze-embeddings"]``, ``[Method(...)]`` or ``[("id", {...})]`` into Methods."""
    if methods is None:
        return []
    if isinstance(methods, (str, Method)):
        methods = [methods]
    out: list[Method] = []
    for m in methods:
        if isinstance(m, Method):
            out.append(m)
        elif isinstance(m, str):
            out.append(get(m))
        elif isinstance(m, (tuple, list)) and len(m) == 2 and isinstance(m[0], str) and isinstance(m[1], dict):
            out.append(get(m[0], **m[1]))
        else:
            raise MethodError(f"Cannot read {m!r} as a method: pass an id string, a Method, or (id, config).")
    out.sort(key=lambda m: getattr(m, "stage", 0))
    for i, m in enumerate(out):
        m.check_compatible(out[:i] + out[i + 1:])
    return out


def choice(what: str, value: Any, options, error: type = MethodError) -> str:
    """``value`` if it is one of ``options``, else ``error`` naming the closest option and all of them."""
    if not isinstance(value, str) or value not in options:
        raise error(f"Unknown {what} {value!r}.{did_you_mean(value, options)} Use one of {list(options)}.")
    return value


def probability(name: str, value: Any, hint: str = "") -> float:
    """A probability in [0, 1) (papermill strings coerced), else MethodError."""
    try:
        p = coerce(name, value, float)
    except ConfigError as e:
        raise MethodError(str(e)) from None
    if math.isnan(p) or not 0.0 <= p < 1.0:
        raise MethodError(f"{name} must be a probability in [0, 1), got {p!r}.{hint}")
    return p
