"""Evaluation of a model on encoded rows (accuracy, macro-F1, loss), and the head-fits-the-task check."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..backbones import Backbone, is_multiple_choice
from ..config import TrainConfig
from ..data import Task
from ..distributed import SINGLE, Dist
from ..env import autocast_dtype
from ..errors import TrainingError
from .batches import Encoded, collate

__all__ = ["evaluate", "check_head"]


@torch.no_grad()
def evaluate(model: nn.Module, enc: Encoded, tokenizer, config: TrainConfig, device: torch.device,
             num_labels: int, dist: Dist = SINGLE) -> dict[str, float]:
    """Accuracy, macro-F1 and mean loss of ``model`` on encoded rows (eval mode, restored after).

    Under several processes each rank scores every ``world_size``-th row (by length) and the predictions and
    loss are summed over ranks: every rank returns the metrics of all rows."""
    was_training = model.training
    model.eval()
    order = np.argsort(-enc.lengths, kind="stable")
    preds = np.empty(len(enc), dtype=np.int64)
    if dist.active:
        order = order[dist.rank::dist.world_size]
        preds.fill(-1)
    loss_sum = 0.0
    amp = autocast_dtype(config, device)
    for i in range(0, len(order), config.eval_batch_size):
        idx = order[i:i + config.eval_batch_size]
        batch = collate(enc, idx, tokenizer.pad_token_id, device)
        labels = batch.pop("labels")
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            logits = model(**batch).logits.float()
        loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
        preds[idx] = logits.argmax(-1).cpu().numpy()
    model.train(was_training)
    if dist.active:
        preds = dist.max_(torch.from_numpy(preds).to(dist.device or "cpu")).cpu().numpy()
        loss_sum = dist.sum(loss_sum)
    gold = enc.labels
    f1s = []
    for c in range(num_labels):
        tp = int(((preds == c) & (gold == c)).sum())
        fp = int(((preds == c) & (gold != c)).sum())
        fn = int(((preds != c) & (gold == c)).sum())
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return {"accuracy": float((preds == gold).mean()), "macro_f1": float(np.mean(f1s)),
            "loss": loss_sum / max(1, len(enc)), "n": int(len(enc))}


def check_head(backbone: Backbone, task: Task) -> None:
    """Raise :class:`TrainingError` when the backbone's head does not fit the task (label count, or a
    multiple-choice head for a classification task and the other way round), naming the fix."""
    mc_model, mc_task = is_multiple_choice(backbone.model), bool(getattr(task, "multiple_choice", False))
    if mc_task and not mc_model:
        raise TrainingError(
            f"Task {task.name!r} is multiple-choice but the backbone has a classification head. Load it with "
            f"load_backbone({backbone.name!r}, head='multiple-choice') (or backbone_for_task(name, task)).")
    if mc_model and not mc_task:
        raise TrainingError(
            f"The backbone has a multiple-choice head but task {task.name!r} is a classification task. Load it "
            f"with load_backbone({backbone.name!r}, num_labels={task.num_labels}).")
    if mc_task:
        return
    n_model_labels = int(backbone.model.config.num_labels)
    if n_model_labels != task.num_labels:
        raise TrainingError(
            f"The backbone's head has {n_model_labels} labels but task {task.name!r} has {task.num_labels} "
            f"({task.label_names}). Load it with load_backbone({backbone.name!r}, num_labels={task.num_labels})."
        )
