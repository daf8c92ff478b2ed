"""Several processes, one run: data parallelism under ``accelerate launch`` or ``torchrun`` (DESIGN.md, "Engine"; layer "config · env").

:func:`~tutorfinetune.train` runs unchanged in one process. Started by ``accelerate launch`` or
``torchrun`` (the environment holds ``WORLD_SIZE > 1``), it joins the process group through Hugging
Face ``accelerate`` (its ``PartialState``: NCCL on GPUs, gloo on CPUs, one device per process) and
trains one model replica per process:

* **The global batch is the config's.** ``batch_size`` is the number of rows per optimiser step
  *over all processes*: every process draws the same seeded batch of row indices and takes its own
  contiguous share (:meth:`Dist.shard`), so the optimisation is the single-process one whatever the
  number of processes (and ``grad_accum_steps`` splits each share into micro-batches). Each share's
  mean loss is weighted by its share of the rows and the gradients are summed over processes
  (:meth:`Dist.sum_grads`): the gradient of the global batch's mean loss.
* **Gradients are averaged by the engine, not by DDP's reducer.** ``DistributedDataParallel`` fixes
  the parameters it synchronises when it wraps the model; scheduled unfreezing (FUN, GU, LPFT)
  turns gradients on during training, and DDP would leave the units unfrozen later unsynchronised.
  One bucketed all-reduce after the backward pass covers whatever holds a gradient at that step.
  The cost: no overlap of communication with the backward pass (measurable on many GPUs, small on 2-8).
* **Plug-ins stay rank-consistent.** Every process starts from rank 0's weights (broadcast after the
  plug-ins prepare), gradient masks are drawn from generators seeded alike on every rank and applied
  to the summed gradient, Fisher estimates are averaged over ranks before any decision
  (:meth:`Dist.mean`) and schedule decisions are broadcast from rank 0. Dropout noise is drawn per
  rank (the global RNG is seeded with ``seed + rank`` after set-up), as in any data-parallel run.
* **Rank 0 writes.** Only rank 0 writes the results store and the checkpoints; the run record says
  ``"world_size"``; every process ends with the same metrics (evaluation is sharded and summed).

In one process :data:`SINGLE` stands in: every method is a no-op and the single-process run is
bit-identical to what it was before this module existed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import torch

from .errors import TrainingError

__all__ = ["Dist", "SINGLE", "current", "launched"]


def launched() -> bool:
    """True when this process is one of several (``WORLD_SIZE > 1`` set by a launcher, or a process group up)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size() > 1
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


