"""GradDrop: stochastic gradient masking (METHODS.md §2)."""

import math
import shutil

import numpy as np
import pytest
import torch

from tutorfinetune import load_backbone, methods, train
from tutorfinetune.methods import GradDrop, MethodError, resolve
from tutorfinetune.methods.base import Method
from tutorfinetune.methods.graddrop import draw_keep, expected_kept, preview_masks


class GradSpy(Method):
    """Snapshots gradients just before (stage 25) or just after (stage 40) GradDrop's after_backward."""

    name = "grad-spy"

    def __init__(self, stage, keep_every=1):
        super().__init__()
        self.stage = stage
        self.grads = []
        self.model = None

    def prepare(self, model, blocks):
        self.model, self.blocks = model, blocks

    def after_backward(self, state):
        self.grads.append({n: (p.grad.detach().clone() if p.grad is not None else None)
                           for n, p in self.model.named_parameters()})


class SkipWatch(Method):
    """After GradDrop (stage 40): the keep masks and values before the optimiser step, compared after it."""

    name = "skip-watch"
    stage = 40

    def __init__(self, gd):
        super().__init__()
        self.gd = gd
        self.checks = []

    def after_backward(self, state):
        opt = state.optimizer.state
        self.before = [(p, keep.clone(), p.detach().clone(),
                        opt[p]["exp_avg"].clone() if p in opt else torch.zeros_like(p)) for p, keep, _ in self.gd._saved]

    def after_step(self, state):
        opt = state.optimizer.state
        for p, keep, w, m in self.before:
            dropped = ~keep
            self.checks.append({
                "dropped": int(dropped.sum()),
                "weights_same": torch.equal(p.detach()[dropped], w[dropped]),
                "moments_same": torch.equal(opt[p]["exp_avg"][dropped], m[dropped]),
                "kept_moved": bool((p.detach()[keep] != w[keep]).any()),
            })


def _masked_names(model, blocks):
    head = {id(p) for p in blocks.parameters("head")}
    return [n for n, p in model.named_parameters() if id(p) not in head]


# --- masks ----------------------------------------------------------------------------------
@pytest.mark.parametrize("p", [0.0, 0.1, 0.3, 0.7])
def test_draw_keep_keeps_one_minus_p_within_statistical_tolerance(p):
    g = torch.Generator().manual_seed(1)
    n = 400_000
    frac = float(draw_keep(n, p, g).float().mean())
    sd = math.sqrt(p * (1 - p) / n)
    assert abs(frac - (1 - p)) <= 5 * sd + 1e-12
    assert expected_kept(p) == pytest.approx(1 - p, abs=1e-4)


