"""Checkpoints of a run: model weights as safetensors, the trainer's state (optimiser, scheduler, RNG,
history, the methods' own state) loaded with ``torch.load(weights_only=True)``; written to a temporary
folder and renamed, so an interrupted save never leaves a folder that looks complete."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import uuid
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model

from ..errors import TrainingError
from .state import TrainState

__all__ = ["save_checkpoint", "latest_checkpoint", "load_checkpoint"]


def save_checkpoint(folder: Path, state: TrainState, scheduler, methods: list, history: list[dict],
                     fingerprint: str, keep: int = 2, selection: dict | None = None) -> Path:
    """Write a checkpoint of the run at ``state.step + 1``. Under several processes every rank calls this (its
    RNG state is gathered), rank 0 alone writes, and no rank goes on before the folder is complete.

    ``selection``: model selection on dev so far (``score``, ``step``, ``since_best`` and the best step's
    ``weights``), so a resumed run still knows the best dev step it saw before the checkpoint."""
    dist = state.dist
    final = folder / f"step-{state.step + 1:07d}"
    rngs = dist.gather_object(torch.get_rng_state()) if dist.active else None
    if dist.is_main:
        _write(folder, final, state, scheduler, methods, history, fingerprint, keep, rngs, selection)
    dist.barrier()
    return final


def _write(folder: Path, final: Path, state: TrainState, scheduler, methods: list, history: list[dict],
           fingerprint: str, keep: int, rngs: list | None, selection: dict | None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
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
        **({"rank_rng": rngs} if rngs is not None else {}),
        **({"selection": selection} if selection else {}),
    }, tmp / "trainer_state.pt")
    (tmp / "meta.json").write_text(json.dumps({"fingerprint": fingerprint, "step": state.step + 1,
                                               "config": state.config.to_dict(), "world_size": state.dist.world_size}))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in sorted(folder.glob("step-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def latest_checkpoint(folder: str | os.PathLike) -> Path | None:
    """Newest complete checkpoint in ``folder`` (incomplete ones never carry the ``step-`` name)."""
    folder = Path(folder)
    found = sorted(p for p in folder.glob("step-*") if (p / "trainer_state.pt").is_file()) if folder.is_dir() else []
    return found[-1] if found else None


def _damaged(path: Path, what: str) -> TrainingError:
    return TrainingError(
        f"Checkpoint {path} is damaged: {what}. Delete that folder; then resume from an earlier checkpoint "
        "(resume_from=<its folder>, or 'auto' picks the newest left) or start fresh with resume_from=None.")


def load_checkpoint(path: Path, state: TrainState, scheduler, methods: list, fingerprint: str,
                    selection: dict | None = None) -> tuple[int, list]:
    """Restore a checkpoint written by :func:`save_checkpoint`. A missing, truncated or garbled file is a
    TrainingError that says so (before anything is restored); a trainer state holding Python objects (a
    pickle payload) is refused as not written by this package, and nothing unsafe is suggested."""
    try:
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise _damaged(path, f"meta.json cannot be read ({type(e).__name__}: {e})") from None
    if not isinstance(meta, dict):
        raise _damaged(path, "meta.json is not a JSON object")
    if meta.get("fingerprint") != fingerprint:
        raise TrainingError(
            f"Checkpoint {path} belongs to another run (its config, task, backbone or methods differ). "
            "Resume with the same settings, or start fresh with resume_from=None."
        )
    written_by = int(meta.get("world_size", 1) or 1)
    if written_by != state.dist.world_size:
        raise TrainingError(
            f"Checkpoint {path} was written by a run of {written_by} process{'es' if written_by > 1 else ''} and this "
            f"run has {state.dist.world_size}. Resume with the same number (accelerate launch --num_processes "
            f"{written_by}, or torchrun --nproc_per_node {written_by}{'; or in one process, without a launcher' if written_by == 1 else ''}); "
            "the weights alone load anywhere (safetensors' load_model on model.safetensors), but the optimiser, "
            "data order and random state of a resumed run are only exact with the same number of processes.")
    try:
        blob = torch.load(path / "trainer_state.pt", map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # weights_only refused objects: not a state this package wrote
        raise TrainingError(
            f"{path / 'trainer_state.pt'} is not a checkpoint this package wrote: it holds Python objects that a "
            "safe load refuses (a pickle payload). Do not load it; delete the folder, and resume from a checkpoint "
            "tutorfinetune wrote or start fresh with resume_from=None.") from None
    except (OSError, RuntimeError, EOFError, ValueError) as e:  # truncated zip, short read
        raise _damaged(path, f"trainer_state.pt cannot be read ({type(e).__name__}: {str(e)[:160]}; truncated?)") from None
    needed = ("optimizer", "scheduler", "torch_rng", "cuda_rng", "step", "history", "methods")
    if not isinstance(blob, dict) or any(k not in blob for k in needed):
        raise _damaged(path, "trainer_state.pt lacks the optimiser, scheduler, RNG or history state")
    try:
        load_model(state.model, str(path / "model.safetensors"))
    except FileNotFoundError:
        raise _damaged(path, "model.safetensors is missing") from None
    except RuntimeError as e:  # a model of another shape: the message names the tensors
        raise TrainingError(f"Checkpoint {path} does not fit this model ({str(e)[:200]}).") from None
    except Exception as e:  # safetensors' own error type for a truncated or garbled file
        raise _damaged(path, f"model.safetensors cannot be read ({type(e).__name__}: {str(e)[:160]}; truncated?)") from None
    state.optimizer.load_state_dict(blob["optimizer"])
    scheduler.load_state_dict(blob["scheduler"])
    rank_rng = blob.get("rank_rng")
    torch.set_rng_state(rank_rng[state.dist.rank] if rank_rng else blob["torch_rng"])
    if blob["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(blob["cuda_rng"])
    for m, s in zip(methods, blob["methods"]):
        m.load_state_dict(s)
    if selection is not None and isinstance(blob.get("selection"), dict):
        selection.update(blob["selection"])  # model selection on dev before the checkpoint
    return int(blob["step"]), list(blob["history"])
