"""The fair protocol's pieces (issue 21): a readout that matches the backbone, model selection on dev
that never looks at a test set, early stopping, and statistics that say what they can (MDE, verdicts,
Holm)."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

import tutorfinetune as tft
from tutorfinetune import analysis as an
from tutorfinetune.backbones import resolve_readout
from tutorfinetune.engine import loop as engine_loop
from tutorfinetune.heads import MeanReadout, ReadoutError, pretrained_readout, readout_of


# --------------------------------------------------------------------------------------------
# Readout
# --------------------------------------------------------------------------------------------
def test_readout_follows_the_checkpoint_pooling_config(tmp_path):
    assert resolve_readout("minilm") == "mean"  # all-MiniLM-L6-v2's sentence-transformers config: mean tokens
    assert resolve_readout("tiny") == "pooler"  # a plain BERT config: the model's own pooler
    assert resolve_readout("tiny", "cls") == "cls"
    st = tmp_path / "st"
    (st / "1_Pooling").mkdir(parents=True)
    (st / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True,
                                                               "pooling_mode_mean_tokens": False}))
    assert pretrained_readout(st) == "cls"
    assert pretrained_readout(tmp_path / "plain") == "pooler"
    with pytest.raises(ReadoutError, match="Did you mean 'mean'"):
        resolve_readout("tiny", "meen")


def test_mean_readout_is_the_masked_mean_and_ignores_padding():
    bb = tft.load_backbone("tiny", num_labels=2, readout="mean")
    assert readout_of(bb.model) == "mean" and isinstance(bb.model.bert.pooler, MeanReadout)
    assert bb.blocks.head[0] is bb.model.bert.pooler  # the BlockMap sees the new head
    model, tok = bb.model.eval(), bb.tokenizer
    short = tok(["a great film"], return_tensors="pt")
    padded = tok(["a great film"], return_tensors="pt", padding="max_length", max_length=16)
    with torch.no_grad():
        a, b = model(**short).logits, model(**padded).logits
        hidden = model.bert(**short).last_hidden_state
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    manual = model.classifier(hidden.mean(dim=1))
    torch.testing.assert_close(a, manual, atol=1e-6, rtol=0)
    with pytest.raises(ReadoutError, match="pooler is gone"):
        tft.backbones.apply_readout(bb, "pooler")


def test_config_readout_auto_is_resolved_and_recorded(toy_task, fast_config, tmp_path):
    bb = tft.load_backbone("tiny", num_labels=2)
    res = tft.train(bb, toy_task, fast_config.replace(readout="cls", max_steps=2), store=tmp_path, verbose=False)
    assert res.config.readout == "cls" and readout_of(bb.model) == "cls"
    rec = tft.results.load_records(tmp_path)[0]
    assert rec["config"]["readout"] == "cls"
    # the neutral values of the new fields stay out of the record: older fingerprints still match
    pooler = fast_config.replace(readout="pooler")
    assert "readout" not in pooler.to_dict() and "select_best" not in pooler.to_dict()
    assert tft.TrainConfig.from_dict(pooler.to_dict()) == pooler  # absent in a written dict: the neutral value
    assert tft.TrainConfig().readout == "auto" and fast_config.to_dict()["readout"] == "auto"
    assert tft.TrainConfig.from_dict({"lr": 1e-4}, written=False).readout == "auto"  # a dict written by hand
    assert pooler.replace(lr=1e-4).readout == "pooler"  # replace keeps every field it is not given
    bb2 = tft.load_backbone("tiny", num_labels=2)
    res2 = tft.train(bb2, toy_task, fast_config.replace(max_steps=2), store=tmp_path / "b", verbose=False)
    assert res2.config.readout == "pooler"  # the default "auto": tiny is a plain BERT config
    assert "readout" not in tft.results.load_records(tmp_path / "b")[0]["config"]  # recorded as resolved


# --------------------------------------------------------------------------------------------
# Model selection on dev
# --------------------------------------------------------------------------------------------
def test_best_dev_selection_never_looks_at_a_test_set(toy_task, fast_config, tmp_path, monkeypatch):
    seen_during_training = []
    real = engine_loop._Loop.curve_point

    def spy(self):
        seen_during_training.append(self.data.curve)
        return real(self)

    monkeypatch.setattr(engine_loop._Loop, "curve_point", spy)
    cfg = fast_config.replace(max_steps=8, eval_every=2, select_best=True, curve_eval_set="dev")
    res = tft.train(tft.load_backbone("tiny", num_labels=2), toy_task, cfg, store=tmp_path, verbose=False)
    assert set(seen_during_training) == {"dev"} and len(seen_during_training) == 4
    rec = tft.results.load_records(tmp_path)[0]
    curve = {h["step"]: h["dev_accuracy"] for h in rec["history"] if h.get("dev_accuracy") is not None}
    best = max(curve.values())
    assert rec["best_step"] == min(s for s, v in curve.items() if v == best)  # earliest best
    assert rec["best_dev"] == best and rec["selected_on"] == "dev"
    assert rec["metrics"]["dev"]["accuracy"] == pytest.approx(best)  # metrics are at the best dev step
    assert set(rec["final_metrics"]) == set(rec["metrics"])  # the final-step numbers stay in the record
    assert rec["final_metrics"]["dev"]["accuracy"] == pytest.approx(curve[8])
    assert res.metrics == rec["metrics"]


def test_selection_on_a_test_split_is_refused(toy_task, fast_config):
    test_sets = [n for n, s in toy_task.eval_set_specs.items() if s.get("split") == "test"]
    with pytest.raises(tft.TrainingError, match="must be a dev split"):
        tft.train(tft.load_backbone("tiny", num_labels=2), toy_task,
                  fast_config.replace(select_best=True, curve_eval_set=test_sets[0]), store=None, verbose=False)
    with pytest.raises(tft.ConfigError, match="early_stopping needs select_best"):
        fast_config.replace(early_stopping=2)


def test_early_stopping_stops_after_patience(toy_task, fast_config, tmp_path, monkeypatch):
    scores = iter([0.9, 0.5, 0.5, 0.5, 0.5, 0.5])
    monkeypatch.setattr(engine_loop._Loop, "curve_point", lambda self: {"dev_accuracy": next(scores), "dev_loss": 0.0})
    cfg = fast_config.replace(max_steps=12, eval_every=2, select_best=True, early_stopping=2)
    res = tft.train(tft.load_backbone("tiny", num_labels=2), toy_task, cfg, store=tmp_path, verbose=False)
    rec = tft.results.load_records(tmp_path)[0]
    assert rec["stopped_early_at"] == 6 and rec["best_step"] == 2 and len(res.history) == 6
    assert rec["timings"]["steps"] == 6


# --------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------
def _pairs(diffs):
    rows = []
    for seed, d in enumerate(diffs):
        rows += [{"method": "a", "seed": seed, "metric": "accuracy", "value": 0.8 + d},
                 {"method": "b", "seed": seed, "metric": "accuracy", "value": 0.8}]
    return pd.DataFrame(rows)


def test_mde_matches_the_t_formula():
    # n = 5, std 0.02: (t_.975,4 + t_.80,4) * 0.02 / sqrt(5) = (2.776 + 0.941) * 0.00894
    assert an.minimal_detectable_effect(0.02, 5) == pytest.approx(3.7178 * 0.02 / math.sqrt(5), rel=1e-3)
    assert an.minimal_detectable_effect(0.02, 20) < an.minimal_detectable_effect(0.02, 5)
    assert math.isnan(an.minimal_detectable_effect(0.02, 1))


def test_verdicts_on_constructed_differences():
    up = an.paired_difference(_pairs([0.03, 0.04, 0.05, 0.03, 0.04]), "a", "b")
    down = an.paired_difference(_pairs([-0.03, -0.04, -0.05, -0.03, -0.04]), "a", "b")
    noise = an.paired_difference(_pairs([0.03, -0.04, 0.05, -0.03, 0.01]), "a", "b")
    assert an.claim_verdict(up, "greater") == "reproduced"
    assert an.claim_verdict(down, "greater") == "contradicted"
    v = an.claim_verdict(noise, "greater")
    assert v.startswith("inconclusive (could detect ≥ ") and v.endswith(" points)")
    assert float(v.split("≥ ")[1].split(" ")[0]) == pytest.approx(100 * noise["mde"], abs=0.05)
    assert an.claim_verdict(down, "less") == "reproduced"
    # non-inferiority needs the whole interval above -1 point
    tiny_loss = an.paired_difference(_pairs([-0.002, -0.001, -0.003, -0.002, -0.001]), "a", "b")
    assert an.claim_verdict(tiny_loss, "at least") == "reproduced"
    assert an.claim_verdict(down, "at least") == "contradicted"
    assert an.claim_verdict(noise, "at least").startswith("inconclusive")
    assert up["p"] < 0.01 and noise["p"] > 0.2


def test_holm_adjustment():
    adj = an.holm([0.01, 0.04, 0.03, float("nan")])
    assert adj[:3] == pytest.approx([0.03, 0.06, 0.06]) and math.isnan(adj[3])
    up = an.paired_difference(_pairs([0.03, 0.04, 0.05, 0.03, 0.04]), "a", "b")
    assert an.claim_verdict(up, "greater", p_adjusted=0.2) == f"inconclusive (could detect ≥ {100 * up['mde']:.1f} points)"
    assert np.isfinite(up["mde"])


# --------------------------------------------------------------------------------------------
# One entry under the protocol: lr chosen on dev, then every seed
# --------------------------------------------------------------------------------------------
def test_run_entry_chooses_the_lr_on_dev_and_reuses_runs(toy_task, fast_config, tmp_path):
    from tutorfinetune.studies.protocol import Protocol, choose_lr, run_entry

    proto = Protocol(readout="auto", seeds=(0, 1), lr_seeds=(0,), evaluations=2)
    cfg = fast_config.replace(max_steps=4)
    out = run_entry("tiny", toy_task, cfg, ["full"], lrs=[1e-5, 3e-3], protocol=proto, store=tmp_path, study="p")
    recs = tft.results.load_records(tmp_path)
    assert len(recs) == 3  # 2 candidates on seed 0, then seed 1 at the chosen lr (seed 0 reused)
    dev = {r["config"]["lr"]: r["metrics"]["dev"]["accuracy"] for r in recs if r["seed"] == 0}
    best = max(dev.values())
    assert out.chosen_lr == min(lr for lr, v in dev.items() if v == best)
    assert set(out.frame["seed"]) == {0, 1} and set(out.frame["chosen_lr"]) == {out.chosen_lr}
    assert all(r["config"]["select_best"] and r["config"]["eval_every"] == 2 for r in recs)
    assert out.lr_table["chosen"].sum() == 1
    # only dev decides: changing every test-set number leaves the choice alone
    frame = tft.results.load(tmp_path)
    shuffled = frame.copy()
    shuffled.loc[shuffled["eval_set"] != "dev", "value"] = np.random.default_rng(0).random(
        (shuffled["eval_set"] != "dev").sum())
    assert choose_lr(frame[frame["seed"] == 0])[0] == choose_lr(shuffled[shuffled["seed"] == 0])[0]
    again = run_entry("tiny", toy_task, cfg, ["full"], lrs=[1e-5, 3e-3], protocol=proto, store=tmp_path, study="p")
    assert len(tft.results.load_records(tmp_path)) == 3 and again.chosen_lr == out.chosen_lr  # all reused
    # the seeds at the chosen lr form one configuration (n = 2), whichever of them was an lr-choice run
    agg = an.aggregate(out.frame[out.frame["eval_set"] == "dev"], by=("method", "eval_set"))
    assert len(agg) == 1 and int(agg["n"].iloc[0]) == 2


def test_protocol_modes():
    from tutorfinetune.studies.protocol import LR_GRIDS, Protocol

    full, ci = Protocol.for_mode("full"), Protocol.for_mode("ci")
    assert len(full.seeds) >= 5 and full.grid("light") == LR_GRIDS["light"]
    assert ci.seeds == (0,) and ci.grid("full") == (1e-4,) and ci.grid("light") == (1e-3,)
    cfg = Protocol().configure(tft.TrainConfig(max_steps=95), n_train=100)
    assert cfg.eval_every == 10 and cfg.select_best and cfg.readout == "auto"
    with pytest.raises(tft.ConfigError, match="mode must be"):
        Protocol.for_mode("fast")
