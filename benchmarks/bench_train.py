"""Training throughput, measured side by side in one run: train() vs HF Trainer vs a bare loop.

    python benchmarks/bench_train.py [--backbone minilm] [--steps 30] [--batch-size 16] [--repeats 2]

Every contender trains the same backbone (fresh copy, same seed) on the same bundled training
texts with the same batch size, max length and number of optimiser steps, fused AdamW where the
build has it. Contenders run interleaved (A, B, C, A, B, C, ...) and each reports the median of its
repeats, so drifting load on a shared machine hits all of them alike. Printed:

* samples/s of each contender and the ratios the targets are about
  (train() / Trainer >= 1.0, train() / bare loop >= 0.95);
* the same comparison with identical batching (no length grouping anywhere), so the loop's own
  overhead is visible apart from its batching advantage;
* length-grouped dynamic padding vs padding every batch to max_length (target >= 1.3x).

Timings are wall-clock over whole runs of ``--steps`` steps (no warm-up excluded for anyone).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("TUTORFINETUNE_PROGRESS", "off")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import tutorfinetune as tft  # noqa: E402
from tutorfinetune.engine import collate, encode, resolve_device  # noqa: E402


def run_train(args, task, **cfg_changes) -> float:
    bb = tft.load_backbone(args.backbone, num_labels=task.num_labels, seed=0)
    cfg = tft.TrainConfig(lr=5e-5, max_steps=args.steps, batch_size=args.batch_size, max_length=args.max_length,
                          eval_sets=["dev"], curve_eval_set="none", device=args.device, **cfg_changes)
    res = tft.train(bb, task, cfg, store=None, verbose=False)
    return res.timings["train_samples_per_second"]


def run_trainer(args, task, group_by_length: bool) -> float:
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    bb = tft.load_backbone(args.backbone, num_labels=task.num_labels, seed=0)
    enc = bb.tokenizer(task.train["text"].tolist(), truncation=True, max_length=args.max_length)
    labels = task.train["label"].tolist()
    ds = [{"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i],
           "token_type_ids": enc["token_type_ids"][i], "labels": labels[i]} for i in range(len(labels))]
    targs = TrainingArguments(output_dir="/tmp/tft-bench-trainer", per_device_train_batch_size=args.batch_size,
                              max_steps=args.steps, learning_rate=5e-5, warmup_ratio=0.1, weight_decay=0.01,
                              report_to=[], save_strategy="no", logging_strategy="no", disable_tqdm=True,
                              seed=0, group_by_length=group_by_length, use_cpu=(args.device == "cpu"),
                              bf16=torch.cuda.is_available(), dataloader_num_workers=0)
    trainer = Trainer(model=bb.model, args=targs, train_dataset=ds,
                      data_collator=DataCollatorWithPadding(bb.tokenizer))
    out = trainer.train()
    return args.steps * args.batch_size / out.metrics["train_runtime"]


def run_bare(args, task) -> float:
    """Shuffled batches, dynamic padding, fused AdamW, linear schedule, clipping: nothing else."""
    bb = tft.load_backbone(args.backbone, num_labels=task.num_labels, seed=0)
    device = resolve_device(args.device)
    model = bb.model.to(device).train()
    enc = encode(bb.tokenizer, task.train, args.max_length)
    try:
        opt = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.01, fused=True)
    except (RuntimeError, TypeError):
        opt = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / args.steps)
    amp = torch.bfloat16 if device.type == "cuda" else None
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    order = rng.permutation(len(enc))
    for step in range(args.steps):
        i = (step * args.batch_size) % len(enc)
        idx = order[i:i + args.batch_size]
        batch = collate(enc, idx, bb.tokenizer.pad_token_id, device)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return args.steps * args.batch_size / (time.perf_counter() - t0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="minilm")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", default=None, help="also write the numbers to this file")
    args = p.parse_args()
    task = tft.load_task("reviews")
    task.eval_set_specs["none"] = task.eval_set_specs["dev"]
    contenders = {
        "train() [length-grouped]": lambda: run_train(args, task),
        "HF Trainer [default]": lambda: run_trainer(args, task, False),
        "bare loop [fused AdamW]": lambda: run_bare(args, task),
        "train() [no grouping]": lambda: run_train(args, task, group_by_length=False),
        "HF Trainer [group_by_length]": lambda: run_trainer(args, task, True),
        "train() [fixed padding to max_length]": lambda: run_train(args, task, group_by_length=False,
                                                                   pad_to_max_length=True),
    }
    runs: dict[str, list[float]] = {k: [] for k in contenders}
    for r in range(args.repeats):
        for name, fn in contenders.items():
            runs[name].append(fn())
            print(f"  repeat {r + 1}: {name:<40} {runs[name][-1]:8.1f} samples/s", flush=True)
    med = {k: statistics.median(v) for k, v in runs.items()}
    dev = resolve_device(args.device)
    where = torch.cuda.get_device_name(0) if dev.type == "cuda" else f"{platform.processor() or platform.machine()}, " \
        f"{torch.get_num_threads()} threads"
    print(f"\nbackbone={args.backbone} batch={args.batch_size} max_length={args.max_length} steps={args.steps} "
          f"repeats={args.repeats} device={dev} ({where}) torch={torch.__version__}")
    for k, v in med.items():
        print(f"  {k:<40} {v:8.1f} samples/s (median)")
    ratios = {
        "train() / HF Trainer (as shipped; target >= 1.0)": med["train() [length-grouped]"] / med["HF Trainer [default]"],
        "train() / bare loop (as shipped; target >= 0.95)": med["train() [length-grouped]"] / med["bare loop [fused AdamW]"],
        "train() / bare loop (same batching, no grouping)": med["train() [no grouping]"] / med["bare loop [fused AdamW]"],
        "train() / HF Trainer (both length-grouped)": med["train() [length-grouped]"] / med["HF Trainer [group_by_length]"],
        "length grouping / fixed padding (target >= 1.3)": med["train() [length-grouped]"]
        / med["train() [fixed padding to max_length]"],
    }
    print("\nratios:")
    for k, v in ratios.items():
        print(f"  {k:<52} {v:5.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "runs": runs, "median": med, "ratios": ratios, "device": str(dev),
                       "where": where}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
