"""The training loop: plug-in protocol, determinism, bad input, checkpoints and the results store."""

import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from tutorfinetune import (
    BackboneError,
    NonFiniteLossError,
    TrainingError,
    load_backbone,
    methods,
    results,
    train,
)
from tutorfinetune.methods import Method, MethodError


def _params(model, unit, blocks):
    return [p.detach().clone() for p in blocks.parameters(unit)]


def test_full_finetuning_learns_the_toy_task(toy_task, tiny, fast_config, tmp_path):
    bb = tiny()
    cfg = fast_config.replace(max_steps=100, eval_every=25)
    res = train(bb, toy_task, cfg, store=tmp_path / "runs", verbose=False)
    assert res.metrics["test"]["accuracy"] >= 0.9
    h = res.history
    assert len(h) == 100 and h["loss"].iloc[-5:].mean() < h["loss"].iloc[:5].mean()
    assert h["dev_accuracy"].notna().sum() == 4
    assert set(res.metrics) == {"dev", "test"}
    assert res.timings["train_samples_per_second"] > 0 and res.versions["torch"] == torch.__version__


def test_same_seed_same_metrics_other_seed_differs(toy_task, tiny, fast_config):
    a = train(tiny(0), toy_task, fast_config, store=None, verbose=False)
    b = train(tiny(0), toy_task, fast_config, store=None, verbose=False)
    c = train(tiny(0), toy_task, fast_config.replace(seed=1), store=None, verbose=False)
    assert a.metrics == b.metrics
    assert a.history["loss"].tolist() == b.history["loss"].tolist()
    assert a.history["loss"].tolist() != c.history["loss"].tolist()
    assert a.metrics["test"]["loss"] != c.metrics["test"]["loss"]


def test_max_eval_examples_caps_every_eval_set_with_the_same_rows(toy_task, tiny, fast_config):
    from tutorfinetune.engine import cap_rows

    full = train(tiny(0), toy_task, fast_config, store=None, verbose=False)
    capped = train(tiny(0), toy_task, fast_config.replace(max_eval_examples=10), store=None, verbose=False)
    assert all(m["n"] > 10 for m in full.metrics.values())
    assert {name: m["n"] for name, m in capped.metrics.items()} == {name: 10 for name in full.metrics}
    test = toy_task.eval_set("test")
    rows = cap_rows(test, 10)
    assert rows.index.equals(cap_rows(test, 10).index) and rows.index.isin(test.index).all()
    assert rows.label.value_counts().min() >= 4  # stratified: both labels kept
    assert cap_rows(test, None) is test and cap_rows(test, len(test) + 5) is test
    with pytest.raises(Exception, match="max_eval_examples"):
        fast_config.replace(max_eval_examples=1)


class Recorder(Method):
    name = "recorder"

    def __init__(self):
        super().__init__()
        self.calls = []

    def prepare(self, model, blocks):
        self.calls.append("prepare")

    def on_step_start(self, state):
        self.calls.append(f"start{state.step}")

    def after_backward(self, state):
        grads = [p.grad for p in state.model.parameters() if p.grad is not None]
        self.calls.append(f"backward{state.step}:{len(grads) > 0}")
        state.log(recorded=1.0)

    def on_epoch_end(self, state):
        self.calls.append(f"epoch{state.epoch}")

    def finish(self, state):
        self.calls.append("finish")
        return {"n_calls": len(self.calls)}


def test_hooks_called_in_order_with_gradients_present(toy_task, tiny, fast_config):
    rec = Recorder()
    res = train(tiny(), toy_task, fast_config.replace(max_steps=11), methods=["full", rec], store=None,
                verbose=False)
    assert rec.calls[:4] == ["prepare", "start0", "backward0:True", "start1"]
    assert "epoch0" in rec.calls and rec.calls.index("epoch0") == rec.calls.index("backward9:True") + 1
    assert rec.calls[-1] == "finish" and res.artifacts["recorder"]["n_calls"] == len(rec.calls)
    assert (res.history["recorded"] == 1.0).all()


