"""Cost of guided dropout: step time against standard dropout side by side in one run, and the one-off
cost of the Fisher scores.

    python benchmarks/bench_guided_dropout.py [--backbone minilm] [--steps 60] [--repeats 2] [--n 256] [--json out.json]

Contenders (full fine-tuning, same backbone, data, seed, batch 16, max_length 64, number of steps),
interleaved over repeats, median training seconds (evaluation excluded): ``standard-dropout``,
``guided-dropout`` (contrastive scores, rank map, p_upper 0.1) and ``gaussian-dropout``.
Then the time to compute the Fisher scores per source (``contrastive`` and ``mlm-warm``) for ``--n``
sentences of the bundled text, uncached.
Target (issue "Guided dropout"): guided / standard <= 1.02.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("TUTORFINETUNE_PROGRESS", "off")

from _timing import interleaved  # noqa: E402  (benchmarks/ is the script's folder)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="minilm")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--warm-steps", type=int, default=200)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    os.environ["TUTORFINETUNE_CACHE"] = tempfile.mkdtemp(prefix="tft-bench-")  # never read an old cache

    import torch

    import tutorfinetune as tft
    from tutorfinetune.fisher import sublayer as sf

    task = tft.load_task("reviews")
    texts = task.texts()
    probe = tft.load_backbone(args.backbone, num_labels=2)
    fisher_s = {}
    t0 = time.perf_counter()
    scores = sf.sublayer_scores(probe, "contrastive", texts, n=args.n, device=args.device)
    fisher_s["contrastive"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    sf.sublayer_scores(probe, "mlm-warm", texts, n=args.n, warm_steps=args.warm_steps, device=args.device)
    fisher_s[f"mlm-warm ({args.warm_steps} warm-up steps)"] = time.perf_counter() - t0

    cfg = tft.TrainConfig(lr=1e-4, max_steps=args.steps, batch_size=args.batch_size, max_length=64,
                          eval_sets=["dev"], max_eval_examples=16, device=args.device, warmup=0.0)
    contenders = {
        "standard-dropout": lambda: ["standard-dropout"],
        "guided-dropout": lambda: [("guided-dropout", {"scores": scores})],
        "gaussian-dropout": lambda: ["gaussian-dropout"],
    }
    med, times, device = interleaved(contenders, args.backbone, task, cfg, args.repeats)
    base = med["standard-dropout"]
    print(f"\n{args.backbone}, {args.steps} steps, batch {args.batch_size}, max_length 64, device {device}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.repeats} repeats (median train seconds)\n")
    print("| contender | train s | s/step | ratio vs standard |\n|---|---|---|---|")
    for c in contenders:
        print(f"| {c} | {med[c]:.1f} | {med[c] / args.steps:.3f} | {med[c] / base:.3f}x |")
    print(f"\nFisher scores, one-off, {args.n} sentences (uncached):")
    for k, v in fisher_s.items():
        print(f"- {k}: {v:.1f} s")
    ratio = med["guided-dropout"] / base
    print(f"Guided / standard: {ratio:.3f}x (target <= 1.02: {'met' if ratio <= 1.02 else 'NOT met'}).")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"median_train_seconds": med, "times": times, "ratios": {c: med[c] / base for c in med},
                       "fisher_seconds": fisher_s, "n": args.n, "steps": args.steps, "device": device,
                       "torch": torch.__version__}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
