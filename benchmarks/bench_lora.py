"""Step time and peak memory: LoRA vs full fine-tuning vs the task adapter, side by side in one run;
and inference with the LoRA merged vs unmerged.

    python benchmarks/bench_lora.py [--backbone minilm] [--steps 30] [--batch-size 16] [--repeats 2] [--smoke]

Each training run is its own subprocess (so its peak memory is its own), interleaved full, adapter,
lora, full, adapter, lora, ... with the same backbone, bundled data, batch size, max length 64 and
steps. Contenders: ``"full"`` (lr 1e-4), ``"adapter"`` (SeqBn, reduction factor 16) and ``"lora"``
(r 8 on the attention query and value projections). Step time is the median over the steps after
the first 3 (timed at each step start; the whole optimiser step: forward, backward, AdamW), as wall
time and as the process's CPU time. On a machine shared with other jobs, wall time depends on what
else runs; the CPU time of a single-threaded run (``--threads 1``) hardly does, so its ratios are the
ones to trust there.

Peak memory on CPU is the growth of the process's peak resident set (``ru_maxrss``) during
training over its size just before training: torch allocates outside Python's allocator, so
``tracemalloc`` would not see the tensors. On a GPU it is ``torch.cuda.max_memory_allocated``.

Inference: after training, the LoRA child times eval-mode forward passes (batch of 16 dev texts)
of the unmerged model and of a merged copy (``tft.methods.merge_lora``), alternating, median of each.

``--smoke`` is the tiny random backbone, 6 steps, 1 repeat (what the test suite runs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys

CONTENDERS = ("full", "adapter", "lora")

CHILD = r"""
import copy, json, os, resource, statistics, sys, time
os.environ["TUTORFINETUNE_PROGRESS"] = "off"
import torch
import tutorfinetune as tft
from tutorfinetune.methods import Method, merge_lora
method, backbone, steps, bs, device, eval_reps, threads = (sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]),
                                                         sys.argv[5], int(sys.argv[6]), int(sys.argv[7]))
if threads > 0:
    torch.set_num_threads(threads)
if method == "lora":
    import peft  # imported before the baseline, as adapters is imported by tutorfinetune itself
times, cpu = [], []
class Clock(Method):
    name = "clock"
    def on_step_start(self, state):
        if state.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter())
        cpu.append(time.process_time())
task = tft.load_task("reviews")
bb = tft.load_backbone(backbone, num_labels=2, seed=0)
cfg = tft.TrainConfig(lr=1e-4, max_steps=steps, batch_size=bs, max_length=64, eval_sets=["dev"], device=device)
if torch.cuda.is_available():
    torch.cuda.reset_peak_memory_stats()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
res = tft.train(bb, task, cfg, methods=[method, Clock()], store=None, verbose=False)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
skip = min(3, max(0, len(times) - 3))
steps_s = [b - a for a, b in zip(times[skip:], times[skip + 1:])]
cpu_s = [b - a for a, b in zip(cpu[skip:], cpu[skip + 1:])]
gpu = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
out = {"step_s": statistics.median(steps_s), "step_cpu_s": statistics.median(cpu_s), "threads": torch.get_num_threads(),
       "rss_growth_mb": (peak - base) / 1024, "peak_rss_mb": peak / 1024,
       "gpu_peak_mb": gpu, "trainable": sum(p.numel() for p in bb.model.parameters() if p.requires_grad),
       "total": sum(p.numel() for p in bb.model.parameters()), "dev_accuracy": res.metrics["dev"]["accuracy"]}
if method == "lora" and eval_reps:
    texts = task.eval_set("dev")["text"].tolist()[:bs]
    dev = next(bb.model.parameters()).device
    x = {k: v.to(dev) for k, v in bb.tokenizer(texts, return_tensors="pt", padding="max_length", truncation=True,
                                              max_length=64).items()}
    unmerged = bb.model.eval()
    merged = merge_lora(copy.deepcopy(unmerged))
    t = {"unmerged": [], "merged": []}
    tc = {"unmerged": [], "merged": []}
    with torch.no_grad():
        for m in (unmerged, merged):  # warm-up
            m(**x)
        for _ in range(eval_reps):
            for name, m in (("unmerged", unmerged), ("merged", merged)):
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                a, ac = time.perf_counter(), time.process_time()
                m(**x)
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                t[name].append(time.perf_counter() - a)
                tc[name].append(time.process_time() - ac)
        diff = (unmerged(**x).logits - merged(**x).logits).abs().max().item()
    out.update(infer_unmerged_s=statistics.median(t["unmerged"]), infer_merged_s=statistics.median(t["merged"]),
               infer_unmerged_cpu_s=statistics.median(tc["unmerged"]), infer_merged_cpu_s=statistics.median(tc["merged"]),
               merge_max_abs_diff=diff)
