"""Fine-tuning methods as plug-ins of the one training loop; see :mod:`.base` for the protocol.

``methods.get("id", **config)`` builds a registered method, ``methods.available()`` lists the ids.
"""

from .adapter import AdapterError, AdapterSwap, TaskAdapter, load_adapter, save_adapter
from .base import Method, MethodError, available, get, register, resolve
from .dropout import GaussianDropout, GuidedDropout, StandardDropout
from .freezing import FreezeEmbeddings, FullFineTuning, LinearProbe
from .graddrop import GradDrop
from .intermediate import FromIntermediate, Intermediate, STILTsError
from .lora import LoRA, LoRAConfig, LoRAError, load_lora, merge_lora, save_lora
from .sparse_update import SparseUpdate
from .unfreezing import SCHEDULES, FisherTracker, ScheduledUnfreezing, ScheduleWarning

__all__ = [
    "Method",
    "MethodError",
    "available",
    "get",
    "register",
    "resolve",
    "FullFineTuning",
    "FreezeEmbeddings",
    "LinearProbe",
    "TaskAdapter",
    "AdapterSwap",
    "AdapterError",
    "save_adapter",
    "load_adapter",
    "SCHEDULES",
    "ScheduledUnfreezing",
    "ScheduleWarning",
    "FisherTracker",
    "GradDrop",
    "GuidedDropout",
    "StandardDropout",
    "GaussianDropout",
    "SparseUpdate",
    "FromIntermediate",
    "Intermediate",
    "STILTsError",
    "LoRA",
    "LoRAConfig",
    "LoRAError",
    "save_lora",
    "load_lora",
    "merge_lora",
]