def test_draw_keep_is_reproducible_and_changes_between_draws():
    a = draw_keep(1000, 0.5, torch.Generator().manual_seed(3))
    b = draw_keep(1000, 0.5, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    c, d = draw_keep(1000, 0.5, g), draw_keep(1000, 0.5, g)
    assert torch.equal(a, b) and torch.equal(a, c) and not torch.equal(c, d)
    assert draw_keep(0, 0.5, g).numel() == 0


def test_preview_masks_show_the_variants():
    el = preview_masks("element", 0.5, steps=4, shape=(8, 8))
    ep = preview_masks("epoch", 0.5, steps=6, shape=(8, 8), steps_per_epoch=3)
    ly = preview_masks("layer", 0.5, steps=10, units=7)
    assert el.shape == (4, 8, 8) and not torch.equal(el[0], el[1])
    assert torch.equal(ep[0], ep[2]) and not torch.equal(ep[2], ep[3]) and torch.equal(ep[3], ep[5])
    assert ly.shape == (7, 10) and ly.dtype == torch.bool


# --- the element variant in training -----------------------------------------------------------
def test_element_variant_masks_body_gradients_and_never_the_head(toy_task, fast_config):
    bb = load_backbone("tiny", seed=0)
    before, after = GradSpy(25), GradSpy(40)
    res = train(bb, toy_task, fast_config.replace(max_steps=4), ["full", before, ("graddrop", {"p": 0.4}), after],
                store=None, verbose=False)
    body = set(_masked_names(bb.model, bb.blocks))
    for step, (b, a) in enumerate(zip(before.grads, after.grads)):
        n_live = n_zeroed = 0
        for name, g0 in b.items():
            g1 = a[name]
            if name not in body:
                assert torch.equal(g0, g1), f"head parameter {name} was masked"
                continue
            live = g0 != 0
            kept = g1 == g0
            assert bool(((g1 == 0) | kept).all()), "a masked entry must be zero, a kept one unchanged"
            n_live += int(live.sum())
            n_zeroed += int((live & (g1 == 0)).sum())
        frac = n_zeroed / n_live
        sd = math.sqrt(0.4 * 0.6 / n_live)
        assert abs(frac - 0.4) < 6 * sd, (step, frac)
        logged = res.history.graddrop_kept.iloc[step]
        assert abs(logged - 0.6) < 6 * sd
    assert (res.history.graddrop_p == 0.4).all()


def test_rescale_keeps_the_expected_gradient(toy_task, fast_config):
    bb = load_backbone("tiny", seed=0)
    before, after = GradSpy(25), GradSpy(40)
    train(bb, toy_task, fast_config.replace(max_steps=1), [before, ("graddrop", {"p": 0.5, "rescale": True}), after],
          store=None, verbose=False)
    g0, g1 = before.grads[0]["bert.encoder.layer.0.intermediate.dense.weight"], \
        after.grads[0]["bert.encoder.layer.0.intermediate.dense.weight"]
    kept = g1 != 0
    assert torch.allclose(g1[kept], 2 * g0[kept])


def test_same_seed_same_masks_and_metrics_other_seed_other_masks(toy_task, fast_config):
    def run(seed_gd):
        return train(load_backbone("tiny", seed=0), toy_task, fast_config.replace(max_steps=6),
                     [("graddrop", {"p": 0.3, "seed": seed_gd})], store=None, verbose=False)

    a, b, c = run(5), run(5), run(6)
    assert a.metrics == b.metrics
    assert a.history.graddrop_kept.tolist() == b.history.graddrop_kept.tolist()
    assert a.history.loss.tolist() == b.history.loss.tolist()
    assert a.history.graddrop_kept.tolist() != c.history.graddrop_kept.tolist()


def test_skip_mode_leaves_masked_entries_bit_identical(toy_task, fast_config):
    gd = GradDrop(p=0.5, mode="skip")
    watch = SkipWatch(gd)
    res = train(load_backbone("tiny", seed=0), toy_task, fast_config.replace(max_steps=4, weight_decay=0.1),
                ["full", gd, watch], store=None, verbose=False)
    assert watch.checks and all(c["dropped"] > 0 for c in watch.checks)
    assert all(c["weights_same"] and c["moments_same"] for c in watch.checks)
    assert any(c["kept_moved"] for c in watch.checks)
    assert [m for m in res.methods if m["name"] == "graddrop"][0]["mode"] == "skip"


def test_grad_mode_lets_adamw_move_masked_entries(toy_task, fast_config):
    """The contrast: with mode='grad', momentum and weight decay still move entries whose gradient was zeroed."""
    bb = load_backbone("tiny", seed=0)
    w = bb.model.bert.encoder.layer[0].intermediate.dense.weight
    after = GradSpy(40)

    class Diff(Method):
        name, stage = "diff", 41

        def after_backward(self, state):
            self.w0 = w.detach().clone()

        def after_step(self, state):
            g = after.grads[-1]["bert.encoder.layer.0.intermediate.dense.weight"]
            self.moved_masked = bool((w.detach()[g == 0] != self.w0[g == 0]).any())

    d = Diff()
    train(bb, toy_task, fast_config.replace(max_steps=3, weight_decay=0.1), [("graddrop", {"p": 0.5}), after, d],
          store=None, verbose=False)
    assert d.moved_masked


# --- epoch and layer variants -----------------------------------------------------------------
def test_epoch_variant_changes_its_mask_exactly_at_epoch_boundaries(toy_task, fast_config):
    gd = GradDrop(p=0.5, variant="epoch")

    class MaskHash(Method):
        name, stage = "mask-hash", 40

        def __init__(self):
            super().__init__()
            self.rows = []

        def after_backward(self, state):
            h = tuple(int(m.sum()) for m in gd._held.values())
            self.rows.append((state.epoch, h))

    mh = MaskHash()
    # 80 training rows, batch 8: 10 steps per epoch; 25 steps = epochs 0, 1, 2
    train(load_backbone("tiny", seed=0), toy_task, fast_config.replace(max_steps=25), [gd, mh], store=None, verbose=False)
    by_epoch = {}
    for epoch, h in mh.rows:
        by_epoch.setdefault(epoch, set()).add(h)
    assert sorted(by_epoch) == [0, 1, 2]
    assert all(len(v) == 1 for v in by_epoch.values())          # held for the whole epoch
    masks = [next(iter(v)) for v in by_epoch.values()]
    assert len(set(masks)) == 3                                 # and redrawn at each boundary


def test_epoch_steps_hold_masks_for_n_steps(toy_task, fast_config):
    res = train(load_backbone("tiny", seed=0), toy_task, fast_config.replace(max_steps=6),
                [("graddrop", {"variant": "epoch", "epoch_steps": 2, "p": 0.5})], store=None, verbose=False)
    kept = res.history.graddrop_kept.tolist()
    assert kept[0] == kept[1] and kept[2] == kept[3] and kept[4] == kept[5] and len(set(kept)) == 3


def test_layer_variant_drops_whole_units_only(toy_task, fast_config):
    bb = load_backbone("tiny", seed=0)
    before, after = GradSpy(25), GradSpy(40)
    res = train(bb, toy_task, fast_config.replace(max_steps=10), ["full", before, ("graddrop", {"variant": "layer", "p": 0.5}), after],
                store=None, verbose=False)
    unit_of = bb.blocks.unit_of(bb.model)
    saw_drop = saw_keep = False
    for step, (b, a) in enumerate(zip(before.grads, after.grads)):
        dropped = set(filter(None, str(res.history.graddrop_dropped.iloc[step] or "").split(",")))
        for name, g0 in b.items():
            unit = unit_of.get(name)
            g1 = a[name]
            if unit == "head":
                assert torch.equal(g0, g1)
            elif unit in dropped:
                assert not bool(g1.any()), f"{name} of dropped unit {unit} kept some gradient"
                saw_drop = True
            else:
                assert torch.equal(g0, g1), f"{name} of kept unit {unit} was masked"
                saw_keep = True
    assert saw_drop and saw_keep


def test_layer_skip_mode_sets_grad_to_none_so_adamw_skips(toy_task, fast_config):
    bb = load_backbone("tiny", seed=0)
    after = GradSpy(40)
    res = train(bb, toy_task, fast_config.replace(max_steps=8), [("graddrop", {"variant": "layer", "p": 0.5, "mode": "skip"}), after],
                store=None, verbose=False)
    unit_of = bb.blocks.unit_of(bb.model)
    for step, grads in enumerate(after.grads):
        dropped = set(filter(None, str(res.history.graddrop_dropped.iloc[step] or "").split(",")))
        for name, g in grads.items():
            if unit_of.get(name) in dropped:
                assert g is None


# --- composition ----------------------------------------------------------------------------------
def test_with_adapters_only_adapter_parameters_are_masked(toy_task, fast_config):
    bb = load_backbone("tiny", seed=0)
    before, after = GradSpy(25), GradSpy(40)
    train(bb, toy_task, fast_config.replace(max_steps=2), ["adapter", before, ("graddrop", {"p": 0.5}), after],
          store=None, verbose=False)
    changed = {n for n, g in after.grads[0].items() if g is not None and not torch.equal(g, before.grads[0][n])}
    assert changed and all(".adapters.task." in n for n in changed)


def test_sparse_gradual_unfreezing_masks_only_unfrozen_units(toy_task, fast_config):
    bb = load_backbone("tiny", tiny_layers=3, seed=0)
    after = GradSpy(40)
    res = train(bb, toy_task, fast_config.replace(max_steps=7), [("gu", {"k": 2}), ("graddrop", {"p": 0.5}), after],
                store=None, verbose=False)
    assert res.history.graddrop_kept.between(0.3, 0.7).all()
    unit_of = bb.blocks.unit_of(bb.model)
    live0 = {unit_of[n] for n, g in after.grads[0].items() if g is not None}
    assert live0 == {"block2", "head"}


def test_graddrop_resumes_from_a_checkpoint_exactly(toy_task, fast_config, tmp_path):
    cfg = fast_config.replace(max_steps=24, checkpoint_every=8)
    meths = lambda: [("graddrop", {"variant": "epoch", "p": 0.4})]  # noqa: E731
    ref = train(load_backbone("tiny", seed=0), toy_task, cfg, meths(), store=None, verbose=False)
    ck = tmp_path / "ck"
    train(load_backbone("tiny", seed=0), toy_task, cfg, meths(), store=None, checkpoint_dir=ck, verbose=False)
    shutil.rmtree(sorted(ck.glob("step-*"))[-1])  # resume from step 16, inside epoch 1
    again = train(load_backbone("tiny", seed=0), toy_task, cfg, meths(), store=None, checkpoint_dir=ck,
                  resume_from="auto", verbose=False)
    assert again.metrics == ref.metrics
    assert again.history.graddrop_kept.tolist() == ref.history.graddrop_kept.tolist()


def test_linear_p_schedule_goes_to_p_end(toy_task, fast_config):
    res = train(load_backbone("tiny", seed=0), toy_task, fast_config.replace(max_steps=5),
                [("graddrop", {"p": 0.4, "p_schedule": "linear", "p_end": 0.0})], store=None, verbose=False)
    assert np.allclose(res.history.graddrop_p, [0.4, 0.3, 0.2, 0.1, 0.0])
    assert res.history.graddrop_kept.iloc[-1] == 1.0


# --- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize("kw, match", [
    ({"p": 1.0}, r"\[0, 1\)"), ({"p": -0.1}, r"\[0, 1\)"), ({"p": "lots"}, "p"), ({"p": float("nan")}, "finite"),
    ({"variant": "elemnt"}, "Did you mean 'element'"), ({"mode": "skp"}, "Did you mean 'skip'"),
    ({"p_schedule": "cosine"}, "constant"), ({"epoch_steps": 3}, "only applies to variant='epoch'"),
    ({"variant": "epoch", "epoch_steps": 0}, ">= 1"), ({"rescale": "maybe"}, "rescale"),
])
def test_bad_config_is_refused_clearly(kw, match):
    with pytest.raises(MethodError, match=match):
        GradDrop(**kw)