print(json.dumps(out))
"""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="minilm")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--eval-reps", type=int, default=20, help="timed forward passes per model (merged vs unmerged)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch threads per run (0: torch's default)")
    p.add_argument("--smoke", action="store_true", help="tiny random backbone, 6 steps, 1 repeat (for tests)")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    if args.smoke:
        args.backbone, args.steps, args.repeats, args.eval_reps = "tiny", 6, 1, 3
    runs: dict[str, list[dict]] = {c: [] for c in CONTENDERS}
    for r in range(args.repeats):
        for method in CONTENDERS:
            out = subprocess.run([sys.executable, "-c", CHILD, method, args.backbone, str(args.steps),
                                  str(args.batch_size), args.device, str(args.eval_reps), str(args.threads)],
                                 capture_output=True,
                                 text=True, env=dict(os.environ, TUTORFINETUNE_PROGRESS="off"))
            if out.returncode != 0:
                print(out.stderr[-3000:])
                return 1
            m = json.loads(out.stdout.strip().splitlines()[-1])
            runs[method].append(m)
            print(f"  repeat {r + 1}: {method:<8} step {1000 * m['step_s']:.0f} ms (CPU {1000 * m['step_cpu_s']:.0f} ms), "
                  f"peak RSS growth "
                  f"{m['rss_growth_mb']:.0f} MB" + (f", GPU peak {m['gpu_peak_mb']:.0f} MB" if m["gpu_peak_mb"] else "")
                  + f", {m['trainable']:,} trainable", flush=True)
    fields = ("step_s", "step_cpu_s", "rss_growth_mb", "trainable")
    med = {k: {f: statistics.median(x[f] for x in v) for f in fields} for k, v in runs.items()}
    total = runs["full"][0]["total"]
    print(f"\nbackbone={args.backbone} batch={args.batch_size} max_length=64 steps={args.steps} repeats={args.repeats} "
          f"({platform.machine()}, {os.cpu_count()} cores, {runs['full'][0]['threads']} torch threads per run)")
    print("| contender | step time, wall (median) | step time, CPU (median) | peak memory growth (RSS) | trainable |")
    print("|---|---|---|---|---|")
    for k, v in med.items():
        print(f"| {k} | {1000 * v['step_s']:.0f} ms | {1000 * v['step_cpu_s']:.0f} ms | {v['rss_growth_mb']:.0f} MB | "
              f"{int(v['trainable']):,} ({100 * v['trainable'] / total:.2f}%) |")
    ratios = {
        "step time lora / full": med["lora"]["step_s"] / med["full"]["step_s"],
        "step time lora / adapter": med["lora"]["step_s"] / med["adapter"]["step_s"],
        "step time adapter / full": med["adapter"]["step_s"] / med["full"]["step_s"],
        "CPU time per step lora / full": med["lora"]["step_cpu_s"] / med["full"]["step_cpu_s"],
        "CPU time per step lora / adapter": med["lora"]["step_cpu_s"] / med["adapter"]["step_cpu_s"],
        "CPU time per step adapter / full": med["adapter"]["step_cpu_s"] / med["full"]["step_cpu_s"],
        "peak memory growth lora / full": med["lora"]["rss_growth_mb"] / max(1e-9, med["full"]["rss_growth_mb"]),
        "peak memory growth lora / adapter": med["lora"]["rss_growth_mb"] / max(1e-9, med["adapter"]["rss_growth_mb"]),
        "trainable lora / full": med["lora"]["trainable"] / med["full"]["trainable"],
    }
    gpu = [x["gpu_peak_mb"] for v in runs.values() for x in v]
    if all(gpu):
        g = {k: statistics.median(x["gpu_peak_mb"] for x in v) for k, v in runs.items()}
        ratios["GPU peak lora / full"] = g["lora"] / g["full"]
        ratios["GPU peak lora / adapter"] = g["lora"] / g["adapter"]
    lora = runs["lora"]
    if args.eval_reps and all("infer_merged_s" in x for x in lora):
        um = statistics.median(x["infer_unmerged_s"] for x in lora)
        mg = statistics.median(x["infer_merged_s"] for x in lora)
        umc = statistics.median(x["infer_unmerged_cpu_s"] for x in lora)
        mgc = statistics.median(x["infer_merged_cpu_s"] for x in lora)
        ratios["inference merged / unmerged"] = mg / um
        ratios["inference CPU time merged / unmerged"] = mgc / umc
        print(f"\ninference (eval, batch {args.batch_size}, length 64): unmerged {1000 * um:.1f} ms (CPU {1000 * umc:.1f}), "
              f"merged {1000 * mg:.1f} ms (CPU {1000 * mgc:.1f}); max |logit difference| "
              f"{max(x['merge_max_abs_diff'] for x in lora):.1e}")
    print("ratios:")
    for k, v in ratios.items():
        print(f"  {k:<40} {v:6.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "runs": runs, "median": med, "ratios": ratios}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
