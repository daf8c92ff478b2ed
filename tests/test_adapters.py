"""Task adapters (AdapterHub), the MAD-X stacking/swap recipe, save/load, and bad input."""

import pandas as pd
import pytest
import torch
from conftest import NEG, POS, toy_frame

from tutorfinetune import load_backbone, methods, mlm, train
from tutorfinetune.data import Task
from tutorfinetune.methods.adapter import (
    AdapterError,
    AdapterSwap,
    TaskAdapter,
    adapter_summary,
    load_adapter,
    save_adapter,
)
from tutorfinetune.recipes import madx


def domain_task() -> Task:
    f = toy_frame(80, 20, 20)
    f["domain"] = ["a", "b"] * (len(f) // 2)
    f["lang"] = "en"
    tgt = toy_frame(0, 0, 20)
    tgt["domain"], tgt["lang"] = "c", "en"
    frame = pd.concat([f, tgt], ignore_index=True)
    unl = pd.DataFrame({"text": [f"{t} again {i}" for i, t in enumerate((POS + NEG) * 3)],
                        "domain": (["a", "b", "c"] * 20), "lang": "en"})
    specs = {"dev": {"split": "dev"}, "in-distribution": {"split": "test", "domain": ["a", "b"]},
             "shift:c": {"split": "test", "domain": "c"}}
    return Task("toy-domains", frame, ["negative", "positive"], specs, unl,
                {"source_domains": ["a", "b"], "target_domains": ["c"]})


def test_task_adapter_trains_only_adapter_and_head(toy_task, tiny, fast_config):
    bb = tiny()
    base = {n: p.detach().clone() for n, p in bb.model.named_parameters()}
    res = train(bb, toy_task, fast_config, methods=["adapter"], store=None, verbose=False)
    changed = {n for n, p in bb.model.named_parameters() if n not in base or not torch.equal(base[n], p)}
    assert changed and all(".adapters.task." in n or n.startswith(("classifier", "bert.pooler")) for n in changed)
    assert any(".adapters.task." in n for n in changed) and "bert.pooler.dense.weight" in changed
    trainable = {n for n, p in bb.model.named_parameters() if p.requires_grad}
    assert trainable == {n for n in changed} | {n for n in trainable if n in changed}
    summary = adapter_summary(bb.model).set_index("adapter")
    assert summary.loc["task", "trainable"] == summary.loc["task", "total"] > 0
    assert res.history["trainable"].iloc[0] == sum(p.numel() for p in bb.model.parameters() if p.requires_grad)


def test_optimizer_holds_exactly_the_trainable_parameters(tiny, toy_task):
    from tutorfinetune import TrainConfig
    from tutorfinetune.engine import build_optimizer, trainable_parameters

    bb = tiny()
    m = TaskAdapter(reduction_factor=4)
    m.prepare(bb.model, bb.blocks)
    opt = build_optimizer(bb.model, trainable_parameters(bb.model, [m]), TrainConfig(), torch.device("cpu"))
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    assert in_opt == {id(p) for p in bb.model.parameters() if p.requires_grad}


@pytest.mark.parametrize("config", ["lora", "prefix_tuning", "seq_bn_inv"])
def test_other_adapter_configs_pass_through(config, tiny, toy_task, fast_config):
    bb = tiny()
    train(bb, toy_task, fast_config.replace(max_steps=3), methods=[("adapter", {"config": config})],
          store=None, verbose=False)
    assert "task" in bb.model.adapters_config.adapters


def test_reduction_factor_changes_the_size(tiny):
    sizes = []
    for rf in (2, 16):
        bb = tiny()
        TaskAdapter(reduction_factor=rf).prepare(bb.model, bb.blocks)
        sizes.append(int(adapter_summary(bb.model).set_index("adapter").loc["task", "total"]))
    assert sizes[0] > 4 * sizes[1]


def test_adapter_works_inside_the_trainer_bridge(toy_task, tiny, tmp_path):
    from test_hf_bridge import _trainer

    from tutorfinetune.hf import MethodsCallback

    bb = tiny()
    bridge = MethodsCallback(["adapter"]).prepare(bb.model, bb.blocks, verbose=False)
    before = bb.model.bert.encoder.layer[0].attention.self.query.weight.detach().clone()
    down = bb.model.bert.encoder.layer[0].output.adapters["task"].adapter_down[0].weight
    down_before = down.detach().clone()
    _trainer(bb, toy_task, tmp_path, bridge).train()
    assert torch.equal(before, bb.model.bert.encoder.layer[0].attention.self.query.weight)
    assert not torch.equal(down_before, down)  # trained through the bridge's optimiser


def test_save_and_reload_gives_identical_predictions(toy_task, tiny, fast_config, tmp_path):
    bb = tiny(seed=3)
    train(bb, toy_task, fast_config.replace(max_steps=6), methods=["adapter"], store=None, verbose=False)
    save_adapter(bb.model, "task", tmp_path / "task", backbone="tiny")
    x = bb.tokenizer(["the soup was cold", "a joy to watch"], return_tensors="pt", padding=True)
    bb.model.eval()
    want = bb.model(**x).logits
    fresh = load_backbone("tiny", num_labels=2, seed=3)
    name = load_adapter(fresh.model, tmp_path / "task")
    fresh.model.eval()
    assert name == "task"
    assert torch.allclose(fresh.model(**x).logits, want, atol=1e-6)
    assert (tmp_path / "task" / "adapter_config.json").is_file()
    assert list((tmp_path / "task").glob("*.safetensors"))


# --- bad input ----------------------------------------------------------------------------------
def test_unknown_config():
    with pytest.raises(AdapterError, match="Unknown adapter config 'bottlenek'.*seq_bn"):
        methods.get("adapter", config="bottlenek")


def test_name_collision(tiny):
    bb = tiny()
    TaskAdapter().prepare(bb.model, bb.blocks)
    with pytest.raises(AdapterError, match="already in the model.*name="):
        TaskAdapter().prepare(bb.model, bb.blocks)
    with pytest.raises(AdapterError, match="Two TaskAdapters named 'task'"):
        methods.resolve([TaskAdapter(), TaskAdapter()])
    with pytest.raises(AdapterError, match="cannot run beside 'full'"):
        methods.resolve(["full", "adapter"])


def test_stacking_on_a_missing_adapter(tiny):
    bb = tiny()
    with pytest.raises(AdapterError, match="Cannot stack on adapter 'hotels'.*no adapters"):
        TaskAdapter(stack_on="hotels").prepare(bb.model, bb.blocks)


def test_loading_an_adapter_of_another_backbone(tiny, tmp_path):
    small = load_backbone("tiny", num_labels=2, tiny_layers=3)
    TaskAdapter().prepare(small.model, small.blocks)
    save_adapter(small.model, "task", tmp_path / "a", backbone="tiny-3")
    with pytest.raises(AdapterError, match="another backbone.*num_hidden_layers 3 != 2"):
        load_adapter(tiny().model, tmp_path / "a")
    with pytest.raises(AdapterError, match="no adapter_config.json"):
        load_adapter(tiny().model, tmp_path)


# --- MAD-X ----------------------------------------------------------------------------------------
def test_mlm_warm_head_lowers_the_loss():
    bb = load_backbone("tiny", num_labels=2)
    texts = [f"{t} number {i}" for i, t in enumerate(POS + NEG)] * 4
    head, losses = mlm.warm_mlm_head(bb, texts, steps=40, batch_size=16, lr=5e-3)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    assert head.predictions.decoder.weight is bb.model.bert.embeddings.word_embeddings.weight
    assert all(not p.requires_grad for n, p in head.named_parameters() if "decoder.weight" not in n)
    assert all(p.requires_grad for p in bb.model.parameters())  # body's flags restored


def test_domain_adapter_trains_only_itself():
    bb = load_backbone("tiny", num_labels=2)
    head, _ = mlm.mlm_head(bb)
    before = {n: p.detach().clone() for n, p in bb.model.named_parameters()}
    losses = madx.train_domain_adapter(bb, [t for t in POS + NEG] * 3, "dom", head, steps=10, batch_size=8)
    assert len(losses) == 10
    for n, p in bb.model.named_parameters():
        if n in before:
            assert torch.equal(before[n], p), n
    assert "dom" in bb.model.adapters_config.adapters


def test_swap_changes_the_active_stack(tiny):
    import adapters

    bb = tiny()
    head, _ = mlm.mlm_head(bb)
    for n in ("source", "c"):
        madx.train_domain_adapter(bb, POS + NEG, n, head, steps=2, batch_size=4)
    TaskAdapter(stack_on="source").prepare(bb.model, bb.blocks)
    swap = AdapterSwap(by_eval_set={"shift:c": "c"})
    swap.prepare(bb.model, bb.blocks)
    swap.before_eval(None, "shift:c")
    assert bb.model.active_adapters == adapters.Stack("c", "task")
    swap.before_eval(None, "in-distribution")
    assert bb.model.active_adapters == adapters.Stack("source", "task")
    with pytest.raises(AdapterError, match="Cannot swap in adapter 'zz'"):
        AdapterSwap(default="zz").prepare(bb.model, bb.blocks) or AdapterSwap(default="zz").before_eval(None, "x")


def test_domain_transfer_recipe_end_to_end(tmp_path, fast_config):
    task = domain_task()
    df = madx.domain_transfer(task, fast_config.replace(max_steps=6), seeds=[0, 1], backbone="tiny",
                              warm_steps=5, mlm_steps=5, store=tmp_path)
    sets = set(df.eval_set)
    assert {"in-distribution", "shift:c", "shift:c|source-adapter"} <= sets
    assert df.run_id.nunique() == 2 and df.method.iloc[0] == "adapter+adapter-swap"
    a = df[(df.metric == "loss") & (df.eval_set == "shift:c")].value.tolist()
    b = df[(df.metric == "loss") & (df.eval_set == "shift:c|source-adapter")].value.tolist()
    assert a != b  # the swap changed the model that was evaluated
    again = madx.domain_transfer(task, fast_config.replace(max_steps=6), seeds=[0, 1], backbone="tiny",
                                 warm_steps=5, mlm_steps=5, store=tmp_path)
    assert set(again.run_id) == set(df.run_id)  # cached adapters and finished runs are reused
