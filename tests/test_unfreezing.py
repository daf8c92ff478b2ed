"""Scheduled unfreezing (GU, LPFT, FUN, ...) and Fisher tracking: METHODS.md §1."""

import shutil

import numpy as np
import pytest
import torch

from tutorfinetune import load_backbone, methods, train
from tutorfinetune.fisher import FisherError, find_units, fisher_trace
from tutorfinetune.methods import MethodError, ScheduledUnfreezing, ScheduleWarning
from tutorfinetune.methods.base import Method
from tutorfinetune.methods.unfreezing import plan_schedule, trainability, trainability_from_history


def _snap(params):
    return [p.detach().clone() for p in params]


def _changed(before, params):
    return any(not torch.equal(a, b) for a, b in zip(before, params))


class UnitWatch(Method):
    """Records, at the start of every step, a checksum of each unit's parameters (after schedules ran)."""

    name = "unit-watch"
    stage = 30

    def __init__(self, units):
        super().__init__()
        self.units = units
        self.sums = []
        self.unit_params = None

    def prepare(self, model, blocks):
        self.unit_params = find_units(model, blocks, "auto")

    def on_step_start(self, state):
        self.sums.append({u: float(sum(p.detach().double().sum() for p in self.unit_params[u])) for u in self.units})


def _batches(bb, task, n=2, size=8):
    tok = bb.tokenizer
    rows = task.train.head(n * size)
    out = []
    for i in range(0, len(rows), size):
        enc = tok(rows.text.iloc[i:i + size].tolist(), padding=True, truncation=True, max_length=32, return_tensors="pt")
        out.append({**enc, "labels": torch.tensor(rows.label.iloc[i:i + size].to_numpy())})
    return out


# --- plans ----------------------------------------------------------------------------------
def test_plans_follow_the_paper():
    init, ev = plan_schedule("gu", 4, 10)
    assert init == [3] and ev == [(10, [2]), (20, [1]), (30, [0])]  # L-2 at k, not 2k (released-code off-by-one)
    init, ev = plan_schedule("gu-rev", 4, 10)
    assert init == [0] and [u for _, u in ev] == [[1], [2], [3]]
    init, ev = plan_schedule("lpft", 4, 10)
    assert init == [] and ev == [(10, [0, 1, 2, 3])]
    init, ev = plan_schedule("rand", 6, 5, seed=1)
    assert init == [5] and sorted(u[0] for _, u in ev) == [0, 1, 2, 3, 4]
    assert plan_schedule("rand", 6, 5, seed=1) == plan_schedule("rand", 6, 5, seed=1)
    assert plan_schedule("rand", 6, 5, seed=1) != plan_schedule("rand", 6, 5, seed=2)
    init, ev = plan_schedule("fun", 4, 7)
    assert init == [3] and [s for s, _ in ev] == [7, 14, 21] and all(u is None for _, u in ev)
    m = trainability("gu", 4, 10, 45)
    assert m.sum(axis=1).tolist() == [15, 25, 35, 45]
    assert trainability("standard", 3, 10, 20).all()
    with pytest.raises(MethodError, match="order"):
        plan_schedule("fixed", 3, 5, order=[2, 2, 0])


def test_unknown_schedule_and_bad_settings_are_named():
    with pytest.raises(MethodError, match="Did you mean 'gu-rev'"):
        ScheduledUnfreezing(schedule="gu_rev")
    with pytest.raises(MethodError, match="k .* >= 1"):
        methods.get("gu", k=0)
    with pytest.raises(MethodError, match="k must be an integer|k"):
        methods.get("gu", k="often")
    assert methods.get("gu", k="25").k == 25  # papermill passes text
    with pytest.raises(MethodError, match="label_mode"):
        methods.get("fun", label_mode="gold")
    with pytest.raises(MethodError, match="order"):
        methods.get("fixed")
    with pytest.raises(MethodError, match="Two unfreezing schedules"):
        methods.resolve(["gu", "fun"])
    with pytest.raises(MethodError, match="lpft"):
        methods.resolve(["linear-probe", "gu"])


def test_no_blockmap_and_fun_without_choice(tiny):
    bb = tiny()
    with pytest.raises(MethodError, match="no BlockMap"):
        methods.get("fun").prepare(bb.model, None)
    one = load_backbone("tiny", tiny_layers=1)
    with pytest.raises(MethodError, match="at least two units"):
        methods.get("fun", include_embeddings=False).prepare(one.model, one.blocks)
    with pytest.raises(MethodError, match="no adapter named 'task'"):
        methods.get("gu", units="adapters").prepare(bb.model, bb.blocks)


def test_k_beyond_the_budget_warns_with_the_numbers(toy_task, tiny, fast_config):
    with pytest.warns(ScheduleWarning, match=r"k=10 and 12 optimiser steps: 1 of 3 units never unfreeze.*step 20"):
        train(tiny(), toy_task, fast_config, [("gu", {"k": 10})], store=None, verbose=False)


