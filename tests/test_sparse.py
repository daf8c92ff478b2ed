"""Sparse fine-tuning: SparseDiff, lottery-ticket selection, LT-SFT recipe, domain SFTs (METHODS.md §4)."""

import numpy as np
import pytest
import torch

from tutorfinetune import TrainConfig, diffs, load_backbone, train
from tutorfinetune.methods import GradDrop, MethodError, SparseUpdate, resolve
from tutorfinetune.recipes import lt_sft as sft


@pytest.fixture
def cfg():
    # weight decay on purpose: the sparse phase must still leave every unmasked entry exactly as it was
    return TrainConfig(lr=1e-3, max_steps=6, batch_size=8, max_length=32, warmup=0.0, seed=0, weight_decay=0.1,
                       max_eval_examples=16)


def _flat(model, names):
    params = dict(model.named_parameters())
    return {n: params[n].detach().clone() for n in names}


# ---------------------------------------------------------------------------------------------
# what may change
# ---------------------------------------------------------------------------------------------
def test_maskable_excludes_layernorm_and_head_includes_embeddings(tiny):
    bb = tiny()
    names = diffs.maskable_names(bb.model, bb.blocks)
    assert any("word_embeddings" in n for n in names)
    assert not any("LayerNorm" in n for n in names)
    heads = set(diffs.head_names(bb.model, bb.blocks))
    assert heads and not heads & set(names)
    assert any("classifier" in n for n in heads)


@pytest.mark.parametrize("k,expected", [(0.5, 50), (1.0, 100), (7, 7), ("0.1", 10), ("30", 30)])
def test_resolve_k(k, expected):
    assert diffs.resolve_k(k, 100) == expected


@pytest.mark.parametrize("k", [0, -3, 101, 1000, float("nan"), 2.5, "lots"])
def test_resolve_k_refuses_bad_k(k):
    with pytest.raises(diffs.SparseError):
        diffs.resolve_k(k, 100)


def test_select_mask_takes_exactly_the_k_largest_over_all_tensors():
    torch.manual_seed(0)
    d = {"a": torch.randn(10, 10), "b": torch.randn(50)}
    mask = diffs.select_mask(d, 12)
    assert sum(int(m.sum()) for m in mask.values()) == 12
    chosen = torch.cat([d[n].abs().reshape(-1)[mask[n].reshape(-1)] for n in d])
    left = torch.cat([d[n].abs().reshape(-1)[~mask[n].reshape(-1)] for n in d])
    assert chosen.min() > left.max()
    # ties at zero (untouched rows) do not inflate K
    z = {"a": torch.zeros(100), "b": torch.tensor([3.0, 2.0, 0.0])}
    m = diffs.select_mask(z, 5)
    assert sum(int(x.sum()) for x in m.values()) == 5 and m["b"][:2].all()


def test_select_mask_exclude_picks_new_entries_and_random_mask_is_seeded():
    d = {"a": torch.arange(20.0)}
    first = diffs.select_mask(d, 5)
    second = diffs.select_mask(d, 5, exclude=first)
    assert not (first["a"] & second["a"]).any() and second["a"][10:15].all()
    r1, r2, r3 = (diffs.random_mask({"a": (10, 10), "b": (30,)}, 17, seed=s) for s in (1, 1, 2))
    assert sum(int(m.sum()) for m in r1.values()) == 17
    assert all(torch.equal(r1[n], r2[n]) for n in r1) and not all(torch.equal(r1[n], r3[n]) for n in r1)


