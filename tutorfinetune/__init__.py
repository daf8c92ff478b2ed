"""tutorfinetune: a Jupyter-first study package for fine-tuning pretrained language models.

Public API (DESIGN.md, "Contracts"):

    load_task(name_or_path, ...)            -> Task
    load_backbone(name, num_labels=...)     -> Backbone (.model, .tokenizer, .blocks)
    TrainConfig(...)                        -> frozen, validated run settings
    train(backbone, task, config, methods)  -> RunResult (trains backbone.model in place)
    methods.get(id, **config), methods.available()
    results.load(path)                      -> tidy DataFrame of every recorded run

The package is layered, lowest first (an import only points down; tests/test_layers.py holds it):

    config, env, errors, progress, results (the store)
    data, synthetic, backbones
    mlm, fisher, diffs                      primitives: masked LM, Fisher information, sparse diffs
    methods                                 plug-ins of the one loop
    engine                                  the loop, its record, checkpoints, evaluation
    recipes, hf                             multi-phase recipes (LT-SFT, STILTs, MAD-X); Trainer bridge
    studies                                 sweeps of runs, notebook sweeps, the leaderboard
    analysis, notebook                      statistics, figures, tables; notebook helpers
    cli
"""

import importlib as _importlib

from . import (  # noqa: E402
    analysis,
    data,
    diffs,
    engine,
    fisher,
    methods,
    mlm,
    notebook,
    recipes,
    results,
    studies,
    synthetic,
)
from ._version import __version__
from .backbones import Backbone, BackboneError, BlockMap, backbone_for_task, load_backbone  # noqa: E402
from .config import ConfigError, TrainConfig, as_list  # noqa: E402
from .data import Task, TaskError, load_task, load_text  # noqa: E402
from .engine import NonFiniteLossError, RunResult, TrainingError, evaluate, train  # noqa: E402

#: old module paths (before the package was layered) -> where they live now; they keep working for one
#: release with a DeprecationWarning (the alias modules use tutorfinetune._compat).
MOVED = {
    "study": "tutorfinetune.studies.runs",
    "sweeps": "tutorfinetune.studies.notebooks",
    "leaderboard": "tutorfinetune.studies.leaderboard",
    "sparse": "tutorfinetune.diffs + tutorfinetune.recipes.lt_sft",
    "stilts": "tutorfinetune.recipes.stilts",
    "madx": "tutorfinetune.recipes.madx",
    "sublayer_fisher": "tutorfinetune.fisher.sublayer",
}


def __getattr__(name: str):
    """``tutorfinetune.study`` and the other moved modules: the deprecated alias module, imported lazily."""
    if name in MOVED:
        return _importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "__version__",
    "analysis",
    "data",
    "diffs",
    "engine",
    "fisher",
    "methods",
    "mlm",
    "notebook",
    "recipes",
    "results",
    "studies",
    "synthetic",
    "Backbone",
    "BackboneError",
    "BlockMap",
    "load_backbone",
    "backbone_for_task",
    "ConfigError",
    "TrainConfig",
    "as_list",
    "Task",
    "TaskError",
    "load_task",
    "load_text",
    "NonFiniteLossError",
    "RunResult",
    "TrainingError",
    "evaluate",
    "train",
]
