"""Run one notebook over a grid of papermill parameters: the sweep driver (issue: "the study as a whole").

Papermill executes a notebook with one set of parameters; a study needs a grid of them (seeds x p x
regime, say). :func:`notebook_sweep` runs every combination in order, with a progress bar, writes
each executed notebook to ``<out>/<notebook>/<cell>.ipynb`` and sends every notebook's results to one
results store (the notebooks' ``store`` parameter). A manifest, ``<out>/<notebook>/manifest.json``,
records every grid cell's parameters, status, time and error, and is rewritten atomically after each
cell, so an interrupted sweep never leaves a manifest that breaks a reader. On a rerun, cells that
finished are skipped (resumable); a cell that failed is recorded with its error and the sweep goes
on with the next one (and tries it again on the next run). Inside each notebook, finished training
runs are also reused by fingerprint (:func:`tutorfinetune.studies.sweep`), so even a re-executed cell
only trains what is new.

With ``executor="ray"`` the cells run in parallel (one notebook per Ray task, ``threads`` torch threads
each: the kernel inherits ``OMP_NUM_THREADS``); the driver alone writes the manifest, as each cell
ends. With ``store_mode="driver"`` (a cluster without a shared file system) each worker executes the
notebook into a private folder and store and sends back the executed notebook and its records, which
the driver writes (runs already in the store are then not reused inside the cell). :func:`run_notebooks`
does the same for a list of notebooks run once each (``tutorfinetune notebooks --executor ray``).

From the command line: ``tutorfinetune sweep notebooks/04_graddrop.ipynb -g 'seeds=[[0],[1]]' -g p=0.1,0.3``.
"""

from __future__ import annotations

import ast
import hashlib
import itertools
import json
import os
import re
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import pandas as pd
import torch

from ..config import ConfigError
from ..progress import progress_bar
from ..results import RunStore, _atomic_write_json, load_records
from .executors import Executor, Outcome, WorkerContext, make_executor

__all__ = ["notebook_sweep", "run_notebooks", "NotebookJob", "run_notebook_job", "expand_grid", "cell_key",
           "parse_value", "parse_grid_option", "SweepError"]


class SweepError(ValueError):
    """A grid or notebook the sweep driver cannot run; the message says what to fix."""


def parse_value(text: str) -> Any:
    """A command-line value as Python: ``0.3`` -> 0.3, ``[0, 1]`` -> [0, 1], ``full`` -> "full"."""
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        return text.strip()


def parse_grid_option(option: str) -> tuple[str, list]:
    """``"p=0.1,0.3"`` or ``"seeds=[[0], [1]]"`` -> ``("p", [0.1, 0.3])``: a list literal, or comma-separated
    scalars."""
    name, sep, values = option.partition("=")
    name = name.strip()
    if not sep or not name.isidentifier():
        raise SweepError(f"Cannot read grid option {option!r}: write NAME=v1,v2 or NAME=[v1, v2] (a list literal).")
    text = values.strip()
    if text.startswith("["):
        parsed = parse_value(text)
        if not isinstance(parsed, list):
            raise SweepError(f"Grid option {option!r}: {text!r} is not a list literal.")
        vals = parsed
    else:
        vals = [parse_value(v) for v in text.split(",") if v.strip()]
    if not vals:
        raise SweepError(f"Grid option {option!r} lists no values.")
    return name, vals