# ---------------------------------------------------------------------------------------------
# SparseDiff
# ---------------------------------------------------------------------------------------------
def _random_diff(bb, k=300, seed=0, with_head=True):
    names = diffs.maskable_names(bb.model, bb.blocks)
    ref = _flat(bb.model, names)
    mask = diffs.random_mask({n: t.shape for n, t in ref.items()}, k, seed=seed)
    g = torch.Generator().manual_seed(seed)
    params = dict(bb.model.named_parameters())
    with torch.no_grad():
        for n in names:
            params[n].add_(torch.randn(params[n].shape, generator=g) * mask[n])
        for n in diffs.head_names(bb.model, bb.blocks):
            params[n].add_(1.0)
    diff = diffs.SparseDiff.from_models(bb.model, ref, bb.blocks, names=names, with_head=with_head)
    with torch.no_grad():
        for n in names:
            params[n].copy_(ref[n])
        for n in diffs.head_names(bb.model, bb.blocks):
            params[n].sub_(1.0)
    return diff, mask


def test_apply_then_revert_is_exact_and_apply_twice_is_refused(tiny):
    bb = tiny()
    diff, mask = _random_diff(bb)
    before = {n: p.detach().clone() for n, p in bb.model.named_parameters()}
    assert diff.nnz == 300
    diff.apply(bb.model, bb.blocks)
    params = dict(bb.model.named_parameters())
    changed = sum(int((params[n] != before[n]).sum()) for n in mask)
    assert changed == 300
    head = diffs.head_names(bb.model, bb.blocks)
    assert all(torch.allclose(params[n], before[n] + 1.0) for n in head)
    with pytest.raises(diffs.SparseError, match="already applied"):
        diff.apply(bb.model)
    diff.revert(bb.model)
    assert all(torch.equal(p, before[n]) for n, p in bb.model.named_parameters())
    with pytest.raises(diffs.SparseError, match="not applied"):
        diff.revert(bb.model)


def test_save_load_roundtrip_and_size(tiny, tmp_path):
    bb = tiny()
    diff, _ = _random_diff(bb)
    path = diff.save(tmp_path / "task.sft")
    back = diffs.SparseDiff.load(path)
    assert back.meta["id"] == diff.meta["id"] and back.meta["model_id"] == diff.meta["model_id"]
    assert set(back.deltas) == set(diff.deltas)
    for n, (i, v, s) in diff.deltas.items():
        assert torch.equal(back.deltas[n][1], v) and back.deltas[n][2] == s
        assert (i is None and back.deltas[n][0] is None) or torch.equal(back.deltas[n][0], i)
    assert all(torch.equal(back.head[n], t) for n, t in diff.head.items())
    size = path.stat().st_size
    assert diff.stored_bytes() <= size < diff.stored_bytes() + 20_000
    # 300 sparse entries (4-byte index + 4-byte value) plus the head: far below the model
    model_bytes = sum(p.numel() * 4 for p in bb.model.parameters())
    assert size < model_bytes / 20
    # no pickle anywhere: a safetensors header
    assert path.read_bytes()[8:9] == b"{"


def test_corrupted_or_foreign_files_are_refused(tiny, tmp_path):
    bb = tiny()
    diff, _ = _random_diff(bb)
    path = diff.save(tmp_path / "d.sft")
    raw = path.read_bytes()
    (tmp_path / "trunc.sft").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(diffs.SparseError, match="corrupted or truncated"):
        diffs.SparseDiff.load(tmp_path / "trunc.sft")
    (tmp_path / "junk.sft").write_bytes(b"not a diff at all")
    with pytest.raises(diffs.SparseError):
        diffs.SparseDiff.load(tmp_path / "junk.sft")
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(3)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(diffs.SparseError, match="not a tutorfinetune sparse diff"):
        diffs.SparseDiff.load(tmp_path / "other.safetensors")
    with pytest.raises(diffs.SparseError, match="No diff file"):
        diffs.SparseDiff.load(tmp_path / "missing.sft")
    # indices out of range
    n = next(k for k, (i, _, _) in diff.deltas.items() if i is not None)
    i, v, s = diff.deltas[n]
    diff.deltas[n] = (i + int(np.prod(s)), v, s)
    diff.save(tmp_path / "bad.sft")
    with pytest.raises(diffs.SparseError, match="outside its shape"):
        diffs.SparseDiff.load(tmp_path / "bad.sft")


