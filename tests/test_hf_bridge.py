"""The Hugging Face Trainer bridge runs the same plug-ins inside a user's own Trainer."""

import pytest
import torch
from test_engine import LateUnfreeze, Recorder
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

from tutorfinetune.hf import MethodsCallback


class _DS(torch.utils.data.Dataset):
    def __init__(self, task, tok):
        tr = task.train
        self.enc = tok(tr["text"].tolist(), truncation=True, max_length=32)
        self.labels = tr["label"].tolist()

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"input_ids": self.enc["input_ids"][i], "attention_mask": self.enc["attention_mask"][i],
                "labels": self.labels[i]}


def _trainer(bb, task, tmp_path, bridge, use_bridge_optimizer=True):
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=8, max_steps=8,
                             learning_rate=1e-3, max_grad_norm=0.0, report_to=[], save_strategy="no",
                             logging_strategy="no", use_cpu=True, disable_tqdm=True, seed=0)
    opt = (bridge.create_optimizer(bb.model, args), None) if use_bridge_optimizer else (None, None)
    return Trainer(model=bb.model, args=args, train_dataset=_DS(task, bb.tokenizer), callbacks=[bridge],
                   data_collator=DataCollatorWithPadding(bb.tokenizer), optimizers=opt)


def test_bridge_runs_hooks_and_freezes(toy_task, tiny, tmp_path):
    bb = tiny()
    rec = Recorder()
    bridge = MethodsCallback(["freeze-embeddings", rec]).prepare(bb.model, bb.blocks, verbose=False)
    emb = [p.detach().clone() for p in bb.blocks.parameters("embeddings")]
    blk = [p.detach().clone() for p in bb.blocks.parameters("block1")]
    _trainer(bb, toy_task, tmp_path, bridge).train()
    assert all(torch.equal(a, b) for a, b in zip(emb, bb.blocks.parameters("embeddings")))
    assert any(not torch.equal(a, b) for a, b in zip(blk, bb.blocks.parameters("block1")))
    assert rec.calls[0] == "prepare" and rec.calls[1:3] == ["start0", "backward0:True"]
    assert rec.calls[-1] == "finish" and "recorder" in bridge.artifacts
    assert len(bridge.history) == 8 and bridge.history[0]["recorded"] == 1.0


def test_bridge_optimizer_holds_units_unfrozen_later(toy_task, tiny, tmp_path):
    bb = tiny()
    before = [p.detach().clone() for p in bb.blocks.parameters("block0")]
    bridge = MethodsCallback([LateUnfreeze()]).prepare(bb.model, bb.blocks, verbose=False)
    _trainer(bb, toy_task, tmp_path, bridge).train()
    assert any(not torch.equal(a, b) for a, b in zip(before, bb.blocks.parameters("block0")))


def test_bridge_refuses_the_trainers_own_optimizer_when_it_would_miss_parameters(toy_task, tiny, tmp_path):
    bb = tiny()
    bridge = MethodsCallback([LateUnfreeze()]).prepare(bb.model, bb.blocks, verbose=False)
    with pytest.raises(RuntimeError, match="never update.*create_optimizer"):
        _trainer(bb, toy_task, tmp_path, bridge, use_bridge_optimizer=False).train()


def test_bridge_runs_fun_with_fisher_batches_from_the_trainers_dataloader(toy_task, tmp_path):
    from tutorfinetune import load_backbone

    bb = load_backbone("tiny", tiny_layers=3)
    before = [p.detach().clone() for p in bb.blocks.parameters("embeddings")]
    bridge = MethodsCallback([("fun", {"k": 2, "fisher_batches": 2}), ("fisher-tracker", {"every": 4, "batches": 1})])
    bridge.prepare(bb.model, bb.blocks, verbose=False)
    _trainer(bb, toy_task, tmp_path, bridge).train()
    art = bridge.artifacts["fun"]
    assert art["order"][0] == "block2" and sorted(art["order"]) == ["block0", "block1", "block2", "embeddings"]
    assert all("trF" in e for e in art["events"][1:])
    assert any(not torch.equal(a, b) for a, b in zip(before, bb.blocks.parameters("embeddings")))
    assert "trF:block0" in bridge.history[0]


def test_bridge_runs_graddrop_and_puts_skipped_entries_back(toy_task, tiny, tmp_path):
    from tutorfinetune.methods import MethodError

    bb = tiny()
    bridge = MethodsCallback([("graddrop", {"p": 0.5, "mode": "skip"})]).prepare(bb.model, bb.blocks, verbose=False)
    _trainer(bb, toy_task, tmp_path, bridge).train()
    kept = [r["graddrop_kept"] for r in bridge.history]
    assert len(kept) == 8 and all(0.45 < k < 0.55 for k in kept)
    # the Trainer's epoch here is 10 optimiser steps and the run 8: an epoch mask would never change
    bb = tiny()
    bridge = MethodsCallback([("graddrop", {"variant": "epoch"})]).prepare(bb.model, bb.blocks, verbose=False)
    with pytest.raises(MethodError, match="never change"):
        _trainer(bb, toy_task, tmp_path, bridge).train()
