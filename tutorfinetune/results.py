"""The append-only results store (DESIGN.md, "Results").

One JSON file per run under the store folder (default ``runs/``), named by run id. A run writes
its record when it starts (``status: "running"``) and replaces it when it ends (``finished``,
``failed`` or ``interrupted``). Every write goes to a temporary file in the same folder followed by
``os.replace``, which is atomic: a reader sees the old record or the new one, never half of one.
A run killed outright (SIGKILL, a dead kernel) leaves its ``running`` record; :func:`load` reports
it as ``interrupted`` once its process is gone. Files that are not valid records are skipped with a
warning, never fatal.

``load(path)`` gives a tidy frame: one row per run x eval set x metric, with the run's method,
seed, task, backbone and main config fields as columns. ``analysis`` aggregates and plots it.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["RunStore", "load", "load_records", "history", "DEFAULT_STORE"]

DEFAULT_STORE = "runs"
_CONFIG_COLUMNS = ("lr", "batch_size", "num_epochs", "max_steps", "max_train_examples", "max_length", "seed")


def _atomic_write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, default=_jsonable)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


class RunStore:
    """A folder of run records. ``write(record)`` adds or replaces one record atomically."""

    def __init__(self, path: str | os.PathLike = DEFAULT_STORE) -> None:
        self.path = Path(path)

    def record_path(self, run_id: str) -> Path:
        return self.path / f"{run_id}.json"

    def write(self, record: dict) -> Path:
        if "run_id" not in record:
            raise ValueError("A run record needs a run_id.")
        record = {**record, "host": socket.gethostname(), "pid": record.get("pid", os.getpid())}
        path = self.record_path(record["run_id"])
        _atomic_write_json(path, record)
        return path

    def records(self) -> list[dict]:
        return load_records(self.path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def load_records(path: str | os.PathLike = DEFAULT_STORE) -> list[dict]:
    """All readable run records of a store, oldest first; unreadable files are skipped with a warning."""
    root = Path(path)
    if not root.is_dir():
        return []
    out = []
    for f in sorted(root.glob("*.json")):
        try:
            rec = json.loads(f.read_text(encoding="utf-8"))
            if not isinstance(rec, dict) or "run_id" not in rec:
                raise ValueError("not a run record")
        except (OSError, ValueError) as e:
            warnings.warn(f"Skipping {f}: not a readable run record ({e}).", stacklevel=2)
            continue
        if rec.get("status") == "running" and rec.get("host") == socket.gethostname():
            pid = rec.get("pid")
            if isinstance(pid, int) and not _pid_alive(pid):
                rec["status"] = "interrupted"
        out.append(rec)
    out.sort(key=lambda r: (r.get("started_at", ""), r["run_id"]))
    return out


def load(path: str | os.PathLike = DEFAULT_STORE, status: str | None = "finished") -> pd.DataFrame:
    """Tidy frame of a store: one row per (run, eval set, metric).

    Args:
        path: the store folder.
        status: keep runs with this status (``None`` keeps all, also interrupted and failed ones).

    Columns: run_id, study, method, task, backbone, seed, status, eval_set, metric, value, the main
    config fields (lr, batch_size, num_epochs, max_steps, max_train_examples, max_length), tags, and
    train_seconds.
    """
    rows = []
    for rec in load_records(path):
        if status is not None and rec.get("status") != status:
            continue
        cfg = rec.get("config", {})
        base = {
            "run_id": rec["run_id"],
            "study": rec.get("study", ""),
            "method": rec.get("method", ""),
            "task": rec.get("task", ""),
            "backbone": rec.get("backbone", ""),
            "status": rec.get("status", ""),
            "train_seconds": rec.get("timings", {}).get("train_seconds"),
            "started_at": rec.get("started_at", ""),
        }
        base.update({k: cfg.get(k) for k in _CONFIG_COLUMNS})
        for k, v in (rec.get("tags") or {}).items():
            base.setdefault(k, v)
        metrics = rec.get("metrics") or {}
        if not metrics:
            rows.append({**base, "eval_set": None, "metric": None, "value": None})
        for eval_set, ms in metrics.items():
            for metric, value in ms.items():
                rows.append({**base, "eval_set": eval_set, "metric": metric, "value": value})
    cols = ["run_id", "study", "method", "task", "backbone", "seed", "status", "eval_set", "metric", "value",
            *[c for c in _CONFIG_COLUMNS if c != "seed"], "train_seconds", "started_at"]
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=cols)
    return df[cols + [c for c in df.columns if c not in cols]]


def finished_runs(path: str | os.PathLike = DEFAULT_STORE, study: str | None = None) -> dict[str, str]:
    """Fingerprint -> run id of every finished run in the store (of ``study`` only, when given; the
    newest run where one fingerprint finished more than once). The one answer to "is this run already
    in the store?": sweeps, recipes and the leaderboard ask here and train only what is missing."""
    done: dict[str, str] = {}
    for rec in load_records(path):  # oldest first, so the newest run of a fingerprint wins
        if rec.get("status") != "finished" or not rec.get("fingerprint"):
            continue
        if study is not None and rec.get("study", "") != study:
            continue
        done[rec["fingerprint"]] = rec["run_id"]
    return done


def find_finished(path: str | os.PathLike, fingerprint: str | None = None, *, study: str | None = None,
                  seed: int | None = None, config: dict | None = None, tags: dict | None = None) -> str | None:
    """The run id of the newest finished run that matches every given field, or None: its
    ``fingerprint``, or (for a recipe phase whose fingerprint is known only after an earlier phase) its
    ``study``, ``seed``, ``config`` (a dict, compared whole) and ``tags`` (each given tag must match)."""
    if fingerprint is not None and config is None and tags is None and seed is None:
        return finished_runs(path, study).get(fingerprint)
    found = None
    for rec in load_records(path):
        if rec.get("status") != "finished" or (study is not None and rec.get("study", "") != study):
            continue
        if fingerprint is not None and rec.get("fingerprint") != fingerprint:
            continue
        if seed is not None and rec.get("seed") != seed:
            continue
        if config is not None and rec.get("config") != config:
            continue
        have = rec.get("tags") or {}
        if tags and any(have.get(k) != v for k, v in tags.items()):
            continue
        found = rec["run_id"]
    return found


def history(path: str | os.PathLike, run_id: str) -> pd.DataFrame:
    """The per-step history of one run as a DataFrame."""
    rec = json.loads(RunStore(path).record_path(run_id).read_text(encoding="utf-8"))
    return pd.DataFrame(rec.get("history") or [])