def test_compose_adds_overlaps_and_refuses_other_backbones(tiny):
    bb = tiny()
    a, ma = _random_diff(bb, k=400, seed=1)
    b, mb = _random_diff(bb, k=400, seed=2, with_head=False)
    both = a + b
    shared = sum(int((ma[n] & mb[n]).sum()) for n in ma)
    assert both.meta["overlap"] == shared
    assert both.changed == 800 - shared
    ov = a.overlap(b)
    assert int(ov.loc[ov.tensor == "total", "shared"].iloc[0]) == shared
    assert both.head and all(torch.equal(both.head[n], a.head[n]) for n in a.head)
    # composed == applying one after the other (the head: the diff's, whatever was there)
    before = {n: p.detach().clone() for n, p in bb.model.named_parameters()}
    a.apply(bb.model)
    b.apply(bb.model, with_head=False)
    seq = {n: p.detach().clone() for n, p in bb.model.named_parameters()}
    b.revert(bb.model)
    a.revert(bb.model)
    both.apply(bb.model)
    for n, p in bb.model.named_parameters():
        assert torch.allclose(p, seq[n], atol=1e-6)
    both.revert(bb.model)
    assert all(torch.equal(p, before[n]) for n, p in bb.model.named_parameters())
    other = load_backbone("tiny", num_labels=2, seed=5, tiny_layers=3)
    c, _ = _random_diff(other, k=50)
    with pytest.raises(diffs.SparseError, match="different backbones"):
        diffs.compose(a, c)
    with pytest.raises(diffs.SparseError, match="another backbone|no parameter"):
        c.apply(bb.model, bb.blocks)


# ---------------------------------------------------------------------------------------------
# the plug-in and the recipe
# ---------------------------------------------------------------------------------------------
def test_sparse_phase_moves_only_masked_entries_even_with_weight_decay(tiny, toy_task, cfg):
    bb = tiny()
    names = diffs.maskable_names(bb.model, bb.blocks)
    ref = _flat(bb.model, names)
    mask = diffs.random_mask({n: t.shape for n, t in ref.items()}, 500, seed=3)
    train(bb, toy_task, cfg, [SparseUpdate(mask=mask)], store=None, verbose=False)
    params = dict(bb.model.named_parameters())
    outside = sum(int((params[n] != ref[n])[~mask[n]].sum()) for n in names)
    inside = sum(int((params[n] != ref[n])[mask[n]].sum()) for n in names)
    assert outside == 0
    assert inside > 250  # the chosen entries did train (those with a gradient)
    ln = [p for n, p in bb.model.named_parameters() if "LayerNorm" in n]
    assert ln and not any(p.requires_grad for p in ln)


def test_without_the_put_back_weight_decay_would_move_masked_entries(tiny, toy_task, cfg, monkeypatch):
    """Mutation check: the exact-zero test above fails if the put-back is disabled."""
    bb = tiny()
    names = diffs.maskable_names(bb.model, bb.blocks)
    ref = _flat(bb.model, names)
    mask = diffs.random_mask({n: t.shape for n, t in ref.items()}, 500, seed=3)
    monkeypatch.setattr(SparseUpdate, "restore", lambda self: None)
    train(bb, toy_task, cfg, [SparseUpdate(mask=mask)], store=None, verbose=False)
    params = dict(bb.model.named_parameters())
    assert sum(int((params[n] != ref[n])[~mask[n]].sum()) for n in names) > 0


def test_l1_pulls_towards_the_start(tiny, toy_task, cfg):
    dist = {}
    for l1 in (0.0, 1e4):
        bb = tiny()
        names = diffs.maskable_names(bb.model, bb.blocks)
        ref = _flat(bb.model, names)
        train(bb, toy_task, cfg.replace(weight_decay=0.0), [SparseUpdate(l1=l1)], store=None, verbose=False)
        params = dict(bb.model.named_parameters())
        dist[l1] = sum(float((params[n].detach() - ref[n]).abs().sum()) for n in names)
    assert dist[1e4] < dist[0.0]


