"""Reference results: the full-mode study's summaries, shipped with the package, shown beside a learner's run.

Every notebook ends with :func:`tutorfinetune.notebook.save_summary`: a sentence built from its numbers and a
table. The summaries of the full-mode study (the one the README quotes) are kept small in
``tutorfinetune/reference_results/<study>.json`` (copied there by ``tutorfinetune reference --store DIR``),
so a ci-mode or Colab run can show "your run vs the reference" without rerunning hours of training, and the
course book can show them on pages built from quick runs.

The files are the summaries as written (same JSON), plus ``"machine"`` and ``"wall_s"`` when known.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from .config import ConfigError

__all__ = ["REFERENCE_DIR", "reference_summary", "reference_table", "reference_figures", "differences",
           "export_references"]

#: where the reference summaries live (package data: installed with the wheel, so Colab has them)
REFERENCE_DIR = Path(__file__).resolve().parent / "reference_results"


def reference_summary(study: str, folder: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """The full-mode reference summary of ``study`` (a notebook's stem, e.g. ``"02b_lora"``), or None when
    the package ships none (a notebook not rerun yet under the current protocol) or the file is unreadable."""
    path = Path(folder or REFERENCE_DIR) / f"{study}.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("study") == study else None


def reference_table(summary: dict[str, Any] | None) -> pd.DataFrame | None:
    """A summary's table as a DataFrame (None when it has none)."""
    t = (summary or {}).get("table")
    if not t:
        return None
    return pd.DataFrame(t["data"], index=t.get("index"), columns=t["columns"])


def reference_figures(summary: dict[str, Any] | None, folder: str | os.PathLike | None = None) -> list[Path]:
    """The key figures (PNG files) of a reference summary that exist in the reference folder."""
    base = Path(folder or REFERENCE_DIR)
    return [base / f for f in (summary or {}).get("figures") or [] if (base / f).is_file()]


def differences(mine: dict[str, Any], ref: dict[str, Any]) -> str:
    """One sentence on why this run's numbers may differ from the reference: mode (steps, seeds, evaluation
    sets), seeds, machine. Built from what both summaries record."""
    parts = []
    if mine.get("mode") != ref.get("mode"):
        parts.append(f"this run is in {mine.get('mode') or 'an unknown'} mode and the reference in "
                     f"{ref.get('mode') or 'an unknown'} mode"
                     + (" (ci mode trains a few steps on few examples with one or two seeds: its numbers show "
                        "that the pipeline works, not which method wins)" if mine.get("mode") == "ci" else ""))
    s_mine, s_ref = mine.get("seeds"), ref.get("seeds")
    if s_mine is not None and s_ref is not None and list(s_mine) != list(s_ref):
        parts.append(f"seeds {list(s_mine)} here vs {list(s_ref)} in the reference")
    m_mine, m_ref = mine.get("machine"), ref.get("machine")
    if m_mine and m_ref and m_mine != m_ref:
        parts.append(f"this machine ({m_mine}) is not the reference's ({m_ref}): timings differ, and GPU runs "
                     "(bf16) differ from CPU runs in the last digits")
    if not parts:
        return "Same mode, seeds and machine as the reference: the numbers should agree up to run-to-run noise."
    return "Why the numbers differ: " + "; ".join(parts) + "."


def export_references(store: str | os.PathLike, folder: str | os.PathLike | None = None, *,
                      studies: list[str] | None = None) -> list[Path]:
    """Copy the full-mode summaries of ``store`` (``<store>/summaries/*.json``) into the reference folder.
    Summaries of other modes are skipped (a ci run never becomes the reference). Returns the files written."""
    src = Path(store) / "summaries"
    if not src.is_dir():
        raise ConfigError(f"No summaries in {src}: run the notebooks in full mode with store={store!s} first.")
    dest = Path(folder or REFERENCE_DIR)
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for f in sorted(src.glob("*.json")):
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if data.get("mode") != "full" or (studies and data.get("study") not in studies):
            continue
        for fig in data.get("figures") or []:  # key figures: <study>/<name>.png beside the summary
            if (src / fig).is_file():
                (dest / fig).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src / fig, dest / fig)
        tmp = dest / f".{f.name}.tmp"
        shutil.copyfile(f, tmp)
        os.replace(tmp, dest / f.name)
        written.append(dest / f.name)
    return written
