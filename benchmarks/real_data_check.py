"""Does the bundled data teach real sentiment? Train on `reviews`, test on real reviews nobody here wrote.

    python benchmarks/real_data_check.py [--seeds 0 1 2] [--epochs 3] [--backbone minilm]

Trains full fine-tuning on the bundled `reviews` train split (MiniLM by default) and evaluates on
the bundled eval sets plus real public data from ../shared/realdata (beside the repository):
SST-2 dev (movie-review sentences, 872) and NusaX-Senti English test (binary: neutral dropped).
For contrast it also trains on an equally sized, label-balanced sample of SST-2 train and tests
on the bundled in-distribution and held-out sets. Prints mean and 95% CI over seeds.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TUTORFINETUNE_PROGRESS", "off")

import pandas as pd  # noqa: E402

import tutorfinetune as tft  # noqa: E402

REAL = Path(__file__).resolve().parents[2] / "shared" / "realdata"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=float, default=3)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--backbone", default="minilm")
    p.add_argument("--store", default="/tmp/tft-realcheck")
    args = p.parse_args()
    if not REAL.is_dir():
        print(f"{REAL} not found: this check needs ../shared/realdata beside the repository.")
        return 0
    names = ["negative", "positive"]
    reviews = tft.load_task("reviews")
    sst2 = tft.load_task(REAL / "sst2", text_column="sentence", label_names=names)
    nusax = tft.load_task(REAL / "nusax_senti" / "english", label_names=names,
                          label_map={"positive": "positive", "negative": "negative", "neutral": None})
    ours = reviews.with_eval_sets({"real:sst2-dev": sst2.eval_set("dev"), "real:nusax-en-test": nusax.eval_set("test")})
    shifts = [f"shift:{d}" for d in reviews.meta["target_domains"]]
    cfg = tft.TrainConfig(lr=args.lr, num_epochs=args.epochs, batch_size=16, max_length=128,
                          eval_sets=["in-distribution", *shifts, "real:sst2-dev", "real:nusax-en-test"])
    a = tft.studies.sweep(args.backbone, ours, cfg, seeds=args.seeds, store=args.store, study="train-on-reviews")
    # contrast: the same number of real SST-2 training sentences (whole sentences of >= 8 words)
    n = len(reviews.train)
    pool = sst2.train[sst2.train.text.str.split().str.len() >= 8]
    sample = pd.concat([g.sample(n // 2, random_state=0) for _, g in pool.groupby("label")])
    sst_frame = pd.concat([sample.assign(split="train", domain="sst2"),
                           sst2.eval_set("dev").assign(split="dev", domain="sst2")])
    sst_task = tft.data.Task("sst2-sample", sst_frame, names, {"dev": {"split": "dev"}})
    sst_task = sst_task.with_eval_sets({k: reviews.eval_set(k) for k in ["in-distribution", *shifts]})
    cfg2 = cfg.replace(eval_sets=["dev", "in-distribution", *shifts])
    b = tft.studies.sweep(args.backbone, sst_task, cfg2, seeds=args.seeds, store=args.store, study="train-on-sst2")
    df = pd.concat([a.assign(trained_on="reviews (bundled)"), b.assign(trained_on=f"SST-2 sample (n={n})")])
    table = tft.analysis.ci_table(df, rows="trained_on")
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
