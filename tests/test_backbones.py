"""Backbones: the embedded MiniLM, the tiny test model, BlockMaps of several families, summaries."""

import pytest
import torch
from transformers import AutoModelForSequenceClassification, DistilBertConfig, XLMRobertaConfig

from tutorfinetune import BackboneError, load_backbone
from tutorfinetune.backbones import block_map, parameter_summary


def test_minilm_loads_offline_with_its_blockmap():
    bb = load_backbone("minilm", num_labels=2, label_names=["negative", "positive"])
    assert bb.blocks.num_blocks == 6 and bb.blocks.family == "bert"
    total = sum(p.numel() for p in bb.model.parameters())
    assert 22_000_000 < total < 23_500_000
    s = bb.parameter_summary().set_index("unit")
    assert list(s.index) == ["embeddings", *[f"block{i}" for i in range(6)], "head", "all"]
    assert s.loc["all", "total"] == total and s.loc["all", "trainable"] == total
    assert s.loc["block0", "total"] == sum(p.numel() for p in bb.model.bert.encoder.layer[0].parameters())
    assert bb.model.config.id2label[1] == "positive"
    enc = bb.tokenizer(["a great film"], return_tensors="pt")
    assert bb.model(**enc).logits.shape == (1, 2)


def test_head_init_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = load_backbone("tiny", num_labels=2, seed=1)
    after = torch.rand(1)
    b = load_backbone("tiny", num_labels=2, seed=1)
    c = load_backbone("tiny", num_labels=2, seed=2)
    assert torch.equal(before, after)
    assert torch.equal(a.model.classifier.weight, b.model.classifier.weight)
    assert not torch.equal(a.model.classifier.weight, c.model.classifier.weight)


def test_tiny_is_small_and_shares_the_tokenizer():
    bb = load_backbone("tiny", num_labels=3)
    assert bb.blocks.num_blocks == 2 and bb.model.config.num_labels == 3
    assert bb.tokenizer.vocab_size == 30522


@pytest.mark.parametrize("cfg,family", [
    (DistilBertConfig(vocab_size=100, dim=32, n_layers=3, n_heads=2, hidden_dim=64), "distilbert"),
    (XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                      intermediate_size=64), "xlm-roberta"),
])
def test_blockmap_of_other_families(cfg, family):
    model = AutoModelForSequenceClassification.from_config(cfg)
    bm = block_map(model)
    assert bm.family == family and bm.num_blocks == 3
    df = parameter_summary(model, bm).set_index("unit")
    assert "other" not in df.index  # every parameter belongs to a unit
    assert df.loc["head", "total"] > 0


def test_bad_names_and_label_counts():
    with pytest.raises(BackboneError, match="num_labels must be an integer >= 2"):
        load_backbone("tiny", num_labels=1)
    with pytest.raises(BackboneError, match="num_labels must be"):
        load_backbone("tiny", num_labels="2")
    with pytest.raises(BackboneError, match="label_names has 3 names"):
        load_backbone("tiny", num_labels=2, label_names=["a", "b", "c"])
    with pytest.raises(BackboneError, match="local folder.*minilm"):
        load_backbone("./no/such/folder")


def test_local_path_loads(tmp_path):
    bb = load_backbone("tiny", num_labels=2)
    bb.model.save_pretrained(tmp_path)
    bb.tokenizer.save_pretrained(tmp_path)
    again = load_backbone(str(tmp_path), num_labels=2)
    assert again.blocks.num_blocks == 2
