"""Executors: where the runs of a study run (DESIGN.md, "Scale"; issue 20).

A study is many independent runs. A *run* is the unit of work: one backbone load, one
:func:`~tutorfinetune.train` (or one two-phase recipe such as LT-SFT), and its record(s) in the store.
The *driver* (the process that calls :func:`~tutorfinetune.studies.sweep`,
:func:`~tutorfinetune.studies.leaderboard.run_leaderboard` or
:func:`~tutorfinetune.studies.notebook_sweep`) asks the store which runs are already finished (by
fingerprint), and hands only the missing ones to an executor:

* ``"serial"``: one run after another in this process (the behaviour before executors existed, and
  the default, also inside notebooks);
* ``"ray"``: Ray tasks. With no ``address``, a local Ray instance on this machine's cores (started on
  first use, kept for the next sweep of this process; ``ray.shutdown()`` frees it); ``gpus_per_run``
  (a fraction such as 0.25) shares each GPU among runs; ``address="auto"`` (or ``"host:6379"``,
  ``"ray://host:10001"``) joins a cluster started with ``ray start --head``.

Threads. Each run sets its torch threads (``threads`` per run) and asks Ray for that many CPUs, so
runs x threads = the cores given. The default on one machine is :data:`DEFAULT_THREADS_PER_RUN`
threads per run, i.e. ``cores / DEFAULT_THREADS_PER_RUN`` runs at once (see benchmarks/bench_ray.py,
which measures the splits side by side).

The store under concurrency (:mod:`tutorfinetune.results`):

* every record is written atomically (a temporary file, then ``os.replace``) by whoever finishes
  the run: a reader sees the old record or the new one, never half of one;
* one task per run: the driver de-duplicates its plan (two grid points with one fingerprint run
  once) and *claims* every run it schedules in ``<store>/.claims/<key>.json`` (created with
  ``O_EXCL``), so two drivers on one store never train the same run at the same time; a claim whose
  driver process is gone (same host) is stale and taken over; claims are released as runs end;
* a killed worker: Ray reports the run as crashed; it is retried ``retries`` times (default 0), then
  listed as failed in the summary; its ``running`` record reads ``interrupted`` once its process is
  gone, and is never taken for a finished run. A killed driver: Ray ends the driver's tasks with
  it, its claims go stale. Either way a rerun reuses every finished run and trains only what is
  missing (``results.finished_runs``), so nothing is duplicated or lost;
* who writes: ``store_mode="shared"`` (the default for a Ray instance this process started or
  joined without an address): the worker writes its records to the store path, which every worker
  must see (this machine, or a shared file system); ``store_mode="driver"`` (the default with an
  ``address``): the worker trains into a private temporary store and returns its records (and, for
  notebooks, the executed notebook), which the driver writes. The second needs no shared file system.

Failures: a run that raises is recorded as ``failed`` with its error (by ``train``'s recorder, or
here when it failed before ``train`` could record it), the other runs go on, and the sweep's summary
lists the failures. Determinism: a run is the same function call whichever executor runs it; on CPU
with the same threads per run it gives the same metrics (``tests/test_ray_executor.py`` checks it).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch

from .. import results
from ..backbones import backbone_for_task
from ..config import TrainConfig
from ..engine import train
from ..engine.record import RunRecorder, method_name, resolved_config
from ..methods import resolve
from ..progress import outer_bar, progress_bar, set_progress
from ..recipes.lt_sft import lt_sft

__all__ = ["Executor", "SerialExecutor", "RayExecutor", "ExecutorError", "RunSpec", "Outcome", "WorkerContext",
           "make_executor", "run_specs", "execute_run", "recipe_key", "summarize", "DEFAULT_THREADS_PER_RUN",
           "EXECUTORS", "INSTALL_HINT"]

#: torch threads per run when a Ray executor on one machine chooses for itself (runs at once = cores / this).
#: Measured on the project's 2-core machine (benchmarks/README.md, 2026-12-01): 2 runs x 1 thread 1.06x the
#: serial sweep, 1 run x 2 threads 1.01x, both within noise; 1 was the fastest split by the medians.
DEFAULT_THREADS_PER_RUN = 1
EXECUTORS = ("serial", "ray")
INSTALL_HINT = ("executor='ray' needs Ray, which is not installed: pip install 'tutorfinetune[scale]' "
                "(or pip install 'ray>=2.9'); executor='serial' needs nothing.")


class ExecutorError(RuntimeError):
    """An executor that cannot run as asked (Ray missing, bad worker counts); the message says what to do."""


# --------------------------------------------------------------------------------------------
# Units of work and their outcomes
# --------------------------------------------------------------------------------------------
@dataclass
class RunSpec:
    """One run: everything a worker needs to train it and record it.

    Args:
        backbone: backbone name (a fresh copy per run, its head seeded by ``config.seed``).
        task: the :class:`~tutorfinetune.data.Task` (pickled to the worker).
        config: the run's settings (its seed included).
        methods: what :func:`~tutorfinetune.train` accepts (resolved again in the worker: fresh plug-ins).
        study, tags: stored with the record.
        recipe: ``"train"`` (one :func:`train`) or ``"lt-sft"`` (:func:`~tutorfinetune.recipes.lt_sft.lt_sft`,
            ``options``: ``k``, ``selection``).
        key: the run's identity in the store: its fingerprint (``"train"``) or :func:`recipe_key`.
        label: what the progress bar shows while the run ends.
    """

    backbone: str
    task: Any
    config: TrainConfig
    methods: Any = ("full",)
    study: str = ""
    tags: dict = field(default_factory=dict)
    recipe: str = "train"
    options: dict = field(default_factory=dict)
    key: str = ""
    label: str = ""
    verbose: bool = False


@dataclass
class Outcome:
    """What one unit of work ended with (a run, or a notebook of a notebook sweep).

    ``status``: ``finished``, ``failed``, ``reused`` (already in the store), or ``busy`` (claimed by
    another driver). ``records``/``files``: in ``store_mode="driver"``, what the driver writes.
    """

    key: str
    status: str
    run_id: str = ""
    error: str = ""
    traceback: str = ""
    seconds: float = 0.0
    host: str = ""
    pid: int = 0
    records: list = field(default_factory=list)
    files: dict = field(default_factory=dict)


@dataclass(frozen=True)
class WorkerContext:
    """How a worker runs a unit: torch threads (None: leave them), whether it relays its records to the
    driver (``store_mode="driver"``), and whether it runs in a worker process (progress bars off)."""

    threads: int | None = None
    relay: bool = False
    remote: bool = False


def recipe_key(recipe: str, backbone: str, task_name: str, config: TrainConfig, options: Mapping[str, Any],
               study: str, tags: Mapping[str, Any]) -> str:
    """Identity of a recipe run (several ``train`` calls, whose fingerprints are known only as it runs)."""
    desc = {"recipe": recipe, "backbone": backbone, "task": task_name,
            "config": resolved_config(backbone, config).to_dict(),
            "options": dict(options), "study": study, "tags": dict(tags)}
    return "r" + hashlib.sha256(json.dumps(desc, sort_keys=True, default=str).encode()).hexdigest()[:15]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _error_line(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}".strip()
    return text.splitlines()[0][:500] if text else type(e).__name__


# --------------------------------------------------------------------------------------------
# The worker side: one run
# --------------------------------------------------------------------------------------------
def execute_run(item: tuple[RunSpec, str], ctx: WorkerContext) -> Outcome:
    """Train one run and record it (in the worker). Never raises for a failing run: returns its Outcome.

    ``item``: (spec, store path). With ``ctx.relay`` the run goes to a private temporary store whose
    records come back in ``Outcome.records`` for the driver to write.
    """
    spec, store = item
    if ctx.remote:
        set_progress("off")
    if ctx.threads:
        torch.set_num_threads(int(ctx.threads))
    target = tempfile.mkdtemp(prefix="tft-run-") if ctx.relay else str(store)
    t0, started = time.perf_counter(), _now()
    out = Outcome(key=spec.key, status="finished", host=socket.gethostname(), pid=os.getpid())
    try:
        bb = backbone_for_task(spec.backbone, spec.task, seed=spec.config.seed, readout=spec.config.readout)
        if spec.recipe == "train":
            res = train(bb, spec.task, spec.config, spec.methods, store=target, study=spec.study, tags=spec.tags,
                        verbose=spec.verbose)
            out.run_id = res.run_id
        elif spec.recipe == "lt-sft":
            sft = lt_sft(bb, spec.task, spec.config, k=spec.options.get("k", 0.01), store=target, study=spec.study,
                         tags=spec.tags, selection=spec.options.get("selection", "lottery"), verbose=spec.verbose)
            out.run_id = sft.result.run_id
        else:
            raise ExecutorError(f"Unknown recipe {spec.recipe!r}: use 'train' or 'lt-sft'.")
        del bb
    except Exception as e:  # one failing run is recorded and does not stop the others
        out.status, out.error, out.traceback = "failed", _error_line(e), traceback.format_exc()[-4000:]
        mine = _records_since(target, started)
        failed = [r for r in mine if r.get("status") in ("failed", "running")]
        if failed:
            out.run_id = failed[-1]["run_id"]
        else:  # it failed before train() recorded anything (backbone, data, settings): record it here
            out.run_id = _record_failure(spec, target, e)
    out.seconds = time.perf_counter() - t0
    if ctx.relay:
        out.records = results.load_records(target)
        shutil.rmtree(target, ignore_errors=True)
    return out


def _records_since(store: str | os.PathLike, started: str) -> list[dict]:
    """Records this process wrote to ``store`` since ``started`` (a worker runs one run at a time)."""
    me, host = os.getpid(), socket.gethostname()
    return [r for r in results.load_records(store)
            if r.get("pid") == me and r.get("host") == host and str(r.get("started_at", "")) >= started]


def _record_failure(spec: RunSpec, store: str | os.PathLike, error: BaseException) -> str:
    try:
        meths = resolve(spec.methods)
        label, described = method_name(meths), [m.describe() for m in meths]
    except Exception:  # the methods themselves were the problem
        label, described = str(spec.methods), []
    rec = RunRecorder(store, study=spec.study, method=label if spec.recipe == "train" else spec.recipe,
                      task=getattr(spec.task, "name", ""), backbone=spec.backbone, seed=spec.config.seed,
                      config=spec.config.to_dict(), methods=described, tags=spec.tags,
                      fingerprint=spec.key if spec.recipe == "train" else "")
    rec.fail(error)
    return rec.run_id


# --------------------------------------------------------------------------------------------
# Executors
# --------------------------------------------------------------------------------------------
class Executor:
    """Runs units of work and reports each one to the driver as it ends.

    :meth:`map` calls ``fn(item, ctx)`` (a module-level function: it is pickled by reference to Ray
    workers) for every item, ``on_start(item)`` as an item is handed out and ``on_done(item, outcome)``
    in the driver as it ends, in the order they end. ``fn`` returns an :class:`Outcome` and catches
    its own exceptions; a worker that dies comes back as a failed Outcome.
    """

    name = "executor"
    relay = False

    def map(self, fn: Callable[[Any, WorkerContext], Outcome], items: Sequence[Any],
            on_done: Callable[[Any, Outcome], None], on_start: Callable[[Any], None] | None = None) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        return self.name


class SerialExecutor(Executor):
    """One unit after another in this process (``threads``: torch threads meanwhile; None leaves them)."""

    name = "serial"

    def __init__(self, threads: int | None = None) -> None:
        if threads is not None and int(threads) < 1:
            raise ExecutorError(f"threads must be >= 1, got {threads}.")
        self.threads = int(threads) if threads else None

    def map(self, fn, items, on_done, on_start=None) -> None:
        before = torch.get_num_threads()
        ctx = WorkerContext(threads=self.threads)
        try:
            for item in items:
                if on_start is not None:
                    on_start(item)
                with outer_bar():
                    out = fn(item, ctx)
                on_done(item, out)
        finally:
            if self.threads:
                torch.set_num_threads(before)

    def describe(self) -> str:
        return f"serial ({self.threads or torch.get_num_threads()} threads)"


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ExecutorError(INSTALL_HINT) from None
    return ray


def local_cores() -> int:
    """CPU cores this process may use (its affinity mask, where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class RayExecutor(Executor):
    """Ray tasks: one run per task, ``workers`` at a time, ``threads`` torch threads (and Ray CPUs) each.

    Args:
        workers: runs at once (default: the cluster's CPUs / ``threads``; with ``gpus_per_run``, the
            GPUs / ``gpus_per_run``).
        address: None (use the Ray instance of this process, or start a local one on this machine's
            cores), ``"auto"`` (the cluster that ``ray start --head`` started here), or an address.
        gpus_per_run: GPUs each run asks for (0: CPU runs; 0.25: four runs share a GPU).
        threads: torch threads per run (default: cores / workers where ``workers`` is given, else
            :data:`DEFAULT_THREADS_PER_RUN`).
        store_mode: ``"shared"`` (workers write the store: one machine or a shared file system),
            ``"driver"`` (workers send their records; the driver writes them), or ``"auto"``
            (``driver`` with an ``address``, else ``shared``).
        retries: how often a run whose worker died (killed, out of memory) is tried again.
        init_kwargs: more ``ray.init`` arguments for a Ray instance started here.
    """

    name = "ray"

    def __init__(self, workers: int | None = None, address: str | None = None, gpus_per_run: float = 0.0,
                 threads: int | None = None, store_mode: str = "auto", retries: int = 0,
                 init_kwargs: Mapping[str, Any] | None = None) -> None:
        self.ray = _import_ray()
        if workers is not None and int(workers) < 1:
            raise ExecutorError(f"workers must be >= 1, got {workers}.")
        if threads is not None and int(threads) < 1:
            raise ExecutorError(f"threads must be >= 1, got {threads}.")
        if gpus_per_run is None or float(gpus_per_run) < 0:
            raise ExecutorError(f"gpus_per_run must be >= 0 (a fraction shares a GPU), got {gpus_per_run}.")
        if store_mode not in ("auto", "shared", "driver"):
            raise ExecutorError(f"store_mode must be 'auto', 'shared' or 'driver', got {store_mode!r}.")
        self.address, self.gpus_per_run, self.retries = address, float(gpus_per_run), int(retries)
        self.relay = store_mode == "driver" or (store_mode == "auto" and address is not None)
        self.started_here = False
        self.startup_seconds = 0.0
        self._connect(init_kwargs or {}, workers, threads)
        self.workers, self.threads = self._split(workers, threads)

    # -- cluster --------------------------------------------------------------------------------
    def _connect(self, init_kwargs: Mapping[str, Any], workers: int | None, threads: int | None) -> None:
        ray = self.ray
        if ray.is_initialized():
            return
        t0 = time.perf_counter()
        kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True, "ignore_reinit_error": True}
        if self.address is None:
            kw["num_cpus"] = local_cores()
        else:
            kw["address"] = self.address
        kw.update(init_kwargs)
        try:
            try:
                ray.init(**kw)
            except Exception as e:  # noqa: BLE001 - a local start that timed out on a busy machine: once more
                if self.address is not None or "timed out during startup" not in str(e):
                    raise
                ray.shutdown()
                ray.init(**kw)
        except ConnectionError as e:
            raise ExecutorError(f"Could not reach a Ray cluster at address={self.address!r} ({e}). Start one with "
                                "'ray start --head' (then address='auto' on that machine, or 'HEAD_IP:6379' "
                                "elsewhere), or leave address unset to run on this machine's cores.") from None
        except Exception as e:
            if "timed out during startup" not in str(e):
                raise
            raise ExecutorError("Ray could not start a local instance: its processes did not come up in time (Ray "
                                "gives its node agent 30 s, twice here, which a machine busy with other work may not "
                                "leave it). Retry when the machine is quieter, start one yourself with 'ray start "
                                "--head' and pass address='auto', or use executor='serial'.") from e
        self.started_here = True
        self.startup_seconds = time.perf_counter() - t0

    def _split(self, workers: int | None, threads: int | None) -> tuple[int, int]:
        res = self.ray.cluster_resources()
        cpus = max(1, int(res.get("CPU", 1)))
        gpus = float(res.get("GPU", 0))
        node_cpus = [int(n.get("Resources", {}).get("CPU", 0)) for n in self.ray.nodes() if n.get("Alive")]
        biggest = max(node_cpus or [cpus])
        if self.gpus_per_run > 0:
            if gpus <= 0:
                raise ExecutorError(f"gpus_per_run={self.gpus_per_run} but the Ray cluster has no GPU "
                                    f"(resources: {dict(res)}); use gpus_per_run=0 for CPU runs.")
            if workers is None:
                workers = max(1, int(gpus / self.gpus_per_run + 1e-9))
        if threads is None:
            threads = max(1, cpus // workers) if workers else DEFAULT_THREADS_PER_RUN
        threads = min(int(threads), biggest)
        if workers is None:
            workers = max(1, cpus // threads)
        return int(workers), int(threads)

    def describe(self) -> str:
        where = "local" if self.address is None else f"cluster {self.address}"
        gpu = f", {self.gpus_per_run:g} GPU per run" if self.gpus_per_run else ""
        store = "driver writes records" if self.relay else "workers write records"
        return f"ray ({where}: {self.workers} workers x {self.threads} threads{gpu}; {store})"

    # -- work -----------------------------------------------------------------------------------
    def map(self, fn, items, on_done, on_start=None) -> None:
        ray = self.ray
        items = list(items)
        if not items:
            return
        ctx = WorkerContext(threads=self.threads, relay=self.relay, remote=True)
        task = ray.remote(_call).options(num_cpus=self.threads, num_gpus=self.gpus_per_run or 0,
                                         max_retries=self.retries)
        pending: dict[Any, Any] = {}
        queue = list(enumerate(items))
        try:
            while queue or pending:
                while queue and len(pending) < self.workers:
                    i, item = queue.pop(0)
                    if on_start is not None:
                        on_start(item)
                    pending[task.remote(fn, item, ctx)] = (i, item)
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    i, item = pending.pop(ref)
                    try:
                        out = ray.get(ref)
                    except Exception as e:  # the worker died, or fn raised past its own guard
                        out = _crash_outcome(item, e)
                    on_done(item, out)
        finally:
            for ref in pending:  # interrupted (Ctrl-C): stop what is still running
                try:
                    ray.cancel(ref, force=True)
                except Exception:
                    pass


def _call(fn: Callable[[Any, WorkerContext], Outcome], item: Any, ctx: WorkerContext) -> Outcome:
    """What a Ray task runs: ``fn(item, ctx)``."""
    return fn(item, ctx)


def _crash_outcome(item: Any, e: BaseException) -> Outcome:
    key = getattr(item[0], "key", "") if isinstance(item, tuple) else getattr(item, "key", "")
    name = type(e).__name__
    if "WorkerCrashed" in name or "ActorDied" in name or "NodeDied" in name or "OutOfMemory" in name:
        error = f"{name}: the worker process died (killed, or out of memory) before the run ended"
    else:
        error = _error_line(e)
    return Outcome(key=key, status="failed", error=error, traceback=str(e)[-4000:])


def make_executor(executor: str | Executor | None = "serial", *, workers: int | None = None,
                  address: str | None = None, gpus_per_run: float | None = None, threads: int | None = None,
                  **kw: Any) -> Executor:
    """An :class:`Executor` from a name: ``"serial"`` or ``"ray"`` (or an Executor, returned as it is).

    ``workers``, ``address``, ``gpus_per_run`` and ``threads`` are :class:`RayExecutor`'s (``threads`` also
    :class:`SerialExecutor`'s); a Ray-only option with ``"serial"`` is refused rather than ignored.
    ``workers=0`` means the default (as ``None``), so a notebook parameter can leave it at 0 for both.
    """
    if isinstance(executor, Executor):
        return executor
    if workers == 0:  # 0 means "the default" (the notebooks' parameter), for either executor
        workers = None
    name = (executor or "serial").strip().lower()
    if name == "serial":
        ray_only = {"workers": workers not in (None, 1), "address": address is not None,
                    "gpus_per_run": bool(gpus_per_run), **{k: v is not None for k, v in kw.items()}}
        if any(ray_only.values()):
            raise ExecutorError(f"{sorted(k for k, v in ray_only.items() if v)} apply to executor='ray'; the serial "
                                "executor runs one run at a time in this process. Pass executor='ray' to use them.")
        return SerialExecutor(threads=threads)
    if name == "ray":
        return RayExecutor(workers=workers, address=address, gpus_per_run=gpus_per_run or 0.0, threads=threads, **kw)
    raise ExecutorError(f"Unknown executor {executor!r}: use one of {list(EXECUTORS)}.")


# --------------------------------------------------------------------------------------------
# Claims: one driver per run at a time
# --------------------------------------------------------------------------------------------
class Claims:
    """``<store>/.claims/<key>.json``: which driver (host, pid) schedules a run now."""

    def __init__(self, store: str | os.PathLike) -> None:
        self.dir = Path(store) / ".claims"
        self.held: set[str] = set()

    def path(self, key: str) -> Path:
        return self.dir / f"{key}.json"

    def take(self, key: str) -> bool:
        """Claim ``key``; False when a live driver holds it (a stale claim is taken over)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        me = {"host": socket.gethostname(), "pid": os.getpid(), "since": _now()}
        p = self.path(key)
        try:
            fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if not self._stale(p):
                return False
            results._atomic_write_json(p, me)  # take over a dead driver's claim
            self.held.add(key)
            return True
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(me, f)
        self.held.add(key)
        return True

    def holder(self, key: str) -> str:
        try:
            h = json.loads(self.path(key).read_text(encoding="utf-8"))
            return f"claimed by pid {h.get('pid')} on {h.get('host')} since {h.get('since')} ({self.path(key)})"
        except (OSError, ValueError):
            return f"claimed ({self.path(key)})"

    def _stale(self, p: Path) -> bool:
        try:
            h = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return True  # unreadable: a claim cut short
        if h.get("host") != socket.gethostname():
            return False  # another machine's driver: cannot tell, respect it (delete the file if it is gone)
        pid = h.get("pid")
        if pid == os.getpid():
            return False  # another sweep of this very process
        return not (isinstance(pid, int) and results._pid_alive(pid))

    def release(self, key: str) -> None:
        if key in self.held:
            self.path(key).unlink(missing_ok=True)
            self.held.discard(key)

    def release_all(self) -> None:
        for key in list(self.held):
            self.release(key)


# --------------------------------------------------------------------------------------------
# The driver: schedule what the store lacks
# --------------------------------------------------------------------------------------------
def run_specs(specs: Iterable[RunSpec], executor: Executor, *, store: str | os.PathLike,
              done: Mapping[str, str] | None = None, desc: str = "runs") -> dict[str, Outcome]:
    """Run every spec whose key is not in ``done`` (key -> finished run id), one task per key, with one
    progress bar over all of them; return key -> :class:`Outcome` (``reused`` for those in ``done``).

    Records are written by the workers (``shared``) or here as each run ends (``driver``); claims keep a
    second driver on the same store from training the same run meanwhile."""
    done = dict(done or {})
    outcomes: dict[str, Outcome] = {}
    todo: dict[str, RunSpec] = {}
    for s in specs:
        if not s.key:
            raise ExecutorError("A RunSpec needs a key (its fingerprint, or recipe_key(...)).")
        if s.key in outcomes or s.key in todo:
            continue  # the same run twice in one plan: once
        if s.key in done:
            outcomes[s.key] = Outcome(key=s.key, status="reused", run_id=done[s.key])
        else:
            todo[s.key] = s
    store = Path(store)
    claims = Claims(store)
    mine: list[RunSpec] = []
    for s in todo.values():
        if claims.take(s.key):
            mine.append(s)
        else:
            outcomes[s.key] = Outcome(key=s.key, status="busy", error=claims.holder(s.key))
    bar = progress_bar(total=len(outcomes) + len(mine), initial=len(outcomes), desc=desc)
    writer = results.RunStore(store)

    def finished(item: tuple[RunSpec, str], out: Outcome) -> None:
        spec = item[0]
        for rec in out.records:
            writer.write(rec)
        out.records = []
        claims.release(spec.key)
        outcomes[spec.key] = out
        bar.update(1)
        bar.set_postfix_str(f"{spec.label} {out.status}".strip())

    try:
        executor.map(execute_run, [(s, str(store)) for s in mine], finished)
    finally:
        claims.release_all()
        bar.close()
    return outcomes


def summarize(outcomes: Mapping[str, Outcome], labels: Mapping[str, str] | None = None, *,
              store: str | os.PathLike = "", n: int | None = None, where: str = "") -> str:
    """``"N runs (a trained now, b reused from STORE, c failed); WHERE."``, then one line per failed or
    busy run (its label and error)."""
    labels = labels or {}
    counts = {k: sum(o.status == k for o in outcomes.values()) for k in ("finished", "reused", "failed", "busy")}
    text = f"{len(outcomes) if n is None else n} runs ({counts['finished']} trained now, {counts['reused']} reused from {store}"
    text += "".join(f", {counts[k]} {k}" for k in ("failed", "busy") if counts[k]) + ")"
    text += f"; {where}." if where else "."
    lines = [text]
    for k, o in outcomes.items():
        if o.status in ("failed", "busy"):
            lines.append(f"  {o.status.upper()} {labels.get(k, k)}: {o.error}" + (f" [run {o.run_id}]" if o.run_id else ""))
    return "\n".join(lines)