def expand_grid(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, in order (the last name varies fastest)."""
    if not isinstance(grid, Mapping) or not grid:
        raise SweepError("A grid maps parameter names to lists of values, e.g. {'seeds': [[0], [1]], 'p': [0.1, 0.3]}.")
    for name, vals in grid.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise SweepError(f"Grid parameter names must be identifiers, got {name!r}.")
        if isinstance(vals, (str, bytes)) or not isinstance(vals, Sequence) or len(vals) == 0:
            raise SweepError(f"Grid parameter {name!r} needs a non-empty list of values, got {vals!r}.")
    names = list(grid)
    return [dict(zip(names, combo)) for combo in itertools.product(*[list(grid[n]) for n in names])]


def cell_key(cell: Mapping[str, Any], fixed: Mapping[str, Any] | None = None) -> str:
    """A readable, file-safe name for one grid cell, with a short hash of *all* its parameters (grid and
    fixed), so that a cell run with other fixed parameters is a different cell."""
    readable = "__".join(f"{k}-{_short(v)}" for k, v in cell.items())
    readable = re.sub(r"[^A-Za-z0-9_.=+-]+", "", readable)[:80] or "cell"
    digest = hashlib.sha256(json.dumps({"cell": dict(cell), "fixed": dict(fixed or {})}, sort_keys=True,
                                       default=str).encode()).hexdigest()[:8]
    return f"{readable}__{digest}"


def _short(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return "+".join(_short(x) for x in v) or "none"
    return str(v)


def _default_execute(notebook: Path, output: Path, parameters: dict, timeout: int | None, kernel: str) -> None:
    import papermill as pm

    pm.execute_notebook(str(notebook), str(output), parameters=parameters, kernel_name=kernel, cwd=str(notebook.parent),
                        progress_bar=False, log_output=False, execution_timeout=timeout)


def _error_line(e: BaseException) -> str:
    text = str(e).strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    ename = getattr(e, "ename", None)
    evalue = getattr(e, "evalue", None)
    if ename:
        return f"{ename}: {evalue}"[:500]
    return (lines[-1] if lines else type(e).__name__)[:500]


@dataclass
class NotebookJob:
    """One notebook execution: the notebook, where its executed copy goes, its papermill parameters."""

    key: str
    notebook: str
    output: str
    parameters: dict
    timeout: int | None = None
    kernel: str = "python3"
    execute: Callable[[Path, Path, dict, int | None, str], None] | None = None
    source: bytes = b""
    progress: str = "text"
    extra: dict = field(default_factory=dict)


def run_notebook_job(job: NotebookJob, ctx: WorkerContext) -> Outcome:
    """Execute one notebook (in the worker); never raises for a failing notebook (KeyboardInterrupt aside).

    With ``ctx.relay`` the notebook runs from a private folder with a private store, and the executed
    notebook and the store's records come back in the Outcome for the driver to write."""
    os.environ.setdefault("TUTORFINETUNE_PROGRESS", job.progress)
    if ctx.threads:  # the kernel is a child process: torch there reads these at import
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(ctx.threads)
        torch.set_num_threads(int(ctx.threads))
    notebook, output, params = Path(job.notebook), Path(job.output), dict(job.parameters)
    tmp = Path(tempfile.mkdtemp(prefix="tft-nb-")) if ctx.relay else None
    if tmp is not None:
        if job.source:
            notebook = tmp / notebook.name
            notebook.write_bytes(job.source)
        output, params["store"] = tmp / "executed.ipynb", str(tmp / "runs")
    out = Outcome(key=job.key, status="finished", host=socket.gethostname(), pid=os.getpid())
    t0 = time.perf_counter()
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        (job.execute or _default_execute)(notebook, output, params, job.timeout, job.kernel)
    except Exception as e:  # one failing notebook is recorded and does not stop the others
        out.status, out.error = "failed", _error_line(e)
    out.seconds = round(time.perf_counter() - t0, 1)
    if tmp is not None:
        if output.is_file():
            out.files["notebook"] = output.read_bytes()
        out.records = load_records(tmp / "runs")
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _deliver(out: Outcome, output: Path, store: Path) -> None:
    """Driver side of ``store_mode="driver"``: write the executed notebook and the records a worker sent."""
    data = out.files.pop("notebook", None)
    if data is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp = output.with_name(f".{output.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, output)
    writer = RunStore(store)
    for rec in out.records:
        writer.write(rec)
    out.records = []


def notebook_sweep(
    notebook: str | os.PathLike,
    grid: Mapping[str, Sequence[Any]],
    *,
    out: str | os.PathLike = "outputs/sweeps",
    params: Mapping[str, Any] | None = None,
    store: str | os.PathLike | None = None,
    mode: str | None = "ci",
    resume: bool = True,
    timeout: int | None = None,
    kernel: str = "python3",
    execute: Callable[[Path, Path, dict, int | None, str], None] | None = None,
    verbose: bool = True,
    executor: str | Executor = "serial",
    workers: int | None = None,
    address: str | None = None,
    gpus_per_run: float | None = None,
) -> pd.DataFrame:
    """Execute ``notebook`` once per combination of ``grid`` (papermill parameters), in order (or in
    parallel with ``executor="ray"``).

    Args:
        notebook: the notebook to run.
        grid: parameter name -> list of values; e.g. ``{"seeds": [[0], [1], [2]], "p_upper": [0.05, 0.1]}``.
        out: folder for ``<notebook stem>/<cell>.ipynb`` and ``<notebook stem>/manifest.json``.
        params: fixed parameters for every cell.
        store: the results store every cell writes to (passed as the notebook's ``store`` parameter;
            default ``<out>/runs``).
        mode: the notebooks' ``mode`` parameter (``"ci"`` or ``"full"``; None leaves the notebook's own).
        resume: skip cells the manifest records as finished (their executed notebook still there).
        timeout: seconds per notebook cell (papermill's ``execution_timeout``).
        execute: the function that runs one notebook (default papermill; tests pass their own).
        executor, workers, address, gpus_per_run: ``"serial"`` (one cell after another), or ``"ray"``:
            cells in parallel (:mod:`.executors`); every cell is one unit of work.

    Returns:
        One row per grid cell: ``cell``, the grid parameters, ``status`` (finished, failed, skipped,
        interrupted), ``seconds``, ``output``, ``error``.
    """
    nb = Path(notebook)
    if not nb.is_file() or nb.suffix != ".ipynb":
        raise SweepError(f"No notebook at {nb}: pass the path of an .ipynb file.")
    if mode is not None and mode not in ("ci", "full"):
        raise SweepError(f"mode must be 'ci' or 'full', got {mode!r}.")
    cells = expand_grid(grid)
    fixed = dict(params or {})
    clash = sorted(set(fixed) & set(grid))
    if clash:
        raise SweepError(f"Parameters {clash} are both fixed and in the grid; keep each in one place.")
    folder = Path(out) / nb.stem
    folder.mkdir(parents=True, exist_ok=True)
    store = Path(store) if store is not None else Path(out) / "runs"
    fixed_all = {**fixed, **({"mode": mode} if mode is not None else {}), "store": str(store.resolve())}
    manifest_path = folder / "manifest.json"
    manifest = _read_manifest(manifest_path, nb)
    manifest.update({"notebook": str(nb), "grid": {k: list(v) for k, v in grid.items()}, "fixed": fixed_all})
    os.environ.setdefault("TUTORFINETUNE_PROGRESS", "text")
    ex = make_executor(executor, workers=workers, address=address, gpus_per_run=gpus_per_run)
    rows: dict[str, dict] = {}
    jobs: list[NotebookJob] = []
    source = nb.read_bytes() if ex.relay else b""
    for cell in cells:
        key = cell_key(cell, fixed_all)
        output = folder / f"{key}.ipynb"
        if key in rows:
            continue  # the same cell twice in the grid: once
        if resume and manifest["cells"].get(key, {}).get("status") == "finished" and output.is_file():
            rows[key] = {"cell": key, **cell, "status": "skipped", "seconds": 0.0, "output": str(output), "error": ""}
            continue
        rows[key] = {}
        jobs.append(NotebookJob(key=key, notebook=str(nb), output=str(output), parameters={**fixed_all, **cell},
                                timeout=timeout, kernel=kernel, execute=execute, source=source,
                                progress=os.environ["TUTORFINETUNE_PROGRESS"], extra={"cell": cell}))
    bar = progress_bar(total=len(cells), initial=len(cells) - len(jobs), desc=f"sweep {nb.stem}")

    def start(job: NotebookJob) -> None:
        entry = manifest["cells"].get(job.key, {})
        manifest["cells"][job.key] = {"params": job.extra["cell"], "status": "running", "output": job.output,
                                      "started_at": datetime.now(timezone.utc).isoformat(),
                                      "attempts": entry.get("attempts", 0) + 1}
        _atomic_write_json(manifest_path, manifest)

    def done(job: NotebookJob, out: Outcome) -> None:
        if out.files or out.records:
            _deliver(out, Path(job.output), store)
        entry = manifest["cells"][job.key]
        entry.update(status=out.status, error=out.error, seconds=out.seconds,
                     finished_at=datetime.now(timezone.utc).isoformat())
        if out.host and out.host != socket.gethostname():
            entry["host"] = out.host
        _atomic_write_json(manifest_path, manifest)
        if verbose and out.status == "failed":
            print(f"  cell {job.key} FAILED: {out.error}", flush=True)
        rows[job.key] = {"cell": job.key, **job.extra["cell"], "status": out.status, "seconds": out.seconds,
                         "output": job.output, "error": out.error}
        bar.update(1)
        bar.set_postfix_str(", ".join(f"{k}={_short(v)}" for k, v in job.extra["cell"].items()))

    try:
        ex.map(run_notebook_job, jobs, done, on_start=start)
    except KeyboardInterrupt:
        for entry in manifest["cells"].values():
            if entry.get("status") == "running":
                entry.update(status="interrupted", error="KeyboardInterrupt")
        _atomic_write_json(manifest_path, manifest)
        raise
    finally:
        bar.close()
    rows = [r for r in rows.values() if r]
    df = pd.DataFrame(rows)
    if verbose:
        counts = df["status"].value_counts().to_dict()
        print(f"sweep of {nb.name}: {len(df)} cells ({', '.join(f'{v} {k}' for k, v in counts.items())}); "
              f"notebooks in {folder}, results in {store}.", flush=True)
    return df


def run_notebooks(
    notebooks: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    params: Mapping[str, Any],
    *,
    timeout: int | None = None,
    kernel: str = "python3",
    executor: str | Executor = "serial",
    workers: int | None = None,
    address: str | None = None,
    gpus_per_run: float | None = None,
    execute: Callable[[Path, Path, dict, int | None, str], None] | None = None,
    verbose: bool = True,
) -> dict[str, dict]:
    """Execute each notebook once with ``params`` (``store`` among them), writing ``<out>/<name>``; in
    order, or in parallel with ``executor="ray"`` (the same executed notebooks and store as serially).

    Returns notebook name -> ``{"ok": bool, "seconds": float}`` (and ``"error"`` when it failed), in the
    order given. The study command (``tutorfinetune notebooks --executor ray``) runs on this."""
    os.environ.setdefault("TUTORFINETUNE_PROGRESS", "text")
    ex = make_executor(executor, workers=workers, address=address, gpus_per_run=gpus_per_run)
    out = Path(out)
    store = Path(params.get("store") or out / "runs")
    jobs = [NotebookJob(key=Path(nb).name, notebook=str(nb), output=str(out / Path(nb).name), parameters=dict(params),
                        timeout=timeout, kernel=kernel, execute=execute,
                        source=Path(nb).read_bytes() if ex.relay else b"",
                        progress=os.environ["TUTORFINETUNE_PROGRESS"]) for nb in notebooks]
    status: dict[str, dict] = {j.key: {} for j in jobs}
    if verbose and ex.name != "serial":
        print(f"running {len(jobs)} notebooks on {ex.describe()}", flush=True)

    def start(job: NotebookJob) -> None:
        if verbose:
            print(f"== {job.key} ({', '.join(f'{k}={v}' for k, v in params.items() if k != 'store')}) ...", flush=True)

    def done(job: NotebookJob, o: Outcome) -> None:
        if o.files or o.records:
            _deliver(o, Path(job.output), store)
        status[job.key] = {"ok": o.status == "finished", "seconds": o.seconds, **({"error": o.error} if o.error else {})}
        if verbose:
            print(f"   {job.key}: {'ok' if o.status == 'finished' else 'FAILED'} in {o.seconds}s -> {job.output}",
                  flush=True)

    ex.map(run_notebook_job, jobs, done, on_start=start)
    return status


def _read_manifest(path: Path, nb: Path) -> dict:
    if not path.is_file():
        return {"format": "tutorfinetune.notebook_sweep/1", "cells": {}}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("cells"), dict):
            raise ValueError("no cells")
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path} is not a sweep manifest ({e}); move it away to start this sweep afresh.") from None
    if data.get("notebook") and Path(data["notebook"]).name != nb.name:
        raise SweepError(f"{path} belongs to a sweep of {data['notebook']}, not {nb}; use another --out folder.")
    return data