@dataclass(frozen=True)
class Dist:
    """This process's place in the run: ``rank`` of ``world_size`` processes (1 and 0 alone)."""

    world_size: int = 1
    rank: int = 0
    device: torch.device | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    # data ------------------------------------------------------------------------------------
    def shard(self, idx: np.ndarray) -> np.ndarray:
        """This rank's contiguous share of the global batch ``idx`` (sizes differ by at most one row)."""
        if not self.active:
            return idx
        return np.array_split(np.asarray(idx), self.world_size)[self.rank]

    def check_batch(self, batch_size: int, grad_accum_steps: int = 1) -> None:
        """Every rank needs at least one row per micro-batch of every optimiser step."""
        need = self.world_size * max(1, int(grad_accum_steps))
        if self.active and batch_size < need:
            raise TrainingError(
                f"batch_size={batch_size} is the global batch (rows per optimiser step over all {self.world_size} "
                f"processes), and with grad_accum_steps={grad_accum_steps} each process needs at least one row per "
                f"micro-batch: use batch_size >= {need}.")

    # collectives -----------------------------------------------------------------------------
    def _dev(self) -> torch.device:
        return self.device or torch.device("cpu")

    def sum_grads(self, params: Iterable[torch.nn.Parameter]) -> None:
        """Sum the gradients of ``params`` over ranks, in place (one flat all-reduce per dtype).

        A parameter whose gradient is None on every rank stays None (AdamW skips it, as in one process);
        one that has a gradient on some rank only gets zeros on the others first."""
        if not self.active:
            return
        params = [p for p in params if p.requires_grad]
        if not params:
            return
        has = torch.tensor([p.grad is not None for p in params], dtype=torch.int32, device=self._dev())
        torch.distributed.all_reduce(has, op=torch.distributed.ReduceOp.MAX)
        live = [p for p, h in zip(params, has.tolist()) if h]
        for p in live:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        by_dtype: dict[torch.dtype, list[torch.nn.Parameter]] = {}
        for p in live:
            by_dtype.setdefault(p.grad.dtype, []).append(p)
        for group in by_dtype.values():
            flat = torch.cat([p.grad.reshape(-1) for p in group])
            torch.distributed.all_reduce(flat)
            offset = 0
            for p in group:
                n = p.grad.numel()
                p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
                offset += n

    def mean_grads(self, params: Iterable[torch.nn.Parameter]) -> None:
        """Average the gradients of ``params`` over ranks, in place (what DDP's reducer does; the Trainer bridge
        uses it for parameters DDP did not register because they were frozen when the Trainer wrapped the model)."""
        if not self.active:
            return
        params = [p for p in params if p.requires_grad]
        self.sum_grads(params)
        for p in params:
            if p.grad is not None:
                p.grad.div_(self.world_size)

    def sum(self, values: torch.Tensor | float) -> torch.Tensor | float:
        """The sum over ranks of a tensor (a copy) or a number."""
        if not self.active:
            return values
        number = not torch.is_tensor(values)
        t = torch.tensor(float(values), dtype=torch.float64, device=self._dev()) if number else values.clone()
        torch.distributed.all_reduce(t)
        return float(t.item()) if number else t

    def mean(self, scores: dict[str, float]) -> dict[str, float]:
        """The mean over ranks of a dict of numbers (Fisher estimates before a schedule decides)."""
        if not self.active or not scores:
            return scores
        keys = sorted(scores)
        t = torch.tensor([float(scores[k]) for k in keys], dtype=torch.float64, device=self._dev())
        torch.distributed.all_reduce(t)
        t /= self.world_size
        return {k: float(v) for k, v in zip(keys, t.tolist())}

    def max_(self, t: torch.Tensor) -> torch.Tensor:
        """Element-wise max over ranks, in place (sharded evaluation: -1 where a rank has no prediction)."""
        if self.active:
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return t

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (a decision taken once)."""
        if not self.active:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0, device=self._dev() if self._dev().type == "cuda" else None)
        return box[0]

    def gather_object(self, obj: Any) -> list:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.active:
            return [obj]
        out: list = [None] * self.world_size
        torch.distributed.all_gather_object(out, obj)
        return out

    def broadcast_module(self, module: torch.nn.Module) -> None:
        """Rank 0's parameters and buffers on every rank (the replicas start identical)."""
        if not self.active:
            return
        with torch.no_grad():
            for t in list(module.parameters()) + list(module.buffers()):
                torch.distributed.broadcast(t.data, src=0)

    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()


SINGLE = Dist()


def current(device: torch.device | None = None) -> Dist:
    """The run's :class:`Dist`: :data:`SINGLE` in one process; under a launcher, this process's rank in the
    group ``accelerate`` starts (or the one already started, e.g. by the Hugging Face Trainer)."""
    if not launched():
        return SINGLE
    if not torch.distributed.is_initialized():
        try:
            from accelerate import PartialState
        except ImportError:  # pragma: no cover - accelerate is a dependency of transformers' Trainer
            raise TrainingError("Several processes need Hugging Face accelerate: pip install accelerate.") from None
        state = PartialState(cpu=device is not None and device.type == "cpu")
        device = device or state.device
    if device is None or (device.type == "cuda" and device.index is None):
        local = int(os.environ.get("LOCAL_RANK", "0"))
        device = torch.device("cuda", local) if torch.cuda.is_available() and (device is None or device.type == "cuda") \
            else torch.device("cpu")
    return Dist(world_size=torch.distributed.get_world_size(), rank=torch.distributed.get_rank(), device=device)
