"""Guided dropout, its Fisher scores and its baselines (METHODS.md §3)."""

import json

import pytest
import torch
from torch import nn

from tutorfinetune import load_backbone, train
from tutorfinetune.fisher.sublayer import (
    GuidanceError,
    SublayerScores,
    dropout_sites,
    sublayer_scores,
)
from tutorfinetune.methods import GaussianDropout, GuidedDropout, MethodError, resolve
from tutorfinetune.methods.dropout import GaussianNoise, dropout_map

TEXTS = [f"Sentence number {i} says the {w} was {a}." for i, (w, a) in
         enumerate([(w, a) for w in ("soup", "film", "phone", "hotel") for a in ("great", "awful", "fine")])]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TUTORFINETUNE_CACHE", str(tmp_path / "cache"))


def _batch(bb):
    enc = bb.tokenizer(TEXTS[:4], padding=True, return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def _logits(bb, seed):
    torch.manual_seed(seed)
    return bb.model(**_batch(bb)).logits


def _zero_all_dropout(model):
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
        if hasattr(m, "dropout_prob"):
            m.dropout_prob = 0.0


# --- sites and the map ----------------------------------------------------------------------------
def test_sites_come_from_the_blockmap_in_order():
    bb = load_backbone("tiny", tiny_layers=3)
    names = [s.name for s in dropout_sites(bb.model, bb.blocks)]
    assert len(names) == 1 + 3 * 3 and names[0] == "embeddings"
    assert names[1:4] == ["block0.attention", "block0.attention_output", "block0.ffn_output"]
    att = dropout_sites(bb.model, bb.blocks)[1]
    assert len(att.tensors) == 6  # q, k, v weights and biases


def test_rank_map_gives_p_upper_to_the_lowest_and_zero_to_the_highest():
    m = dropout_map({"a": 3.0, "b": 1.0, "c": 2.0, "d": 10.0}, p_upper=0.12)
    assert m["b"] == pytest.approx(0.12) and m["d"] == 0.0
    assert m["c"] == pytest.approx(0.08) and m["a"] == pytest.approx(0.04)  # equal steps of p_upper / (D - 1)
    mag = dropout_map({"a": 3.0, "b": 1.0, "c": 2.0, "d": 10.0}, p_upper=0.12, mapping="magnitude")
    assert mag["b"] == pytest.approx(0.12) and mag["d"] == 0.0 and mag["a"] == pytest.approx(0.12 * (1 - 2 / 9))


def test_guided_dropout_changes_the_effective_sdpa_attention_dropout():
    bb = load_backbone("tiny", seed=0)
    assert type(bb.model.bert.encoder.layer[0].attention.self).__name__ == "BertSdpaSelfAttention"
    _zero_all_dropout(bb.model)
    bb.model.train()
    # the pitfall: setting .p alone does nothing under SDPA
    for s in dropout_sites(bb.model, bb.blocks):
        if s.kind == "attention":
            s.dropout.p = 0.5
    assert torch.equal(_logits(bb, 1), _logits(bb, 2))
    # the plug-in: only the attention sites get a probability (they have the lowest scores)
    scores = {s.name: (0.0 if s.kind == "attention" else 1.0 + i) for i, s in enumerate(dropout_sites(bb.model, bb.blocks))}
    gd = GuidedDropout(scores=scores, p_upper=0.5)
    gd.prepare(bb.model, bb.blocks)
    att = [s for s in dropout_sites(bb.model, bb.blocks) if s.kind == "attention"]
    assert all(s.get_p() > 0.3 for s in att)
    assert not torch.equal(_logits(bb, 1), _logits(bb, 2))
    bb.model.eval()
    assert torch.equal(_logits(bb, 1), _logits(bb, 2))


def test_guided_dropout_in_a_run_records_its_map(toy_task, fast_config):
    bb = load_backbone("tiny", seed=0)
    sc = sublayer_scores(bb, "contrastive", TEXTS, n=8, batch_size=4)
    res = train(bb, toy_task, fast_config.replace(max_steps=2), [("guided-dropout", {"scores": sc, "p_upper": 0.1})],
                store=None, verbose=False)
    m = res.artifacts["guided-dropout"]["map"]
    assert len(m) == 7 and max(m.values()) == pytest.approx(0.1) and min(m.values()) == 0.0
    lowest = min(sc.scores, key=sc.scores.get)
    assert m[lowest] == pytest.approx(0.1)


# --- Fisher scores and their cache --------------------------------------------------------------------
@pytest.mark.parametrize("source", ["contrastive", "mlm-warm", "task"])
def test_scores_are_positive_finite_and_deterministic(source, toy_task):
    bb = load_backbone("tiny", seed=0)
    kw = dict(n=6, seed=3, batch_size=3, warm_steps=3, task=toy_task, cache=False)
    a = sublayer_scores(bb, source, None if source == "task" else TEXTS, **kw)
    b = sublayer_scores(bb, source, None if source == "task" else TEXTS, **kw)
    assert set(a.scores) == {s.name for s in dropout_sites(bb.model, bb.blocks)}
    assert all(v > 0 for v in a.scores.values())
    assert a.scores == b.scores
    assert a.meta["source"] == source and a.meta["n"] == 6 and a.meta["seed"] == 3 and "loss" in a.meta
    assert all(p.requires_grad for p in bb.model.parameters())  # flags restored


def test_cache_is_written_read_back_and_refused_for_another_backbone(tmp_path):
    bb = load_backbone("tiny", seed=0)
    first = sublayer_scores(bb, "contrastive", TEXTS, n=6, batch_size=3)
    path = first.meta["path"]
    blob = json.loads(open(path).read())
    assert blob["backbone"] == "tiny" and blob["n"] == 6 and blob["source"] == "contrastive" and blob["scores"]
    again = sublayer_scores(bb, "contrastive", TEXTS, n=6, batch_size=3)
    assert again.scores == first.scores and again.meta["created"] == first.meta["created"]
    other = load_backbone("tiny", seed=1)  # other weights: a different backbone
    with pytest.raises(GuidanceError, match="stale cache"):
        sublayer_scores(other, "contrastive", TEXTS, n=6, batch_size=3, path=path)
    with pytest.raises(MethodError, match="stale cache"):
        GuidedDropout(scores=path).prepare(other.model, other.blocks)
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(GuidanceError, match="not a Fisher score file.*Delete it"):
        SublayerScores.load(tmp_path / "junk.json")


# --- bad input --------------------------------------------------------------------------------------
def test_bad_input_is_refused_clearly():
    bb = load_backbone("tiny", seed=0)
    with pytest.raises(GuidanceError, match="Did you mean 'contrastive'"):
        sublayer_scores(bb, "contrastiv", TEXTS)
    with pytest.raises(GuidanceError, match="at least 2"):
        sublayer_scores(bb, "contrastive", ["only one sentence"], cache=False)
    with pytest.raises(GuidanceError, match="at least 2"):
        sublayer_scores(bb, "contrastive", [], cache=False)
    with pytest.raises(GuidanceError, match="no pretrained MLM head.*mlm-warm"):
        sublayer_scores(bb, "mlm", TEXTS, n=4, cache=False)
    with pytest.raises(MethodError, match="Unknown Fisher source"):
        GuidedDropout(source="fisher")
    with pytest.raises(MethodError, match=r"\[0, 1\)"):
        GuidedDropout(scores={"embeddings": 1.0}, p_upper=1.5)
    with pytest.raises(MethodError, match="mapping"):
        GuidedDropout(scores={"embeddings": 1.0}, mapping="linear")
    with pytest.raises(MethodError, match="do not match"):
        GuidedDropout(scores={"embeddings": 1.0, "block9.attention": 2.0}).prepare(bb.model, bb.blocks)
    with pytest.raises(MethodError, match="both decide the dropout"):
        resolve(["guided-dropout", "gaussian-dropout"])


def test_a_backbone_without_dropout_modules_is_refused():
    bb = load_backbone("tiny", seed=0)
    for mod in list(bb.model.modules()):
        for name, child in list(mod.named_children()):
            if isinstance(child, nn.Dropout):
                setattr(mod, name, nn.Identity())
    with pytest.raises(GuidanceError, match="no dropout modules"):
        dropout_sites(bb.model, bb.blocks)
    with pytest.raises(MethodError, match="No dropout modules"):
        GaussianDropout().prepare(bb.model, bb.blocks)


# --- Gaussian dropout ------------------------------------------------------------------------------
def test_gaussian_dropout_replaces_every_dropout_including_sdpa_attention():
    bb = load_backbone("tiny", seed=0)
    g = GaussianDropout(p=0.1)
    g.prepare(bb.model, bb.blocks)
    assert not any(isinstance(m, nn.Dropout) for m in bb.model.modules())
    assert g.eager == 2 and type(bb.model.bert.encoder.layer[0].attention.self).__name__ == "BertSelfAttention"
    noise = [m for m in bb.model.modules() if isinstance(m, GaussianNoise)]
    assert noise and all(m.alpha == pytest.approx(0.1 / 0.9) for m in noise)
    bb.model.train()
    assert not torch.equal(_logits(bb, 1), _logits(bb, 2))
    bb.model.eval()
    assert torch.equal(_logits(bb, 1), _logits(bb, 2))
    x = torch.ones(200_000)
    m = GaussianNoise(0.25).train()
    y = m(x)
    assert abs(float(y.mean()) - 1) < 0.01 and abs(float(y.var()) - 0.25) < 0.01
