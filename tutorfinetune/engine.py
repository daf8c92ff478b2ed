"""The one training loop of the project (DESIGN.md, "Engine").

``train(backbone, task, config, methods=[...])`` fine-tunes ``backbone.model`` in place and returns
a :class:`RunResult`. What it does, in order:

1. resolve the methods and call their ``prepare(model, blocks)`` hooks, then print the parameter
   summary (so nobody trains a "frozen" model by accident);
2. build AdamW (fused kernel where available) over every parameter that may ever train
   (methods' ``param_groups`` hooks, else everything that requires a gradient), with no weight
   decay on biases and LayerNorm weights, and a linear warm-up/decay schedule;
3. tokenise once, then for every optimiser step draw a length-grouped batch (seeded per epoch),
   pad it dynamically, run forward under bf16 autocast on GPUs, check the loss is finite,
   backward, call ``after_backward`` hooks (gradient masks), clip, step, call ``after_step`` hooks;
4. evaluate the curve set every ``eval_every`` steps (or each epoch) and every named eval set at the
   end; save checkpoints (safetensors + ``torch.load(weights_only=True)`` state) and resume from them;
5. append the run's record to the results store, whatever happens (finished / failed / interrupted).

On CPU a run is deterministic: the same seed and config give the same metrics, and a run resumed
from a checkpoint ends where an uninterrupted run ends. Taught in notebooks/01_full_finetuning.ipynb.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import random
import shutil
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
import torch
from torch import nn

from . import __version__
from .backbones import Backbone, trainable_report
from .config import TrainConfig
from .data import Task, TaskError, stratified_sample
from .methods import Method, resolve
from .progress import progress_bar
from .results import DEFAULT_STORE, RunStore

__all__ = ["train", "evaluate", "RunResult", "TrainState", "TrainingError", "NonFiniteLossError",
           "encode", "fingerprint", "make_batches", "collate", "build_optimizer", "resolve_device", "versions"]


class TrainingError(RuntimeError):
    """Training could not go on; the message says what to change."""


class NonFiniteLossError(TrainingError):
    """The loss became NaN or infinite."""


# --------------------------------------------------------------------------------------------
# Data: tokenise once, batch by length, pad per batch
# --------------------------------------------------------------------------------------------
@dataclass
class Encoded:
    """Token ids of a frame's rows (lists of ints), their labels and lengths.

    For a multiple-choice task (``n_choices > 0``) each row holds ``n_choices`` token lists, one per
    (context, choice) pair, and ``lengths`` is the longest of them."""

    features: dict[str, list]
    labels: np.ndarray
    lengths: np.ndarray
    n_choices: int = 0

    def __len__(self) -> int:
        return len(self.labels)


def encode(tokenizer, frame: pd.DataFrame, max_length: int) -> Encoded:
    """Tokenise ``frame.text`` (and ``frame.text_pair``) without padding, truncated to ``max_length``.

    A frame with a ``choices`` column (a multiple-choice task) is encoded as (text, choice) pairs,
    each pair separately (the longer of the two truncated first), as multiple-choice heads expect."""
    texts = frame["text"].tolist()
    if "choices" in frame.columns:
        choices = frame["choices"].tolist()
        n = len(choices[0]) if choices else 0
        flat_a = [t for t in texts for _ in range(n)]
        flat_b = [c for cs in choices for c in cs]
        enc = tokenizer(flat_a, flat_b, truncation=True, max_length=max_length, padding=False)
        keys = [k for k in ("input_ids", "token_type_ids") if k in enc]
        features = {k: [enc[k][i * n:(i + 1) * n] for i in range(len(texts))] for k in keys}
        lengths = np.array([max((len(x) for x in row), default=0) for row in features["input_ids"]], dtype=np.int64)
        return Encoded(features, frame["label"].to_numpy(dtype=np.int64), lengths, n_choices=n)
    pairs = frame["text_pair"].tolist() if "text_pair" in frame.columns else None
    enc = tokenizer(texts, pairs, truncation=True, max_length=max_length, padding=False)
    keys = [k for k in ("input_ids", "token_type_ids") if k in enc]
    features = {k: enc[k] for k in keys}
    lengths = np.array([len(x) for x in enc["input_ids"]], dtype=np.int64)
    return Encoded(features, frame["label"].to_numpy(dtype=np.int64), lengths)


def cap_rows(frame: pd.DataFrame, n: int | None) -> pd.DataFrame:
    """At most ``n`` rows of ``frame``, stratified by label, with a fixed seed (the same rows for every
    run, so capped eval sets stay comparable across seeds and methods); all rows when ``n`` is None."""
    return frame if n is None else stratified_sample(frame, n, seed=0)


def make_batches(lengths: np.ndarray, batch_size: int, seed: int, epoch: int, group_by_length: bool) -> list[np.ndarray]:
    """Index batches for one epoch: a seeded shuffle; with grouping, sort within mega-batches of
    50 batches by length so each batch holds similar lengths, then shuffle the batch order."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    if group_by_length:
        mega = batch_size * 50
        chunks = [order[i:i + mega] for i in range(0, len(order), mega)]
        order = np.concatenate([c[np.argsort(-lengths[c], kind="stable")] for c in chunks])
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if group_by_length:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def collate(enc: Encoded, idx: np.ndarray, pad_id: int, device: torch.device, pad_to: int | None = None) -> dict:
    """Pad the rows ``idx`` to the longest of them (or to ``pad_to``) and move them to ``device``.

    Shapes: ``[batch, width]``, or ``[batch, n_choices, width]`` for a multiple-choice task."""
    width = int(pad_to or enc.lengths[idx].max())
    shape = (len(idx), enc.n_choices, width) if enc.n_choices else (len(idx), width)
    out = {}
    mask = np.zeros(shape, dtype=np.int64)
    for key, seqs in enc.features.items():
        fill = pad_id if key == "input_ids" else 0
        arr = np.full(shape, fill, dtype=np.int64)
        for r, i in enumerate(idx):
            rows = seqs[i] if enc.n_choices else [seqs[i]]
            for c, seq in enumerate(rows):
                s = seq[:width]
                if enc.n_choices:
                    arr[r, c, :len(s)] = s
                    if key == "input_ids":
                        mask[r, c, :len(s)] = 1
                else:
                    arr[r, :len(s)] = s
                    if key == "input_ids":
                        mask[r, :len(s)] = 1
        out[key] = torch.from_numpy(arr)
    out["attention_mask"] = torch.from_numpy(mask)
    out["labels"] = torch.from_numpy(enc.labels[idx])
    return {k: v.to(device, non_blocking=True) for k, v in out.items()}


