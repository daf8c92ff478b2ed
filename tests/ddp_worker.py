"""One process of the multi-process tests (tests/test_distributed.py), or the single-process reference.

    torchrun --nproc_per_node 2 tests/ddp_worker.py OUT [--resume] [--trainer]
    python tests/ddp_worker.py OUT                      # the same runs in one process

For every method of :data:`METHODS` it trains a fresh tiny backbone (dropout off, so one process and
several see the same function) on the toy task and saves, per rank, the final parameters and the run's
metrics to ``OUT/<method>/rank<r>.pt``. ``--resume`` trains the first method with checkpoints, then resumes
a second run from the step-4 checkpoint. ``--trainer`` trains through the Hugging Face Trainer bridge.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
torch.set_num_threads(1)

from conftest import toy_frame  # noqa: E402

import tutorfinetune as tft  # noqa: E402
from tutorfinetune import diffs  # noqa: E402
from tutorfinetune.methods import unfreezing as su  # noqa: E402

STEPS = 6


def no_dropout(bb):
    for m in bb.model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    return bb


def backbone():
    return no_dropout(tft.load_backbone("tiny", num_labels=2, seed=0))


def methods(bb) -> dict[str, list]:
    names = diffs.maskable_names(bb.model, bb.blocks)
    params = dict(bb.model.named_parameters())
    mask = diffs.random_mask({n: params[n].shape for n in names}, k=0.05, seed=3)
    return {
        "full": ["full"],
        "graddrop": ["full", ("graddrop", {"p": 0.5})],
        "fun": su.schedule_methods("fun", body="full", k=2, fisher_batches=2),
        "lt-sft-sparse": [("sparse-update", {"mask": mask})],
        "adapter": [("adapter", {"reduction_factor": 4})],
    }


def config(**kw):
    kw = {"select_best": True, **kw}
    return tft.TrainConfig(lr=3e-3, max_steps=STEPS, batch_size=8, max_length=32, warmup=0.0, seed=0, device="cpu",
                           precision="fp32", eval_every=3, **kw)


def save(out: Path, name: str, bb, result) -> None:
    rank = int(os.environ.get("RANK", "0"))
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"params": {n: p.detach().clone() for n, p in bb.model.named_parameters()},
                "metrics": result.metrics if result is not None else {},
                "loss": [float(x) for x in result.history["loss"]] if result is not None else [],
                "grad_norm": [float(x) for x in result.history["grad_norm"]] if result is not None else [],
                "world_size": result.world_size if result is not None else None},
               folder / f"rank{rank}.pt")


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    csv = out / f"rank{os.environ.get('RANK', '0')}" / "toy.csv"
    csv.parent.mkdir(exist_ok=True)
    toy_frame(n_train=48, n_dev=12, n_test=12).to_csv(csv, index=False)
    task = tft.load_task(csv)
    if "--trainer" in sys.argv:
        return trainer_run(out, task)
    store = out / "store"
    if "--resume" in sys.argv:
        bb = backbone()
        ck = out / "ckpt"
        tft.train(bb, task, config(checkpoint_every=2, select_best=False), ["full", ("graddrop", {"p": 0.5})], store=None,
                  checkpoint_dir=ck, verbose=False)
        bb2 = backbone()
        r = tft.train(bb2, task, config(checkpoint_every=2, select_best=False), ["full", ("graddrop", {"p": 0.5})], store=None,
                      checkpoint_dir=ck, resume_from=ck / "step-0000004", verbose=False)
        save(out, "resumed", bb2, r)
        save(out, "uninterrupted", bb, None)
        return
    for name, ms in methods(backbone()).items():
        bb = backbone()
        r = tft.train(bb, task, config(), ms, store=store, study="ddp", verbose=False)
        save(out, name, bb, r)


def trainer_run(out: Path, task) -> None:
    """FUN and GradDrop through the Hugging Face Trainer bridge, DDP by the Trainer itself."""
    from transformers import Trainer, TrainingArguments

    from tutorfinetune.hf import MethodsCallback

    bb = backbone()
    rows = task.train
    enc = bb.tokenizer(list(rows["text"]), truncation=True, max_length=32, padding="max_length")
    ds = [{"input_ids": torch.tensor(i), "attention_mask": torch.tensor(a), "labels": torch.tensor(int(y))}
          for i, a, y in zip(enc["input_ids"], enc["attention_mask"], rows["label"])]
    ms = su.schedule_methods("fun", body="full", k=2, fisher_batches=2) + [("graddrop", {"p": 0.5})]
    bridge = MethodsCallback(ms, grad_clip=1.0).prepare(bb.model, bb.blocks, verbose=False)
    args = TrainingArguments(output_dir=str(out / "hf"), per_device_train_batch_size=4, max_steps=STEPS,
                             learning_rate=3e-3, max_grad_norm=0.0, report_to=[], save_strategy="no",
                             logging_strategy="no", use_cpu=True, seed=0, warmup_ratio=0.0, disable_tqdm=True)
    trainer = Trainer(model=bb.model, args=args, train_dataset=ds, callbacks=[bridge],
                      optimizers=(bridge.create_optimizer(bb.model, args), None))
    trainer.train()
    rank = int(os.environ.get("RANK", "0"))
    (out / "hf").mkdir(parents=True, exist_ok=True)
    torch.save({"params": {n: p.detach().clone() for n, p in bb.model.named_parameters()},
                "events": json.dumps(bridge.artifacts.get("fun", {}).get("events", []))}, out / "hf" / f"rank{rank}.pt")


if __name__ == "__main__":
    main()
