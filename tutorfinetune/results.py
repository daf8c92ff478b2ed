"""The append-only results store (DESIGN.md, "Results").

One JSON file per run under the store folder (default ``runs/``), named by run id. A run writes
its record when it starts (``status: "running"``) and replaces it when it ends (``finished``,
``failed`` or ``interrupted``). Every write goes to a temporary file in the same folder followed by
``os.replace``, which is atomic: a reader sees the old record or the new one, never half of one.
A run killed outright (SIGKILL, a dead kernel) leaves its ``running`` record; :func:`load` reports
it as ``interrupted`` once its process is gone.

Every record is checked against one schema (:data:`SCHEMA`, :func:`validate_record`) when it is
written (a writer that breaks it raises :class:`RecordError`) and when it is read: a file that is
not valid JSON, or a record with a missing or wrong-typed field, is skipped with a warning that
names the file and the field. One bad record is never fatal to :func:`load`.

``load(path)`` gives a tidy frame: one row per run x eval set x metric, with the run's method,
seed, task, backbone and main config fields as columns, and ``config_id``: a short hash of the
run's whole configuration except its seed. :func:`dedup_seeds` uses it so that aggregation over
seeds (``analysis.aggregate``) keys its groups by the full configuration and counts a seed that was
run twice once (the newest finished run).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

__all__ = ["RunStore", "RecordError", "SCHEMA", "validate_record", "load", "load_records", "history",
           "config_id", "dedup_seeds", "label_extra_keys", "finished_runs", "find_finished", "DEFAULT_STORE"]

DEFAULT_STORE = "runs"
STATUSES = ("running", "finished", "failed", "interrupted")
_CONFIG_COLUMNS = ("lr", "batch_size", "num_epochs", "max_steps", "max_train_examples", "max_length", "seed")


class RecordError(ValueError):
    """A run record that does not fit the store's schema; the message names the field."""


# --------------------------------------------------------------------------------------------
# The schema: field -> (check, what it must be). Only run_id and status are required (old records
# lack some fields); extra fields are allowed.
# --------------------------------------------------------------------------------------------
def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _opt(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


def _metrics_ok(v: Any) -> bool:
    return isinstance(v, dict) and all(isinstance(ms, dict) and all(v2 is None or _is_number(v2) for v2 in ms.values())
                                       for ms in v.values())


def _config_ok(v: Any) -> bool:
    return isinstance(v, dict) and all(v.get(k) is None or _is_number(v.get(k)) for k in _CONFIG_COLUMNS) \
        and (v.get("seed") is None or _is_int(v.get("seed")))


SCHEMA: dict[str, tuple[Callable[[Any], bool], str]] = {
    "run_id": (lambda v: isinstance(v, str) and v.strip() != "" and not any(c in v for c in "/\\"),
               "non-empty text without / or \\"),
    "status": (lambda v: v in STATUSES, f"one of {list(STATUSES)}"),
    "study": (lambda v: isinstance(v, str), "text"),
    "method": (lambda v: isinstance(v, str), "text"),
    "task": (lambda v: isinstance(v, str), "text"),
    "backbone": (lambda v: isinstance(v, str), "text"),
    "device": (lambda v: isinstance(v, str), "text"),
    "fingerprint": (lambda v: isinstance(v, str), "text"),
    "host": (lambda v: isinstance(v, str), "text"),
    "error": (_opt(lambda v: isinstance(v, str)), "text"),
    "started_at": (lambda v: isinstance(v, str), "text (an ISO time)"),
    "finished_at": (_opt(lambda v: isinstance(v, str)), "text (an ISO time)"),
    "seed": (_opt(_is_int), "an integer"),
    "pid": (_opt(_is_int), "an integer"),
    "resumed_from_step": (_opt(_is_int), "an integer"),
    "world_size": (_opt(_is_int), "an integer (processes that trained the run)"),
    "config": (_config_ok, "an object of settings (lr, batch_size, ... numbers; seed an integer)"),
    "metrics": (_metrics_ok, "an object: eval set -> {metric: number}"),
    "timings": (lambda v: isinstance(v, dict) and all(x is None or _is_number(x) for x in v.values()),
                "an object: name -> number"),
    "tags": (lambda v: isinstance(v, dict), "an object"),
    "history": (lambda v: isinstance(v, list) and all(isinstance(r, dict) for r in v), "a list of objects"),
    "methods": (lambda v: isinstance(v, list), "a list"),
    "versions": (lambda v: isinstance(v, dict), "an object"),
    "artifacts": (lambda v: isinstance(v, dict), "an object"),
}
REQUIRED = ("run_id", "status")


def validate_record(record: Any) -> None:
    """Raise :class:`RecordError` naming the first field of ``record`` that breaks :data:`SCHEMA`."""
    if not isinstance(record, dict):
        raise RecordError(f"a run record is a JSON object, got a {type(record).__name__}")
    for name in REQUIRED:
        if name not in record:
            raise RecordError(f"field {name!r} is missing")
    for name, (check, what) in SCHEMA.items():
        if name in record and not check(record[name]):
            value = record[name]
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
            raise RecordError(f"field {name!r} must be {what}, got {type(value).__name__} {shown}")


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------
def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _atomic_write_json(path: Path, data: dict) -> None:
    _atomic_write_text(path, json.dumps(data, default=_jsonable))


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
        """Validate ``record`` as it will read back (after JSON) and write it; :class:`RecordError` if it
        breaks the schema (nothing is written then)."""
        if not isinstance(record, dict) or "run_id" not in record:
            raise RecordError("A run record needs a run_id.")
        # a record relayed from a worker on another machine keeps that machine's host and pid
        record = {**record, "host": record.get("host") or socket.gethostname(), "pid": record.get("pid", os.getpid())}
        text = json.dumps(record, default=_jsonable)
        try:
            validate_record(json.loads(text))
        except RecordError as e:
            raise RecordError(f"Refusing to write run record {record.get('run_id')!r}: {e}.") from None
        path = self.record_path(record["run_id"])
        _atomic_write_text(path, text)
        return path

    def records(self) -> list[dict]:
        return load_records(self.path)


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OSError, OverflowError, ValueError):
        return False
    return True