def test_freeze_embeddings_plugin_keeps_embeddings(toy_task, tiny, fast_config):
    bb = tiny()
    emb0, blk0 = _params(bb.model, "embeddings", bb.blocks), _params(bb.model, "block0", bb.blocks)
    res = train(bb, toy_task, fast_config, methods=["freeze-embeddings"], store=None, verbose=False)
    assert all(torch.equal(a, b) for a, b in zip(emb0, bb.blocks.parameters("embeddings")))
    assert any(not torch.equal(a, b) for a, b in zip(blk0, bb.blocks.parameters("block0")))
    emb_n = sum(p.numel() for p in bb.blocks.parameters("embeddings"))
    total = sum(p.numel() for p in bb.model.parameters())
    assert (res.history["trainable"] == total - emb_n).all()


class LateUnfreeze(Method):
    """Freezes block0 and unfreezes it at step 4; with_groups=False reproduces the optimiser pitfall."""

    name = "late-unfreeze"

    def __init__(self, with_groups=True):
        super().__init__(with_groups=with_groups)
        self.blocks = None

    def prepare(self, model, blocks):
        self.blocks = blocks
        for p in blocks.parameters("block0"):
            p.requires_grad_(False)

    def param_groups(self, model):
        return list(model.parameters()) if self.config["with_groups"] else None

    def on_step_start(self, state):
        if state.step == 4:
            for p in self.blocks.parameters("block0"):
                p.requires_grad_(True)


@pytest.mark.parametrize("with_groups", [True, False])
def test_unit_unfrozen_later_trains_only_if_in_the_optimiser(toy_task, tiny, fast_config, with_groups):
    bb = tiny()
    before = _params(bb.model, "block0", bb.blocks)
    res = train(bb, toy_task, fast_config, methods=[LateUnfreeze(with_groups)], store=None, verbose=False)
    changed = any(not torch.equal(a, b) for a, b in zip(before, bb.blocks.parameters("block0")))
    assert changed is with_groups  # regression test for "unfrozen after the optimiser was built"
    assert res.history["trainable"].iloc[3] < res.history["trainable"].iloc[4]


def test_method_registry():
    assert {"full", "freeze-embeddings", "linear-probe"} <= set(methods.available())
    assert methods.get("linear-probe").name == "linear-probe"
    with pytest.raises(MethodError, match="Unknown method 'ful'.*Did you mean 'full'"):
        methods.get("ful")
    with pytest.raises(MethodError, match="pick one"):
        methods.resolve(["full", "linear-probe"])


# --- bad input ----------------------------------------------------------------------------------
def test_unknown_backbone_names_the_offline_default():
    with pytest.raises(BackboneError, match="offline default is load_backbone\\('minilm'\\)"):
        load_backbone("no-such-org/no-such-model-xyz")


def test_label_count_mismatch(toy_task, tiny, fast_config):
    with pytest.raises(TrainingError, match="head has 3 labels.*num_labels=2"):
        train(tiny(num_labels=3), toy_task, fast_config, store=None)


def test_unknown_method_in_train(toy_task, tiny, fast_config):
    with pytest.raises(MethodError, match="Unknown method"):
        train(tiny(), toy_task, fast_config, methods=["graddropp"], store=None)


def test_unknown_eval_set(toy_task, tiny, fast_config):
    with pytest.raises(TrainingError, match="Unknown eval set 'shift:de'"):
        train(tiny(), toy_task, fast_config.replace(eval_sets=["shift:de"]), store=None)


class PoisonAt(Method):
    name = "poison"

    def on_step_start(self, state):
        if state.step == 3:
            with torch.no_grad():
                next(state.model.parameters()).fill_(float("nan"))


