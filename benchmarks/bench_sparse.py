"""Cost of sparse fine-tuning (LT-SFT): step time of the sparse phase against dense fine-tuning side by
side in one run, the time to select K entries over all maskable entries, and stored sizes.

    python benchmarks/bench_sparse.py [--backbone minilm] [--steps 40] [--repeats 2] [--k 0.01] [--json out.json]

Contenders (same backbone, data, seed, batch 16, max_length 64, number of steps), interleaved over
repeats, median training seconds (evaluation excluded):
``dense`` (full fine-tuning, the engine's default method), ``sparse (wd 0)`` (the sparse-update
plug-in with a K mask and weight decay 0: gradients masked only) and ``sparse (wd 0.01)`` (weight
decay on, so the plug-in also puts the unmasked entries back after every step).
Then: selection time (top-K over all maskable |δ|, and a random mask), and the bytes on disk of a
K-entry SFT, of a task adapter (reduction factor 16) and of the full model checkpoint (safetensors).
Target (issue "LT-SFT"): sparse / dense <= 1.10.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TUTORFINETUNE_PROGRESS", "off")

from _timing import interleaved  # noqa: E402  (benchmarks/ is the script's folder)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="minilm")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--k", default="0.01", help="K: a fraction of the maskable entries or a count")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", default=None)
    args = p.parse_args()

    import torch
    from safetensors.torch import save_file

    import tutorfinetune as tft
    from tutorfinetune import diffs as sp
    from tutorfinetune.methods import SparseUpdate

    task = tft.load_task("reviews")
    probe = tft.load_backbone(args.backbone, num_labels=2)
    names = sp.maskable_names(probe.model, probe.blocks)
    params = dict(probe.model.named_parameters())
    n_mask = sum(params[n].numel() for n in names)
    k = sp.resolve_k(float(args.k) if "." in str(args.k) else int(args.k), n_mask)

    # selection over all maskable entries, on deltas shaped like a real dense phase's
    g = torch.Generator().manual_seed(0)
    deltas = {n: torch.rand(params[n].shape, generator=g) for n in names}
    t0 = time.perf_counter()
    mask = sp.select_mask(deltas, k)
    select_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    sp.random_mask({n: params[n].shape for n in names}, k, seed=0)
    random_s = time.perf_counter() - t0

    cfg = tft.TrainConfig(lr=1e-4, max_steps=args.steps, batch_size=args.batch_size, max_length=64,
                          eval_sets=["dev"], max_eval_examples=16, device=args.device, warmup=0.0, weight_decay=0.0)
    contenders = {
        "dense": lambda: ["full"],
        "sparse (wd 0)": lambda: [SparseUpdate(mask=mask)],
    }
    med, times, device = interleaved(contenders, args.backbone, task, cfg, args.repeats)
    cfg_wd = cfg.replace(weight_decay=0.01)
    med_wd, times_wd, _ = interleaved({"dense (wd 0.01)": lambda: ["full"],
                                       "sparse (wd 0.01)": lambda: [SparseUpdate(mask=mask)]},
                                      args.backbone, task, cfg_wd, args.repeats)
    med.update(med_wd)
    times.update(times_wd)

    # stored sizes
    tmp = Path(tempfile.mkdtemp(prefix="tft-bench-sparse-"))
    ref = {n: params[n].detach().clone() for n in names}
    with torch.no_grad():
        for n in names:
            params[n].add_(mask[n].to(params[n].dtype) * 1e-3)
    diff = sp.SparseDiff.from_models(probe.model, ref, probe.blocks, names=names)
    sft_bytes = diff.save(tmp / "task.sft").stat().st_size
    full_path = tmp / "model.safetensors"
    save_file({n: t.detach().contiguous() for n, t in probe.model.state_dict().items()}, str(full_path))
    full_bytes = full_path.stat().st_size
    adapter_bytes = None
    try:
        from tutorfinetune.methods.adapter import TaskAdapter, save_adapter

        bb = tft.load_backbone(args.backbone, num_labels=2)
        ta = TaskAdapter(reduction_factor=16)
        ta.prepare(bb.model, bb.blocks)
        folder = save_adapter(bb.model, ta.adapter_name, tmp / "adapter", backbone=args.backbone)
        adapter_bytes = sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())
        adapter_params = sum(p.numel() for n, p in bb.model.named_parameters() if ta.adapter_name in n)
    except Exception as e:  # adapters missing or another backbone family: report, do not fail
        print(f"(task adapter size not measured: {e})")
        adapter_params = None

    print(f"\n{args.backbone}, {args.steps} steps, batch {args.batch_size}, max_length 64, device {device}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.repeats} repeats (median train seconds)\n")
    print(f"K = {k:,} of {n_mask:,} maskable entries ({100 * k / n_mask:.2f}%)\n")
    print("| contender | train s | s/step | ratio vs dense (same weight decay) |\n|---|---|---|---|")
    ratios = {}
    for c in med:
        ref_c = "dense (wd 0.01)" if "0.01" in c else "dense"
        ratios[c] = med[c] / med[ref_c]
        print(f"| {c} | {med[c]:.1f} | {med[c] / args.steps:.3f} | {ratios[c]:.3f}x |")
    print(f"\nSelection of K over all {n_mask:,} maskable entries: top-K {select_s:.2f} s, random mask {random_s:.2f} s")
    print("\n| stored | bytes | MiB | vs full checkpoint |\n|---|---|---|---|")
    sizes = {f"SFT, K = {k:,} (+ head)": sft_bytes, "full checkpoint (safetensors, fp32)": full_bytes}
    if adapter_bytes:
        sizes[f"task adapter, rf 16 ({adapter_params:,} parameters, + head)"] = adapter_bytes
    for name, b in sizes.items():
        print(f"| {name} | {b:,} | {b / 2**20:.2f} | {b / full_bytes:.4f} |")
    worst = max(ratios["sparse (wd 0)"], ratios["sparse (wd 0.01)"])
    print(f"Sparse / dense: {ratios['sparse (wd 0)']:.3f}x (wd 0), {ratios['sparse (wd 0.01)']:.3f}x (wd 0.01); "
          f"target <= 1.10: {'met' if worst <= 1.10 else 'NOT met'}.")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"median_train_seconds": med, "times": times, "ratios": ratios, "k": k, "maskable": n_mask,
                       "select_seconds": select_s, "random_mask_seconds": random_s, "bytes": sizes,
                       "steps": args.steps, "device": device, "torch": torch.__version__}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
