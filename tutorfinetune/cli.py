"""Command line: ``tutorfinetune study`` executes the study notebooks with papermill.

    python -m tutorfinetune study [--mode full|ci] [--out outputs] [--only 01] [--notebooks DIR]
    python -m tutorfinetune summary [--out outputs]

``study`` runs every ``notebooks/*.ipynb`` in reading order (discovered, not listed) on the embedded
default backbone and the bundled data, writes the executed notebooks to ``<out>/notebooks/``, the
results store to ``<out>/runs/``, and a summary (``<out>/summary.md``, built from each notebook's
measured summary) that it also prints. Finished runs already in ``<out>/runs`` are reused, so an
interrupted study continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

__all__ = ["main", "run_study", "discover_notebooks"]


def discover_notebooks(folder: Path, only: str | None = None) -> list[Path]:
    nbs = sorted(p for p in folder.glob("*.ipynb") if not p.name.startswith((".", "_")))
    if only:
        nbs = [p for p in nbs if only in p.name]
    return nbs


def _default_notebooks() -> Path:
    here = Path(__file__).resolve().parents[1] / "notebooks"
    return here if here.is_dir() else Path.cwd() / "notebooks"


def run_study(mode: str, out: Path, notebooks: Path, only: str | None = None, backbone: str | None = None,
              timeout: int | None = None) -> int:
    import papermill as pm

    from .notebook import summary_markdown

    nbs = discover_notebooks(notebooks, only)
    if not nbs:
        print(f"No notebooks found in {notebooks} (pattern {only!r}).", file=sys.stderr)
        return 2
    out = out.resolve()
    (out / "notebooks").mkdir(parents=True, exist_ok=True)
    store = out / "runs"
    os.environ.setdefault("TUTORFINETUNE_PROGRESS", "text")
    status = {}
    for nb in nbs:
        params = {"mode": mode, "store": str(store)}
        if backbone:
            params["backbone"] = backbone
        target = out / "notebooks" / nb.name
        t0 = time.perf_counter()
        print(f"== {nb.name} (mode={mode}) ...", flush=True)
        try:
            pm.execute_notebook(str(nb), str(target), parameters=params, kernel_name="python3",
                                cwd=str(nb.parent), progress_bar=False, log_output=False,
                                execution_timeout=timeout)
            status[nb.name] = {"ok": True, "seconds": round(time.perf_counter() - t0, 1)}
        except Exception as e:  # papermill raises PapermillExecutionError with the failing cell
            status[nb.name] = {"ok": False, "seconds": round(time.perf_counter() - t0, 1),
                               "error": str(e).splitlines()[-1] if str(e) else type(e).__name__}
        print(f"   {'ok' if status[nb.name]['ok'] else 'FAILED'} in {status[nb.name]['seconds']}s -> {target}",
              flush=True)
    md = summary_markdown(store)
    lines = ["", "## Notebook runs", ""] + [
        f"- {k}: {'ok' if v['ok'] else 'FAILED: ' + v.get('error', '')} ({v['seconds']} s)" for k, v in status.items()]
    text = md + "\n".join(lines) + "\n"
    (out / "summary.md").write_text(text, encoding="utf-8")
    (out / "summary.json").write_text(json.dumps({"mode": mode, "notebooks": status}, indent=2))
    print(text)
    return 0 if all(v["ok"] for v in status.values()) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tutorfinetune", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    st = sub.add_parser("study", help="execute the study notebooks with papermill")
    st.add_argument("--mode", choices=["ci", "full"], default="full")
    st.add_argument("--out", type=Path, default=Path("outputs"))
    st.add_argument("--only", default=None, help="run notebooks whose file name contains this text")
    st.add_argument("--notebooks", type=Path, default=None)
    st.add_argument("--backbone", default=None, help="override the notebooks' backbone parameter")
    st.add_argument("--timeout", type=int, default=None, help="seconds per cell")
    sm = sub.add_parser("summary", help="print the summary of a finished study")
    sm.add_argument("--out", type=Path, default=Path("outputs"))
    args = parser.parse_args(argv)
    if args.cmd == "study":
        return run_study(args.mode, args.out, args.notebooks or _default_notebooks(), args.only, args.backbone,
                         args.timeout)
    from .notebook import summary_markdown

    print(summary_markdown(args.out / "runs"))
    return 0
