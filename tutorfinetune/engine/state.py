"""What the loop shares with plug-ins (:class:`TrainState`) and what a run returns (:class:`RunResult`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..config import TrainConfig
from ..data import Task
from ..distributed import SINGLE, Dist
from ..errors import TrainingError
from .batches import collate

__all__ = ["TrainState", "RunResult"]


@dataclass
class TrainState:
    """What hooks see. ``log(**values)`` adds figures to this step's history row."""

    model: nn.Module
    blocks: Any
    config: TrainConfig
    task: Task
    optimizer: torch.optim.Optimizer | None = None
    step: int = 0
    epoch: int = 0
    total_steps: int = 0
    steps_per_epoch: int = 0
    loss: float | None = None
    batch: dict | None = None
    train_batches: Any = None
    device: torch.device = torch.device("cpu")
    row: dict = field(default_factory=dict)
    train_data: Any = None
    pad_id: int = 0
    autocast_dtype: torch.dtype | None = None
    batch_source: Any = None
    #: this process's place in a multi-process run (:class:`~tutorfinetune.distributed.Dist`; one process: ``SINGLE``)
    dist: Dist = SINGLE
    _fixed: dict = field(default_factory=dict, repr=False)

    def log(self, **values: Any) -> None:
        self.row.update(values)

    def fixed_batches(self, n: int) -> list[dict]:
        """``n`` training batches drawn once per run with a seeded sampler of their own (the training
        order and the global RNG are untouched) and grouped by length like training batches; the
        same batches on every call, so Fisher passes at different steps and for different units see
        the same data (docs/methods.md §4). For ``m < n`` the rows of ``fixed_batches(m)`` are a subset
        of those of ``fixed_batches(n)`` (a prefix of the same seeded permutation)."""
        n = int(n)
        if n < 1:
            raise TrainingError(f"Need at least one batch, got {n}.")
        if n not in self._fixed:
            if self.train_data is not None:
                rng = np.random.default_rng([int(self.config.seed), 0xF15E])
                size = self.config.batch_size
                need = n * size
                order = np.concatenate([rng.permutation(len(self.train_data))
                                        for _ in range(math.ceil(need / max(1, len(self.train_data))))])[:need]
                # group the drawn rows by length, as training batches are: far less padding
                order = order[np.argsort(-self.train_data.lengths[order], kind="stable")]
                self._fixed[n] = [collate(self.train_data, order[i:i + size], self.pad_id, self.device)
                                  for i in range(0, need, size)]
            elif self.batch_source is not None:
                self._fixed[n] = list(self.batch_source(n))
            else:
                raise TrainingError("This training loop exposes no training batches to draw Fisher batches from.")
        return self._fixed[n]


@dataclass
class RunResult:
    """What a run produced: config, metrics per eval set, per-step history, timings, versions."""

    run_id: str
    method: str
    task: str
    backbone: str
    config: TrainConfig
    metrics: dict[str, dict[str, float]]
    history: pd.DataFrame
    timings: dict[str, float]
    versions: dict[str, str]
    device: str
    status: str = "finished"
    artifacts: dict[str, Any] = field(default_factory=dict)
    methods: list[dict] = field(default_factory=list)
    tags: dict[str, Any] = field(default_factory=dict)
    #: how many processes trained the run (``accelerate launch``/``torchrun``); 1 alone
    world_size: int = 1

    def metrics_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.metrics).T.rename_axis("eval_set").reset_index()

    def __repr__(self) -> str:
        acc = {k: round(v.get("accuracy", float("nan")), 4) for k, v in self.metrics.items()}
        return f"RunResult({self.run_id}, method={self.method!r}, status={self.status}, accuracy={acc})"
