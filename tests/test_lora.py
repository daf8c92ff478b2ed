"""LoRA through Hugging Face PEFT: the ``"lora"`` plug-in, its composition with the other plug-ins, saving in
PEFT's format, merging (METHODS.md §6; tutorfinetune/methods/lora.py)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import tutorfinetune as tft
from tutorfinetune.engine import evaluate_only
from tutorfinetune.fisher import find_units
from tutorfinetune.fisher.sublayer import dropout_sites
from tutorfinetune.methods import (
    LoRA,
    LoRAConfig,
    LoRAError,
    MethodError,
    load_lora,
    merge_lora,
    save_lora,
)
from tutorfinetune.methods.lora import has_lora, lora_parameters, resolve_targets

TEXTS = ["the soup was cold and bland", "a joy to watch, again and again", "it broke after a week"]

#: merged vs unmerged logits, fp32 (the merge adds (alpha/r) B A to W0: float rounding only)
MERGE_ATOL = 1e-5


def _logits(bb, texts=TEXTS):
    was = bb.model.training
    bb.model.eval()
    with torch.no_grad():
        out = bb.model(**bb.tokenizer(texts, return_tensors="pt", padding=True)).logits
    bb.model.train(was)
    return out


def _base_state(model):
    """Every weight that is not a LoRA matrix and not in the head, under its name without PEFT's wrapper."""
    return {n.replace(".base_layer", ""): p.detach().clone() for n, p in model.named_parameters()
            if ".lora_" not in n and not n.startswith(("classifier", "bert.pooler"))}


# --- config and registry ----------------------------------------------------------------------------
def test_registered_with_a_typed_config():
    import dataclasses

    assert "lora" in tft.methods.available()
    m = tft.methods.get("lora", r=8)
    assert isinstance(m, LoRA) and m.config == LoRAConfig(r=8) and m.stage == tft.methods.STAGE["adapt"]
    assert m.describe() == {"name": "lora", "r": 8, "alpha": 8.0, "dropout": 0.0, "target_modules": "qv",
                            "train_head": True, "bias": "none", "adapter_name": "task"}
    # papermill strings, keywords, a config object, a bare config: the same settings
    a = tft.methods.resolve([("lora", {"r": "4", "alpha": "16", "target_modules": "query,key", "train_head": "false"})])[0]
    b = LoRA(LoRAConfig(r=4, alpha=16, target_modules=("query", "key"), train_head=False))
    c = tft.methods.resolve([LoRAConfig(r=4, alpha=16.0, target_modules=["query", "key"], train_head=False)])[0]
    assert a.config == b.config == c.config and a.describe() == b.describe() == LoRA(4, 16.0, train_head=False,
                                                                                    target_modules="query,key").describe()
    assert a.config.target_modules == ("query", "key") and a.config["r"] == 4
    cfg = LoRAConfig(r=16, target_modules="all-linear")
    assert LoRAConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert cfg.replace(r=2).r == 2 and cfg.r == 16
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.r = 3
    text = str(tft.methods.describe("lora", file=open("/dev/null", "w")))
    assert "r: int = 8" in text and "rank of the update" in text and "one per run" in text


@pytest.mark.parametrize("settings, match", [
    ({"r": 0}, "r .*must be a positive integer"),
    ({"r": -4}, "positive integer"),
    ({"r": "eight"}, "r must be an integer"),
    ({"alpha": 0}, "alpha must be > 0"),
    ({"dropout": 1.0}, r"dropout must be a probability in \[0, 1\)"),
    ({"bias": "some"}, "Unknown LoRA bias 'some'"),
    ({"rank": 8}, "Unknown 'lora' option 'rank'"),
    ({"target_modules": []}, "target_modules is empty"),
])
def test_bad_settings_say_what_to_fix(settings, match):
    with pytest.raises(LoRAError, match=match):
        tft.methods.get("lora", **settings)


