"""TrainConfig: the frozen, validated, JSON-serialisable settings of one training run (DESIGN.md, "Engine").

Papermill hands notebooks parameters as text more often than one would like (``"5e-5"``, ``"[0, 1]"``,
``3.0`` for an int). Every field is coerced to its declared type when that is unambiguous and rejected
with a message naming the field, the value and the expected form otherwise. :func:`as_list` does the
same for notebook parameters such as ``seeds``.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import json
import math
import numbers
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["TrainConfig", "ConfigError", "as_list", "coerce", "as_config"]


class ConfigError(ValueError):
    """A setting has a wrong type or value; the message says which and how to fix it."""


class UnknownFieldError(ConfigError, TypeError):
    """A keyword that is no TrainConfig field (a TypeError too, as Python raises for unknown keywords)."""


# Names other libraries use for TrainConfig's fields (Hugging Face TrainingArguments and friends).
FIELD_ALIASES = {
    "learning_rate": "lr", "epochs": "num_epochs", "num_train_epochs": "num_epochs", "n_epochs": "num_epochs",
    "steps": "max_steps", "train_steps": "max_steps", "train_batch_size": "batch_size",
    "per_device_train_batch_size": "batch_size", "per_device_eval_batch_size": "eval_batch_size",
    "max_seq_length": "max_length", "max_len": "max_length", "warmup_ratio": "warmup",
    "lr_scheduler_type": "scheduler", "max_grad_norm": "grad_clip", "random_seed": "seed",
    "eval_steps": "eval_every", "save_steps": "checkpoint_every",
    "gradient_accumulation_steps": "grad_accum_steps",
}


def _unknown_fields_message(unknown, names) -> str:
    said = []
    for k in unknown:
        guess = FIELD_ALIASES.get(str(k)) or next(iter(difflib.get_close_matches(str(k), names, n=1)), None)
        said.append(f"{k!r}" + (f" (did you mean {guess!r}?)" if guess else ""))
    return f"Unknown TrainConfig field{'s' if len(unknown) > 1 else ''}: {', '.join(said)}. Known fields: {names}."


def _is_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    dtype = getattr(value, "dtype", None)  # numpy.bool_ (and 0-d boolean arrays or tensors)
    return getattr(dtype, "kind", "") == "b" and getattr(value, "ndim", 1) == 0


_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}
_NONE = {"none", "null", ""}


def _parse_text_list(value: str) -> list:
    text = value.strip()
    if text.startswith(("[", "(")):
        try:
            parsed = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise ConfigError(f"Cannot read {value!r} as a list; write it like [1, 2, 3].") from None
        return list(parsed) if isinstance(parsed, (list, tuple)) else [parsed]
    return [t.strip().strip("'\"") for t in text.split(",") if t.strip()]


def did_you_mean(value: Any, options) -> str:
    """``" Did you mean 'x'?"`` for the closest of ``options``, or ``""``."""
    import difflib

    close = difflib.get_close_matches(str(value), [str(o) for o in options], n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def coerce(name: str, value: Any, typ: Any) -> Any:
    """Coerce ``value`` to ``typ`` (int, float, bool, str, Literal, Optional, tuple[...]) or raise ConfigError."""
    origin = typing.get_origin(typ)
    args = typing.get_args(typ)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.strip().lower() in _NONE):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        errors = []
        for a in inner:
            try:
                return coerce(name, value, a)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{name}: {value!r} fits none of {inner}.")
    if origin is Literal:
        if isinstance(value, str) and value.strip() in args:
            return value.strip()
        raise ConfigError(f"{name} must be one of {list(args)}, got {value!r}.")
    if origin in (tuple, list):
        item_t = args[0] if args else str
        if isinstance(value, str):
            value = _parse_text_list(value)
        if not isinstance(value, (list, tuple)):
            value = [value]
        return tuple(coerce(f"{name}[{i}]", v, item_t) for i, v in enumerate(value))
    if typ is bool:
        if _is_bool(value):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        if isinstance(value, numbers.Integral) and value in (0, 1):
            return bool(value)
        raise ConfigError(f"{name} must be true or false, got {value!r}.")
    if typ is int:
        if _is_bool(value):
            raise ConfigError(f"{name} must be an integer, got the boolean {value!r}.")
        if isinstance(value, numbers.Integral):  # numpy integers too
            return int(value)
        if isinstance(value, numbers.Real) and math.isfinite(float(value)) and float(value).is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                f = float(value.strip().replace("_", ""))
            except ValueError:
                f = math.nan
            if f.is_integer():
                return int(f)
        raise ConfigError(f"{name} must be an integer, got {value!r} ({type(value).__name__}).")
    if typ is float:
        if _is_bool(value):
            raise ConfigError(f"{name} must be a number, got the boolean {value!r}.")
        if isinstance(value, numbers.Real):  # numpy floats and integers too
            out = float(value)
        elif isinstance(value, str):
            try:
                out = float(value.strip())
            except ValueError:
                raise ConfigError(f"{name} must be a number (e.g. 5e-5), got {value!r}.") from None
        else:
            raise ConfigError(f"{name} must be a number, got {value!r} ({type(value).__name__}).")
        if not math.isfinite(out):
            raise ConfigError(f"{name} must be finite, got {value!r}.")
        return out
    if typ is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{name} must be text, got {value!r} ({type(value).__name__}).")
    return value


def as_list(value: Any, item_type: type = int, name: str = "value") -> list:
    """A notebook parameter as a list: ``"[0, 1, 2]"``, ``"0,1,2"``, ``(0, 1)``, ``3`` all work."""
    return list(coerce(name, value, tuple[item_type, ...]))


#: fields added after 0.1 -> the value at which to_dict() leaves them out (what runs before them did; for
#: ``readout`` that is not the default: runs record the readout "auto" resolved to, see engine.record)
_OMIT_WHEN: dict[str, Any] = {"readout": "pooler", "select_best": False, "early_stopping": 0, "grad_accum_steps": 1}


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one run. Every field accepts papermill-style text; see :func:`coerce`.

    Attributes:
        lr: peak learning rate of AdamW.
        num_epochs: passes over the training split (ignored when ``max_steps`` is set).
        max_steps: optimiser steps in total (overrides ``num_epochs``).
        batch_size: training examples per optimiser step.
        eval_batch_size: examples per forward pass at evaluation.
        max_length: tokens per example after truncation (>= 8).
        seed: seeds the data order, dropout and every method's generator.
        weight_decay: AdamW decoupled weight decay (not applied to biases and LayerNorm weights).
        warmup: fraction of the steps with a linear warm-up (0 <= warmup < 1).
        scheduler: ``"linear"`` decay to zero after warm-up, or ``"constant"``.
        grad_clip: max global gradient norm (0 turns clipping off).
        eval_every: evaluate the curve set every N optimiser steps (0: at each epoch end only).
        curve_eval_set: eval set tracked during training for learning curves.
        eval_sets: eval sets evaluated at the end (empty: all of the task's sets).
        max_train_examples: keep this many training examples (stratified, seeded); None keeps all.
        max_eval_examples: cap every eval set at this many rows (stratified by label, the same rows
            for every run and seed); None evaluates on all rows. For quick runs (notebooks' ci mode).
        group_by_length: batch examples of similar length (less padding, faster).
        pad_to_max_length: pad every batch to ``max_length`` (slower; for benchmarks and comparisons).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.
        precision: ``"auto"`` (bf16 autocast on a GPU that supports it, else fp32), ``"fp32"``, ``"bf16"``.
        checkpoint_every: save a checkpoint every N optimiser steps (0: none).
        fused_adamw: use the fused AdamW kernel where this torch has it.
        readout: how the head reads the encoder (:mod:`tutorfinetune.heads`): ``"pooler"`` (BERT's
            pooler), ``"cls"``, ``"mean"`` (masked mean of the token states), or ``"auto"`` (the
            checkpoint's own pretraining pooling, the default: mean for all-MiniLM-L6-v2, BERT's pooler for
            a plain BERT checkpoint; the run records the readout it resolved to).
        select_best: evaluate the curve set (a dev split) during training and report the eval sets at
            the best dev step (model selection on dev, as the papers' ``load_best_model_at_end``); the
            final-step metrics stay in the record (``final_metrics``).
        early_stopping: with ``select_best``, stop after this many dev evaluations without improvement
            (0: never stop early).
        grad_accum_steps: split each optimiser step's batch into this many micro-batches (less memory, the
            same optimisation: ``batch_size`` stays the rows per optimiser step). Under several processes
            (``accelerate launch``/``torchrun``) ``batch_size`` is the global batch over all of them, so a
            run's optimisation does not depend on how many processes share it.
    """

    lr: float = 5e-5
    num_epochs: float = 3.0
    max_steps: int | None = None
    batch_size: int = 16
    eval_batch_size: int = 64
    max_length: int = 128
    seed: int = 0
    weight_decay: float = 0.01
    warmup: float = 0.1
    scheduler: Literal["linear", "constant"] = "linear"
    grad_clip: float = 1.0
    eval_every: int = 0
    curve_eval_set: str = "dev"
    eval_sets: tuple[str, ...] = field(default_factory=tuple)
    max_train_examples: int | None = None
    max_eval_examples: int | None = None
    group_by_length: bool = True
    pad_to_max_length: bool = False
    device: str = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    checkpoint_every: int = 0
    fused_adamw: bool = True
    readout: Literal["pooler", "cls", "mean", "auto"] = "auto"
    select_best: bool = False
    early_stopping: int = 0
    grad_accum_steps: int = 1

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, coerce(f.name, getattr(self, f.name), hints[f.name]))
        checks = [
            (self.lr > 0, "lr must be > 0 (typical: 1e-5 .. 5e-4)"),
            (self.num_epochs > 0, "num_epochs must be > 0"),
            (self.max_steps is None or self.max_steps > 0, "max_steps must be > 0 or None"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.eval_batch_size >= 1, "eval_batch_size must be >= 1"),
            (self.max_length >= 8, f"max_length must be >= 8 tokens (got {self.max_length}); "
                                   "reviews need ~64, use 64 or 128"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (0 <= self.warmup < 1, "warmup is a fraction of the steps: 0 <= warmup < 1"),
            (self.grad_clip >= 0, "grad_clip must be >= 0 (0 turns clipping off)"),
            (self.eval_every >= 0, "eval_every must be >= 0"),
            (self.checkpoint_every >= 0, "checkpoint_every must be >= 0"),
            (self.max_train_examples is None or self.max_train_examples >= 2,
             "max_train_examples must be >= 2 or None"),
            (self.max_eval_examples is None or self.max_eval_examples >= 2,
             "max_eval_examples must be >= 2 or None"),
            (self.seed >= 0, "seed must be >= 0"),
            (self.early_stopping >= 0, "early_stopping must be >= 0 (0: never stop early)"),
            (self.grad_accum_steps >= 1, "grad_accum_steps must be >= 1 (1: no accumulation)"),
            (self.grad_accum_steps <= self.batch_size,
             f"grad_accum_steps={self.grad_accum_steps} cannot exceed batch_size={self.batch_size} (each micro-batch "
             "needs a row)"),
            (not self.early_stopping or self.select_best,
             "early_stopping needs select_best=True (it stops when the dev score stops improving)"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg + ".")

    # --- serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-able dict. Fields added after 0.1 are left out while they hold their neutral
        value (:data:`_OMIT_WHEN`), so a run's record and fingerprint stay what they were for settings
        that existed before, and stores made earlier keep being reused."""
        d = dataclasses.asdict(self)
        d["eval_sets"] = list(self.eval_sets)
        for name, neutral in _OMIT_WHEN.items():
            if d.get(name) == neutral:
                del d[name]
        return d

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), **kw)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, written: bool = True) -> "TrainConfig":
        """The config of a dict of fields; unknown fields raise :class:`UnknownFieldError` with a suggestion.

        ``written=True`` (the default) reads a dict written by :meth:`to_dict` (a run record, a checkpoint):
        a field that ``to_dict`` leaves out at its neutral value (:data:`_OMIT_WHEN`) is read as that value,
        so ``from_dict(c.to_dict()) == c`` always holds and a record made before the field existed means
        what its run did (``readout="pooler"``). ``written=False`` reads a dict written by hand: absent
        fields take the class defaults, as ``TrainConfig(**data)`` does (``readout="auto"``)."""
        if not isinstance(data, dict):
            raise ConfigError(f"TrainConfig.from_dict needs a dict, got {type(data).__name__}.")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in data if k not in names]
        if unknown:
            raise UnknownFieldError(_unknown_fields_message(unknown, names))
        return cls(**({**_OMIT_WHEN, **data} if written else data))

    @classmethod
    def from_json(cls, text: str | bytes) -> "TrainConfig":
        """A config from its JSON text (:meth:`to_json`); bad JSON raises :class:`ConfigError` naming the place."""
        if not isinstance(text, (str, bytes, bytearray)):
            raise ConfigError(f"TrainConfig.from_json needs JSON text, got {type(text).__name__}; "
                              "for a dict use TrainConfig.from_dict.")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"TrainConfig.from_json: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}); "
                              'expected an object such as {"lr": 5e-05, "batch_size": 16}.') from None
        except (UnicodeDecodeError, RecursionError) as e:
            raise ConfigError(f"TrainConfig.from_json: not readable JSON text ({type(e).__name__}).") from None
        if not isinstance(data, dict):
            raise ConfigError(f"TrainConfig.from_json needs a JSON object of fields, got a JSON {type(data).__name__}.")
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with ``changes`` (checked and coerced like the constructor's arguments)."""
        names = [f.name for f in dataclasses.fields(self)]
        unknown = [k for k in changes if k not in names]
        if unknown:
            raise UnknownFieldError(_unknown_fields_message(unknown, names))
        return dataclasses.replace(self, **changes)

    # --- the step budget ---------------------------------------------------------------------
    def steps_per_epoch(self, n_train: int) -> int:
        """Optimiser steps in one pass over ``n_train`` examples (the last batch may be short)."""
        return math.ceil(int(n_train) / self.batch_size)

    def total_steps(self, n_train: int) -> int:
        """The run's optimiser steps: ``max_steps`` when set, else ``num_epochs`` passes over ``n_train``
        examples, rounded up (at least 1). The one place epochs become steps: the engine, recipes and
        notebooks all ask here."""
        if self.max_steps:
            return int(self.max_steps)
        return max(1, math.ceil(self.num_epochs * self.steps_per_epoch(n_train)))


def _checked_init(init):
    """Wrap a dataclass ``__init__``: an unknown keyword raises :class:`UnknownFieldError` naming the
    field it probably meant (``learning_rate`` -> ``lr``) instead of a bare TypeError."""

    @functools.wraps(init)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        fields = type(self).__dataclass_fields__
        unknown = [k for k in kwargs if k not in fields]
        if unknown:
            raise UnknownFieldError(_unknown_fields_message(unknown, list(fields)))
        init(self, *args, **kwargs)

    return __init__


TrainConfig.__init__ = _checked_init(TrainConfig.__init__)  # type: ignore[method-assign]


def as_config(config: TrainConfig | dict | None) -> TrainConfig:
    """A :class:`TrainConfig` from what a caller passed: itself, a dict written by hand (absent fields
    take the class defaults) or None (all defaults); anything else is a :class:`ConfigError`."""
    if config is None:
        return TrainConfig()
    if isinstance(config, dict):
        return TrainConfig.from_dict(config, written=False)
    if not isinstance(config, TrainConfig):
        raise ConfigError(f"config must be a TrainConfig or a dict, got {type(config).__name__}.")
    return config