# --- schedules in training --------------------------------------------------------------------
def test_gu_trainable_count_is_a_step_function_at_multiples_of_k(toy_task, tiny, fast_config):
    bb = load_backbone("tiny", tiny_layers=3)
    k = 3
    res = train(bb, toy_task, fast_config.replace(max_steps=14), [("gu", {"k": k})], store=None, verbose=False)
    counts = res.history["trainable"].to_numpy()
    for s in range(1, len(counts)):
        if s % k == 0 and s <= 3 * k:
            assert counts[s] > counts[s - 1], f"no unit joined at step {s}"
        else:
            assert counts[s] == counts[s - 1], f"trainable count moved at step {s}, not a multiple of k"
    assert counts[-1] == sum(p.numel() for p in bb.model.parameters())
    art = res.artifacts["gu"]
    assert art["order"] == ["block2", "block1", "block0", "embeddings"]
    assert [e["step"] for e in art["events"]] == [0, 3, 6, 9]
    mat = trainability_from_history(res.history, art["units"])
    assert np.array_equal(mat, trainability("gu", 4, k, 14))


def test_lpft_trains_only_the_head_for_k_steps(toy_task, tiny, fast_config):
    bb = tiny()
    k = 5
    watch = UnitWatch(["adapter0", "adapter1"])
    head = _snap(bb.blocks.parameters("head"))
    res = train(bb, toy_task, fast_config.replace(max_steps=9), ["adapter", ("lpft", {"k": k}), watch],
                store=None, verbose=False)
    sums = watch.sums
    for u in ("adapter0", "adapter1"):
        assert len({s[u] for s in sums[:k + 1]}) == 1, f"{u} moved during the linear-probe phase"
        assert sums[k + 1][u] != sums[k][u], f"{u} did not train after step k"
    assert _changed(head, bb.blocks.parameters("head"))
    assert res.history["trainable_units"].tolist()[:k] == [""] * k


def test_units_unfrozen_later_change_only_after_they_join(toy_task, tiny, fast_config):
    """Regression test for the optimiser pitfall: units frozen when the optimiser is built must train later."""
    bb = tiny()
    emb = _snap(bb.blocks.parameters("embeddings"))
    watch = UnitWatch(["embeddings", "block0", "block1"])
    train(bb, toy_task, fast_config.replace(max_steps=10), [("gu", {"k": 3}), watch], store=None, verbose=False)
    s = watch.sums  # s[i]: start of step i, after that step's event
    assert s[0]["block1"] != s[1]["block1"]  # top block trains from step 0
    assert len({x["block0"] for x in s[:4]}) == 1 and s[4]["block0"] != s[3]["block0"]  # joins at step 3
    assert len({x["embeddings"] for x in s[:7]}) == 1 and s[7]["embeddings"] != s[6]["embeddings"]  # joins at 6
    assert _changed(emb, bb.blocks.parameters("embeddings"))


def test_fun_unfreezes_the_unit_with_an_injected_largest_gradient(toy_task, fast_config):
    bb = load_backbone("tiny", tiny_layers=4)
    handles = [p.register_hook(lambda g: g * 1000.0) for p in bb.blocks.parameters("block1")]
    fun = methods.get("fun", k=2, fisher_batches=2, include_embeddings=False)
    res = train(bb, toy_task, fast_config.replace(max_steps=7), [fun], store=None, verbose=False)
    for h in handles:
        h.remove()
    ev = res.artifacts["fun"]["events"]
    assert ev[0]["units"] == ["block3"] and ev[1]["step"] == 2
    assert ev[1]["units"] == ["block1"]  # not the top-down choice block2
    assert max(ev[1]["trF"], key=ev[1]["trF"].get) == "block1"
    assert res.history.loc[2, "unfrozen"] == "block1"


def test_fun_order_with_adapters_is_recorded_and_deterministic(toy_task, tiny, fast_config):
    runs = []
    for _ in range(2):
        res = train(tiny(), toy_task, fast_config, ["adapter", ("fun", {"k": 3, "fisher_batches": 2})],
                    store=None, verbose=False)
        runs.append(res)
    a, b = (r.artifacts["fun"] for r in runs)
    assert sorted(a["order"]) == ["adapter0", "adapter1"] and a["order"] == b["order"]
    assert a["label_mode"] == "sample" and runs[0].metrics == runs[1].metrics
    desc = {m["name"]: m for m in runs[0].methods}
    assert desc["fun"]["label_mode"] == "sample" and desc["fun"]["fisher_batches"] == 2


