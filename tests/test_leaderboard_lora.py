"""The LoRA entries of the leaderboard (issue 18; notebooks/02b_lora.ipynb teaches LoRA)."""

import pytest

import tutorfinetune as tft
from tutorfinetune.studies import leaderboard as lb
from tutorfinetune.studies.protocol import LR_GRIDS


def _trainable_after(settings):
    bb = tft.load_backbone("tiny")
    tft.methods.get("lora", **settings).prepare(bb.model, bb.blocks)
    return sum(p.numel() for p in bb.model.parameters() if p.requires_grad)


def test_lora_entries_have_their_family_and_a_light_learning_rate():
    chosen = lb.entries("lora")
    assert [e.name for e in chosen] == ["LoRA r=8", "LoRA all-linear r=8"]
    assert "lora" in lb.FAMILIES and all(e.notebook == "02b" for e in chosen)
    assert all(e.lr in LR_GRIDS["light"] for e in chosen)


def test_lora_entries_train_the_lora_matrices_and_the_head(tmp_path, toy_task):
    chosen = lb.entries("lora")
    base = tft.TrainConfig(batch_size=8, max_length=32, eval_sets=["test"])
    df = lb.run_leaderboard("tiny", toy_task, chosen, [lb.Regime("r", 40, 2)], [0], base=base, store=tmp_path,
                            study="lb")
    assert set(df.entry) == {e.name for e in chosen} and set(df.method) == {"lora"}
    bb = tft.load_backbone("tiny")
    head = sum(p.numel() for p in bb.blocks.parameters("head"))
    cost = lb.costs(tmp_path, df.run_id.unique(), head).set_index("entry")
    qv, every = _trainable_after({"r": 8}), _trainable_after({"r": 8, "target_modules": "all-linear"})
    assert cost.loc["LoRA r=8", "trainable"] == qv < every == cost.loc["LoRA all-linear r=8", "trainable"]
    assert cost.loc["LoRA r=8", "stored_mib"] == pytest.approx(4 * qv / 2 ** 20)
