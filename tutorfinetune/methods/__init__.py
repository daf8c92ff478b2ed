"""Fine-tuning methods as plug-ins of the one training loop; see :mod:`.base` for the protocol.

``methods.get("id", **config)`` builds a registered method, ``methods.available()`` lists the ids,
``methods.describe("id")`` prints a plug-in's options (types, defaults, help) and what it cannot run
beside. Each plug-in's options are one typed config (``GradDrop.Config`` is :class:`GradDropConfig`).
"""

from .adapter import (
    AdapterError,
    AdapterSwap,
    AdapterSwapConfig,
    TaskAdapter,
    TaskAdapterConfig,
    load_adapter,
    save_adapter,
)
from .base import (
    STAGE,
    TRAITS,
    Method,
    MethodConfig,
    MethodError,
    available,
    describe,
    get,
    option,
    register,
    resolve,
)
from .dropout import (
    GaussianDropout,
    GaussianDropoutConfig,
    GuidedDropout,
    GuidedDropoutConfig,
    StandardDropout,
    StandardDropoutConfig,
)
from .freezing import FreezeEmbeddings, FullFineTuning, LinearProbe
from .graddrop import GradDrop, GradDropConfig
from .intermediate import FromIntermediate, FromIntermediateConfig, Intermediate, STILTsError
from .lora import LoRA, LoRAConfig, LoRAError, load_lora, merge_lora, save_lora
from .sparse_update import SparseUpdate, SparseUpdateConfig
from .unfreezing import (
    SCHEDULES,
    FisherTracker,
    FisherTrackerConfig,
    ScheduledUnfreezing,
    ScheduledUnfreezingConfig,
    ScheduleWarning,
)

__all__ = [
    "Method",
    "MethodConfig",
    "MethodError",
    "option",
    "available",
    "describe",
    "get",
    "register",
    "resolve",
    "STAGE",
    "TRAITS",
    "FullFineTuning",
    "FreezeEmbeddings",
    "LinearProbe",
    "TaskAdapter",
    "TaskAdapterConfig",
    "AdapterSwap",
    "AdapterSwapConfig",
    "AdapterError",
    "save_adapter",
    "load_adapter",
    "SCHEDULES",
    "ScheduledUnfreezing",
    "ScheduledUnfreezingConfig",
    "ScheduleWarning",
    "FisherTracker",
    "FisherTrackerConfig",
    "GradDrop",
    "GradDropConfig",
    "GuidedDropout",
    "GuidedDropoutConfig",
    "StandardDropout",
    "StandardDropoutConfig",
    "GaussianDropout",
    "GaussianDropoutConfig",
    "SparseUpdate",
    "SparseUpdateConfig",
    "FromIntermediate",
    "FromIntermediateConfig",
    "Intermediate",
    "STILTsError",
    "LoRA",
    "LoRAConfig",
    "LoRAError",
    "save_lora",
    "load_lora",
    "merge_lora",
]