def test_rand_order_depends_on_the_run_seed(toy_task, tiny, fast_config):
    orders = set()
    for seed in range(4):
        bb = load_backbone("tiny", tiny_layers=4, seed=seed)
        res = train(bb, toy_task, fast_config.replace(seed=seed, max_steps=9), [("rand", {"k": 2})],
                    store=None, verbose=False)
        orders.add(tuple(res.artifacts["rand"]["order"]))
    assert len(orders) > 1 and all(o[0] == "block3" for o in orders)


def test_schedule_resumes_from_a_checkpoint_exactly(toy_task, tiny, fast_config, tmp_path):
    cfg = fast_config.replace(max_steps=12, checkpoint_every=4)
    meths = lambda: ["adapter", ("fun", {"k": 3, "fisher_batches": 2})]  # noqa: E731
    ref = train(tiny(), toy_task, cfg, meths(), store=None, verbose=False)
    ck = tmp_path / "ck"
    train(tiny(), toy_task, cfg, meths(), store=None, checkpoint_dir=ck, verbose=False)
    shutil.rmtree(sorted(ck.glob("step-*"))[-1])  # resume from step 8: events 3 and 6 done, 9 to come
    assert sorted(p.name for p in ck.glob("step-*")) == ["step-0000008"]
    again = train(tiny(), toy_task, cfg, meths(), store=None, checkpoint_dir=ck, resume_from="auto", verbose=False)
    assert again.metrics == ref.metrics
    assert again.artifacts["fun"]["order"] == ref.artifacts["fun"]["order"]


# --- Fisher -----------------------------------------------------------------------------------
def test_trace_of_a_frozen_unit_leaves_no_gradients(toy_task, tiny):
    bb = tiny()
    units = find_units(bb.model, bb.blocks, "blocks")
    for p in units["block0"]:
        p.requires_grad_(False)
    marker = [torch.full_like(p, 0.5) for p in units["block1"]]
    for p, m in zip(units["block1"], marker):
        p.grad = m.clone()
    bb.model.train()
    tr = fisher_trace(bb.model, _batches(bb, toy_task), units)
    assert tr["block0"] > 0 and tr["block1"] > 0 and tr["embeddings"] > 0
    assert all(p.grad is None and not p.requires_grad for p in units["block0"])
    assert all(torch.equal(p.grad, m) for p, m in zip(units["block1"], marker))  # training grads untouched
    assert bb.model.training
    # label modes differ, and the estimate is deterministic for a seed
    t_arg = fisher_trace(bb.model, _batches(bb, toy_task), units, label_mode="argmax")
    t_emp = fisher_trace(bb.model, _batches(bb, toy_task), units, label_mode="empirical")
    assert t_arg != t_emp
    assert fisher_trace(bb.model, _batches(bb, toy_task), units, seed=3) == \
        fisher_trace(bb.model, _batches(bb, toy_task), units, seed=3)
    with pytest.raises(FisherError, match="at least one"):
        fisher_trace(bb.model, [], units)


def test_trace_matches_a_hand_computed_value(tiny, toy_task):
    bb = tiny()
    batches = _batches(bb, toy_task, n=1)
    units = {"head": list(bb.blocks.parameters("head"))}
    tr = fisher_trace(bb.model, batches, units, label_mode="empirical")
    bb.model.eval()
    out = bb.model(**batches[0])
    grads = torch.autograd.grad(out.loss, units["head"])
    want = sum(float((g ** 2).sum()) for g in grads) / len(batches[0]["labels"])
    assert tr["head"] == pytest.approx(want, rel=1e-5)


def test_fisher_tracker_logs_every_n_steps(toy_task, tiny, fast_config):
    res = train(tiny(), toy_task, fast_config, ["adapter", ("gu", {"k": 6}), ("fisher-tracker", {"every": 4, "batches": 2})],
                store=None, verbose=False)
    h = res.history
    logged = h[h["trF:adapter0"].notna()]
    assert logged["step"].tolist() == [1, 5, 9]  # step indices 0, 4, 8
    first = logged.iloc[0]
    assert first["trF_trainable"] == pytest.approx(first["trF:adapter1"])  # only the top adapter trains at 0
    last = logged.iloc[-1]
    assert last["trF_trainable"] == pytest.approx((last["trF:adapter0"] + last["trF:adapter1"]) / 2)


def test_adapter_units_are_the_task_adapter_of_each_block(tiny):
    bb = tiny()
    methods.get("adapter").prepare(bb.model, bb.blocks)
    units = find_units(bb.model, bb.blocks)
    assert list(units) == ["adapter0", "adapter1"]
    for j, (_, ps) in enumerate(units.items()):
        names = {id(p): n for n, p in bb.blocks.blocks[j].named_parameters()}
        assert all(".adapters.task." in names[id(p)] for p in ps) and len(ps) == 4


