"""Cost of Fisher tracking and of FUN's selection, as step-time ratios measured side by side in one run.

    python benchmarks/bench_unfreezing.py [--backbone minilm] [--steps 100] [--repeats 2] [--json out.json]

Contenders (task adapter, SeqBn r=16, the same backbone, data, seed, batch 16, max_length 64 and
number of optimiser steps), interleaved over repeats, median training seconds (evaluation excluded):

* ``adapter``: standard adapter training, the baseline of the tracker ratios;
* ``adapter + fisher-tracker(every, batches)``: tr(F) of every adapter every ``every`` steps;
* ``adapter + gu(k)``: the baseline of FUN's ratios (same trainable sets over time);
* ``adapter + fun(k, fisher_batches)``: FUN's selection, one tr(F) pass at each of the L-1 events.

Then the faithfulness side of the trade-off: after a short warm-up training, tr(F) per adapter
estimated from 5 / 10 / 20 batches against the 40-batch reference (the paper's N_F): relative error
of the total, rank correlation over adapters, and whether the largest unit agrees (what FUN uses).
Target (issue "Scheduled unfreezing"): the tracker's default setting costs <= 1.15x.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("TUTORFINETUNE_PROGRESS", "off")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="minilm")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", default=None)
    p.add_argument("--faithfulness-only", action="store_true", help="skip the timings")
    args = p.parse_args()

    import numpy as np
    import torch

    import tutorfinetune as tft
    from tutorfinetune.engine import TrainState, encode
    from tutorfinetune.fisher import find_units, fisher_trace
    from tutorfinetune.methods.unfreezing import FisherTracker

    torch.set_num_threads(max(1, torch.get_num_threads()))
    task = tft.load_task("reviews")
    cfg = tft.TrainConfig(lr=1e-3, max_steps=args.steps, batch_size=args.batch_size, max_length=64,
                          eval_sets=["dev"], max_eval_examples=16, device=args.device, warmup=0.0)
    n_blocks = tft.load_backbone(args.backbone).blocks.num_blocks
    k = max(1, args.steps // n_blocks)
    default = FisherTracker()
    every = default.config["every"]  # the default setting comes first among the trackers
    contenders = {
        "adapter": ["adapter"],
        **{f"tracker every={e} batches={b}": ["adapter", ("fisher-tracker", {"every": e, "batches": b})]
           for e, b in ((every, default.config["batches"]), (50, 5), (50, 10), (50, 40))},
        "tracker every=100 batches=40 (paper)": ["adapter", ("fisher-tracker", {"every": 100, "batches": 40})],
        f"gu k={k}": ["adapter", ("gu", {"k": k})],
        **{f"fun k={k} fisher_batches={b}": ["adapter", ("fun", {"k": k, "fisher_batches": b})] for b in (5, 10, 40)},
    }
    times: dict[str, list[float]] = {c: [] for c in contenders}
    for r in range(0 if args.faithfulness_only else args.repeats):
        for name, meths in contenders.items():
            bb = tft.load_backbone(args.backbone, num_labels=2, seed=0)
            res = tft.train(bb, task, cfg, meths, store=None, verbose=False)
            times[name].append(res.timings["train_seconds"])
            print(f"repeat {r + 1}/{args.repeats} {name:<38} {res.timings['train_seconds']:.1f}s", flush=True)
    med = {c: statistics.median(v) for c, v in times.items() if v}

    # faithfulness: estimates from fewer batches against the 40-batch reference. Sampled labels make
    # single estimates noisy, so the reference averages 3 label seeds and each estimate is scored
    # for 3 label seeds (mean error, worst rank agreement).
    bb = tft.load_backbone(args.backbone, num_labels=2, seed=0)
    tft.train(bb, task, cfg.replace(max_steps=min(args.steps, 60)), ["adapter"], store=None, verbose=False)
    device = next(bb.model.parameters()).device
    state = TrainState(model=bb.model, blocks=bb.blocks, config=cfg, task=task, device=device,
                       train_data=encode(bb.tokenizer, task.train, cfg.max_length), pad_id=bb.tokenizer.pad_token_id)
    units = find_units(bb.model, bb.blocks)
    t0 = time.perf_counter()
    refs = [np.array(list(fisher_trace(bb.model, state.fixed_batches(40), units, seed=s).values())) for s in range(3)]
    t_ref = (time.perf_counter() - t0) / 3
    ref_v = np.mean(refs, axis=0)
    seed_spread = float(np.mean([abs(r.sum() - ref_v.sum()) / ref_v.sum() for r in refs]))

    def spearman(a, b):
        return float(np.corrcoef(np.argsort(np.argsort(a)), np.argsort(np.argsort(b)))[0, 1])

    faith = []
    for nb in (5, 10, 20, 40):
        ests = [np.array(list(fisher_trace(bb.model, state.fixed_batches(nb), units, seed=100 + s).values()))
                for s in range(3)]
        faith.append({"batches": nb,
                      "rel_err_total": float(np.mean([abs(v.sum() - ref_v.sum()) / ref_v.sum() for v in ests])),
                      "max_rel_err_unit": float(np.mean([np.max(np.abs(v - ref_v) / ref_v) for v in ests])),
                      "spearman": min(spearman(v, ref_v) for v in ests),
                      "same_top": all(int(np.argmax(v)) == int(np.argmax(ref_v)) for v in ests)})

    if args.faithfulness_only:
        med = {c: float("nan") for c in contenders}
    base, gu = med["adapter"], med[f"gu k={k}"]
    print(f"\n{args.backbone}, {args.steps} steps, batch {args.batch_size}, max_length 64, device {device}, "
          f"torch {torch.__version__}, {args.repeats} repeats (median train seconds)\n")
    print("| contender | train s | ratio | vs |\n|---|---|---|---|")
    for c in contenders:
        ref_name, ref_t = ("gu", gu) if c.startswith("fun") else ("adapter", base)
        print(f"| {c} | {med[c]:.1f} | {med[c] / ref_t:.2f}x | {ref_name} |")
    print(f"\n40-batch tr(F) pass: {t_ref:.1f}s. Against the 40-batch reference (mean of 3 label seeds; one "
          f"40-batch estimate is {seed_spread:.1%} off it on average). Mean over 3 label seeds; Spearman: the worst; "
          "same largest unit: in all 3:\n")
    print("| batches | rel. error of sum tr(F) | max rel. error of one unit | Spearman over units | same largest unit |")
    print("|---|---|---|---|---|")
    for f in faith:
        print(f"| {f['batches']} | {f['rel_err_total']:.1%} | {f['max_rel_err_unit']:.1%} | {f['spearman']:.2f} | {f['same_top']} |")
    dflt = med[f"tracker every={every} batches={default.config['batches']}"] / base
    print(f"\nDefault tracker (every={every}, batches={default.config['batches']}): {dflt:.2f}x "
          f"(target <= 1.15x: {'met' if dflt <= 1.15 else 'NOT met'}).")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"median_train_seconds": med, "faithfulness": faith, "ref_seconds": t_ref, "seed_spread": seed_spread,
                       "device": str(device), "torch": torch.__version__, "steps": args.steps}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