def test_nan_loss_stops_with_step_and_fix_and_store_stays_readable(toy_task, tiny, fast_config, tmp_path):
    store = tmp_path / "runs"
    train(tiny(), toy_task, fast_config, store=store, verbose=False)
    with pytest.raises(NonFiniteLossError, match=r"step 4 .*lower lr"):
        train(tiny(), toy_task, fast_config, methods=[PoisonAt()], store=store, verbose=False)
    recs = results.load_records(store)
    assert [r["status"] for r in recs] == ["finished", "failed"]
    assert "NonFiniteLossError" in recs[1]["error"] and len(recs[1]["history"]) == 3
    df = results.load(store)
    assert set(df["status"]) == {"finished"} and len(results.load(store, status=None)) > len(df)


class Interrupt(Method):
    name = "interrupt"

    def on_step_start(self, state):
        if state.step == 7:
            raise KeyboardInterrupt


def test_keyboard_interrupt_is_recorded(toy_task, tiny, fast_config, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        train(tiny(), toy_task, fast_config, methods=[Interrupt()], store=tmp_path, verbose=False)
    (rec,) = results.load_records(tmp_path)
    assert rec["status"] == "interrupted" and len(rec["history"]) == 7


def test_resume_from_checkpoint_matches_uninterrupted(toy_task, tiny, fast_config, tmp_path):
    cfg = fast_config.replace(max_steps=12, checkpoint_every=4)
    ref = train(tiny(), toy_task, cfg, store=None, verbose=False)
    ckdir = tmp_path / "ck"
    train(tiny(), toy_task, cfg.replace(max_steps=12), store=None, checkpoint_dir=ckdir, verbose=False)
    # keep only the step-8 checkpoint, as if the run had died just after it
    for p in sorted(ckdir.glob("step-*"))[1:]:
        import shutil
        shutil.rmtree(p)
    assert sorted(p.name for p in ckdir.glob("step-*")) == ["step-0000008"]
    again = train(tiny(), toy_task, cfg, store=None, checkpoint_dir=ckdir, resume_from="auto", verbose=False)
    assert again.history["step"].tolist() == list(range(1, 13))
    assert again.metrics == ref.metrics


def test_resume_keeps_the_best_dev_step_seen_before_the_checkpoint(toy_task, tiny, fast_config, tmp_path):
    """Model selection on dev survives a resume: the checkpoint holds the best dev score, its step and its
    weights, so a run resumed after its best step still reports the test sets there."""
    cfg = fast_config.replace(max_steps=12, eval_every=2, select_best=True, checkpoint_every=2)
    ckdir = tmp_path / "ck"
    ref = train(tiny(), toy_task, cfg, store=None, checkpoint_dir=ckdir, verbose=False)
    best = int(ref.history.dropna(subset=["dev_accuracy"]).sort_values("dev_accuracy", ascending=False,
                                                                     kind="stable").step.iloc[0])
    assert best < 10  # the precondition that makes this test able to fail: the best step is before the resume
    assert sorted(p.name for p in ckdir.glob("step-*")) == ["step-0000010", "step-0000012"]
    again = train(tiny(), toy_task, cfg, store=None, checkpoint_dir=tmp_path / "ck2", resume_from=ckdir / "step-0000010",
                  verbose=False)
    assert again.metrics == ref.metrics


def test_resume_refuses_a_checkpoint_of_another_run(toy_task, tiny, fast_config, tmp_path):
    cfg = fast_config.replace(checkpoint_every=4)
    train(tiny(), toy_task, cfg, store=None, checkpoint_dir=tmp_path, verbose=False)
    with pytest.raises(TrainingError, match="belongs to another run"):
        train(tiny(), toy_task, cfg.replace(lr=2e-3), store=None, checkpoint_dir=tmp_path, resume_from="auto")


def test_checkpoint_files_are_safe_formats(toy_task, tiny, fast_config, tmp_path):
    train(tiny(), toy_task, fast_config.replace(checkpoint_every=6), store=None, checkpoint_dir=tmp_path,
          verbose=False)
    ck = sorted(tmp_path.glob("step-*"))[-1]
    assert (ck / "model.safetensors").is_file()
    torch.load(ck / "trainer_state.pt", weights_only=True)  # no pickled objects inside


CHILD = textwrap.dedent("""
    import sys, time, torch
    sys.path.insert(0, {tests!r})
    from conftest import toy_frame
    import tutorfinetune as tf
    toy_frame().to_csv({csv!r}, index=False)
    step = torch.optim.AdamW.step
    def slow_step(self, *a, **k):
        time.sleep(0.15)
        return step(self, *a, **k)
    torch.optim.AdamW.step = slow_step
    cfg = tf.TrainConfig(lr=1e-3, max_steps=40, batch_size=8, max_length=32, warmup=0.0, seed=0,
                         checkpoint_every=3, fused_adamw=False)
    tf.train(tf.load_backbone("tiny", num_labels=2), tf.load_task({csv!r}), cfg, store={store!r},
             checkpoint_dir={ck!r}, verbose=False)
""")


def test_sigkill_leaves_store_readable_and_resume_matches(tmp_path, tiny):
    from tutorfinetune import TrainConfig, load_task

    csv, store, ck = tmp_path / "toy.csv", tmp_path / "runs", tmp_path / "ck"
    script = CHILD.format(tests=str(Path(__file__).parent), csv=str(csv), store=str(store), ck=str(ck))
    env = dict(os.environ, TUTORFINETUNE_PROGRESS="off")
    child = subprocess.Popen([sys.executable, "-c", script], env=env)
    deadline = time.time() + 120
    while time.time() < deadline and not (ck / "step-0000009").exists():
        if child.poll() is not None:
            pytest.fail(f"child exited early with {child.returncode}")
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    recs = results.load_records(store)
    assert len(recs) == 1 and recs[0]["status"] == "interrupted"
    assert results.load(store, status=None)["status"].tolist() == ["interrupted"]

    cfg = TrainConfig(lr=1e-3, max_steps=40, batch_size=8, max_length=32, warmup=0.0, seed=0,
                      checkpoint_every=3, fused_adamw=False)
    task = load_task(csv)
    resumed = train(tiny(), task, cfg, store=store, checkpoint_dir=ck, resume_from="auto", verbose=False)
    ref = train(tiny(), task, cfg, store=None, checkpoint_dir=tmp_path / "ck2", verbose=False)
    assert resumed.history["step"].tolist() == list(range(1, 41))
    for name in ref.metrics:
        assert resumed.metrics[name]["accuracy"] == ref.metrics[name]["accuracy"]
        assert math.isclose(resumed.metrics[name]["loss"], ref.metrics[name]["loss"], rel_tol=0, abs_tol=1e-6)
    statuses = sorted(r["status"] for r in results.load_records(store))
    assert statuses == ["finished", "interrupted"]


def test_evaluate_only_records_a_run_without_training(tiny, toy_task, tmp_path):
    from tutorfinetune import results
    from tutorfinetune.engine import TrainingError, evaluate_only

    bb = tiny()
    before = {n: p.detach().clone() for n, p in bb.model.named_parameters()}
    m = evaluate_only(bb, toy_task, {"max_length": 32}, method="as-is", eval_sets=["dev"], store=tmp_path, study="e",
                      tags={"why": "test"})
    assert set(m) == {"dev"} and m["dev"]["n"] == 20
    assert all(__import__("torch").equal(p, before[n]) for n, p in bb.model.named_parameters())
    df = results.load(tmp_path)
    assert set(df.method) == {"as-is"} and set(df.why) == {"test"} and set(df.eval_set) == {"dev"}
    with pytest.raises(TrainingError, match="Unknown eval set"):
        evaluate_only(bb, toy_task, method="x", eval_sets=["nope"], store=None)