def test_lt_sft_recipe(tiny, toy_task, cfg, tmp_path):
    bb = tiny()
    start = {n: p.detach().clone() for n, p in bb.model.named_parameters()}
    names = diffs.maskable_names(bb.model, bb.blocks)
    res = sft.lt_sft(bb, toy_task, cfg, k=0.02, store=tmp_path, study="t")
    n_mask = sum(start[n].numel() for n in names)
    assert res.k == round(0.02 * n_mask)
    assert 0 < res.diff.changed <= res.k
    # the diff lives on the lottery mask: the K entries that moved most in the dense phase
    mask = diffs.select_mask(res.dense.deltas, res.k)
    for n, (i, v, _s) in res.diff.deltas.items():
        idx = i.long() if i is not None else torch.nonzero(v).reshape(-1)
        assert mask[n].reshape(-1)[idx].all()
    # the model is θ0 + φ with the sparse phase's head; the dense phase's head was reset before it
    params = dict(bb.model.named_parameters())
    for n in names:
        moved = params[n] != start[n]
        assert not moved[~mask[n]].any()
    head = diffs.head_names(bb.model, bb.blocks)
    assert all(torch.equal(res.diff.head[n], params[n].detach().cpu()) for n in head)
    # both runs recorded, under the method names a table shows
    from tutorfinetune import results

    df = results.load(tmp_path)
    assert set(df.method) == {"lt-sft-dense", "lt-sft"}
    # apply φ to a fresh model: the same predictions as the trained one
    fresh = tiny()
    for n in head:  # a fresh head differs; the diff's head replaces it
        assert not torch.equal(dict(fresh.model.named_parameters())[n].detach(), params[n].detach())
    res.diff.apply(fresh.model, fresh.blocks)
    for n, p in fresh.model.named_parameters():
        assert torch.allclose(p, params[n], atol=1e-6), n


def test_dense_phase_reused_across_k_and_random_baseline(tiny, toy_task, cfg):
    bb = tiny()
    small = sft.lt_sft(bb, toy_task, cfg, k=0.01, store=None)
    bb2 = tiny()
    big = sft.lt_sft(bb2, toy_task, cfg, k=0.05, dense=small.dense, store=None)
    assert big.dense is small.dense
    ms, mb = (diffs.select_mask(small.dense.deltas, r.k) for r in (small, big))
    assert all(not (ms[n] & ~mb[n]).any() for n in ms)  # the top 1% sits inside the top 5%
    bb3 = tiny()
    rnd = sft.lt_sft(bb3, toy_task, cfg, k=0.01, selection="random", store=None)
    assert rnd.dense is None and rnd.result.method == "random-sft"
    ov = small.diff.overlap(rnd.diff)
    assert int(ov.loc[ov.tensor == "total", "shared"].iloc[0]) < small.k // 4
    with pytest.raises(diffs.SparseError, match="Unknown selection"):
        sft.lt_sft(tiny(), toy_task, cfg, selection="lotery", store=None)