# --------------------------------------------------------------------------------------------
# Device, precision, optimiser
# --------------------------------------------------------------------------------------------
def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise TrainingError(f"Unknown device {name!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError("device='cuda' but no CUDA GPU is visible; use device='auto' or 'cpu'.")
    return dev


def _autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    if config.precision == "fp32":
        return None
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if config.precision == "bf16":
        if device.type == "cpu":
            return torch.bfloat16
        raise TrainingError(f"precision='bf16' is not supported on {device}; use precision='fp32'.")
    return None


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
    kwargs: dict[str, Any] = {"lr": config.lr}
    if config.fused_adamw and device.type in ("cuda", "cpu", "mps"):
        try:
            return torch.optim.AdamW(groups, fused=True, **kwargs)
        except (RuntimeError, TypeError, ValueError):
            pass
    return torch.optim.AdamW(groups, **kwargs)


def _schedule(config: TrainConfig, total_steps: int):
    warm = int(round(config.warmup * total_steps))

    def factor(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        if config.scheduler == "constant":
            return 1.0
        return max(0.0, (total_steps - step) / max(1, total_steps - warm))

    return factor


def versions() -> dict[str, str]:
    out = {"tutorfinetune": __version__, "python": platform.python_version(), "torch": torch.__version__}
    for mod in ("transformers", "adapters", "pandas", "numpy"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # optional or broken package: record that it is missing
            out[mod] = "missing"
    return out


# --------------------------------------------------------------------------------------------
# State and result
# --------------------------------------------------------------------------------------------
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
    _fixed: dict = field(default_factory=dict, repr=False)

    def log(self, **values: Any) -> None:
        self.row.update(values)

    def fixed_batches(self, n: int) -> list[dict]:
        """``n`` training batches drawn once per run with a seeded sampler of their own (the training
        order and the global RNG are untouched) and grouped by length like training batches; the
        same batches on every call, so Fisher passes at different steps and for different units see
        the same data (METHODS.md §1). For ``m < n`` the rows of ``fixed_batches(m)`` are a subset
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

    def metrics_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.metrics).T.rename_axis("eval_set").reset_index()

    def __repr__(self) -> str:
        acc = {k: round(v.get("accuracy", float("nan")), 4) for k, v in self.metrics.items()}
        return f"RunResult({self.run_id}, method={self.method!r}, status={self.status}, accuracy={acc})"


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(model: nn.Module, enc: Encoded, tokenizer, config: TrainConfig, device: torch.device,
             num_labels: int) -> dict[str, float]:
    """Accuracy, macro-F1 and mean loss of ``model`` on encoded rows (eval mode, restored after)."""
    was_training = model.training
    model.eval()
    order = np.argsort(-enc.lengths, kind="stable")
    preds = np.empty(len(enc), dtype=np.int64)
    loss_sum = 0.0
    amp = _autocast_dtype(config, device)
    for i in range(0, len(order), config.eval_batch_size):
        idx = order[i:i + config.eval_batch_size]
        batch = collate(enc, idx, tokenizer.pad_token_id, device)
        labels = batch.pop("labels")
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            logits = model(**batch).logits.float()
        loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
        preds[idx] = logits.argmax(-1).cpu().numpy()
    model.train(was_training)
    gold = enc.labels
    f1s = []
    for c in range(num_labels):
        tp = int(((preds == c) & (gold == c)).sum())
        fp = int(((preds == c) & (gold != c)).sum())
        fn = int(((preds != c) & (gold == c)).sum())
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return {"accuracy": float((preds == gold).mean()), "macro_f1": float(np.mean(f1s)),
            "loss": loss_sum / max(1, len(enc)), "n": int(len(enc))}


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------
def fingerprint(backbone: str, task: str, n_train: int, config: TrainConfig, methods: list[Method]) -> str:
    """Identity of a run's inputs: config, task and training-set size, backbone, methods."""
    desc = {"config": config.to_dict(), "task": task, "n_train": int(n_train),
            "backbone": backbone, "methods": [m.describe() for m in methods]}
    return hashlib.sha256(json.dumps(desc, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _save_checkpoint(folder: Path, state: TrainState, scheduler, methods: list[Method], history: list[dict],
                     fingerprint: str, keep: int = 2) -> Path:
    from safetensors.torch import save_model

    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"step-{state.step + 1:07d}"
    tmp = folder / f".tmp-{final.name}-{uuid.uuid4().hex[:6]}"
    tmp.mkdir()
    save_model(state.model, str(tmp / "model.safetensors"))
    torch.save({
        "optimizer": state.optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "step": state.step + 1,
        "history": history,
        "methods": [m.state_dict() for m in methods],
    }, tmp / "trainer_state.pt")
    (tmp / "meta.json").write_text(json.dumps({"fingerprint": fingerprint, "step": state.step + 1,
                                               "config": state.config.to_dict()}))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in sorted(folder.glob("step-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(folder: str | os.PathLike) -> Path | None:
    """Newest complete checkpoint in ``folder`` (incomplete ones never carry the ``step-`` name)."""
    folder = Path(folder)
    found = sorted(p for p in folder.glob("step-*") if (p / "trainer_state.pt").is_file()) if folder.is_dir() else []
    return found[-1] if found else None


def _load_checkpoint(path: Path, state: TrainState, scheduler, methods: list[Method], fingerprint: str) -> tuple[int, list]:
    from safetensors.torch import load_model

    meta = json.loads((path / "meta.json").read_text())
    if meta.get("fingerprint") != fingerprint:
        raise TrainingError(
            f"Checkpoint {path} belongs to another run (its config, task, backbone or methods differ). "
            "Resume with the same settings, or start fresh with resume_from=None."
        )
    load_model(state.model, str(path / "model.safetensors"))
    blob = torch.load(path / "trainer_state.pt", map_location="cpu", weights_only=True)
    state.optimizer.load_state_dict(blob["optimizer"])
    scheduler.load_state_dict(blob["scheduler"])
    torch.set_rng_state(blob["torch_rng"])
    if blob["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(blob["cuda_rng"])
    for m, s in zip(methods, blob["methods"]):
        m.load_state_dict(s)
    return int(blob["step"]), list(blob["history"])


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------
def check_head(backbone: Backbone, task: Task) -> None:
    """Raise :class:`TrainingError` when the backbone's head does not fit the task (label count, or a
    multiple-choice head for a classification task and the other way round), naming the fix."""
    from .backbones import is_multiple_choice

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


def _method_name(methods: list[Method]) -> str:
    return "+".join(m.name for m in methods) or "full"


def _trainable_count(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


def train(
    backbone: Backbone,
    task: Task,
    config: TrainConfig | dict | None = None,
    methods: Iterable[Any] | str | Method | None = ("full",),
    *,
    store: str | os.PathLike | None = DEFAULT_STORE,
    study: str = "",
    tags: dict[str, Any] | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    resume_from: str | os.PathLike | None = None,
    verbose: bool = True,
) -> RunResult:
    """Fine-tune ``backbone.model`` on ``task`` in place, with plug-in ``methods``.

    Args:
        backbone: from :func:`tutorfinetune.load_backbone`.
        task: from :func:`tutorfinetune.load_task`.
        config: a :class:`TrainConfig` (or a dict of its fields).
        methods: method ids, :class:`~tutorfinetune.methods.Method` objects or ``(id, config)`` pairs;
            default full fine-tuning.
        store: results store folder (``None``: do not record the run).
        study: a label stored with the record (e.g. the notebook's name), for filtering.
        tags: extra fields stored with the record (e.g. ``{"regime": "low-data"}``).
        checkpoint_dir: where checkpoints go (default ``<store>/checkpoints/<fingerprint>``).
        resume_from: a checkpoint folder, ``"auto"`` (the newest in ``checkpoint_dir`` if any), or None.
        verbose: print the parameter summary and a closing line.

    Returns:
        :class:`RunResult`; the run is also appended to ``store``.

    Raises:
        TrainingError, NonFiniteLossError, TaskError, ConfigError, MethodError: with the fix in the message.
    """
    if config is None:
        config = TrainConfig()
    elif isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    elif not isinstance(config, TrainConfig):
        raise TrainingError(f"config must be a TrainConfig or a dict, got {type(config).__name__}.")
    if not isinstance(backbone, Backbone):
        raise TrainingError(f"backbone must come from load_backbone(...), got {type(backbone).__name__}.")
    if not isinstance(task, Task):
        raise TrainingError(f"task must come from load_task(...), got {type(task).__name__}.")
    model, tok = backbone.model, backbone.tokenizer
    check_head(backbone, task)
    methods = resolve(methods)
    device = resolve_device(config.device)
    amp = _autocast_dtype(config, device)

    task = task.subsample_train(config.max_train_examples, seed=config.seed)
    if task.train.empty:
        raise TaskError(f"Task {task.name!r} has no training rows (split == 'train').")
    wanted_sets = list(config.eval_sets) or list(task.eval_set_specs)
    for name in wanted_sets + ([config.curve_eval_set] if config.eval_every else []):
        if name not in task.eval_set_specs:
            raise TrainingError(f"Unknown eval set {name!r}; task {task.name!r} has {list(task.eval_set_specs)}.")

    fprint = fingerprint(backbone.name, task.name, len(task.train), config, methods)
    run_id = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    record_store = RunStore(store) if store is not None else None
    auto_checkpoints = checkpoint_dir is None and store is not None
    if auto_checkpoints:
        checkpoint_dir = Path(store) / "checkpoints" / fprint
    record = {
        "run_id": run_id, "study": study, "method": _method_name(methods), "task": task.name,
        "backbone": backbone.name, "seed": config.seed, "config": config.to_dict(),
        "methods": [m.describe() for m in methods], "tags": dict(tags or {}), "status": "running",
        "started_at": datetime.now(timezone.utc).isoformat(), "versions": versions(), "device": str(device),
        "fingerprint": fprint, "metrics": {}, "history": [], "timings": {},
    }
    if record_store:
        record_store.write(record)

    t_start = time.perf_counter()
    history: list[dict] = []
    state = TrainState(model=model, blocks=backbone.blocks, config=config, task=task, device=device)
    try:
        torch.manual_seed(config.seed)
        random.seed(config.seed)
        model.to(device)
        model.train()
        for m in methods:
            m.prepare(model, backbone.blocks)
        if verbose:
            print(trainable_report(model, backbone.blocks, f"{_method_name(methods)}: parameters after prepare()"))
        params = trainable_parameters(model, methods)
        optimizer = build_optimizer(model, params, config, device)
        state.optimizer = optimizer

        train_enc = encode(tok, task.train, config.max_length)
        state.train_data, state.pad_id, state.autocast_dtype = train_enc, tok.pad_token_id, amp
        def eval_rows(name: str) -> pd.DataFrame:
            return cap_rows(task.eval_set(name), config.max_eval_examples)

        eval_encs = {name: encode(tok, eval_rows(name), config.max_length) for name in wanted_sets}
        curve = config.curve_eval_set if config.curve_eval_set in task.eval_set_specs else None
        if curve and curve not in eval_encs:
            eval_encs[curve] = encode(tok, eval_rows(curve), config.max_length)
        for name, enc in eval_encs.items():
            if len(enc) == 0:
                raise TaskError(f"Eval set {name!r} of task {task.name!r} is empty.")

        steps_per_epoch = math.ceil(len(train_enc) / config.batch_size)
        total = config.max_steps or max(1, math.ceil(config.num_epochs * steps_per_epoch))
        state.total_steps, state.steps_per_epoch = total, steps_per_epoch
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(config, total))

        start = 0
        if resume_from is not None:
            ckpt = latest_checkpoint(checkpoint_dir) if str(resume_from) == "auto" and checkpoint_dir else (
                None if str(resume_from) == "auto" else Path(resume_from))
            if ckpt is not None:
                if not (ckpt / "trainer_state.pt").is_file():
                    raise TrainingError(f"{ckpt} is not a checkpoint folder (no trainer_state.pt).")
                start, history = _load_checkpoint(ckpt, state, scheduler, methods, fprint)
                if verbose:
                    print(f"Resumed from {ckpt} at step {start}/{total}.")
        record["resumed_from_step"] = start

        params_list = [p for g in optimizer.param_groups for p in g["params"]]
        t_train = time.perf_counter()
        eval_seconds = 0.0
        seen = 0
        batches, batches_epoch = None, -1
        bar = progress_bar(total=total, initial=start, desc=f"train {_method_name(methods)} seed={config.seed}")
        for step in range(start, total):
            epoch, b = divmod(step, steps_per_epoch)
            if epoch != batches_epoch:
                batches = make_batches(train_enc.lengths, config.batch_size, config.seed, epoch, config.group_by_length)
                batches_epoch = epoch
            state.step, state.epoch, state.row = step, epoch, {}
            for m in methods:
                m.on_step_start(state)
            batch = collate(train_enc, batches[b], tok.pad_token_id, device,
                            pad_to=config.max_length if config.pad_to_max_length else None)
            state.batch = batch
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                loss = model(**batch).loss
            loss_value = float(loss.detach().float().item())
            if not math.isfinite(loss_value):
                raise NonFiniteLossError(
                    f"The loss became {loss_value} at step {step + 1} (epoch {epoch + 1}). Likely fixes: lower "
                    f"lr (now {config.lr:g}), keep grad_clip > 0 (now {config.grad_clip:g}), use "
                    "precision='fp32', and check the inputs and labels of that batch."
                )
            loss.backward()
            state.loss = loss_value
            for m in methods:
                m.after_backward(state)
            grad_norm = None
            if config.grad_clip > 0:
                grad_norm = float(torch.nn.utils.clip_grad_norm_(params_list, config.grad_clip))
            lr_now = optimizer.param_groups[0]["lr"]
            optimizer.step()
            for m in methods:
                m.after_step(state)
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            seen += len(batches[b])
            row = {"step": step + 1, "epoch": epoch + (b + 1) / steps_per_epoch, "loss": loss_value,
                   "lr": lr_now, "grad_norm": grad_norm, "trainable": _trainable_count(model),
                   "batch_tokens": int(batch["attention_mask"].numel())}
            row.update(state.row)
            end_of_epoch = b == steps_per_epoch - 1 or step == total - 1
            if curve and ((config.eval_every and (step + 1) % config.eval_every == 0)
                          or (not config.eval_every and end_of_epoch)):
                t0 = time.perf_counter()
                for m in methods:
                    m.before_eval(state, curve)
                ev = evaluate(model, eval_encs[curve], tok, config, device, task.num_labels)
                eval_seconds += time.perf_counter() - t0
                row[f"{curve}_accuracy"], row[f"{curve}_loss"] = ev["accuracy"], ev["loss"]
            history.append({k: (float(v) if isinstance(v, (np.floating, np.integer)) else v) for k, v in row.items()})
            if end_of_epoch:
                for m in methods:
                    m.on_epoch_end(state)
            if config.checkpoint_every and (step + 1) % config.checkpoint_every == 0 and checkpoint_dir:
                _save_checkpoint(Path(checkpoint_dir), state, scheduler, methods, history, fprint)
            bar.update(1)
            if (step + 1) % 10 == 0 or step == total - 1:
                bar.set_postfix(loss=f"{loss_value:.3f}")
        bar.close()
        train_seconds = time.perf_counter() - t_train - eval_seconds

        artifacts: dict[str, Any] = {}
        for m in methods:
            out = m.finish(state)
            if out:
                artifacts[m.name] = out
        t0 = time.perf_counter()
        metrics = {}
        for name in wanted_sets:
            for m in methods:
                m.before_eval(state, name)
            metrics[name] = evaluate(model, eval_encs[name], tok, config, device, task.num_labels)
        eval_seconds += time.perf_counter() - t0
        timings = {"train_seconds": train_seconds, "eval_seconds": eval_seconds,
                   "total_seconds": time.perf_counter() - t_start,
                   "train_samples_per_second": seen / train_seconds if train_seconds > 0 else None,
                   "steps": total - start}
        result = RunResult(run_id=run_id, method=_method_name(methods), task=task.name, backbone=backbone.name,
                           config=config, metrics=metrics, history=pd.DataFrame(history), timings=timings,
                           versions=record["versions"], device=str(device), artifacts=artifacts,
                           methods=record["methods"], tags=record["tags"])
        record.update(status="finished", metrics=metrics, timings=timings, history=history,
                      finished_at=datetime.now(timezone.utc).isoformat(),
                      artifacts={k: v for k, v in artifacts.items() if _is_json(v)})
        if record_store:
            record_store.write(record)
        if auto_checkpoints and Path(checkpoint_dir).is_dir():  # finished: its default checkpoints are spent
            shutil.rmtree(checkpoint_dir, ignore_errors=True)
        if verbose:
            accs = ", ".join(f"{k} {v['accuracy']:.3f}" for k, v in metrics.items())
            print(f"done in {train_seconds:.0f}s train + {eval_seconds:.0f}s eval | accuracy: {accs}")
        return result
    except KeyboardInterrupt:
        record.update(status="interrupted", history=history, finished_at=datetime.now(timezone.utc).isoformat())
        if record_store:
            record_store.write(record)
        raise
    except BaseException as e:
        record.update(status="failed", error=f"{type(e).__name__}: {e}", history=history,
                      finished_at=datetime.now(timezone.utc).isoformat())
        if record_store:
            record_store.write(record)
        raise


def evaluate_only(
    backbone: Backbone,
    task: Task,
    config: TrainConfig | dict | None = None,
    *,
    method: str,
    eval_sets: Iterable[str] | None = None,
    store: str | os.PathLike | None = DEFAULT_STORE,
    study: str = "",
    tags: dict[str, Any] | None = None,
) -> dict[str, dict[str, float]]:
    """Evaluate ``backbone.model`` as it is (no training) on named eval sets and record the result
    under ``method`` like a run (``timings.steps == 0``). For models assembled without training:
    composed sparse diffs, swapped adapters. Returns eval set -> metrics."""
    if config is None:
        config = TrainConfig()
    elif isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    if not isinstance(backbone, Backbone) or not isinstance(task, Task):
        raise TrainingError("evaluate_only needs a Backbone (load_backbone) and a Task (load_task).")
    check_head(backbone, task)
    wanted = list(eval_sets or config.eval_sets or task.eval_set_specs)
    for name in wanted:
        if name not in task.eval_set_specs:
            raise TrainingError(f"Unknown eval set {name!r}; task {task.name!r} has {list(task.eval_set_specs)}.")
    device = resolve_device(config.device)
    backbone.model.to(device)
    t0 = time.perf_counter()
    metrics = {}
    for name in wanted:
        rows = cap_rows(task.eval_set(name), config.max_eval_examples)
        enc = encode(backbone.tokenizer, rows, config.max_length)
        if len(enc) == 0:
            raise TaskError(f"Eval set {name!r} of task {task.name!r} is empty.")
        metrics[name] = evaluate(backbone.model, enc, backbone.tokenizer, config, device, task.num_labels)
    now = datetime.now(timezone.utc)
    record = {
        "run_id": f"{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}", "study": study, "method": method,
        "task": task.name, "backbone": backbone.name, "seed": config.seed, "config": config.to_dict(),
        "methods": [], "tags": dict(tags or {}), "status": "finished", "started_at": now.isoformat(),
        "finished_at": datetime.now(timezone.utc).isoformat(), "versions": versions(), "device": str(device),
        "fingerprint": "", "metrics": metrics, "history": [],
        "timings": {"eval_seconds": time.perf_counter() - t0, "train_seconds": 0.0, "steps": 0},
    }
    if store is not None:
        RunStore(store).write(record)
    return metrics


def _is_json(v: Any) -> bool:
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False
