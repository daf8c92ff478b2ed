"""The mean readout (issue 21) with every plug-in and every way a trained model leaves a run: the
Trainer bridge, adapters, LoRA, sparse differences and the STILTs plug-in train and save with it, and
what is saved carries the readout, so a fresh backbone is given the same head on load (or a clear
error says it was not)."""

from __future__ import annotations

import pytest
import torch

import tutorfinetune as tft
from tutorfinetune.diffs import SparseDiff
from tutorfinetune.heads import MeanReadout, ReadoutError, readout_of
from tutorfinetune.methods.adapter import load_adapter, save_adapter
from tutorfinetune.methods.lora import load_lora, save_lora
from tutorfinetune.recipes.lt_sft import lt_sft

TEXTS = ["the soup was cold and bland", "a joy to watch, twice", "it broke on the first day"]


def _logits(bb):
    bb.model.eval()
    with torch.no_grad():
        return bb.model(**bb.tokenizer(TEXTS, return_tensors="pt", padding=True)).logits


@pytest.fixture
def mean_cfg(fast_config):
    return fast_config.replace(max_steps=4, readout="mean")


@pytest.mark.parametrize("methods", [["full"], ["adapter"], ["lora"], ["linear-probe"], ["freeze-embeddings"],
                                     [("graddrop", {"p": 0.3})], ["adapter", ("gu", {"k": 1})],
                                     ["lora", ("fun", {"k": 1})]], ids=str)
def test_every_body_method_trains_the_head_behind_a_mean_readout(tiny, toy_task, mean_cfg, methods):
    bb = tiny(seed=1)
    res = tft.train(bb, toy_task, mean_cfg, methods=methods, store=None, verbose=False)
    assert res.config.readout == "mean" and isinstance(bb.model.bert.pooler, MeanReadout)
    assert not list(bb.model.bert.pooler.parameters())  # the readout itself has nothing to train
    assert all(p.requires_grad for p in bb.model.classifier.parameters())
    assert all(torch.isfinite(torch.tensor(v)) for m in res.metrics.values() for v in m.values())


def test_trainer_bridge_with_a_mean_readout(toy_task, tmp_path):
    from test_hf_bridge import _trainer

    from tutorfinetune.hf import MethodsCallback

    bb = tft.load_backbone("tiny", num_labels=2, seed=2, readout="mean")
    bridge = MethodsCallback(["adapter"]).prepare(bb.model)
    before = _logits(bb)
    _trainer(bb, toy_task, tmp_path, bridge).train()
    assert readout_of(bb.model) == "mean" and not torch.allclose(_logits(bb), before)


def test_saved_lora_and_adapter_carry_the_readout(tiny, toy_task, mean_cfg, tmp_path):
    for name, save, load in (("lora", lambda bb, p: save_lora(bb, p), lambda bb, p: load_lora(bb, p)),
                             ("adapter", lambda bb, p: save_adapter(bb.model, "task", p, backbone="tiny"),
                              lambda bb, p: load_adapter(bb.model, p))):
        bb = tiny(seed=3)
        tft.train(bb, toy_task, mean_cfg, methods=[name], store=None, verbose=False)
        save(bb, tmp_path / name)
        want = _logits(bb)
        fresh = tiny(seed=3)  # the pooler head: loading gives it the saved mean readout
        load(fresh, tmp_path / name)
        assert readout_of(fresh.model) == "mean", name
        torch.testing.assert_close(_logits(fresh), want, atol=1e-6, rtol=0)
        # a model that already reads otherwise (its pooler gone) cannot take a different readout silently
        cls = tft.load_backbone("tiny", num_labels=2, seed=3, readout="cls")
        with pytest.raises(ReadoutError, match="readout 'mean'"):
            load(cls, tmp_path / name)


def test_sparse_difference_carries_the_head_and_the_readout(tiny, toy_task, mean_cfg, tmp_path):
    bb = tiny(seed=4)
    out = lt_sft(bb, toy_task, mean_cfg, k=0.02, dense_config=mean_cfg, store=None)
    assert out.diff.meta.get("readout") == "mean"
    want = _logits(bb)
    path = out.diff.save(tmp_path / "sft")
    fresh = tiny(seed=4)
    SparseDiff.load(path).apply(fresh.model, fresh.blocks)
    assert readout_of(fresh.model) == "mean"
    torch.testing.assert_close(_logits(fresh), want, atol=1e-6, rtol=0)
