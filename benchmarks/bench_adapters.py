"""Step time and peak memory: task-adapter training vs full fine-tuning, side by side in one run.

    python benchmarks/bench_adapters.py [--backbone minilm] [--steps 30] [--batch-size 16] [--repeats 2]

Each measurement runs in its own subprocess (so peak memory is that run's alone), interleaved
full, adapter, full, adapter, ... with the same backbone, data, batch size, max length and steps.
Step time is the median over steps after the first 3. Peak memory is the growth of the process's
peak resident set during training over its size just before training (CPU), or
``torch.cuda.max_memory_allocated`` on a GPU. Targets: step-time ratio adapter/full <= 0.75 and a
lower peak memory.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import json, os, resource, sys, time
os.environ["TUTORFINETUNE_PROGRESS"] = "off"
import torch
import tutorfinetune as tft
from tutorfinetune.engine import TrainState
from tutorfinetune.methods import Method
method, backbone, steps, bs, device = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
times = []
class Clock(Method):
    name = "clock"
    def on_step_start(self, state):
        if state.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter())
task = tft.load_task("reviews")
bb = tft.load_backbone(backbone, num_labels=2, seed=0)
cfg = tft.TrainConfig(lr=1e-4, max_steps=steps, batch_size=bs, max_length=64, eval_sets=["dev"], device=device)
if torch.cuda.is_available():
    torch.cuda.reset_peak_memory_stats()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tft.train(bb, task, cfg, methods=[method, Clock()], store=None, verbose=False)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
steps_s = [b - a for a, b in zip(times[3:], times[4:])]
gpu = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
print(json.dumps({"step_s": sorted(steps_s)[len(steps_s) // 2], "rss_growth_mb": (peak - base) / 1024,
                  "peak_rss_mb": peak / 1024, "gpu_peak_mb": gpu}))
"""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="minilm")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    runs: dict[str, list[dict]] = {"full": [], "adapter": []}
    for r in range(args.repeats):
        for method in runs:
            out = subprocess.run([sys.executable, "-c", CHILD, method, args.backbone, str(args.steps),
                                  str(args.batch_size), args.device], capture_output=True, text=True,
                                 env=dict(os.environ, TUTORFINETUNE_PROGRESS="off"))
            if out.returncode != 0:
                print(out.stderr[-3000:])
                return 1
            runs[method].append(json.loads(out.stdout.strip().splitlines()[-1]))
            m = runs[method][-1]
            print(f"  repeat {r + 1}: {method:<8} step {1000 * m['step_s']:.0f} ms, peak RSS growth "
                  f"{m['rss_growth_mb']:.0f} MB" + (f", GPU peak {m['gpu_peak_mb']:.0f} MB" if m["gpu_peak_mb"] else ""),
                  flush=True)
    med = {k: {f: statistics.median(x[f] for x in v) for f in ("step_s", "rss_growth_mb")} for k, v in runs.items()}
    print(f"\nbackbone={args.backbone} batch={args.batch_size} max_length=64 steps={args.steps} repeats={args.repeats}")
    for k, v in med.items():
        print(f"  {k:<8} step {1000 * v['step_s']:.0f} ms (median), peak memory growth {v['rss_growth_mb']:.0f} MB")
    ratios = {"step time adapter / full (target <= 0.75)": med["adapter"]["step_s"] / med["full"]["step_s"],
              "peak memory growth adapter / full (target < 1)": med["adapter"]["rss_growth_mb"]
              / max(1e-9, med["full"]["rss_growth_mb"])}
    gpu = [x["gpu_peak_mb"] for x in runs["full"] + runs["adapter"]]
    if all(gpu):
        ratios["GPU peak adapter / full"] = (statistics.median(x["gpu_peak_mb"] for x in runs["adapter"])
                                             / statistics.median(x["gpu_peak_mb"] for x in runs["full"]))
    print("ratios:")
    for k, v in ratios.items():
        print(f"  {k:<48} {v:5.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "runs": runs, "median": med, "ratios": ratios}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