def test_papermill_strings_are_coerced():
    gd = GradDrop(p="0.5", rescale="true", variant="epoch", epoch_steps="4")
    assert gd.p == 0.5 and gd.rescale is True and gd.config["epoch_steps"] == 4


def test_epoch_variant_without_epoch_boundaries_is_refused(toy_task, fast_config):
    # 80 rows at batch 8 = 10 steps per epoch; 6 steps never reach a boundary
    with pytest.raises(MethodError, match="never change.*epoch_steps"):
        train(load_backbone("tiny", seed=0), toy_task, fast_config.replace(max_steps=6),
              [("graddrop", {"variant": "epoch"})], store=None, verbose=False)


def test_combinations_that_make_no_sense_are_refused():
    with pytest.raises(MethodError, match="head only"):
        resolve(["linear-probe", "graddrop"])
    with pytest.raises(MethodError, match="Two GradDrop"):
        resolve(["graddrop", ("graddrop", {"variant": "layer"})])


def test_nothing_to_mask_is_refused(toy_task, fast_config):
    bb = load_backbone("tiny", seed=0)
    for p in bb.model.parameters():
        p.requires_grad_(False)
    with pytest.raises(MethodError, match="nothing to mask"):
        train(bb, toy_task, fast_config, ["graddrop"], store=None, verbose=False)