# --- where LoRA goes ----------------------------------------------------------------------------------
def test_targets_resolve_per_family_and_stay_inside_the_blocks(tiny):
    from transformers import (
        DistilBertConfig,
        DistilBertForSequenceClassification,
        RobertaConfig,
        RobertaForSequenceClassification,
    )

    from tutorfinetune.backbones import block_map

    bb = tiny()
    assert resolve_targets(bb.model, bb.blocks, "qv") == ["query", "value"]
    # BERT's pooler has a 'dense' too: all-linear never says plain 'dense'
    assert resolve_targets(bb.model, bb.blocks, "all-linear") == ["intermediate.dense", "key", "output.dense",
                                                                  "query", "value"]
    assert resolve_targets(bb.model, bb.blocks, ("attention.output.dense",)) == ["attention.output.dense"]
    assert resolve_targets(bb.model, bb.blocks, ("dense",)) == ["intermediate.dense", "output.dense"]
    small = dict(hidden_size=32, num_attention_heads=2, vocab_size=100)
    distil = DistilBertForSequenceClassification(DistilBertConfig(dim=32, hidden_dim=64, n_layers=2, n_heads=2,
                                                                  vocab_size=100))
    assert resolve_targets(distil, block_map(distil), "qv") == ["q_lin", "v_lin"]
    assert "lin1" in resolve_targets(distil, block_map(distil), "all-linear")
    roberta = RobertaForSequenceClassification(RobertaConfig(num_hidden_layers=2, intermediate_size=64, **small))
    assert resolve_targets(roberta, block_map(roberta), "qv") == ["query", "value"]
    with pytest.raises(LoRAError, match="Unknown target module 'quary'.*Did you mean 'query'"):
        resolve_targets(bb.model, bb.blocks, ("quary",))


# --- what trains --------------------------------------------------------------------------------------
def test_prepare_starts_at_the_pretrained_function_and_freezes_the_base(tiny):
    bb = tiny()
    model = bb.model
    before = _logits(bb)
    m = tft.methods.get("lora", r=4)
    m.prepare(bb.model, bb.blocks)
    assert bb.model is model and has_lora(model)
    assert torch.equal(_logits(bb), before)  # B = 0: exactly the pretrained function
    lora = lora_parameters(model)
    assert len(lora) == 2 * 2 * 2  # 2 blocks x (query, value) x (A, B)
    assert all(torch.count_nonzero(p) == 0 for n, p in lora.items() if ".lora_B." in n)
    assert all(torch.count_nonzero(p) > 0 for n, p in lora.items() if ".lora_A." in n)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    head = {n for n, p in model.named_parameters() if n.startswith(("classifier", "bert.pooler"))}
    assert trainable == set(lora) | head
    summary = bb.parameter_summary().set_index("unit")
    assert summary.loc["block0", "trainable"] == 2 * (4 * 64 + 64 * 4)
    assert summary.loc["embeddings", "trainable"] == 0


def test_train_changes_only_lora_matrices_and_the_head(tiny, toy_task, fast_config):
    bb = tiny()
    base = _base_state(bb.model)
    head = {n: p.detach().clone() for n, p in bb.model.classifier.named_parameters()}
    res = tft.train(bb, toy_task, fast_config, methods=["lora"], store=None, verbose=False)
    assert res.method == "lora" and res.versions["peft"].startswith("0.21")
    after = _base_state(bb.model)
    assert after.keys() == base.keys()
    assert all(torch.equal(after[k], v) for k, v in base.items())  # bit-identical base weights
    lora = lora_parameters(bb.model, "task")
    assert all(torch.count_nonzero(p) > 0 for n, p in lora.items() if ".lora_B." in n)  # B moved off zero
    assert any(not torch.equal(p, head[n]) for n, p in bb.model.classifier.named_parameters())
    assert res.artifacts["lora"]["lora_parameters"] == sum(p.numel() for p in lora.values())


def test_train_head_false_keeps_the_head(tiny, toy_task, fast_config):
    bb = tiny()
    head = [p.detach().clone() for p in bb.blocks.parameters("head")]
    tft.train(bb, toy_task, fast_config.replace(max_steps=3), methods=[("lora", {"train_head": False})], store=None,
              verbose=False)
    assert all(torch.equal(a, b) for a, b in zip(head, bb.blocks.parameters("head")))


# --- merge, save, load ----------------------------------------------------------------------------------
def test_merged_and_unmerged_give_the_same_logits(tiny, toy_task, fast_config):
    bb = tiny()
    tft.train(bb, toy_task, fast_config.replace(max_steps=6), methods=[("lora", {"target_modules": "all-linear"})],
              store=None, verbose=False)
    q = bb.model.bert.encoder.layer[0].attention.self.query
    w0, scale = q.base_layer.weight.detach().clone(), q.scaling["task"]
    delta = scale * (q.lora_B["task"].weight @ q.lora_A["task"].weight)
    unmerged = _logits(bb)
    out = merge_lora(bb)
    assert out is bb.model and not has_lora(bb.model) and not hasattr(bb.model, "peft_config")
    q = bb.model.bert.encoder.layer[0].attention.self.query
    assert type(q) is nn.Linear and torch.allclose(q.weight, w0 + delta, atol=1e-7)
    merged = _logits(bb)
    assert not torch.equal(unmerged, _logits(tiny()))  # training moved the function
    assert torch.allclose(merged, unmerged, atol=MERGE_ATOL, rtol=0), (merged - unmerged).abs().max()
    with pytest.raises(LoRAError, match="no LoRA layers to merge"):
        merge_lora(bb.model)