def test_random_per_tensor_baseline_matches_the_lottery_counts_per_tensor(tiny, toy_task, cfg):
    bb = tiny()
    lottery = sft.lt_sft(bb, toy_task, cfg, k=0.02, store=None)
    lot_mask = diffs.select_mask(lottery.dense.deltas, lottery.k)
    per = diffs.random_mask_like(lot_mask, seed=cfg.seed)
    assert {n: int(m.sum()) for n, m in per.items()} == {n: int(m.sum()) for n, m in lot_mask.items()}
    # other positions: the overlap with the lottery ticket is what chance gives (sum of c^2 / size per tensor)
    shared = sum(int((per[n] & lot_mask[n]).sum()) for n in per)
    chance = sum(int(m.sum()) ** 2 / m.numel() for m in lot_mask.values())
    assert shared < lottery.k and abs(shared - chance) < 0.05 * lottery.k
    assert all(torch.equal(per[n], m) for n, m in diffs.random_mask_like(lot_mask, seed=cfg.seed).items())  # seeded
    # the recipe: the same dense phase, the lottery's counts per tensor, random positions
    rnd = sft.lt_sft(tiny(), toy_task, cfg, k=0.02, selection="random-per-tensor", dense=lottery.dense, store=None)
    assert rnd.result.method == "random-sft-per-tensor"
    by_tensor = rnd.diff.frame().set_index("tensor")["changed"]
    lot_counts = {n: int(m.sum()) for n, m in lot_mask.items()}
    assert all(int(by_tensor.get(n, 0)) <= c for n, c in lot_counts.items())  # entries may stay put, never more
    uniform = diffs.random_mask({n: m.shape for n, m in lot_mask.items()}, lottery.k, seed=0)
    emb = [n for n in lot_mask if "embeddings" in n]
    assert sum(int(uniform[n].sum()) for n in emb) != sum(lot_counts[n] for n in emb)


def test_n_iterations_grows_the_mask(tiny, toy_task, cfg):
    bb = tiny()
    res = sft.lt_sft(bb, toy_task, cfg, k=200, n_iterations=2, store=None)
    assert 0 < res.diff.changed <= 200


def test_start_from_measures_the_task_diff_from_the_source_sft(tiny, toy_task, cfg):
    bb = tiny()
    src, _ = _random_diff(bb, k=300, seed=4, with_head=False)
    before = {n: p.detach().clone() for n, p in bb.model.named_parameters()}
    res = sft.lt_sft(bb, toy_task, cfg, k=100, start_from=src, store=None)
    assert res.diff.changed <= 100  # φ_task alone, not φ_src + φ_task
    assert src.applied_to(bb.model)
    src.revert(bb.model)
    # θ0 + φ_src + φ_task − φ_src = θ0 + φ_task on the maskable tensors
    names = diffs.maskable_names(bb.model, bb.blocks)
    params = dict(bb.model.named_parameters())
    fresh = tiny()
    res.diff.apply(fresh.model)
    fp = dict(fresh.model.named_parameters())
    for n in names:
        assert torch.allclose(params[n], fp[n], atol=1e-6)
    assert not all(torch.equal(params[n], before[n]) for n in names)


def test_plugin_combinations_are_refused(tiny):
    mask = {"x": torch.ones(2, dtype=torch.bool)}
    with pytest.raises(MethodError, match="already masks"):
        resolve([GradDrop(p=0.3), SparseUpdate(mask=mask)])
    with pytest.raises(MethodError, match="freezes"):
        resolve(["linear-probe", SparseUpdate()])
    with pytest.raises(MethodError, match="l1"):
        SparseUpdate(l1=-1)
    with pytest.raises(MethodError, match="mask must be"):
        SparseUpdate(mask=[1, 2])
    bb = tiny()
    with pytest.raises(diffs.SparseError, match="does not fit"):
        SparseUpdate(mask=mask).prepare(bb.model, bb.blocks)


def test_domain_sft_by_mlm(tiny, toy_task):
    bb = tiny()
    before = {n: p.detach().clone() for n, p in bb.model.named_parameters()}
    texts = toy_task.train.text.tolist()
    diff, dense, log = sft.domain_sft(bb, texts, k=150, steps=4, warm_steps=2, batch_size=8, max_length=32,
                                     lr=1e-3, name="toy")
    assert all(torch.equal(p, before[n]) for n, p in bb.model.named_parameters())  # model untouched
    assert 0 < diff.changed <= 150 and not diff.head
    assert dense.changed > 150 * 3
    assert len(log["sparse"]) == 4 and np.isfinite(log["sparse"]).all()
    names = set(diffs.maskable_names(bb.model, bb.blocks))
    assert set(diff.deltas) <= names
    with pytest.raises(Exception, match="unlabelled text"):
        sft.domain_sft(bb, [], k=10)


