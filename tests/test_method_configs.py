"""Method configs: every plug-in's ``describe()`` is pinned, so a refactoring cannot move a fingerprint.

A run's fingerprint hashes ``[m.describe() for m in methods]`` (:func:`tutorfinetune.engine.record.fingerprint`),
and a store reuses a finished run by its fingerprint. So for every method, at its defaults and at the
non-default configs used by the notebooks (notebooks/src), the leaderboard, the benchmarks and the tests,
``describe()`` (key order included), ``repr()``, the resolved order of combinations and a few fingerprints
must stay exactly what ``tests/method_configs.json`` holds. The file was recorded *before* method configs
became typed dataclasses (issue 17, item 3); re-record it only for a change that is meant to move
fingerprints, and say so in the commit:

    .venv/bin/python tests/test_method_configs.py --record
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
PINNED = HERE / "method_configs.json"


def _inter(**meta):
    from tutorfinetune.methods import Intermediate

    return Intermediate(state={}, head=None, meta={"id": "inter-0123abcd", "task": "real-fake", **meta})


def _mask():
    a = torch.tensor([True, False, True, False])
    b = torch.zeros(3, 2, dtype=torch.bool)
    b[1, 0] = True
    return {"encoder.a": a, "encoder.b": b}


def _scores_obj():
    from tutorfinetune.fisher.sublayer import SublayerScores

    return SublayerScores({"embeddings": 0.25, "block0.attention": 1.5, "block0.output": 0.75},
                          {"source": "mlm-warm", "backbone": "tiny"})


def _scores_file(tmp: Path) -> str:
    path = tmp / "scores.json"
    _scores_obj().save(path)
    return str(path)


def _seq_bn(rf):
    import adapters

    return adapters.SeqBnConfig(reduction_factor=rf)


#: name -> factory(tmp) of one method, as users, notebooks, recipes, benchmarks and tests build them
CASES = {
    # defaults of every registered id (and AdapterSwap)
    "full": lambda t: ("full", {}),
    "freeze-embeddings": lambda t: ("freeze-embeddings", {}),
    "linear-probe": lambda t: ("linear-probe", {}),
    "adapter": lambda t: ("adapter", {}),
    "gu": lambda t: ("gu", {}),
    "lpft": lambda t: ("lpft", {}),
    "fun": lambda t: ("fun", {}),
    "rand": lambda t: ("rand", {}),
    "gu-rev": lambda t: ("gu-rev", {}),
    "fixed order=[2,1,0]": lambda t: ("fixed", {"order": [2, 1, 0]}),
    "fisher-tracker": lambda t: ("fisher-tracker", {}),
    "graddrop": lambda t: ("graddrop", {}),
    "guided-dropout": lambda t: ("guided-dropout", {}),
    "standard-dropout": lambda t: ("standard-dropout", {}),
    "gaussian-dropout": lambda t: ("gaussian-dropout", {}),
    "sparse-update": lambda t: ("sparse-update", {}),
    "from-intermediate": lambda t: ("from-intermediate", {"intermediate": _inter()}),
    "AdapterSwap()": lambda t: _cls("AdapterSwap"),
    # adapters: notebooks 02 and 06, madx, benchmarks, tests
    "adapter rf=16": lambda t: ("adapter", {"reduction_factor": 16}),
    "adapter rf=16.0 (nb06 coerce float)": lambda t: ("adapter", {"reduction_factor": 16.0}),
    "adapter rf=4": lambda t: ("adapter", {"reduction_factor": 4}),
    "adapter rf=2": lambda t: ("adapter", {"reduction_factor": 2}),
    "adapter rf=64": lambda t: ("adapter", {"reduction_factor": 64}),
    "adapter rf=None": lambda t: ("adapter", {"reduction_factor": None}),
    "adapter lora": lambda t: ("adapter", {"config": "lora"}),
    "adapter prefix_tuning": lambda t: ("adapter", {"config": "prefix_tuning"}),
    "adapter seq_bn_inv": lambda t: ("adapter", {"config": "seq_bn_inv"}),
    "adapter config object": lambda t: ("adapter", {"config": _seq_bn(8)}),
    "adapter stack_on=source (madx)": lambda t: ("adapter", {"reduction_factor": 16, "stack_on": "source"}),
    "adapter name=second": lambda t: ("adapter", {"name": "second"}),
    "AdapterSwap madx": lambda t: _cls("AdapterSwap", default="source",
                                       by_eval_set={"shift:hotels": "hotels", "shift:games": "games"}),
    "AdapterSwap tests": lambda t: _cls("AdapterSwap", by_eval_set={"shift:c": "c"}),
    # schedules: notebook 03 (schedule_methods), leaderboard, benchmarks, tests
    "gu k=12": lambda t: ("gu", {"k": 12}),
    "gu k='25' (papermill)": lambda t: ("gu", {"k": "25"}),
    "gu k=3.0": lambda t: ("gu", {"k": 3.0}),
    "lpft k=7": lambda t: ("lpft", {"k": 7}),
    "rand k=2": lambda t: ("rand", {"k": 2}),
    "gu-rev k=4": lambda t: ("gu-rev", {"k": 4}),
    "fun k=7 fb=3 sample": lambda t: ("fun", {"k": 7, "fisher_batches": 3, "label_mode": "sample"}),
    "fun k=10 fb=10": lambda t: ("fun", {"k": 10, "fisher_batches": 10}),
    "fun k=2 fb=2 no embeddings": lambda t: ("fun", {"k": 2, "fisher_batches": 2, "include_embeddings": False}),
    "fun argmax seed=3": lambda t: ("fun", {"label_mode": "argmax", "seed": 3}),
    "gu units=adapters": lambda t: ("gu", {"units": "adapters"}),
    "gu units=blocks adapter_name=x": lambda t: ("gu", {"units": "blocks", "adapter_name": "x"}),
    "gu verbose": lambda t: ("gu", {"k": 5, "verbose": True}),
    "fixed order names": lambda t: ("fixed", {"order": ["adapter1", "adapter0"], "k": 3}),
    "fixed order tuple": lambda t: ("fixed", {"order": (1, 0, 2)}),
    "fixed order text": lambda t: ("fixed", {"order": "[2, 0, 1]"}),
    "ScheduledUnfreezing(schedule=fun)": lambda t: _cls("ScheduledUnfreezing", schedule="fun", k=9),
    "ScheduledUnfreezing()": lambda t: _cls("ScheduledUnfreezing"),
    "fisher-tracker every=5 batches=1 sample": lambda t: ("fisher-tracker", {"every": 5, "batches": 1,
                                                                              "label_mode": "sample"}),
    "fisher-tracker every=50 batches=40": lambda t: ("fisher-tracker", {"every": 50, "batches": 40}),
    "fisher-tracker every=4 batches=2": lambda t: ("fisher-tracker", {"every": 4, "batches": 2}),
    "fisher-tracker every='15' units=blocks": lambda t: ("fisher-tracker", {"every": "15", "units": "blocks",
                                                                             "include_embeddings": False}),
    # GradDrop: notebook 04, leaderboard, benchmarks, tests
    "graddrop p=0.3": lambda t: ("graddrop", {"p": 0.3}),
    "graddrop p=0.1": lambda t: ("graddrop", {"p": 0.1}),
    "graddrop p=0.5 grad": lambda t: ("graddrop", {"p": 0.5}),
    "graddrop p=0 int": lambda t: ("graddrop", {"p": 0}),
    "graddrop epoch": lambda t: ("graddrop", {"p": 0.3, "variant": "epoch"}),
    "graddrop epoch epoch_steps=2": lambda t: ("graddrop", {"variant": "epoch", "epoch_steps": 2, "p": 0.5}),
    "graddrop layer": lambda t: ("graddrop", {"p": 0.3, "variant": "layer"}),
    "graddrop layer skip": lambda t: ("graddrop", {"variant": "layer", "p": 0.5, "mode": "skip"}),
    "graddrop skip": lambda t: ("graddrop", {"p": 0.5, "mode": "skip"}),
    "graddrop rescale": lambda t: ("graddrop", {"p": 0.5, "rescale": True}),
    "graddrop seed": lambda t: ("graddrop", {"p": 0.3, "seed": 7}),
    "graddrop linear": lambda t: ("graddrop", {"p": 0.4, "p_schedule": "linear", "p_end": 0.0}),
    "graddrop linear p_end=0.1": lambda t: ("graddrop", {"p": 0.4, "p_schedule": "linear", "p_end": 0.1}),
    "graddrop units=blocks adapter_name=x": lambda t: ("graddrop", {"variant": "layer", "units": "blocks",
                                                                    "adapter_name": "x"}),
    "graddrop papermill strings": lambda t: ("graddrop", {"p": "0.5", "rescale": "true", "variant": "epoch",
                                                          "epoch_steps": "4"}),
    # dropout: notebook 05, leaderboard, benchmarks, tests
    "guided-dropout scores obj": lambda t: ("guided-dropout", {"scores": _scores_obj(), "p_upper": 0.1}),
    "guided-dropout scores obj magnitude": lambda t: ("guided-dropout", {"scores": _scores_obj(), "p_upper": 0.05,
                                                                         "mapping": "magnitude"}),
    "guided-dropout scores dict": lambda t: ("guided-dropout", {"scores": {"embeddings": 1.0, "block0.attention": 2},
                                                                "p_upper": 0.5}),
    "guided-dropout scores file": lambda t: ("guided-dropout", {"scores": _scores_file(t)}),
    "guided-dropout mlm-warm n=64 seed=1": lambda t: ("guided-dropout", {"source": "mlm-warm", "n": 64, "seed": 1}),
    "guided-dropout p_upper='0.2'": lambda t: ("guided-dropout", {"p_upper": "0.2"}),
    "standard-dropout p=0.2": lambda t: ("standard-dropout", {"p": 0.2}),
    "standard-dropout p=0": lambda t: ("standard-dropout", {"p": 0}),
    "gaussian-dropout p=0.1": lambda t: ("gaussian-dropout", {"p": 0.1}),
    "gaussian-dropout p=0.3": lambda t: ("gaussian-dropout", {"p": 0.3}),
    # sparse fine-tuning: recipes/lt_sft, benchmarks, tests
    "sparse-update l1=0.1": lambda t: ("sparse-update", {"l1": 0.1}),
    "sparse-update l1=1 int label": lambda t: ("sparse-update", {"l1": 1, "label": "lt-sft-dense (domain)"}),
    "sparse-update mask": lambda t: ("sparse-update", {"mask": _mask()}),
    "sparse-update mask l1 label": lambda t: ("sparse-update", {"mask": _mask(), "l1": 0.5, "label": "rand-sft"}),
    "sparse-update keep layernorm": lambda t: ("sparse-update", {"freeze_layernorm": False}),
    # STILTs target phase
    "from-intermediate carry_head": lambda t: ("from-intermediate", {"intermediate": _inter(), "carry_head": True}),
    "from-intermediate no pooler": lambda t: ("from-intermediate", {"intermediate": _inter(), "carry_pooler": False}),
    "from-intermediate no check": lambda t: ("from-intermediate", {"intermediate": _inter(), "check_backbone": False}),
    "FromIntermediate(inter) positional": lambda t: _cls("FromIntermediate", _inter(task="domains")),
    # LoRA through PEFT (issue 18): notebook 02b, leaderboard, benchmarks, tests
    "lora": lambda t: ("lora", {}),
    "lora r=8 (leaderboard)": lambda t: ("lora", {"r": 8}),
    "lora r=8 all-linear (leaderboard)": lambda t: ("lora", {"r": 8, "target_modules": "all-linear"}),
    "lora r=4 alpha=16 dropout=0.1": lambda t: ("lora", {"r": 4, "alpha": 16, "dropout": 0.1}),
    "lora papermill strings": lambda t: ("lora", {"r": "8", "target_modules": "query,value", "train_head": "false"}),
    "LoRA(LoRAConfig(r=16))": lambda t: _cls("LoRA", _cls("LoRAConfig", r=16)),
}

#: combinations: the resolved order, the run's method label and the describe list (what fingerprints hash)
COMBOS = {
    "full": ["full"],
    "adapter": ["adapter"],
    "adapter + gu k=12": ["adapter", ("gu", {"k": 12})],
    "adapter + fun + tracker": ["adapter", ("fun", {"k": 7, "fisher_batches": 3, "label_mode": "sample"}),
                                ("fisher-tracker", {"every": 5, "batches": 1, "label_mode": "sample"})],
    "tracker + fun + adapter (sorted)": [("fisher-tracker", {"every": 4, "batches": 2}), ("fun", {"k": 3}),
                                         "adapter"],
    "full + graddrop": ["full", ("graddrop", {"p": 0.3})],
    "graddrop + gu (sorted)": [("graddrop", {"p": 0.3}), ("gu", {"k": 4})],
    "adapter + graddrop layer": ["adapter", ("graddrop", {"p": 0.3, "variant": "layer"})],
    "freeze-embeddings + full": ["freeze-embeddings", "full"],
    "full + freeze-embeddings": ["full", "freeze-embeddings"],
    "gu no embeddings + freeze-embeddings": [("gu", {"include_embeddings": False}), "freeze-embeddings"],
    "gu adapters + freeze-embeddings": ["adapter", ("gu", {"units": "adapters"}), "freeze-embeddings"],
    "guided-dropout + full": [("guided-dropout", {"scores": "<obj>"}), "full"],
    "gaussian-dropout + adapter": [("gaussian-dropout", {"p": 0.1}), "adapter"],
    "sparse dense + graddrop": [("graddrop", {"p": 0.3}), "sparse-update"],
    "from-intermediate + adapter + gu": [("gu", {"k": 2}), "adapter", ("from-intermediate", {"intermediate": "<inter>"})],
    "from-intermediate + full + graddrop": [("graddrop", {"p": 0.3}), "full",
                                            ("from-intermediate", {"intermediate": "<inter>"})],
    "adapter stacked + swap": [("adapter", {"stack_on": "source"}), "<swap>"],
    "two adapters": [("adapter", {"name": "a"}), ("adapter", {"name": "b", "stack_on": "a"})],
    "lora": ["lora"],
    "lora + gu k=12": ["lora", ("gu", {"k": 12})],
    "lora + guided-dropout (sorted)": ["lora", ("guided-dropout", {"scores": "<obj>"})],
    "graddrop + tracker + lora (sorted)": [("graddrop", {"p": 0.3}), ("fisher-tracker", {"every": 5, "batches": 1}),
                                           "lora"],
    "lora + from-intermediate (sorted)": ["lora", ("from-intermediate", {"intermediate": "<inter>"})],
}


def _cls(name, *args, **kw):
    from tutorfinetune import methods

    return getattr(methods, name)(*args, **kw)


def build(case, tmp: Path):
    from tutorfinetune import methods

    spec = CASES[case](tmp)
    if isinstance(spec, tuple):
        return methods.get(spec[0], **spec[1])
    return spec


def _combo(spec):
    from tutorfinetune import methods

    out = []
    for m in spec:
        if m == "<swap>":
            out.append(methods.AdapterSwap(default="source"))
        elif isinstance(m, tuple) and "<obj>" in m[1].values():
            out.append((m[0], {"scores": _scores_obj()}))
        elif isinstance(m, tuple) and "<inter>" in m[1].values():
            out.append((m[0], {"intermediate": _inter()}))
        else:
            out.append(m)
    return methods.resolve(out)


def record_all() -> dict:
    from tutorfinetune import TrainConfig
    from tutorfinetune.engine.record import fingerprint, method_name

    with tempfile.TemporaryDirectory() as d:
        methods_ = {case: build(case, Path(d)) for case in CASES}
        out = {"methods": {case: {"describe": json.dumps(m.describe(), default=str), "repr": repr(m),
                                  "name": m.name}
                           for case, m in methods_.items()}}
    cfg = TrainConfig(lr=1e-4, max_steps=20, seed=3)
    combos = {}
    for name, spec in COMBOS.items():
        ms = _combo(spec)
        combos[name] = {"label": method_name(ms), "describe": json.dumps([m.describe() for m in ms], default=str),
                        "fingerprint": fingerprint("tiny", "toy", 80, cfg, ms)}
    out["combos"] = combos
    return out


@pytest.fixture(scope="module")
def pinned():
    return json.loads(PINNED.read_text())


@pytest.mark.parametrize("case", list(CASES))
def test_describe_and_repr_are_pinned(case, pinned, tmp_path):
    m = build(case, tmp_path)
    want = pinned["methods"][case]
    assert json.dumps(m.describe(), default=str) == want["describe"]
    assert repr(m) == want["repr"]
    assert m.name == want["name"]


@pytest.mark.parametrize("combo", list(COMBOS))
def test_combinations_keep_their_order_label_and_fingerprint(combo, pinned):
    from tutorfinetune import TrainConfig
    from tutorfinetune.engine.record import fingerprint, method_name

    ms = _combo(COMBOS[combo])
    want = pinned["combos"][combo]
    assert method_name(ms) == want["label"]
    assert json.dumps([m.describe() for m in ms], default=str) == want["describe"]
    assert fingerprint("tiny", "toy", 80, TrainConfig(lr=1e-4, max_steps=20, seed=3), ms) == want["fingerprint"]


def test_every_pinned_case_is_still_checked(pinned):
    assert set(pinned["methods"]) == set(CASES) and set(pinned["combos"]) == set(COMBOS)


# ---------------------------------------------------------------------------------------------
# Typed configs, the registry, describe(id) and the one combination checker (issue 17, item 3)
# ---------------------------------------------------------------------------------------------
#: every plug-in of tutorfinetune/methods/ and its registry id
PLUGINS = {"full": "FullFineTuning", "freeze-embeddings": "FreezeEmbeddings", "linear-probe": "LinearProbe",
           "adapter": "TaskAdapter", "adapter-swap": "AdapterSwap", "gu": "ScheduledUnfreezing_gu",
           "lpft": "ScheduledUnfreezing_lpft", "fun": "ScheduledUnfreezing_fun", "rand": "ScheduledUnfreezing_rand",
           "gu-rev": "ScheduledUnfreezing_gu_rev", "fixed": "ScheduledUnfreezing_fixed",
           "fisher-tracker": "FisherTracker", "graddrop": "GradDrop", "guided-dropout": "GuidedDropout",
           "standard-dropout": "StandardDropout", "gaussian-dropout": "GaussianDropout",
           "sparse-update": "SparseUpdate", "from-intermediate": "FromIntermediate", "lora": "LoRA"}


def test_every_plugin_is_registered_once_under_a_unique_id():
    import importlib
    import pkgutil

    import tutorfinetune.methods as pkg
    from tutorfinetune.methods import base

    assert set(PLUGINS) <= set(pkg.available())
    classes = [base._REGISTRY[i] for i in pkg.available()]
    assert len(set(classes)) == len(classes), "one class under two ids"
    for i, cls in base._REGISTRY.items():
        assert cls.id == i
    for mid, name in PLUGINS.items():
        assert base._REGISTRY[mid].__name__ == name
    # every Method subclass defined in tutorfinetune/methods/ is registered (ScheduledUnfreezing: once per schedule)
    for info in pkgutil.iter_modules(pkg.__path__):
        mod = importlib.import_module(f"tutorfinetune.methods.{info.name}")
        for obj in vars(mod).values():
            if isinstance(obj, type) and issubclass(obj, base.Method) and obj is not base.Method \
                    and obj.__module__ == mod.__name__:
                registered = obj in classes or any(issubclass(c, obj) for c in classes)
                assert registered, f"{obj.__name__} is a plug-in but not registered: add @register('...')"
    with pytest.raises(base.MethodError, match="registered twice"):
        base.register("graddrop")(type("Again", (base.Method,), {}))


@pytest.mark.parametrize("mid", list(PLUGINS))
def test_every_plugin_declares_a_typed_config_with_help_and_its_traits(mid):
    import dataclasses

    from tutorfinetune.methods import base

    cls = base._REGISTRY[mid]
    cfg = cls.Config
    assert dataclasses.is_dataclass(cfg) and issubclass(cfg, base.MethodConfig)
    assert cfg.__dataclass_params__.frozen
    if mid not in ("full", "freeze-embeddings", "linear-probe"):  # the three baselines take no options
        assert cfg is not base.MethodConfig and cfg.method is cls
        for f in dataclasses.fields(cfg):
            assert f.metadata.get("help"), f"{cfg.__name__}.{f.name} has no help text"
    assert cls.stage in base.STAGE.values()
    assert set(cls.excludes) <= set(base.TRAITS)
    assert cls.check_compatible is base.Method.check_compatible, "say it with traits, not in check_compatible"


def test_config_objects_kwargs_ids_and_pairs_all_build_the_same_method():
    from tutorfinetune import methods

    built = [methods.get("graddrop", p=0.3, variant="layer"), methods.GradDrop(p=0.3, variant="layer"),
             methods.GradDrop(methods.GradDrop.Config(p=0.3, variant="layer")),
             methods.GradDrop(methods.GradDropConfig(p=0.3), variant="layer"),
             *methods.resolve([("graddrop", {"p": 0.3, "variant": "layer"})]),
             *methods.resolve([methods.GradDropConfig(p=0.3, variant="layer")]),
             methods.GradDrop(0.3, "layer")]
    assert all(type(m) is methods.GradDrop for m in built)
    assert all(m.config == built[0].config and m.describe() == built[0].describe() for m in built)
    sched = methods.resolve([methods.get("fun").Config(k=3)])[0]
    assert sched.name == "fun" and sched.config.k == 3
    with pytest.raises(methods.MethodError, match="takes a GradDropConfig, got a FisherTrackerConfig"):
        methods.GradDrop(methods.FisherTrackerConfig())


def test_a_config_is_frozen_validated_once_and_round_trips():
    import dataclasses

    from tutorfinetune.methods import GradDropConfig, MethodError, ScheduledUnfreezingConfig

    c = GradDropConfig(p="0.5", rescale="yes", variant="epoch", epoch_steps="4.0")  # papermill text
    assert (c.p, c.rescale, c.epoch_steps) == (0.5, True, 4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.p = 0.1
    assert GradDropConfig.from_dict(c.to_dict()) == c
    assert c.replace(p=0.2).p == 0.2 and c.p == 0.5
    assert c["variant"] == "epoch" and dict(c)["epoch_steps"] == 4 and "seed" in c and len(c) == len(dataclasses.fields(GradDropConfig))
    with pytest.raises(MethodError, match="'varient' \\(did you mean 'variant'\\?\\)"):
        c.replace(varient="layer")
    with pytest.raises(MethodError, match="Did you mean 'layer'"):
        c.replace(variant="layr")
    with pytest.raises(MethodError, match=r"\[0, 1\)"):
        c.replace(p=1.5)
    assert ScheduledUnfreezingConfig(schedule="fixed", order="[2, 0, 1]").order == "[2, 0, 1]"
    assert ScheduledUnfreezingConfig(schedule="fixed", order=[2, 0, 1]).order == (2, 0, 1)


def test_unknown_or_missing_options_say_what_to_write():
    from tutorfinetune import methods

    with pytest.raises(methods.MethodError, match="Unknown 'graddrop' option 'pp' \\(did you mean 'p'\\?\\)"):
        methods.get("graddrop", pp=0.3)
    with pytest.raises(methods.MethodError, match="'from-intermediate' needs intermediate="):
        methods.get("from-intermediate")
    with pytest.raises(methods.MethodError, match="Method 'gu' is the schedule 'gu'"):
        methods.get("gu", schedule="fun")


def test_describe_prints_and_returns_fields_types_defaults_help(capsys):
    from tutorfinetune import methods

    info = methods.describe("graddrop")
    out = capsys.readouterr().out
    assert out.strip() == info.text and str(info) == info.text
    assert "graddrop: GradDrop (GradDropConfig)" in out and "stage 30 (mask)" in out and "one per run" in out
    assert "p: float = 0.3" in out and "variant: str = 'element'   one of ['element', 'epoch', 'layer']" in out
    assert "epoch_steps: int | None = None" in out and "head-only (linear-probe)" in out
    row = {r["name"]: r for r in info.fields}["p"]
    assert row["type"] == "float" and row["default"] == 0.3 and "probability" in row["help"]
    fi = methods.describe("from-intermediate")
    assert {r["name"]: r for r in fi.fields}["intermediate"]["required"]
    swap = methods.describe(methods.AdapterSwap)
    assert swap.id == "adapter-swap" and "by_eval_set" in swap.text
    assert "options: none" in methods.describe("full").text
    with pytest.raises(methods.MethodError, match="Did you mean 'graddrop'"):
        methods.describe("gradrop")
    import inspect  # Jupyter's help on the class shows the config's fields

    assert str(inspect.signature(methods.GradDrop)).startswith("(p: float = 0.3, variant: str = 'element'")


def test_stages_order_the_preparation():
    from tutorfinetune import methods

    got = methods.resolve(["graddrop", "fisher-tracker", ("gu", {"k": 2}), "adapter", methods.FromIntermediate(_inter())])
    assert [m.name for m in got] == ["from-intermediate", "adapter", "gu", "fisher-tracker", "graddrop"]
    got = methods.resolve(["graddrop", "sparse-update", "full"])
    assert [m.name for m in got] == ["full", "lt-sft-dense", "graddrop"]
    assert methods.STAGE == {"load": -10, "build": 0, "adapt": 5, "schedule": 10, "watch": 20, "select": 25, "mask": 30}
    got = methods.resolve([("gu", {"k": 2}), "lora", ("guided-dropout", {"scores": _scores_obj()})])
    assert [m.name for m in got] == ["guided-dropout", "lora", "gu"]


#: combinations that are refused: (methods, error class name, message parts); every rule in force before
#: the checker was declarative, plus plug-ins that must be unique per run
REFUSED = [
    (["full", "linear-probe"], "MethodError", ["'linear-probe' trains the head only and 'full' trains everything",
                                               "pick one"]),
    (["full", "adapter"], "AdapterError", ["'adapter' freezes the base model", "cannot run beside 'full'"]),
    (["linear-probe", "adapter"], "AdapterError", ["'adapter'", "cannot run beside 'linear-probe'"]),
    (["<adapter>", "<adapter>"], "AdapterError", ["Two TaskAdapters named 'task'", "name="]),
    (["gu", "fun"], "MethodError", ["Two unfreezing schedules", "'gu' and 'fun'"]),
    (["linear-probe", "gu"], "MethodError", ["'linear-probe' freezes every unit", "'lpft'", "'gu'"]),
    (["freeze-embeddings", "gu"], "MethodError", ["'freeze-embeddings' and 'gu'", "include_embeddings=False"]),
    (["freeze-embeddings", ("fun", {"units": "blocks"})], "MethodError", ["both decide about the embeddings"]),
    (["linear-probe", "graddrop"], "MethodError", ["'linear-probe' trains the head only", "'graddrop' would do nothing",
                                                   "lpft"]),
    (["graddrop", ("graddrop", {"variant": "layer"})], "MethodError", ["Two GradDrop plug-ins", "variant="]),
    (["<graddrop>", "<sparse mask>"], "MethodError", ["'lt-sft' already masks gradients", "pick one"]),
    (["guided-dropout", "gaussian-dropout"], "MethodError", ["'guided-dropout' and 'gaussian-dropout' both decide"]),
    (["standard-dropout", "guided-dropout"], "MethodError", ["both decide the dropout"]),
    (["standard-dropout", "standard-dropout"], "MethodError", ["both decide the dropout"]),
    (["sparse-update", "sparse-update"], "MethodError", ["Two sparse-update plug-ins"]),
    (["linear-probe", "sparse-update"], "MethodError", ["'linear-probe' freezes them", "nothing to select"]),
    (["adapter", "sparse-update"], "MethodError", ["'adapter' freezes them", "nothing to select"]),
    (["<inter>", "<inter>"], "MethodError", ["Two 'from-intermediate' plug-ins", "one intermediate model"]),
    (["full", "full"], "MethodError", ["Two 'full' plug-ins"]),
    (["fisher-tracker", ("fisher-tracker", {"every": 5})], "MethodError", ["Two Fisher trackers"]),
    (["adapter-swap", "adapter-swap"], "AdapterError", ["Two 'adapter-swap' plug-ins"]),
    (["linear-probe", "linear-probe"], "MethodError", ["Two 'linear-probe' plug-ins"]),
]

#: combinations that work (the checker must not be stricter than the rules)
ALLOWED = [
    ["full", "graddrop"], ["adapter", "graddrop"], [("gu", {"k": 2}), "graddrop"], ["lpft", "graddrop"],
    ["adapter", "fun", "fisher-tracker"], ["full", "fisher-tracker"], ["freeze-embeddings", ("gu", {"include_embeddings": False})],
    ["adapter", ("gu", {"units": "adapters"}), "freeze-embeddings"], ["graddrop", "sparse-update"],
    [("adapter", {"name": "a"}), ("adapter", {"name": "b", "stack_on": "a"})], ["adapter", "adapter-swap"],
    ["full", "guided-dropout"], ["<inter>", "adapter", "gu", "graddrop"], ["full", "freeze-embeddings"],
    ["sparse-update", "full"],
]


def _spec(items):
    from tutorfinetune import methods

    special = {"<adapter>": lambda: methods.TaskAdapter(), "<graddrop>": lambda: methods.GradDrop(p=0.3),
               "<sparse mask>": lambda: methods.SparseUpdate(mask=_mask()),
               "<inter>": lambda: methods.FromIntermediate(_inter())}
    return [special[m]() if isinstance(m, str) and m in special else m for m in items]


@pytest.mark.parametrize("items, error, parts", REFUSED, ids=[" + ".join(map(str, r[0])) for r in REFUSED])
def test_combinations_that_cannot_run_together_are_refused_by_the_one_checker(items, error, parts):
    from tutorfinetune import methods

    with pytest.raises(methods.MethodError) as e:
        methods.resolve(_spec(items))
    assert type(e.value).__name__ == error
    for part in parts:
        assert part in str(e.value), (part, str(e.value))
    with pytest.raises(methods.MethodError):  # whichever order they are given in
        methods.resolve(_spec(items)[::-1])


@pytest.mark.parametrize("items", ALLOWED, ids=[" + ".join(map(str, a)) for a in ALLOWED])
def test_combinations_that_make_sense_are_allowed(items):
    from tutorfinetune import methods

    methods.resolve(_spec(items))


def test_resolve_tells_each_plugin_who_it_runs_beside():
    from tutorfinetune import methods

    gd, gu = methods.resolve(["graddrop", ("gu", {"k": 2})])[::-1]
    assert [o.name for o in gd.peers] == ["gu"] and "schedules-units" in gu.traits


@pytest.mark.parametrize("rf", [0, -4, "0", 0.0, float("inf")])
def test_adapter_reduction_factor_must_be_positive(rf):
    from tutorfinetune.methods import AdapterError, TaskAdapter

    with pytest.raises(AdapterError, match="reduction_factor must be > 0"):
        TaskAdapter(reduction_factor=rf)


def test_a_plugin_without_a_config_class_still_takes_keywords():
    from tutorfinetune.methods import Method

    class Legacy(Method):
        name = "legacy"

        def __init__(self, flag=True, items=None):
            super().__init__(flag=flag, items=items or [1, 2])

    m = Legacy(flag=False)
    assert m.config["flag"] is False and m.config["items"] == [1, 2]
    assert m.describe() == {"name": "legacy", "flag": False, "items": [1, 2]}
    assert repr(m) == "Legacy(flag=False, items=[1, 2])"


if __name__ == "__main__":
    if "--record" not in sys.argv:
        sys.exit(f"usage: python {Path(__file__).name} --record   (rewrites {PINNED.name})")
    sys.path.insert(0, str(HERE.parent))
    PINNED.write_text(json.dumps(record_all(), indent=1, sort_keys=True) + "\n")
    print(f"recorded {len(CASES)} methods and {len(COMBOS)} combinations in {PINNED}")