def test_saved_lora_reloads_with_the_same_metrics_and_peft_reads_it(tiny, toy_task, fast_config, tmp_path):
    from peft import PeftModel

    bb = tiny(seed=3)
    tft.train(bb, toy_task, fast_config.replace(max_steps=6), methods=["lora"], store=None, verbose=False)
    path = save_lora(bb, tmp_path / "lora")
    files = sorted(p.name for p in path.iterdir())
    assert files == ["adapter_config.json", "adapter_model.safetensors", "tutorfinetune.json"]
    conf = json.loads((path / "adapter_config.json").read_text())
    assert conf["peft_type"] == "LORA" and conf["r"] == 8 and sorted(conf["target_modules"]) == ["query", "value"]
    assert conf["modules_to_save"] == ["bert.pooler", "classifier"]
    assert json.loads((path / "tutorfinetune.json").read_text())["backbone"] == "tiny"
    cfg = fast_config.replace(max_steps=6)
    want = evaluate_only(bb, toy_task, cfg, method="lora", store=None)
    fresh = tiny(seed=3)
    assert load_lora(fresh, path) == "task"
    assert evaluate_only(fresh, toy_task, cfg, method="lora", store=None) == want
    assert torch.allclose(_logits(fresh), _logits(bb), atol=1e-6)
    # PEFT's own loader rebuilds the same classifier from the folder
    other = tiny(seed=3)
    peft_model = PeftModel.from_pretrained(other.model, str(path))
    peft_model.eval()
    with torch.no_grad():
        got = peft_model(**bb.tokenizer(TEXTS, return_tensors="pt", padding=True)).logits
    assert torch.allclose(got, _logits(bb), atol=1e-6)


def test_loading_refuses_other_backbones_and_non_lora_folders(tiny, tmp_path):
    bb = tiny()
    tft.methods.get("lora").prepare(bb.model, bb.blocks)
    save_lora(bb.model, tmp_path / "lora", backbone="tiny")
    other = tft.load_backbone("tiny", tiny_layers=3)
    with pytest.raises(LoRAError, match="another backbone.*num_hidden_layers 2 != 3"):
        load_lora(other, tmp_path / "lora")
    with pytest.raises(LoRAError, match="not a PEFT LoRA folder"):
        load_lora(tiny(), tmp_path)
    with pytest.raises(LoRAError, match="holds no LoRA layers"):
        save_lora(tiny().model, tmp_path / "none")


# --- composition -------------------------------------------------------------------------------------
def test_gu_units_are_the_lora_matrices_of_each_block(tiny, toy_task, fast_config):
    bb = tft.load_backbone("tiny", tiny_layers=3)
    base = _base_state(bb.model)
    res = tft.train(bb, toy_task, fast_config.replace(max_steps=8), methods=["lora", ("gu", {"k": 2})], store=None,
                    verbose=False)
    art = res.artifacts["gu"]
    assert art["units"] == ["adapter0", "adapter1", "adapter2"] and art["unit_kind"] == "adapter"
    assert art["order"] == ["adapter2", "adapter1", "adapter0"]
    units = res.history["trainable_units"].str.split(",").map(len)
    assert units.iloc[0] == 1 and units.iloc[-1] == 3 and units.is_monotonic_increasing
    assert all(torch.equal(_base_state(bb.model)[k], v) for k, v in base.items())
    assert [len(v) for v in find_units(bb.model, bb.blocks).values()] == [4, 4, 4]


def test_composes_with_graddrop_fisher_tracker_and_guided_dropout(tiny, toy_task, fast_config):
    bb = tiny()
    scores = {s.name: float(i + 1) for i, s in enumerate(dropout_sites(bb.model, bb.blocks))}
    base = _base_state(bb.model)
    res = tft.train(bb, toy_task, fast_config.replace(max_steps=4),
                    methods=[("graddrop", {"p": 0.5, "variant": "layer"}), ("fisher-tracker", {"every": 2, "batches": 1}),
                             ("guided-dropout", {"scores": scores, "p_upper": 0.1}), "lora"],
                    store=None, verbose=False)
    assert res.method.split("+")[:2] == ["guided-dropout", "lora"]  # guided dropout scores the plain model first
    h = res.history
    assert {"trF:adapter0", "trF:adapter1", "graddrop_kept", "graddrop_dropped"} <= set(h.columns)
    assert set(res.artifacts["guided-dropout"]["map"]) == set(scores)
    assert all(torch.equal(_base_state(bb.model)[k], v) for k, v in base.items())


