"""The optimiser and learning-rate schedule of a run: AdamW over every parameter that may ever train
(so a unit unfrozen later is already in it), no weight decay on biases and LayerNorm weights, a
linear warm-up then linear decay (or constant)."""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from ..config import TrainConfig
from ..env import adamw
from ..errors import TrainingError
from ..methods import Method

__all__ = ["trainable_parameters", "build_optimizer", "lr_factor"]


def _no_decay(name: str) -> bool:
    low = name.lower()
    return name.endswith(".bias") or "layernorm" in low or "layer_norm" in low


def trainable_parameters(model: nn.Module, methods: list[Method]) -> list[nn.Parameter]:
    """Every parameter that may ever train: the methods' ``param_groups`` or what requires grad now."""
    chosen: dict[int, nn.Parameter] = {}
    asked = False
    for m in methods:
        groups = m.param_groups(model)
        if groups is None:
            continue
        asked = True
        for g in groups:
            params = g["params"] if isinstance(g, dict) else [g]
            for p in params:
                chosen[id(p)] = p
    if not asked:
        chosen = {id(p): p for p in model.parameters() if p.requires_grad}
    else:  # parameters trainable now are always in the optimiser too
        chosen.update({id(p): p for p in model.parameters() if p.requires_grad})
    return list(chosen.values())


def build_optimizer(model: nn.Module, params: Iterable[nn.Parameter], config: TrainConfig,
                    device: torch.device) -> torch.optim.Optimizer:
    """AdamW over ``params``; no weight decay on biases and LayerNorm weights; fused where possible."""
    wanted = {id(p) for p in params}
    names = {id(p): n for n, p in model.named_parameters()}
    decay, no_decay = [], []
    for p in params:
        (no_decay if _no_decay(names.get(id(p), "")) else decay).append(p)
    groups = [g for g in ({"params": decay, "weight_decay": config.weight_decay},
                          {"params": no_decay, "weight_decay": 0.0}) if g["params"]]
    if not wanted:
        raise TrainingError("No parameter can train: the methods froze everything. Check the methods list.")
    fused = config.fused_adamw and device.type in ("cuda", "cpu", "mps")
    return adamw(groups, fused=fused, lr=config.lr)


def lr_factor(config: TrainConfig, total_steps: int):
    """The multiplier of the peak learning rate at each step (for ``LambdaLR``): linear warm-up over
    ``warmup`` of the steps, then linear decay to zero (or constant)."""
    warm = int(round(config.warmup * total_steps))

    def factor(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        if config.scheduler == "constant":
            return 1.0
        return max(0.0, (total_steps - step) / max(1, total_steps - warm))

    return factor