# --------------------------------------------------------------------------------------------
# AdamW's step shrinkage under GradDrop (issue 21): measured on a toy problem, and compensated
# --------------------------------------------------------------------------------------------
def _toy_step(p: float, steps: int = 160, **options) -> float:
    """A toy problem with a constant gradient (loss = Σ w·θ, w > 0) on a 'body' of two linear layers, trained
    with AdamW (lr 1e-3, no weight decay) and the real GradDrop plug-in in between backward and the step.
    Returns the mean displacement per step and entry along -w, over the last half of the run."""
    from types import SimpleNamespace

    from tutorfinetune.backbones import BlockMap

    torch.manual_seed(0)
    emb, blk, head = torch.nn.Linear(48, 48), torch.nn.Linear(48, 48), torch.nn.Linear(48, 2)
    model = torch.nn.ModuleDict({"emb": emb, "blk": blk, "head": head})
    blocks = BlockMap(embeddings=emb, blocks=[blk], head=[head])
    gd = resolve([("graddrop", {"p": p, **options})])[0]
    gd.prepare(model, blocks)
    body = [emb.weight, blk.weight]
    w = [torch.rand_like(t) + 0.5 for t in body]
    opt = torch.optim.AdamW([q for q in model.parameters()], lr=1e-3, weight_decay=0.0)
    state = SimpleNamespace(step=0, epoch=0, total_steps=steps, steps_per_epoch=steps, optimizer=opt,
                            config=SimpleNamespace(seed=0), log=lambda **kw: None)
    moved = []
    for t in range(steps):
        state.step = t
        before = [q.detach().clone() for q in body]
        gd.on_step_start(state)
        opt.zero_grad()
        sum((q * wi).sum() for q, wi in zip(body, w)).backward()
        gd.after_backward(state)
        opt.step()
        gd.after_step(state)
        if t >= steps // 2:
            moved.append(float(torch.cat([(b - q.detach()).flatten() for q, b in zip(body, before)]).mean()))
    return sum(moved) / len(moved)


