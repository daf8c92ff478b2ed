"""Runs per hour of one sweep, serial in one process vs on Ray, side by side in one run (issue 20).

    python benchmarks/bench_ray.py [--runs 8] [--steps 20] [--splits 2x1,1x2] [--repeats 1] [--json out.json]
    python benchmarks/bench_ray.py --smoke            # the tiny backbone, 2 runs of 2 steps: does it work?
    python benchmarks/bench_ray.py --gpu-shares 1,2,4,8   # on a GPU node: k runs sharing each GPU

The sweep: ``--runs`` full fine-tuning runs of the same backbone (MiniLM) on the bundled reviews, one
per seed, ci-sized (``--steps`` optimiser steps, batch 16, max_length 64, every eval set capped at
``--max-eval`` examples), each contender into its own fresh store, so every contender trains every run.

Contenders, interleaved over repeats (the order rotates each repeat, so slow drifts of a shared
machine hit all alike); wall seconds of the whole ``tft.studies.sweep`` call:

* ``serial 1x<cores>``: today's sweep, one run after another in this process with all cores' torch threads;
* ``ray WxT``: the same sweep on Ray, W runs at once with T torch threads each (``--splits``);
* ``ray gpu 1/k`` (``--gpu-shares``): k runs sharing each GPU (``gpus_per_run=1/k``), vs ``serial gpu``.

Ray's own overhead is measured apart: start-up (``ray.init``), worker warm-up (the first task on each
worker process imports torch and the package), and scheduling (the round trip of an empty task); its
share is reported for this sweep and estimated for a full-mode study (``--full-runs`` runs taking
``--full-minutes`` serially, notebook 08's 114 runs in 52 minutes by default).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import date

os.environ.setdefault("TUTORFINETUNE_PROGRESS", "off")


def _warm(_: int) -> int:
    """A first task on a worker process: import what a run imports (pickled by value from __main__)."""
    import tutorfinetune  # noqa: F401

    return os.getpid()


def _noop(_: int) -> int:
    return 0


def ray_overhead(ray, workers: int, n_noop: int = 50) -> dict:
    warm = ray.remote(_warm).options(num_cpus=1)
    t0 = time.perf_counter()
    pids = set(ray.get([warm.remote(i) for i in range(workers)]))
    warmup = time.perf_counter() - t0
    noop = ray.remote(_noop).options(num_cpus=1)
    ray.get(noop.remote(0))
    t0 = time.perf_counter()
    for i in range(n_noop):
        ray.get(noop.remote(i))
    per_task = (time.perf_counter() - t0) / n_noop
    return {"warmup_seconds": warmup, "warm_workers": len(pids), "per_task_seconds": per_task}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="minilm")
    p.add_argument("--runs", type=int, default=8)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--max-eval", type=int, default=64, help="examples per eval set")
    p.add_argument("--splits", default="2x1,1x2", help="Ray contenders, WORKERSxTHREADS, comma-separated")
    p.add_argument("--gpu-shares", default="", help="on a GPU node: runs sharing one GPU, e.g. 1,2,4,8")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--full-runs", type=int, default=114)
    p.add_argument("--full-minutes", type=float, default=52.0)
    p.add_argument("--smoke", action="store_true", help="tiny backbone, 2 runs of 2 steps (a test, not a measurement)")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    if args.smoke:
        args.backbone, args.runs, args.steps, args.batch_size, args.max_length, args.max_eval = "tiny", 2, 2, 8, 32, 8

    import ray
    import torch

    import tutorfinetune as tft
    from tutorfinetune.studies.executors import RayExecutor, SerialExecutor, local_cores

    cores = local_cores()
    task = tft.load_task("reviews")
    cfg = tft.TrainConfig(lr=1e-4, max_steps=args.steps, batch_size=args.batch_size, max_length=args.max_length,
                          max_eval_examples=args.max_eval, warmup=0.0)
    seeds = list(range(args.runs))
    print(f"{args.runs} runs of {args.backbone}, {args.steps} steps, batch {args.batch_size}, max_length "
          f"{args.max_length}, eval sets capped at {args.max_eval}; {cores} cores, torch {torch.__version__}, "
          f"ray {ray.__version__}", flush=True)

    t0 = time.perf_counter()
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
    startup = time.perf_counter() - t0
    overhead = {"startup_seconds": startup, **ray_overhead(ray, cores)}

    contenders = {f"serial 1x{cores}": lambda: SerialExecutor(threads=cores)}
    for split in [s for s in args.splits.split(",") if s.strip()]:
        w, t = (int(v) for v in split.lower().split("x"))
        contenders[f"ray {w}x{t}"] = lambda w=w, t=t: RayExecutor(workers=w, threads=t)
    shares = [int(k) for k in args.gpu_shares.split(",") if k.strip()]
    gpus = int(ray.cluster_resources().get("GPU", 0))
    if shares and not gpus:
        print("--gpu-shares: no GPU in this Ray instance; GPU contenders skipped", flush=True)
    elif shares:
        contenders["serial gpu"] = lambda: SerialExecutor()
        for k in shares:
            contenders[f"ray gpu 1/{k}"] = lambda k=k: RayExecutor(workers=k * gpus, gpus_per_run=1.0 / k,
                                                                   threads=max(1, cores // (k * gpus)))

    names = list(contenders)
    seconds: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            executor = contenders[name]()
            with tempfile.TemporaryDirectory(prefix="bench-ray-") as store:
                t0 = time.perf_counter()
                df = tft.studies.sweep(args.backbone, task, cfg, seeds=seeds, store=store, study="bench",
                                       executor=executor)
                wall = time.perf_counter() - t0
            if df.run_id.nunique() != args.runs:
                raise SystemExit(f"{name}: {df.run_id.nunique()} of {args.runs} runs finished: {df.attrs.get('failed')}")
            seconds[name].append(wall)
            print(f"repeat {r + 1}/{args.repeats} {name:<16} {wall:7.1f}s  {args.runs / wall * 3600:7.0f} runs/hour",
                  flush=True)

    med = {n: statistics.median(v) for n, v in seconds.items()}
    base = names[0]
    rph = {n: args.runs / s * 3600 for n, s in med.items()}
    ratios = {n: med[base] / med[n] for n in names[1:]}
    best = max(ratios, key=ratios.get) if ratios else base
    fixed = overhead["startup_seconds"] + overhead["warmup_seconds"]
    this_share = (fixed + args.runs * overhead["per_task_seconds"]) / (med[best] + fixed)
    full_wall = args.full_minutes * 60 / max(ratios.get(best, 1.0), 1e-9)
    full_share = (fixed + args.full_runs * overhead["per_task_seconds"]) / (full_wall + fixed)
    overhead.update(share_of_this_sweep=this_share, share_of_full_study_estimate=full_share)

    print(f"\n### {date.today()}, {platform.machine()}, {cores} cores, torch {torch.__version__}, ray {ray.__version__}\n")
    print("| contender | wall (median) | runs/hour | vs serial |\n|---|---|---|---|")
    for n in names:
        print(f"| {n} | {med[n]:.1f} s | {rph[n]:.0f} | {med[base] / med[n]:.2f}x |")
    print("\n| Ray overhead | measured |\n|---|---|")
    print(f"| start-up (ray.init) | {overhead['startup_seconds']:.1f} s |")
    print(f"| worker warm-up ({overhead['warm_workers']} processes import torch + tutorfinetune) | "
          f"{overhead['warmup_seconds']:.1f} s |")
    print(f"| scheduling, per run (empty task round trip) | {1000 * overhead['per_task_seconds']:.1f} ms |")
    print(f"| share of this sweep ({best}) | {100 * this_share:.1f}% |")
    print(f"| share of a full-mode study ({args.full_runs} runs, {args.full_minutes:g} min serial, estimate) | "
          f"{100 * full_share:.2f}% |")
    ray.shutdown()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"date": str(date.today()), "cores": cores, "backbone": args.backbone, "runs": args.runs,
                       "steps": args.steps, "seconds": seconds, "runs_per_hour": rph, "ratios": ratios,
                       "overhead": overhead, "smoke": args.smoke}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