def test_tracker_and_fun_passes_do_not_change_training(toy_task, tiny, fast_config):
    """Fisher passes run in eval mode on their own batches and generator: the run is the same without them."""
    plain = train(tiny(), toy_task, fast_config, ["adapter", ("gu", {"k": 3})], store=None, verbose=False)
    tracked = train(tiny(), toy_task, fast_config, ["adapter", ("gu", {"k": 3}), ("fisher-tracker", {"every": 2, "batches": 2})],
                    store=None, verbose=False)
    assert tracked.metrics == plain.metrics
    assert tracked.history["loss"].tolist() == plain.history["loss"].tolist()


def test_schedule_methods_builds_the_lists_notebooks_use():
    from tutorfinetune.methods.unfreezing import auto_k, schedule_methods

    assert schedule_methods("standard", "full") == ["full"]
    got = schedule_methods("fun", "adapter", 7, fisher_batches=3, track_every=5)
    assert got[0] == "adapter" and got[1] == ("fun", {"k": 7, "fisher_batches": 3, "label_mode": "sample"})
    assert got[2][0] == "fisher-tracker"
    assert [m.name for m in methods.resolve(got)] == ["adapter", "fun", "fisher-tracker"]
    assert auto_k(225, 6) == 12 and auto_k(10, 6) == 1
    with pytest.raises(MethodError, match="body"):
        schedule_methods("gu", "lora")


def test_fixed_batches_are_seeded_length_grouped_and_leave_the_rng_alone(toy_task, tiny, fast_config):
    from tutorfinetune.engine import TrainState, encode

    bb = tiny()
    enc = encode(bb.tokenizer, toy_task.train, 32)
    state = TrainState(model=bb.model, blocks=bb.blocks, config=fast_config, task=toy_task, train_data=enc,
                       pad_id=bb.tokenizer.pad_token_id)
    rng = torch.get_rng_state()
    four = state.fixed_batches(4)
    assert torch.equal(rng, torch.get_rng_state())
    assert state.fixed_batches(4) is four and len(four) == 4 and all(len(b["labels"]) == 8 for b in four)
    widths = [b["input_ids"].shape[1] for b in four]
    assert widths == sorted(widths, reverse=True)  # grouped by length, longest first

    def rows(bs):
        return {tuple(r[m.bool()].tolist()) for b in bs for r, m in zip(b["input_ids"], b["attention_mask"])}

    assert rows(state.fixed_batches(2)) <= rows(four)
    other = TrainState(model=bb.model, blocks=bb.blocks, config=fast_config.replace(seed=1), task=toy_task,
                       train_data=enc, pad_id=bb.tokenizer.pad_token_id)
    assert rows(other.fixed_batches(2)) != rows(state.fixed_batches(2))


# --------------------------------------------------------------------------------------------
# The protocol's schedules (issue 21): after warm-up, every unit at least half the run, FUN per parameter
# --------------------------------------------------------------------------------------------
def test_protocol_k_starts_after_warmup_and_leaves_half_the_run():
    from tutorfinetune.methods.unfreezing import protocol_k

    k = protocol_k(1200, units=7, warmup_steps=60)
    assert k > 60 and 7 * k <= 600  # first unit after warm-up, last one by half-way
    assert protocol_k(600, units=6, warmup_steps=0) == 50
    with pytest.raises(methods.MethodError, match=r"Train longer \(>= 855 steps\)"):
        protocol_k(600, units=7, warmup_steps=60)
    assert protocol_k(855, units=7, warmup_steps=60) > 60  # the length the message asks for is enough


def test_a_schedule_inside_the_warmup_warns(tiny, toy_task, fast_config):
    from tutorfinetune.methods.unfreezing import ScheduleWarning

    with pytest.warns(ScheduleWarning, match="inside the learning-rate warm-up"):
        train(tiny(), toy_task, fast_config.replace(max_steps=10, warmup=0.5), ["full", ("gu", {"k": 2})],
              store=None, verbose=False)


def test_fun_per_parameter_scores_divide_by_size(tiny, toy_task, fast_config):
    res = {}
    for score in ("trace", "per-parameter"):
        r = train(tiny(), toy_task, fast_config.replace(max_steps=4), ["full", ("fun", {"k": 2, "fisher_batches": 1,
                                                                                        "fun_score": score})],
                  store=None, verbose=False)
        res[score] = r.history.filter(like="fun_trF:").dropna(how="all").iloc[0]
    bb = tiny()
    sizes = {"embeddings": sum(p.numel() for p in bb.blocks.parameters("embeddings"))}
    emb_trace, emb_per = res["trace"]["fun_trF:embeddings"], res["per-parameter"]["fun_trF:embeddings"]
    assert emb_per == pytest.approx(emb_trace / sizes["embeddings"], rel=1e-5)
    assert methods.get("fun", k=5).describe() == methods.get("fun", k=5, fun_score="trace").describe()