def _read_record(f: Path) -> dict:
    """One record file, parsed and validated; RecordError (or OSError/ValueError) says why not."""
    try:
        rec = json.loads(f.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise RecordError(f"not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}; a torn or edited file?)") from None
    except UnicodeDecodeError:
        raise RecordError("not UTF-8 text") from None
    except RecursionError:
        raise RecordError("nested too deeply") from None
    validate_record(rec)
    return rec


def load_records(path: str | os.PathLike = DEFAULT_STORE) -> list[dict]:
    """All valid run records of a store, oldest first. A file that is unreadable or breaks the schema
    is skipped with a warning naming the file and the field; it never stops the others loading."""
    root = Path(path)
    if not root.is_dir():
        return []
    out = []
    for f in sorted(root.glob("*.json")):
        try:
            rec = _read_record(f)
        except (OSError, ValueError) as e:  # RecordError is a ValueError
            warnings.warn(f"Skipping {f}: not a valid run record ({e}).", stacklevel=2)
            continue
        if rec.get("status") == "running" and rec.get("host") == socket.gethostname():
            pid = rec.get("pid")
            if _is_int(pid) and not _pid_alive(pid):
                rec["status"] = "interrupted"
        out.append(rec)
    out.sort(key=lambda r: (r.get("started_at", ""), r["run_id"]))
    return out


# Settings that change how a run is executed or monitored, not what it measures: left out of config_id.
_NOT_CONFIGURATION = ("seed", "device", "eval_batch_size", "eval_sets", "eval_every", "curve_eval_set",
                      "checkpoint_every", "fused_adamw")


def config_id(record: dict) -> str:
    """A short hash of a run's full configuration except its seed: task, backbone, method and every
    plug-in's settings, the training settings (less the seed and settings that only change how the
    run is executed or monitored: device, eval batch size, eval sets, checkpoints), and the tags
    (less ``seed``/``seeds``). Runs with equal ``config_id`` differ only in their seed."""
    cfg = record.get("config") or {}
    tags = record.get("tags") or {}
    desc = {
        "task": record.get("task", ""), "backbone": record.get("backbone", ""), "method": record.get("method", ""),
        "methods": record.get("methods") or [],
        "config": {k: v for k, v in cfg.items() if k not in _NOT_CONFIGURATION},
        "tags": {k: v for k, v in tags.items() if k not in ("seed", "seeds")},
    }
    return hashlib.sha256(json.dumps(desc, sort_keys=True, default=str).encode()).hexdigest()[:12]


def load(path: str | os.PathLike = DEFAULT_STORE, status: str | None = "finished") -> pd.DataFrame:
    """Tidy frame of a store: one row per (run, eval set, metric).

    Args:
        path: the store folder.
        status: keep runs with this status (``None`` keeps all, also interrupted and failed ones).

    Columns: run_id, study, method, task, backbone, seed, status, eval_set, metric, value, the main
    config fields (lr, batch_size, num_epochs, max_steps, max_train_examples, max_length),
    train_seconds, started_at, finished_at, config_id (:func:`config_id`), and the run's tags.
    Invalid records are skipped with a warning (see :func:`load_records`).
    """
    rows = []
    for rec in load_records(path):
        if status is not None and rec.get("status") != status:
            continue
        cfg = rec.get("config") or {}
        base = {
            "run_id": rec["run_id"],
            "study": rec.get("study", ""),
            "method": rec.get("method", ""),
            "task": rec.get("task", ""),
            "backbone": rec.get("backbone", ""),
            "status": rec.get("status", ""),
            "train_seconds": (rec.get("timings") or {}).get("train_seconds"),
            "started_at": rec.get("started_at", ""),
            "finished_at": rec.get("finished_at"),
            "config_id": config_id(rec),
        }
        base.update({k: cfg.get(k) for k in _CONFIG_COLUMNS})
        if base["seed"] is None:
            base["seed"] = rec.get("seed")
        for k, v in (rec.get("tags") or {}).items():
            base.setdefault(k, v)
        metrics = rec.get("metrics") or {}
        if not metrics:
            rows.append({**base, "eval_set": None, "metric": None, "value": None})
        for eval_set, ms in metrics.items():
            for metric, value in ms.items():
                rows.append({**base, "eval_set": eval_set, "metric": metric, "value": value})
    cols = ["run_id", "study", "method", "task", "backbone", "seed", "status", "eval_set", "metric", "value",
            *[c for c in _CONFIG_COLUMNS if c != "seed"], "train_seconds", "started_at", "finished_at", "config_id"]
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
    """The per-step history of one run as a DataFrame (:class:`RecordError` if its record is invalid)."""
    f = RunStore(path).record_path(run_id)
    if not f.is_file():
        raise RecordError(f"No record of run {run_id!r} in {path}.")
    try:
        rec = _read_record(f)
    except (OSError, ValueError) as e:
        raise RecordError(f"{f} is not a valid run record ({e}).") from None
    return pd.DataFrame(rec.get("history") or [])


# --------------------------------------------------------------------------------------------
# Aggregation over seeds: one configuration per group, one run per seed
# --------------------------------------------------------------------------------------------
# Columns that describe a run's configuration in the tidy frame, in the order they are added to a
# grouping when its groups would otherwise mix configurations.
_DESCRIBING = ("method", "task", "backbone", "lr", "batch_size", "num_epochs", "max_steps", "max_train_examples",
               "max_length")


def dedup_seeds(df: pd.DataFrame, by: Sequence[str] = (), split: bool = True) -> tuple[pd.DataFrame, list[str]]:
    """Prepare tidy rows for aggregation over seeds: ``(rows, keys)``.

    * ``rows``: for each group of ``by``, configuration (``config_id``) and seed, only the rows of
      the newest finished run: a seed that was run twice counts once.
    * ``keys``: ``by`` plus whatever is needed so that no group mixes configurations: the columns
      among method, task, backbone, lr, batch_size, num_epochs, max_steps, max_train_examples and
      max_length that differ inside a group, then ``config_id`` if they do not tell the
      configurations apart. ``keys == by`` when every group holds one configuration, or when
      ``split`` is False (pool the configurations of a group, e.g. a mean over hyperparameter trials).

    Rows without a run identity (no ``run_id``, ``config_id`` or ``seed``, e.g. rows built by hand or
    by ``analysis.held_out_mean``) are kept as they are.
    """
    by = list(by)
    need = {"run_id", "seed", "config_id"}
    if df.empty or not need <= set(df.columns) or not set(by) <= set(df.columns):
        return df, by
    d = df.reset_index(drop=True)  # positions: the caller's index may repeat labels
    ident = d["run_id"].notna() & d["config_id"].notna() & d["seed"].notna()
    if not ident.any():
        return df, by
    sub = d[ident]
    finished = (sub["status"] == "finished") if "status" in sub.columns else pd.Series(True, index=sub.index)
    when = pd.Series("", index=sub.index)
    for col in ("started_at", "finished_at"):  # finished_at wins where present
        if col in sub.columns:
            when = sub[col].where(sub[col].notna(), when).astype(str)
    rank = pd.DataFrame({"_fin": finished.astype(int), "_when": when, "_id": sub["run_id"].astype(str)})
    sub = sub.loc[rank.sort_values(["_fin", "_when", "_id"]).index]
    newest = sub.groupby([*by, "config_id", "seed"], dropna=False, sort=False)["run_id"].transform("last")
    keep = pd.Series(True, index=d.index)
    keep.loc[sub.index] = (sub["run_id"] == newest).to_numpy()
    d, out = d[keep], df[keep.to_numpy()]
    part = d[ident[keep]]

    def mixed(cols: list[str]) -> bool:
        if not cols:
            return part["config_id"].nunique() > 1
        return bool((part.groupby(cols, dropna=False)["config_id"].nunique() > 1).any())

    keys = list(by)
    if split and mixed(keys):
        for col in _DESCRIBING:
            if col in part.columns and col not in keys:
                varies = part.groupby(keys, dropna=False)[col].nunique(dropna=False) if keys else \
                    pd.Series([part[col].nunique(dropna=False)])
                if (varies > 1).any():
                    keys.append(col)
                    if not mixed(keys):
                        break
        if mixed(keys):
            keys.append("config_id")
    return out, keys


def label_extra_keys(agg: pd.DataFrame, rows: str, cols: str) -> pd.DataFrame:
    """Fold the keys that :func:`dedup_seeds` added to an aggregated table (lr, config_id, ...) into
    its ``rows`` labels (``"full (lr=0.0001)"``), so that a rows x cols table stays one cell per group."""
    stats = {rows, cols, "n", "mean", "std", "ci95", "lo", "hi"}
    extra = [c for c in agg.columns if c not in stats]
    if not extra or agg.empty:
        return agg
    label = agg[rows].astype(str) + " (" + agg[extra].astype(str).apply(
        lambda r: ", ".join(f"{k}={v}" for k, v in r.items()), axis=1) + ")"
    return agg.drop(columns=extra).assign(**{rows: label})
