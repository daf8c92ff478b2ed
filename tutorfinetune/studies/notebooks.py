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

From the command line: ``tutorfinetune sweep notebooks/04_graddrop.ipynb -g 'seeds=[[0],[1]]' -g p=0.1,0.3``.
"""

from __future__ import annotations

import ast
import hashlib
import itertools
import json
import os
import re
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import pandas as pd

from ..config import ConfigError
from ..progress import progress_bar
from ..results import _atomic_write_json

__all__ = ["notebook_sweep", "expand_grid", "cell_key", "parse_value", "parse_grid_option", "SweepError"]


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
) -> pd.DataFrame:
    """Execute ``notebook`` once per combination of ``grid`` (papermill parameters), in order.

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
    run = execute or _default_execute
    os.environ.setdefault("TUTORFINETUNE_PROGRESS", "text")
    rows = []
    bar = progress_bar(total=len(cells), desc=f"sweep {nb.stem}")
    try:
        for cell in cells:
            key = cell_key(cell, fixed_all)
            output = folder / f"{key}.ipynb"
            entry = manifest["cells"].get(key, {})
            if resume and entry.get("status") == "finished" and output.is_file():
                rows.append({"cell": key, **cell, "status": "skipped", "seconds": 0.0, "output": str(output),
                             "error": ""})
                bar.update(1)
                continue
            entry = {"params": cell, "status": "running", "output": str(output),
                     "started_at": datetime.now(timezone.utc).isoformat(), "attempts": entry.get("attempts", 0) + 1}
            manifest["cells"][key] = entry
            _atomic_write_json(manifest_path, manifest)
            t0 = time.perf_counter()
            try:
                run(nb, output, {**fixed_all, **cell}, timeout, kernel)
                entry.update(status="finished", error="")
            except KeyboardInterrupt:
                entry.update(status="interrupted", error="KeyboardInterrupt", seconds=round(time.perf_counter() - t0, 1))
                _atomic_write_json(manifest_path, manifest)
                raise
            except Exception as e:  # one failing cell is recorded and does not stop the sweep
                entry.update(status="failed", error=_error_line(e))
                if verbose:
                    print(f"  cell {key} FAILED: {entry['error']}", flush=True)
            entry["seconds"] = round(time.perf_counter() - t0, 1)
            entry["finished_at"] = datetime.now(timezone.utc).isoformat()
            _atomic_write_json(manifest_path, manifest)
            rows.append({"cell": key, **cell, "status": entry["status"], "seconds": entry["seconds"],
                         "output": str(output), "error": entry["error"]})
            bar.update(1)
            bar.set_postfix_str(", ".join(f"{k}={_short(v)}" for k, v in cell.items()))
    finally:
        bar.close()
    df = pd.DataFrame(rows)
    if verbose:
        counts = df["status"].value_counts().to_dict()
        print(f"sweep of {nb.name}: {len(df)} cells ({', '.join(f'{v} {k}' for k, v in counts.items())}); "
              f"notebooks in {folder}, results in {store}.", flush=True)
    return df


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