def test_lora_inside_the_trainer_bridge(tiny, toy_task, tmp_path):
    from test_hf_bridge import _trainer

    from tutorfinetune.hf import MethodsCallback

    bb = tiny()
    base = _base_state(bb.model)
    bridge = MethodsCallback(["lora", ("gu", {"k": 3})]).prepare(bb.model, bb.blocks, verbose=False)
    _trainer(bb, toy_task, tmp_path, bridge).train()
    assert all(torch.equal(_base_state(bb.model)[k], v) for k, v in base.items())
    lora = lora_parameters(bb.model)
    assert all(torch.count_nonzero(p) > 0 for n, p in lora.items() if ".lora_B." in n)
    assert bridge.artifacts["gu"]["order"] == ["adapter1", "adapter0"]


def test_from_intermediate_loads_the_encoder_before_lora(toy_task):
    from test_stilts import mc_frame

    from tutorfinetune.data import multiple_choice_task
    from tutorfinetune.recipes import stilts as st

    cfg = tft.TrainConfig(lr=1e-3, max_steps=4, batch_size=8, max_length=32, warmup=0.0, seed=0)
    inter = st.train_intermediate("tiny", multiple_choice_task(mc_frame(), "toy-mc"), cfg, store=None)
    out = st.stilts("tiny", None, toy_task, cfg, intermediate=inter, methods=["lora"], store=None)
    assert out.result.method == "from-intermediate+lora"
    now = {k.replace(".base_layer", ""): v for k, v in st.encoder_state(out.backbone.model).items() if ".lora_" not in k}
    for k, v in inter.state.items():
        if not k.startswith("pooler"):
            assert torch.equal(now[k], v), k  # the carried encoder, frozen under LoRA
    # an intermediate phase with LoRA would carry the pretrained encoder unchanged
    with pytest.raises(st.STILTsError, match="cannot use 'lora'.*merge_lora"):
        st.train_intermediate("tiny", multiple_choice_task(mc_frame(), "toy-mc"), cfg, methods=["lora"], store=None)


@pytest.mark.parametrize("others, match", [
    (["adapter"], "'lora' and 'adapter' both add trainable modules"),
    (["full"], "'full' trains every weight: pick one"),
    (["linear-probe"], "'linear-probe' trains the head only"),
    (["sparse-update"], "sparse fine-tuning.*'lora' freezes them"),
    (["lora"], "Two 'lora' plug-ins"),
])
def test_combinations_that_make_no_sense_are_refused(others, match):
    with pytest.raises(MethodError, match=match):
        tft.methods.resolve(["lora", *others])


@pytest.mark.parametrize("methods, match", [
    (["lora", ("gu", {"units": "blocks"})], "units='blocks' would unfreeze the pretrained blocks"),
    (["lora", ("gu", {"adapter_name": "other"})], "looks for adapter 'other'"),
    ([("lora", {"train_head": False}), "gu"], "train_head=False cannot hold"),
])
def test_schedules_that_would_train_what_lora_freezes_are_refused_at_prepare(methods, match, tiny):
    bb = tiny()
    lora = tft.methods.resolve(methods)[0]
    with pytest.raises(LoRAError, match=match):
        lora.prepare(bb.model, bb.blocks)
    assert not has_lora(bb.model)


def test_a_model_that_already_holds_lora_is_refused(tiny):
    bb = tiny()
    tft.methods.get("lora").prepare(bb.model, bb.blocks)
    with pytest.raises(LoRAError, match="already holds LoRA layers"):
        tft.methods.get("lora").prepare(bb.model, bb.blocks)


def test_a_run_resumed_from_a_checkpoint_ends_where_an_uninterrupted_one_ends(tiny, toy_task, fast_config, tmp_path):
    cfg = fast_config.replace(max_steps=8, checkpoint_every=4)
    whole = tft.train(tiny(), toy_task, cfg, methods=["lora"], store=None, verbose=False, checkpoint_dir=tmp_path / "a")
    resumed = tft.train(tiny(), toy_task, cfg, methods=["lora"], store=None, verbose=False, checkpoint_dir=tmp_path / "b",
                        resume_from=tmp_path / "a" / "step-0000004")
    assert resumed.metrics == whole.metrics
