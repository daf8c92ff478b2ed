"""The run record: one object owns it from start to finish (DESIGN.md, "Results").

:class:`RunRecorder` writes the record when a run starts (``status="running"``), keeps the history,
and writes it once more when the run ends: ``finished`` with metrics and timings, ``failed`` with the
error, or ``interrupted``. Used as a context manager around a run, so no path can forget to record a
failure. :func:`tutorfinetune.train` and :func:`tutorfinetune.engine.evaluate_only` share it.

:func:`fingerprint` is the identity of a run's inputs (config, task, training-set size, backbone,
methods): the store finds a finished run by it (:func:`tutorfinetune.results.find_finished`), so
sweeps, recipes and the leaderboard only train what is missing.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from datetime import datetime, timezone
from typing import Any

from ..backbones import resolve_readout
from ..config import TrainConfig
from ..env import versions
from ..results import RunStore

__all__ = ["RunRecorder", "fingerprint", "method_name", "new_run_id", "resolved_config"]


def resolved_config(backbone: str, config: TrainConfig) -> TrainConfig:
    """``config`` as a run of ``backbone`` records it: ``readout="auto"`` replaced by the readout it
    resolves to for this backbone (what fingerprints and record look-ups must compare)."""
    if config.readout == "auto":
        return config.replace(readout=resolve_readout(backbone, "auto"))
    return config


def fingerprint(backbone: str, task: str, n_train: int, config: TrainConfig, methods: list) -> str:
    """Identity of a run's inputs: config, task and training-set size, backbone, methods. ``readout="auto"``
    counts as the readout it resolves to for this backbone, so a sweep's look-up before a run and the
    run's own record agree."""
    config = resolved_config(backbone, config)
    desc = {"config": config.to_dict(), "task": task, "n_train": int(n_train),
            "backbone": backbone, "methods": [m.describe() for m in methods]}
    return hashlib.sha256(json.dumps(desc, sort_keys=True, default=str).encode()).hexdigest()[:16]


def method_name(methods: list) -> str:
    """The run's method label: the plug-ins' names joined by ``+`` (``"full"`` for none)."""
    return "+".join(m.name for m in methods) or "full"


def new_run_id() -> str:
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _is_json(v: Any) -> bool:
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


class RunRecorder:
    """Owns one run's record and writes it to the store (``store=None``: keeps it in memory only).

    Args:
        store: results store folder, or None.
        fields: the record's identity: ``study``, ``method``, ``task``, ``backbone``, ``seed``,
            ``config`` (a dict), ``methods`` (their descriptions), ``tags``, ``device``, ``fingerprint``.
    """

    def __init__(self, store: str | os.PathLike | None, **fields: Any) -> None:
        self.store = RunStore(store) if store is not None else None
        self.history: list[dict] = []
        self.record: dict[str, Any] = {
            "run_id": new_run_id(), "study": "", "method": "", "task": "", "backbone": "", "seed": 0,
            "config": {}, "methods": [], "tags": {}, "status": "running", "started_at": _now(),
            "versions": versions(), "device": "", "fingerprint": "", "metrics": {}, "history": [], "timings": {},
        }
        self.record.update({k: v for k, v in fields.items() if v is not None})
        self.record["tags"] = dict(self.record["tags"] or {})

    @property
    def run_id(self) -> str:
        return self.record["run_id"]

    def start(self) -> "RunRecorder":
        """Write the ``running`` record (a reader sees a run in progress; a killed run stays visible)."""
        self._write()
        return self

    def set(self, **fields: Any) -> None:
        self.record.update(fields)

    def finish(self, metrics: dict, timings: dict, artifacts: dict | None = None, **fields: Any) -> None:
        """Record the run as finished, with its metrics, timings, history and JSON-able artifacts."""
        self.record.update(status="finished", metrics=metrics, timings=timings, history=self.history,
                           finished_at=_now(), **fields)
        if artifacts is not None:
            self.record["artifacts"] = {k: v for k, v in artifacts.items() if _is_json(v)}
        self._write()

    def fail(self, error: BaseException) -> None:
        """Record the run as ``interrupted`` (Ctrl-C) or ``failed`` with the error."""
        if isinstance(error, KeyboardInterrupt):
            self.record.update(status="interrupted", history=self.history, finished_at=_now())
        else:
            self.record.update(status="failed", error=f"{type(error).__name__}: {error}", history=self.history,
                               finished_at=_now())
        self._write()

    def __enter__(self) -> "RunRecorder":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is not None and self.record["status"] == "running":
            self.fail(exc)
        return False

    def _write(self) -> None:
        if self.store is not None:
            self.store.write(self.record)
