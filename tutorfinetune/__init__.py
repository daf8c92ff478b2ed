"""tutorfinetune: a Jupyter-first study package for fine-tuning pretrained language models.

Public API (DESIGN.md, "Contracts"):

    load_task(name_or_path, ...)            -> Task
    load_backbone(name, num_labels=...)     -> Backbone (.model, .tokenizer, .blocks)
    TrainConfig(...)                        -> frozen, validated run settings
    train(backbone, task, config, methods)  -> RunResult (trains backbone.model in place)
    methods.get(id, **config), methods.available()
    results.load(path)                      -> tidy DataFrame of every recorded run
"""

__version__ = "0.1.0"

from . import (  # noqa: E402
    analysis,
    data,
    fisher,
    madx,
    methods,
    notebook,
    recipes,
    results,
    sparse,
    stilts,
    study,
    sublayer_fisher,
    synthetic,
)
from .backbones import Backbone, BackboneError, BlockMap, backbone_for_task, load_backbone  # noqa: E402
from .config import ConfigError, TrainConfig, as_list  # noqa: E402
from .data import Task, TaskError, load_task, load_text  # noqa: E402
from .engine import NonFiniteLossError, RunResult, TrainingError, evaluate, train  # noqa: E402

__all__ = [
    "__version__",
    "analysis",
    "data",
    "fisher",
    "madx",
    "methods",
    "notebook",
    "recipes",
    "results",
    "sparse",
    "stilts",
    "study",
    "sublayer_fisher",
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
