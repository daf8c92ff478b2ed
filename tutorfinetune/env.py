"""Where and how a run computes: the device, the autocast precision, the AdamW kernel, and the
versions recorded with every run (DESIGN.md, layer "config · env").
"""

from __future__ import annotations

import importlib.metadata
import platform
from typing import Any

import torch

from ._version import __version__
from .config import TrainConfig
from .errors import TrainingError

__all__ = ["resolve_device", "autocast_dtype", "adamw", "versions"]


def resolve_device(name: str) -> torch.device:
    """``"auto"`` (CUDA, then MPS, then CPU) or an explicit torch device name, checked to exist."""
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


def autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on GPUs that support it (``precision="auto"``), on request on CPU, else None (fp32)."""
    if config.precision == "fp32":
        return None
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if config.precision == "bf16":
        if device.type == "cpu":
            return torch.bfloat16
        raise TrainingError(f"precision='bf16' is not supported on {device}; use precision='fp32'.")
    return None


def adamw(groups: list, fused: bool = True, **kwargs: Any) -> torch.optim.Optimizer:
    """``torch.optim.AdamW(groups, **kwargs)`` with the fused kernel (one kernel over all tensors, much
    faster on CPU for a full body) where this torch and device have it, else the default kernel."""
    if fused:
        try:
            return torch.optim.AdamW(groups, fused=True, **kwargs)
        except (RuntimeError, TypeError, ValueError):
            pass
    return torch.optim.AdamW(groups, **kwargs)


def versions() -> dict[str, str]:
    """Versions of the packages a run's numbers depend on (recorded with every run)."""
    out = {"tutorfinetune": __version__, "python": platform.python_version(), "torch": torch.__version__}
    for mod in ("transformers", "adapters", "pandas", "numpy"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # optional or broken package: record that it is missing
            out[mod] = "missing"
    try:  # read from the installed metadata: importing peft takes seconds, and only LoRA runs need it
        out["peft"] = importlib.metadata.version("peft")
    except importlib.metadata.PackageNotFoundError:
        out["peft"] = "missing"
    return out