@pytest.mark.parametrize("p", [0.3, 0.5, 0.7])
def test_graddrop_shrinks_the_adamw_step_by_sqrt_keep_and_compensation_undoes_it(p):
    base = _toy_step(0.0)
    assert base == pytest.approx(1e-3, rel=0.02)  # Adam's step with a constant gradient: lr
    shrunk = _toy_step(p) / base
    assert shrunk == pytest.approx((1 - p) ** 0.5, abs=0.04)  # the shrinkage, measured: sqrt(1 - p)
    assert _toy_step(p, rescale=True) / base == pytest.approx(shrunk, abs=0.02)  # rescale cannot undo it
    assert _toy_step(p, compensate="sqrt") / base == pytest.approx(1.0, abs=0.05)  # lr x 1/sqrt(1-p) does
    skip = _toy_step(p, mode="skip") / base  # skip: dropped entries keep their moments and do not move
    assert skip == pytest.approx((1 - p) ** 0.5, abs=0.04) and skip < shrunk
    assert _toy_step(p, mode="skip", compensate="sqrt") / base == pytest.approx(1.0, abs=0.06)
    assert _toy_step(p, compensate="linear") / base == pytest.approx((1 - p) ** -0.5, abs=0.06)  # over-compensates


def test_compensation_is_recorded_only_when_set():
    assert methods.get("graddrop", p=0.3).describe() == methods.get("graddrop", p=0.3, compensate="none").describe()
    assert methods.get("graddrop", compensate="sqrt").describe()["compensate"] == "sqrt"
    with pytest.raises(MethodError, match="Did you mean 'sqrt'"):
        methods.get("graddrop", compensate="sqr")