def test_evaluate_diffs_records_and_reverts(tiny, toy_task, cfg, tmp_path):
    bb = tiny()
    res = sft.lt_sft(bb, toy_task, cfg, k=0.02, store=None)
    dom, _, _ = sft.domain_sft(tiny(), toy_task.train.text.tolist(), k=100, steps=2, warm_steps=1, batch_size=8, max_length=32)
    fresh = tiny()
    before = {n: p.detach().clone() for n, p in fresh.model.named_parameters()}
    m = sft.evaluate_diffs(fresh, toy_task, cfg, [dom, res.diff], method="task+domain", store=tmp_path, study="t")
    assert set(m) == set(toy_task.eval_set_specs) and 0 <= m["dev"]["accuracy"] <= 1
    assert all(torch.equal(p, before[n]) for n, p in fresh.model.named_parameters())
    from tutorfinetune import results

    df = results.load(tmp_path)
    assert set(df.method) == {"task+domain"}
    with pytest.raises(diffs.SparseError, match="head"):
        sft.evaluate_diffs(fresh, toy_task, cfg, [dom], method="x", store=None)


def test_cached_domain_sfts_and_zero_shot_transfer(tiny, toy_task, cfg, tmp_path, monkeypatch):
    made = []
    real = sft.domain_sft
    monkeypatch.setattr(sft, "load_backbone", lambda name, **kw: load_backbone("tiny", **kw))
    monkeypatch.setattr(sft, "domain_sft", lambda *a, **kw: made.append(kw["name"]) or real(*a, **kw))
    texts = {"source": toy_task.train.text.tolist()[:40], "dev": toy_task.train.text.tolist()[40:]}
    kw = dict(k=100, steps=2, warm_steps=1, batch_size=8, max_length=32)
    s1, d1, _ = sft.cached_domain_sfts("tiny", texts, tmp_path / "sft", **kw)
    s2, d2, _ = sft.cached_domain_sfts("tiny", texts, tmp_path / "sft", **kw)
    assert made == ["source", "dev"]  # the second call loaded the saved files
    assert all(torch.equal(s1[n].deltas[t][1], s2[n].deltas[t][1]) for n in s1 for t in s1[n].deltas)
    with pytest.raises(diffs.SparseError, match="other settings"):
        sft.cached_domain_sfts("tiny", texts, tmp_path / "sft", **{**kw, "k": 50})
    bb = tiny()
    dense = sft.dense_phase(bb, toy_task, cfg, start_from=d1["source"], store=None)
    d1["source"].revert(bb.model)
    res = sft.lt_sft(tiny(), toy_task, cfg, k=0.02, start_from=s1["source"], store=None)
    # the toy task's eval set "dev" doubles as a "held-out domain" here
    task = toy_task.with_eval_sets({"shift:dev": toy_task.eval_set("dev")})
    out = sft.zero_shot_transfer(tiny(), task, cfg, {"sparse": res.diff, "dense": dense.diff},
                                {"sparse": s1, "dense": d1}, ["dev"], store=tmp_path / "runs", study="z")
    acc = out[out.metric == "accuracy"]
    assert len(acc) == 6 and set(acc.combo) == {"task only", "+ source", "+ target"}
    from tutorfinetune import results

    assert len(results.load(tmp_path / "runs").run_id.unique()) == 6


def test_recipe_registry():
    from tutorfinetune import recipes

    assert "lt-sft" in recipes.available()
    assert recipes.get("lt-sft").__doc__.startswith("Lottery-ticket")
    with pytest.raises(recipes.RecipeError, match="lt-sft"):
        recipes.get("lt-sfft")
