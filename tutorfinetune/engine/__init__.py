"""The engine: the one training loop and what it is made of (DESIGN.md, "Engine").

* :mod:`.loop`: :func:`train` (the loop) and :func:`evaluate_only`;
* :mod:`.batches`: tokenise once, length-grouped batches, dynamic padding;
* :mod:`.optim`: AdamW over every parameter that may ever train, the learning-rate schedule;
* :mod:`.evaluation`: accuracy / macro-F1 / loss on an eval set, the head-fits-the-task check;
* :mod:`.checkpoints`: save, find and load checkpoints (safetensors, ``weights_only`` state);
* :mod:`.record`: the run record (:class:`RunRecorder`) and a run's :func:`fingerprint`;
* :mod:`.state`: :class:`TrainState` (what plug-ins see) and :class:`RunResult`.
"""

from ..env import resolve_device, versions
from ..errors import NonFiniteLossError, TrainingError
from .batches import Encoded, cap_rows, collate, encode, make_batches
from .checkpoints import latest_checkpoint, load_checkpoint, save_checkpoint
from .evaluation import check_head, evaluate
from .loop import evaluate_only, position_limit, train
from .optim import build_optimizer, lr_factor, trainable_parameters
from .record import RunRecorder, fingerprint, method_name, resolved_config
from .state import RunResult, TrainState

__all__ = ["train", "evaluate", "evaluate_only", "RunResult", "TrainState", "TrainingError", "NonFiniteLossError",
           "Encoded", "encode", "cap_rows", "fingerprint", "make_batches", "collate", "build_optimizer",
           "trainable_parameters", "lr_factor", "resolve_device", "versions", "check_head", "save_checkpoint",
           "load_checkpoint", "latest_checkpoint", "RunRecorder", "method_name", "position_limit", "resolved_config"]
