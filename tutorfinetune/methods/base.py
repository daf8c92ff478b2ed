"""The plug-in protocol, typed method configs, the combination checker and the registry
(DESIGN.md, "Methods are plug-ins").

A method is an object with a ``name``, one typed ``config`` and any of these hooks, called by
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

**Configs.** Each plug-in declares its settings once, as a frozen dataclass derived from
:class:`MethodConfig` with a help text per field (the habit of AdapterHub's ``AdapterConfig`` and
PEFT's ``LoraConfig``): ``GradDrop.Config`` is :class:`~tutorfinetune.methods.graddrop.GradDropConfig`.
A config is validated once, when it is built: papermill's text is coerced to the declared type
(:func:`tutorfinetune.config.coerce`), a value outside ``choices`` or an unknown field is refused with
"did you mean". ``to_dict()`` / ``from_dict()`` / ``replace()`` work as on :class:`~tutorfinetune.TrainConfig`,
and a config reads like a dict (``m.config["p"]``), as AdapterHub's configs do. These all build the
same method::

    methods.get("graddrop", p=0.3)        ("graddrop", {"p": 0.3})        GradDrop(p=0.3)
    GradDrop(GradDrop.Config(p=0.3))      GradDrop.Config(p=0.3)           # a config alone resolves too

:func:`describe` prints a plug-in's fields, types, defaults and help.

**A run's identity.** ``Method.describe()`` is what a run records and what its fingerprint hashes
(:func:`tutorfinetune.engine.record.fingerprint`); a store reuses finished runs by fingerprint. So a
field added to a config later must stay out of ``describe()`` at its default, and
``tests/test_method_configs.py`` pins ``describe()`` for every plug-in.

**Order and combinations** are declared, not coded: every plug-in says when it prepares
(:attr:`Method.stage`, one of :data:`STAGE`), what it does (:attr:`Method.traits`, words from
:data:`TRAITS`), which traits it cannot run beside (:attr:`Method.excludes`, each with the message
that names both plug-ins and the fix) and whether it may appear once per run (:attr:`Method.unique`).
:func:`resolve` sorts the plug-ins by stage and is the one place these declarations are checked.

Register a method with :func:`register`; ``methods.get("id", **config)`` builds it.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import math
import textwrap
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass
from typing import Any, Callable, ClassVar, Iterable

from torch import nn

from ..config import ConfigError, coerce, did_you_mean

__all__ = ["Method", "MethodError", "MethodConfig", "option", "register", "get", "available", "resolve", "describe",
           "check_combination", "STAGE", "TRAITS", "UNIT_KINDS", "choice", "probability"]


class MethodError(ValueError):
    """Unknown method, bad method config, or methods that cannot be combined."""


#: when a plug-in prepares (and, at every later hook, runs), lowest first; ties keep the order given
STAGE: dict[str, int] = {
    "load": -10,      # replace the encoder's weights: every later plug-in sees them (from-intermediate)
    "build": 0,       # add modules, decide what trains and the dropout (full, adapter, dropout plug-ins)
    "adapt": 5,       # wrap pretrained layers in place, after the dropout plug-ins saw the plain model (LoRA)
    "schedule": 10,   # freeze units and unfreeze them during training (scheduled unfreezing)
    "watch": 20,      # measure the units a schedule left (Fisher tracker)
    "select": 25,     # restrict training to selected entries (sparse fine-tuning)
    "mask": 30,       # mask whatever is trainable at each step (GradDrop)
}

#: what a plug-in does; :attr:`Method.traits` and :attr:`Method.excludes` use these words only
TRAITS: dict[str, str] = {
    "trains-body": "makes every parameter of the model trainable (full fine-tuning)",
    "head-only": "trains the classification head and nothing else",
    "freezes-body": "freezes the pretrained weights of the encoder",
    "freezes-embeddings": "freezes the embedding layer",
    "adds-adapters": "adds adapter modules to the model and trains them",
    "swaps-adapters": "changes which adapters are active at evaluation",
    "schedules-units": "freezes units (blocks or adapters) and unfreezes them one by one while training",
    "schedules-embeddings": "its units include the embeddings (a schedule over blocks)",
    "tracks-fisher": "measures tr(F) per unit while training (changes nothing)",
    "masks-gradients": "zeroes gradient entries before the optimiser step",
    "selects-entries": "trains selected entries of the pretrained weights (sparse fine-tuning)",
    "sets-dropout": "decides the dropout probabilities of the model",
    "loads-encoder": "replaces the encoder's weights before anything else prepares",
}

#: the units of scheduled unfreezing, Fisher tracking and GradDrop's layer variant (:func:`tutorfinetune.fisher.find_units`)
UNIT_KINDS: dict[str, str] = {
    "auto": "the task adapter of each block when the model has the adapter `adapter_name`, else the blocks",
    "adapters": "the task adapter of each block",
    "blocks": "the embeddings and the transformer blocks (full fine-tuning)",
}


# ---------------------------------------------------------------------------------------------
# Typed configs
# ---------------------------------------------------------------------------------------------
def option(default: Any = MISSING, help: str = "", *, choices: Iterable[str] | None = None,
           default_factory: Any = MISSING, what: str | None = None) -> Any:
    """A config field with its help text (and, for text options, the values it may take)::

        variant: str = option("element", "how entries are dropped", choices=VARIANTS)

    ``what`` names the field in the "Unknown ..." message (default: its name).
    """
    meta = {"help": help, **({"choices": tuple(choices)} if choices is not None else {}),
            **({"what": what} if what else {})}
    return dataclasses.field(default=default, default_factory=default_factory, metadata=meta)


_PLAIN = (bool, int, float, str, type(None))


def _members(typ: Any) -> tuple:
    if typing.get_origin(typ) in (typing.Union, types.UnionType):
        return typing.get_args(typ)
    return (typ,)


def _coerce_field(name: str, value: Any, typ: Any) -> Any:
    """``value`` as the declared type. A value that already has one of the declared plain types is kept
    as it is (an int where ``int | float`` is declared stays an int, so records do not change); text
    from papermill is coerced; other declared types (objects, dicts) pass through to ``validate()``."""
    if typ is Any:
        return value
    if type(value) in _PLAIN and type(value) in _members(typ):
        return value
    return coerce(name, value, typ)


@dataclass(frozen=True)
class MethodConfig(Mapping):
    """Base of every plug-in's config: a frozen dataclass, validated once, that also reads like a dict.

    Subclasses declare fields with :func:`option` and may override :meth:`validate` (raise
    :class:`MethodError` with the fix; normalise a field with ``self._set(name, value)``).
    """

    #: the error class a bad value raises (AdapterError for adapters)
    error: ClassVar[type] = MethodError
    #: the Method class this config builds (set when the Method class is defined)
    method: ClassVar[type | None] = None

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            try:
                value = _coerce_field(f.name, value, hints[f.name])
            except ConfigError as e:
                raise self.error(str(e)) from None
            choices = f.metadata.get("choices")
            if choices is not None and value not in choices:
                raise self.error(f"Unknown {f.metadata.get('what', f.name)} {value!r}.{did_you_mean(value, choices)} "
                                 f"Use one of {list(choices)}.")
            object.__setattr__(self, f.name, value)
        self.validate()

    def validate(self) -> None:
        """Checks that involve a field's value or several fields; raise ``self.error`` with the fix."""

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    # building and serialising ---------------------------------------------------------------
    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def _check_names(cls, given: Iterable[str], what: str) -> None:
        names = cls.names()
        unknown = [k for k in given if k not in names]
        if unknown:
            said = ", ".join(f"{k!r}" + (f" (did you mean {m[0]!r}?)" if (m := _close(k, names)) else "")
                             for k in unknown)
            raise cls.error(f"Unknown {what} option {said}. Its options: {names or 'none'}.")
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in given and f.default is MISSING
                   and f.default_factory is MISSING]
        if missing:
            raise cls.error(f"{what} needs " + ", ".join(f"{f.name}= ({f.metadata.get('help') or 'required'})"
                                                        for f in dataclasses.fields(cls) if f.name in missing) + ".")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "MethodConfig":
        """Build from a dict; unknown keys are refused with the closest known one."""
        if not isinstance(data, Mapping):
            raise cls.error(f"{cls.__name__}.from_dict needs a dict, got {type(data).__name__}.")
        cls._check_names(data, cls._label())
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict (dicts and lists copied, objects such as tensors shared)."""
        out = {}
        for n in self.names():
            v = getattr(self, n)
            out[n] = v.copy() if isinstance(v, (dict, list)) else v
        return out

    def replace(self, **changes: Any) -> "MethodConfig":
        """A copy with some fields changed, validated again."""
        return self.from_dict({**self.to_dict(), **changes})

    @classmethod
    def _label(cls) -> str:
        m = cls.method
        return repr(getattr(m, "id", None) or getattr(m, "name", None) or cls.__name__)

    # read like a dict -----------------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        if key not in self.names():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self):
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())


def _close(value: str, options: list[str]) -> list[str]:
    import difflib

    return difflib.get_close_matches(value, options, n=1)


def _untyped_config(**config: Any) -> MethodConfig:
    """A config for a plug-in that declares none (``super().__init__(with_groups=True)``): every field ``Any``."""
    fields = [(k, Any, dataclasses.field(default_factory=lambda v=v: v)) for k, v in config.items()]
    cls = dataclasses.make_dataclass("Config", fields, bases=(MethodConfig,), frozen=True)
    return cls()


# ---------------------------------------------------------------------------------------------
# The plug-in base class
# ---------------------------------------------------------------------------------------------
class Method:
    """Base class: every hook is optional and does nothing by default.

    Build one with keyword settings (``GradDrop(p=0.3)``), positional ones in field order, or a config
    object (``GradDrop(GradDropConfig(p=0.3))``, with keyword changes on top). The settings live in
    one typed object, ``self.config``.
    """

    name: str = "method"
    #: the registry id (set by :func:`register`)
    id: ClassVar[str | None] = None
    #: the settings this plug-in takes
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    #: when it prepares and runs, one of :data:`STAGE`
    stage: int = STAGE["build"]
    #: what it does (words from :data:`TRAITS`); may be a property that reads the config
    traits: frozenset[str] = frozenset()
    #: trait it cannot run beside -> the message, with ``{me}`` and ``{other}`` (the two names) filled in
    excludes: ClassVar[Mapping[str, str]] = {}
    #: True: at most one per run; a config field's name: at most one per run per value of that field
    unique: ClassVar[bool | str] = False
    #: the message when two meet (``{me}``, ``{other}`` and ``{key}``, the shared value, filled in)
    unique_message: ClassVar[str] = "Two {me!r} plug-ins in one run: use one."
    #: the error class its checks raise
    error: ClassVar[type] = MethodError
    #: the other plug-ins of the run, set by :func:`resolve`
    peers: tuple = ()

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if "Config" in cls.__dict__ and cls.Config is not MethodConfig:
            cls.Config.method = cls
            kinds = [p.kind for p in inspect.signature(cls.__init__).parameters.values()][1:]
            if kinds == [inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD]:
                cls.__signature__ = inspect.signature(cls.Config, eval_str=True)  # Jupyter shows the fields
        for word in [*(cls.traits if isinstance(cls.traits, (set, frozenset)) else ()), *cls.excludes]:
            if word not in TRAITS:
                raise MethodError(f"{cls.__name__} uses the trait {word!r}, which is not in methods.base.TRAITS."
                                  f"{did_you_mean(word, TRAITS)} Add it there with what it means.")

    def __init__(self, *args: Any, **config: Any) -> None:
        self.config: MethodConfig = self._make_config(args, config)

    @classmethod
    def _make_config(cls, args: tuple, config: dict) -> MethodConfig:
        label = repr(cls.id or cls.name)
        if args and isinstance(args[0], MethodConfig):
            if not isinstance(args[0], cls.Config):
                raise MethodError(f"{label} takes a {cls.Config.__name__}, got a {type(args[0]).__name__}.")
            if len(args) > 1:
                raise MethodError(f"{label}: pass one config object, then changes as keywords.")
            return args[0].replace(**config) if config else args[0]
        if cls.Config is MethodConfig and "Config" not in cls.__dict__ and (args or config):
            if args:
                raise MethodError(f"{label} declares no Config; pass its settings as keywords.")
            return _untyped_config(**config)
        names = cls.Config.names()
        if len(args) > len(names):
            raise MethodError(f"{label} takes at most {len(names)} positional settings ({names}), got {len(args)}.")
        given = dict(zip(names, args))
        twice = [k for k in config if k in given]
        if twice:
            raise MethodError(f"{label} got {twice} both by position and by keyword.")
        cls.Config._check_names([*given, *config], label)
        return cls.Config(**given, **config)

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
        """For a user's plug-in whose rule the traits cannot say: raise :class:`MethodError` if it cannot
        run beside ``others``. No built-in plug-in needs it (:func:`check_combination` reads the traits)."""
        return None

    # description ---------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """What a run records about this plug-in and what its fingerprint hashes (see the module docstring)."""
        return {"name": self.name, **self.config.to_dict()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.describe().items() if k != "name")
        return f"{type(self).__name__}({args})"


# ---------------------------------------------------------------------------------------------
# Combinations: the one checker
# ---------------------------------------------------------------------------------------------
def check_combination(methods: list[Method]) -> None:
    """Refuse plug-ins that cannot run together, from what each declares (``unique``, ``traits``,
    ``excludes``); the message names both plug-ins and the fix. ``methods`` are in stage order."""
    for m in methods:
        words = set(m.traits)
        if words - set(TRAITS):
            raise MethodError(f"{m.name!r} declares unknown traits {sorted(words - set(TRAITS))}; "
                              f"known: {sorted(TRAITS)}.")
    for i, m in enumerate(methods):
        others = methods[:i] + methods[i + 1:]
        for o in others:
            if m.unique and type(o) is type(m):
                key = None if m.unique is True else m.config[m.unique]
                if m.unique is True or key == o.config[m.unique]:
                    raise m.error(m.unique_message.format(me=m.name, other=o.name, key=key))
            for trait, message in m.excludes.items():
                if trait in o.traits:
                    raise m.error(message.format(me=m.name, other=o.name))
        m.check_compatible(others)


# ---------------------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------------------
_REGISTRY: dict[str, type[Method]] = {}


def register(method_id: str) -> Callable[[type], type]:
    """Class decorator: make ``methods.get(method_id)`` build this class."""

    def deco(cls: type) -> type:
        if method_id in _REGISTRY:
            raise MethodError(f"Method id {method_id!r} is registered twice.")
        _REGISTRY[method_id] = cls
        cls.id = method_id
        return cls

    return deco


def available() -> list[str]:
    """Registered method ids."""
    return sorted(_REGISTRY)


def _lookup(method_id: Any) -> type[Method]:
    if not isinstance(method_id, str):
        raise MethodError(f"A method id is a string, got {type(method_id).__name__}.")
    if method_id not in _REGISTRY:
        raise MethodError(f"Unknown method {method_id!r}.{did_you_mean(method_id, _REGISTRY)} Available: {available()}.")
    return _REGISTRY[method_id]


def get(method_id: str, **config: Any) -> Method:
    """Build a registered method by id, e.g. ``get("graddrop", p=0.3)``."""
    cls = _lookup(method_id)
    try:
        return cls(**config)
    except TypeError as e:  # a user's plug-in with its own __init__ signature
        raise MethodError(f"Bad config for method {method_id!r}: {e}.") from None


def resolve(methods: Iterable[Any] | str | Method | MethodConfig | None) -> list[Method]:
    """Turn ``"full"``, ``["freeze-embeddings"]``, ``[Method(...)]``, ``[("id", {...})]`` or config objects
    into Methods, sorted by :attr:`Method.stage`, and check that they can run together."""
    if methods is None:
        return []
    if isinstance(methods, (str, Method, MethodConfig)):
        methods = [methods]
    out: list[Method] = []
    for m in methods:
        if isinstance(m, Method):
            out.append(m)
        elif isinstance(m, str):
            out.append(get(m))
        elif isinstance(m, MethodConfig) and type(m).method is not None:
            out.append(type(m).method(m))
        elif isinstance(m, (tuple, list)) and len(m) == 2 and isinstance(m[0], str) and isinstance(m[1], dict):
            out.append(get(m[0], **m[1]))
        else:
            raise MethodError(f"Cannot read {m!r} as a method: pass an id string, a Method, a method config, "
                              "or (id, config).")
    out.sort(key=lambda m: getattr(m, "stage", 0))
    check_combination(out)
    for i, m in enumerate(out):
        m.peers = tuple(out[:i] + out[i + 1:])
    return out


# ---------------------------------------------------------------------------------------------
# Help
# ---------------------------------------------------------------------------------------------
@dataclass
class MethodHelp:
    """What :func:`describe` printed: the plug-in, its fields (name, type, default, help, choices) and traits."""

    id: str
    method: type
    fields: list[dict[str, Any]]
    text: str

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"<MethodHelp {self.id!r}: {len(self.fields)} options>"


def _default_of(f: dataclasses.Field) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


def _traits_at_defaults(cls: type[Method]) -> frozenset[str] | None:
    """A class's traits; for traits that read the config, those of the plug-in at its defaults (None if it
    has required options)."""
    if isinstance(cls.traits, (set, frozenset)):
        return frozenset(cls.traits)
    try:
        return frozenset(cls().traits)
    except Exception:  # a required option, or a plug-in that cannot be built here
        return None


def describe(method_id: str | type[Method], file: Any = None) -> MethodHelp:
    """Print (and return) a plug-in's options (type, default, help), when it runs and what it cannot run beside.

    Args:
        method_id: a registered id (``"graddrop"``) or a Method class (``AdapterSwap``).
        file: where to print (default: standard output).
    """
    cls = method_id if isinstance(method_id, type) else _lookup(method_id)
    mid = cls.id or cls.name
    cfg = cls.Config
    doc = inspect.getdoc(cls) or ""
    stage = {v: k for k, v in STAGE.items()}.get(cls.stage, str(cls.stage))
    traits = _traits_at_defaults(cls)
    said = ", ".join(sorted(traits)) if traits is not None else "depend on the config"
    if traits is not None and not isinstance(cls.traits, (set, frozenset)):
        said += " (at the defaults; they depend on the config)"
    who = {t: [i for i, c in sorted(_REGISTRY.items()) if t in (_traits_at_defaults(c) or ())] for t in cls.excludes}
    beside = "; ".join(f"{t} ({', '.join(who[t]) or 'no registered plug-in at its defaults'})" for t in cls.excludes)
    lines = [f"{mid}: {cls.__name__} ({cfg.__name__})", textwrap.indent(doc.split("\n\n")[0], "  "),
             f"  stage {cls.stage} ({stage}); traits: {said}"
             + ("; one per run" if cls.unique is True else f"; one per run per {cls.unique}" if cls.unique else ""),
             f"  cannot run beside: {beside or 'nothing declared'}",
             "  options:" if dataclasses.fields(cfg) else "  options: none"]
    rows = []
    for f in dataclasses.fields(cfg):
        default = _default_of(f)
        typ = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        choices = f.metadata.get("choices")
        rows.append({"name": f.name, "type": typ, "default": None if default is MISSING else default,
                     "required": default is MISSING, "help": f.metadata.get("help", ""),
                     "choices": list(choices) if choices else None})
        shown = "required" if default is MISSING else f"= {default!r}"
        lines.append(f"    {f.name}: {typ} {shown}" + (f"   one of {list(choices)}" if choices else ""))
        if f.metadata.get("help"):
            lines.extend(textwrap.wrap(f.metadata["help"], 100, initial_indent=" " * 8, subsequent_indent=" " * 8))
    text = "\n".join(lines)
    print(text, file=file)
    return MethodHelp(id=str(mid), method=cls, fields=rows, text=text)


# ---------------------------------------------------------------------------------------------
# Small validators shared by the plug-ins
# ---------------------------------------------------------------------------------------------
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


def literal_dict(name: str, value: Any, error: type = MethodError) -> dict:
    """A dict, or papermill's text of one (``"{'shift:de': 'de'}"``); ``None`` is an empty dict."""
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value.strip() or "{}")
        except (ValueError, SyntaxError):
            raise error(f"Cannot read {name}={value!r} as a dict; write it like {{'shift:de': 'de'}}.") from None
    if not isinstance(value, Mapping):
        raise error(f"{name} must be a dict, got {value!r} ({type(value).__name__}).")
    return dict(value)
