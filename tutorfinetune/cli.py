"""Command line: ``tutorfinetune <command>`` (also ``python -m tutorfinetune``).

    tutorfinetune notebooks [--mode ci|full] [--out outputs] [--only 01]     run every notebook (alias: study)
    tutorfinetune sweep NOTEBOOK -g NAME=v1,v2 [-g ...] [-p NAME=VALUE]       one notebook over a grid
    tutorfinetune train --method full [--method graddrop:p=0.3] [--seeds 0,1,2] ...  train from the shell
    tutorfinetune results [--store outputs/runs] [--by method,eval_set] [--csv out.csv]  aggregated table
    tutorfinetune summary [--out outputs]                                    the notebooks' measured summaries

``notebooks``, ``sweep`` and ``train`` take ``--executor ray [--workers N] [--address ADDR] [--gpus-per-run F]``:
their runs (notebooks, grid cells, training runs) then run in parallel on Ray, on this machine's cores,
its GPUs, or a cluster (:mod:`tutorfinetune.studies.executors`; ``pip install 'tutorfinetune[scale]'``).

``notebooks`` runs every ``notebooks/*.ipynb`` in reading order (discovered, not listed) on the
embedded default backbone and the bundled data, writes the executed notebooks to
``<out>/notebooks/``, the results store to ``<out>/runs/``, and a summary (``<out>/summary.md``, built
from each notebook's measured summary) that it also prints. Finished runs already in ``<out>/runs``
are reused, so an interrupted study continues where it stopped. ``sweep`` is resumable the same way
(see :mod:`tutorfinetune.studies.notebooks`). Every command prints its own ``--help``.

A user error (an unknown method or task, a bad value, a corrupted manifest, a missing folder) prints
``error: <what to fix>`` alone and exits with code 2; ``--debug`` shows the Python traceback
instead. Errors that are not the user's (bugs) keep their traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

from . import analysis, results
from .config import TrainConfig, as_list
from .data import load_task
from .notebook import _has_tabulate, load_summaries, summary_markdown
from .reference import export_references
from .studies.notebooks import (
    SweepError,
    notebook_sweep,
    parse_grid_option,
    parse_value,
    run_notebooks,
)
from .studies.protocol import Protocol
from .studies.runs import sweep

__all__ = ["main", "build_parser", "run_study", "discover_notebooks", "CliError"]


class CliError(ValueError):
    """A command-line option that cannot work; the message says what to type instead."""


def _is_user_error(e: BaseException) -> bool:
    """Errors the package raises for bad input (TaskError, ConfigError, MethodError, ...: every
    exception class defined in tutorfinetune), and missing or unreadable paths."""
    if isinstance(e, (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)):
        return True
    return any(c.__module__.split(".")[0] == "tutorfinetune" for c in type(e).__mro__)


def discover_notebooks(folder: Path, only: str | None = None) -> list[Path]:
    nbs = sorted(p for p in folder.glob("*.ipynb") if not p.name.startswith((".", "_")))
    if only:
        nbs = [p for p in nbs if only in p.name]
    return nbs


def _default_notebooks() -> Path:
    here = Path(__file__).resolve().parents[1] / "notebooks"
    return here if here.is_dir() else Path.cwd() / "notebooks"


def run_study(mode: str, out: Path, notebooks: Path, only: str | None = None, backbone: str | None = None,
              timeout: int | None = None, executor: str = "serial", **scale) -> int:
    import papermill as pm

    nbs = discover_notebooks(notebooks, only)
    if not nbs:
        print(f"No notebooks found in {notebooks} (pattern {only!r}).", file=sys.stderr)
        return 2
    out = out.resolve()
    (out / "notebooks").mkdir(parents=True, exist_ok=True)
    store = out / "runs"
    os.environ.setdefault("TUTORFINETUNE_PROGRESS", "text")
    status = {}
    if executor != "serial":  # the notebooks in parallel (scale: workers, address, gpus_per_run)
        params = {"mode": mode, "store": str(store), **({"backbone": backbone} if backbone else {})}
        status = run_notebooks(nbs, out / "notebooks", params, timeout=timeout, executor=executor, **scale)
        nbs = []
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


def _parse_method(text: str):
    """``graddrop:p=0.3,variant=element`` -> ("graddrop", {"p": 0.3, "variant": "element"}); ``full`` -> "full"."""
    name, _, rest = text.partition(":")
    if not rest:
        return name.strip()
    cfg = {}
    for part in rest.split(","):
        k, sep, v = part.partition("=")
        if not sep:
            raise CliError(f"Cannot read method option {part!r} in {text!r}: write id:key=value,key=value.")
        cfg[k.strip()] = parse_value(v)
    return (name.strip(), cfg)


def _cmd_train(args) -> int:
    if args.steps is not None and args.steps < 1:
        raise CliError(f"--steps must be at least 1 (got {args.steps}): it is the number of optimiser steps. "
                       "Leave it out to train for --epochs.")
    if args.epochs is not None and not args.epochs > 0:
        raise CliError(f"--epochs must be > 0 (got {args.epochs}); fractions such as 0.5 work.")
    seeds = as_list(args.seeds, int, "--seeds")
    if not seeds:
        raise CliError(f"--seeds {args.seeds!r} holds no seed: give at least one, e.g. --seeds 0 or --seeds 0,1,2.")
    methods = [_parse_method(m) for m in (args.method or ["full"])]
    fields = {"lr": args.lr, "batch_size": args.batch_size, "max_length": args.max_length,
              "max_train_examples": args.max_train_examples, "max_eval_examples": args.max_eval_examples}
    if args.steps is not None:
        fields["max_steps"] = args.steps
    if args.epochs is not None:
        fields["num_epochs"] = args.epochs
    if args.eval_sets:
        fields["eval_sets"] = args.eval_sets
    if args.evaluations < 1:
        raise CliError(f"--evaluations must be at least 1 (got {args.evaluations}).")
    if args.early_stopping and not args.select_best:
        raise CliError("--early-stopping stops on the dev score: it needs --select-best (the default).")
    cfg = TrainConfig(**{k: v for k, v in fields.items() if v is not None}, readout=args.readout)
    task = load_task(args.task)
    select = args.select_best
    if select and cfg.curve_eval_set not in task.eval_set_names("dev"):
        print(f"note: task {task.name!r} has no {cfg.curve_eval_set!r} split, so the test sets are scored at the "
              "final step (give the task a dev split, or load it with an eval fraction, to select on dev).",
              file=sys.stderr)
        select = False
    if select:  # the protocol's model selection: dev evaluated about `evaluations` times, test at the best one
        n_train = len(task.subsample_train(cfg.max_train_examples, seed=cfg.seed).train)
        cfg = Protocol(readout=args.readout, select_best=True, evaluations=args.evaluations,
                       early_stopping=args.early_stopping).configure(cfg, n_train)
    df = sweep(args.backbone, task, cfg, seeds=seeds, methods=methods, store=args.store, study=args.study,
               verbose=args.verbose, **_scale(args))
    print(analysis.ci_table(df).to_string())
    if args.csv:
        analysis.aggregate(df).to_csv(args.csv, index=False)
        print(f"wrote {args.csv}")
    return 0 if len(results.load(args.store)) else 1


def _cmd_results(args) -> int:
    df = results.load(args.store)
    if args.study:
        df = df[df["study"].isin(args.study.split(","))]
    if df.empty:
        print(f"No finished runs in {args.store}" + (f" for study {args.study!r}" if args.study else "") + ".",
              file=sys.stderr)
        return 1
    by = [c.strip() for c in args.by.split(",") if c.strip()]
    missing = [c for c in by if c not in df.columns]
    if missing:
        raise CliError(f"Unknown column(s) {missing} for --by; columns: {sorted(map(str, df.columns))}")
    metrics = sorted(str(m) for m in df["metric"].dropna().unique())
    if args.metric not in metrics:
        raise CliError(f"Unknown metric {args.metric!r} for --metric; the runs in {args.store} have {metrics}.")
    agg = analysis.aggregate(df, by=by, metric=args.metric)
    if args.csv:
        agg.to_csv(args.csv, index=False)
        print(f"wrote {len(agg)} rows to {args.csv}")
    if args.format == "csv":
        print(agg.to_csv(index=False), end="")
        return 0
    if len(by) >= 2:
        table = analysis.ci_table(df, rows=by[0], cols=by[1], metric=args.metric)
    else:  # by, and any key aggregate added so that no group mixes configurations (lr, config_id, ...)
        keys = [c for c in agg.columns if c not in ("n", "mean", "std", "ci95", "lo", "hi")]
        table = agg.assign(cell=[analysis.format_ci(m, c) + f" (n={n})" for m, c, n in
                                 zip(agg["mean"], agg["ci95"], agg["n"])]).set_index(keys)[["cell"]]
    if args.format == "markdown" and not _has_tabulate():
        print("(pip install tabulate for --format markdown; plain table below)", file=sys.stderr)
    print(table.to_markdown() if args.format == "markdown" and _has_tabulate() else table.to_string())
    return 0


def _cmd_sweep(args) -> int:
    grid = dict(parse_grid_option(g) for g in args.grid)
    if args.grid_file:
        grid.update(_read_grid_file(Path(args.grid_file)))
    params = {}
    for p in args.param or []:
        k, sep, v = p.partition("=")
        if not sep:
            raise SweepError(f"Cannot read parameter {p!r}: write NAME=VALUE.")
        params[k.strip()] = parse_value(v)
    df = notebook_sweep(args.notebook, grid, out=args.out, params=params, store=args.store, mode=args.mode,
                        resume=not args.no_resume, timeout=args.timeout, **_scale(args))
    print(df.drop(columns=["output"]).to_string(index=False))
    return 0 if (df["status"] != "failed").all() else 1


def _read_grid_file(path: Path) -> dict:
    """A grid from a YAML or JSON file mapping names to lists of values; CliError says what is wrong."""
    if not path.is_file():
        raise CliError(f"No grid file {path}" + (" (it is a folder)." if path.is_dir() else "."))
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CliError(f"Grid file {path} is not UTF-8 text.") from None
    example = "one NAME: [v1, v2] line per parameter (YAML), or a JSON object {\"NAME\": [v1, v2]}"
    if path.suffix.lower() == ".json":
        try:
            grid = json.loads(text) if text.strip() else None
        except json.JSONDecodeError as e:
            raise CliError(f"Cannot read grid file {path}: {e.msg} at line {e.lineno}, column {e.colno}. "
                           f"Write {example}.") from None
    else:
        try:
            import yaml
        except ImportError:
            raise CliError(f"Reading {path} needs PyYAML (pip install pyyaml); or write the grid as a .json "
                           "file.") from None
        try:
            grid = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(e, "problem", None) or type(e).__name__
            raise CliError(f"Cannot read grid file {path}: {problem}{where}. Write {example}.") from None
    if not isinstance(grid, dict) or not grid:
        got = "nothing" if grid is None else f"a {type(grid).__name__}"
        raise CliError(f"Grid file {path} holds {got}, not a mapping of names to lists of values. Write {example}.")
    return grid


def _cmd_summary(args) -> int:
    store = args.out / "runs"
    if not args.out.is_dir():
        raise CliError(f"No study output at {args.out}: the folder does not exist. Pass the --out folder that "
                       "'tutorfinetune notebooks' wrote to (default: outputs).")
    if not load_summaries(store):
        print(f"No notebook summaries in {store / 'summaries'}: run 'tutorfinetune notebooks --out {args.out}' "
              "first (each notebook writes its summary at the end).", file=sys.stderr)
        return 1
    print(summary_markdown(store))
    return 0


def _cmd_reference(args) -> int:
    only = [x.strip() for x in args.only.split(",") if x.strip()] if args.only else None
    written = export_references(args.store, args.to, studies=only)
    if not written:
        print(f"No full-mode summaries in {args.store / 'summaries'}: a ci-mode summary never becomes the reference. "
              "Run the notebooks with -p mode full first.", file=sys.stderr)
        return 1
    for w in written:
        print(f"reference: {w}")
    return 0


def _add_scale_options(p: argparse.ArgumentParser, what: str) -> None:
    g = p.add_argument_group("parallel runs (Ray; pip install 'tutorfinetune[scale]')")
    g.add_argument("--executor", choices=["serial", "ray"], default="serial",
                   help=f"serial: {what} one after another here (default); ray: in parallel on Ray")
    g.add_argument("--workers", type=int, default=None,
                   help=f"{what} at once (default: cores / threads per run, or GPUs / --gpus-per-run)")
    g.add_argument("--address", default=None,
                   help="a Ray cluster: 'auto' (started here with 'ray start --head') or HEAD_IP:6379 "
                        "(default: a local Ray instance on this machine's cores)")
    g.add_argument("--gpus-per-run", type=float, default=None,
                   help="GPUs per run; a fraction shares a GPU (0.25: four at once on each GPU)")


def _scale(args) -> dict:
    """The executor options of a command, for studies.sweep / notebook_sweep / run_notebooks."""
    ray_only = {"--workers": args.workers, "--address": args.address, "--gpus-per-run": args.gpus_per_run}
    if args.executor == "serial" and any(v is not None for v in ray_only.values()):
        used = [k for k, v in ray_only.items() if v is not None]
        raise CliError(f"{', '.join(used)} apply to --executor ray; add --executor ray (serial runs one at a time).")
    return {"executor": args.executor, "workers": args.workers, "address": args.address,
            "gpus_per_run": args.gpus_per_run}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tutorfinetune", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="command")
    for name, hlp in (("notebooks", "execute every notebook with papermill (the whole study)"),
                      ("study", "the same as 'notebooks'")):
        st = sub.add_parser(name, help=hlp, description=hlp)
        st.add_argument("--mode", choices=["ci", "full"], default="full",
                        help="ci: minutes on 2 CPU cores; full: results worth teaching from (default)")
        st.add_argument("--out", type=Path, default=Path("outputs"), help="executed notebooks, runs/, summary.md")
        st.add_argument("--only", default=None, help="run notebooks whose file name contains this text")
        st.add_argument("--notebooks", type=Path, default=None, help="folder of notebooks (default: the repo's)")
        st.add_argument("--backbone", default=None, help="override the notebooks' backbone parameter")
        st.add_argument("--timeout", type=int, default=None, help="seconds per cell")
        _add_scale_options(st, "notebooks")
    sw = sub.add_parser("sweep", help="run one notebook over a grid of papermill parameters (resumable)",
                        description="Run NOTEBOOK once per combination of the grid, in order; finished cells are "
                                    "skipped on a rerun, a failing cell is recorded and the sweep goes on.")
    sw.add_argument("notebook", type=Path)
    sw.add_argument("-g", "--grid", action="append", default=[], metavar="NAME=VALUES",
                    help="a grid axis: NAME=v1,v2 or NAME=[v1, v2] (e.g. -g 'seeds=[[0],[1]]' -g p_upper=0.05,0.1)")
    sw.add_argument("--grid-file", default=None, help="a YAML/JSON file mapping names to lists of values")
    sw.add_argument("-p", "--param", action="append", metavar="NAME=VALUE", help="a fixed parameter for every cell")
    sw.add_argument("--mode", choices=["ci", "full"], default="ci")
    sw.add_argument("--out", type=Path, default=Path("outputs/sweeps"), help="executed notebooks and manifest.json")
    sw.add_argument("--store", type=Path, default=None, help="results store (default <out>/runs)")
    sw.add_argument("--no-resume", action="store_true", help="run every cell again, finished or not")
    sw.add_argument("--timeout", type=int, default=None, help="seconds per notebook cell")
    _add_scale_options(sw, "grid cells")
    tr = sub.add_parser("train", help="train one method (or a combination) over seeds and print the results",
                        description="Fine-tune from the shell; runs land in --store and finished ones are reused.")
    tr.add_argument("--method", action="append", metavar="ID[:key=value,...]",
                    help="a plug-in, repeatable (default full), e.g. --method adapter --method gu:k=10")
    tr.add_argument("--backbone", default="minilm", help="minilm (offline default), tiny, a hub id or a folder")
    tr.add_argument("--task", default="reviews", help="a bundled task, a CSV/TSV/JSONL file or a folder")
    tr.add_argument("--seeds", default="0", help="e.g. 0,1,2")
    tr.add_argument("--lr", type=float, default=1e-4)
    tr.add_argument("--steps", type=int, default=None, help="optimiser steps (overrides --epochs)")
    tr.add_argument("--epochs", type=float, default=None)
    tr.add_argument("--batch-size", type=int, default=16)
    tr.add_argument("--max-length", type=int, default=128)
    tr.add_argument("--max-train-examples", type=int, default=None)
    tr.add_argument("--max-eval-examples", type=int, default=None)
    tr.add_argument("--eval-sets", nargs="*", default=None, help="eval sets to report (default: all of the task's)")
    tr.add_argument("--readout", choices=["auto", "pooler", "cls", "mean"], default="auto",
                    help="how the head reads the encoder (default auto: the checkpoint's own pooling, mean for MiniLM)")
    tr.add_argument("--select-best", action=argparse.BooleanOptionalAction, default=True,
                    help="report the test sets at the best dev step (default; the final step's metrics stay in the "
                         "record); --no-select-best reports the final step. Needs a dev split.")
    tr.add_argument("--evaluations", type=int, default=10, help="dev evaluations per run with --select-best")
    tr.add_argument("--early-stopping", type=int, default=0, metavar="N",
                    help="with --select-best, stop after N dev evaluations without improvement (0: never)")
    tr.add_argument("--store", type=Path, default=Path("runs"))
    tr.add_argument("--study", default="cli")
    tr.add_argument("--csv", default=None, help="also write the aggregated table to this CSV file")
    tr.add_argument("--verbose", action="store_true")
    _add_scale_options(tr, "runs")
    rs = sub.add_parser("results", help="print or export aggregated results (mean ± 95%% CI over seeds)",
                        description="Aggregate a results store over seeds: mean, std and 95%% CI per group.")
    rs.add_argument("--store", type=Path, default=Path("outputs/runs"))
    rs.add_argument("--study", default=None, help="keep these studies (comma-separated)")
    rs.add_argument("--by", default="method,eval_set", help="grouping columns (comma-separated)")
    rs.add_argument("--metric", default="accuracy")
    rs.add_argument("--format", choices=["table", "markdown", "csv"], default="table")
    rs.add_argument("--csv", default=None, help="also write the aggregated rows to this CSV file")
    sm = sub.add_parser("summary", help="print the summary of a finished study")
    sm.add_argument("--out", type=Path, default=Path("outputs"))
    rf = sub.add_parser("reference", help="keep a full-mode study's notebook summaries as the package's reference "
                                          "results (shown beside ci-mode and Colab runs, and in the course book)")
    rf.add_argument("--store", type=Path, default=Path("outputs/runs"), help="the full-mode study's store")
    rf.add_argument("--only", default=None, help="these notebooks only (comma-separated stems)")
    rf.add_argument("--to", type=Path, default=None, help="folder to write (default: the package's reference_results)")
    for p in sub.choices.values():  # --debug after the command works too
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the Python traceback of an error")
    return parser


def _run(args) -> int:
    if args.cmd in ("study", "notebooks"):
        return run_study(args.mode, args.out, args.notebooks or _default_notebooks(), args.only, args.backbone,
                         args.timeout, **_scale(args))
    if args.cmd == "sweep":
        return _cmd_sweep(args)
    if args.cmd == "train":
        return _cmd_train(args)
    if args.cmd == "results":
        return _cmd_results(args)
    if args.cmd == "reference":
        return _cmd_reference(args)
    return _cmd_summary(args)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=file or sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit code (2 for a user error, printed as ``error: ...`` alone)."""
    args = build_parser().parse_args(argv)
    debug = getattr(args, "debug", False)
    with warnings.catch_warnings():
        if not debug:
            warnings.showwarning = _show_warning
        try:
            return _run(args)
        except Exception as e:
            if debug or not _is_user_error(e):
                raise
            print(f"error: {e}", file=sys.stderr)
            return 2
