"""Multiple-choice tasks and heads, and intermediate-task transfer (STILTs, METHODS.md §5)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import realdata

import tutorfinetune as tft
from tutorfinetune import synthetic as sy
from tutorfinetune.data import TaskError, multiple_choice_task
from tutorfinetune.engine import TrainingError, collate, encode
from tutorfinetune.recipes import stilts as st

WORDS = ["red", "blue", "green", "small", "large", "quiet", "loud", "warm", "cold", "fast"]


def mc_frame(n: int = 64, n_choices: int = 3, seed: int = 0) -> pd.DataFrame:
    """A multiple-choice toy task a tiny model can learn: the right choice is the one that says 'yes'."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = int(rng.integers(0, n_choices))
        choices = [f"{WORDS[(i + k) % 10]} {'yes' if k == label else 'no'} {WORDS[(i * 3 + k) % 10]}"
                   for k in range(n_choices)]
        rows.append({"text": f"pick the one {WORDS[i % 10]}", "choices": choices, "label": label,
                     "split": "dev" if i % 4 == 0 else "train"})
    return pd.DataFrame(rows)


@pytest.fixture
def mc_task():
    return multiple_choice_task(mc_frame(), "toy-mc")


@pytest.fixture
def cfg():
    return tft.TrainConfig(lr=1e-3, max_steps=8, batch_size=8, max_length=32, warmup=0.0, seed=0)


# --------------------------------------------------------------------------------------------
# Multiple-choice tasks, encoding and heads
# --------------------------------------------------------------------------------------------
def test_multiple_choice_task_validates_its_rows():
    ok = multiple_choice_task(mc_frame(), "mc")
    assert ok.multiple_choice and ok.num_labels == 3 and list(ok.eval_set_specs) == ["dev"]
    bad = mc_frame()
    bad.at[3, "choices"] = ["only", "two"]
    with pytest.raises(TaskError, match="same number of choices"):
        multiple_choice_task(bad, "mc")
    bad = mc_frame()
    bad.loc[5, "label"] = 3
    with pytest.raises(TaskError, match=r"not choice indices 0..2"):
        multiple_choice_task(bad, "mc")
    with pytest.raises(TaskError, match="choices missing|\\['choices'\\] missing"):
        multiple_choice_task(mc_frame().drop(columns=["choices"]), "mc")
    bad = mc_frame()
    bad.at[0, "choices"] = ["", "b", "c"]
    with pytest.raises(TaskError, match="non-empty strings"):
        multiple_choice_task(bad, "mc")


def test_encode_and_collate_give_one_sequence_per_choice(tiny, mc_task):
    bb = tiny()
    enc = encode(bb.tokenizer, mc_task.train, 32)
    assert enc.n_choices == 3 and len(enc) == len(mc_task.train)
    batch = collate(enc, np.arange(4), bb.tokenizer.pad_token_id, torch.device("cpu"))
    assert batch["input_ids"].shape[:2] == (4, 3) and batch["attention_mask"].shape == batch["input_ids"].shape
    # each row is the (context, choice) pair of that choice, encoded on its own
    row = mc_task.train.iloc[1]
    want = bb.tokenizer(row["text"], row["choices"][2])["input_ids"]
    got = batch["input_ids"][1, 2][batch["attention_mask"][1, 2].bool()].tolist()
    assert got == want


def test_multiple_choice_head_scores_each_pair_separately(tiny, mc_task):
    torch.manual_seed(0)
    bb = tft.load_backbone("tiny", head="multiple-choice")
    bb.model.eval()
    enc = encode(bb.tokenizer, mc_task.train, 32)
    batch = collate(enc, np.arange(6), bb.tokenizer.pad_token_id, torch.device("cpu"))
    batch.pop("labels")
    logits = bb.model(**batch).logits
    perm = [2, 0, 1]
    shuffled = {k: v[:, perm] for k, v in batch.items()}
    # a choice's score depends on its own pair only: permuting the choices permutes the scores
    assert torch.allclose(bb.model(**shuffled).logits, logits[:, perm], atol=1e-5)


def test_multiple_choice_training_learns_and_heads_must_match(tiny, mc_task, cfg):
    bb = tft.backbone_for_task("tiny", mc_task)
    assert bb.head_kind == "multiple-choice"
    res = tft.train(bb, mc_task, cfg.replace(max_steps=60, lr=3e-3), store=None, verbose=False)
    assert res.metrics["dev"]["accuracy"] >= 0.8  # chance is 1/3
    with pytest.raises(TrainingError, match="head='multiple-choice'"):
        tft.train(tiny(num_labels=3), mc_task, cfg, store=None, verbose=False)
    with pytest.raises(TrainingError, match="multiple-choice head but task"):
        tft.train(tft.load_backbone("tiny", head="multiple-choice"), tft.load_task("reviews"), cfg, store=None)
    with pytest.raises(tft.BackboneError, match="Unknown head"):
        tft.load_backbone("tiny", head="multiple_choice")


def test_real_fake_task_is_a_multiple_choice_task_and_sweeps_load_the_right_head(tmp_path, cfg):
    texts = tft.load_task("reviews").texts(lang="en")
    task = sy.real_fake_task(texts, seed=0, max_examples=120)
    assert task.multiple_choice and task.num_labels == 4 and task.meta["generator"]["cross_fitted"]
    df = tft.studies.sweep("tiny", task, cfg.replace(max_steps=2), seeds=[0], store=tmp_path)
    assert set(df.eval_set) == {"dev"} and df.status.eq("finished").all()


# --------------------------------------------------------------------------------------------
# The generator: fakes are generated, never copies of the real ending
# --------------------------------------------------------------------------------------------
def test_cross_fitted_generator_never_saw_the_sentence():
    texts = tft.load_task("reviews").texts(lang="en")
    df = sy.build_real_fake(texts, seed=0, max_examples=400)
    assert df.attrs["generator"]["cross_fitted"] and df.attrs["generator"]["duplicates"] == 0
    for r in df.itertuples():
        fakes = [e for k, e in enumerate(r.endings) if k != r.label]
        assert r.real not in fakes and len(set(fakes)) == len(fakes)
    # a single generator fitted on every sentence recites real endings (what cross-fitting prevents)
    sents = sy.sentences_for_task(texts)
    full = sy.NGramGenerator().fit([" ".join(s[:-1]) for s in sents])
    rng = np.random.default_rng(0)
    recited = np.mean([full.generate(s[:len(s) // 2], len(s) - 1 - len(s) // 2, rng) == " ".join(s[len(s) // 2:-1])
                       for s in sents[:200]])
    assert recited > 0.02


def test_ending_stats_and_ngram_baseline():
    texts = tft.load_task("reviews").texts(lang="en")
    df = sy.build_real_fake(texts, seed=0, max_examples=300)
    stats = sy.ending_stats(df)
    assert list(stats.index) == ["real", "fake"]
    assert stats.loc["real", "mean words"] == pytest.approx(stats.loc["fake", "mean words"])  # length-matched
    assert stats.loc["fake", "endings"] == 3 * stats.loc["real", "endings"]
    acc = sy.ngram_baseline(df)
    assert 0.0 <= acc <= 1.0
    with pytest.raises(sy.SyntheticError, match="dev rows"):
        sy.ngram_baseline(df[df.split == "train"])


def test_corpus_too_small_says_how_many_sentences_are_needed():
    with pytest.raises(sy.SyntheticError, match=r"Only 3 sentences .* at least 50"):
        sy.real_fake_task(["one two three four five six seven eight nine ten"] * 3)
    with pytest.raises(sy.SyntheticError, match="not one string"):
        sy.build_real_fake("a single long string " * 50)


# --------------------------------------------------------------------------------------------
# STILTs
# --------------------------------------------------------------------------------------------
def test_target_starts_from_the_intermediate_encoder_with_a_fresh_head(mc_task, toy_task, cfg):
    inter = st.train_intermediate("tiny", mc_task, cfg, store=None)
    pre = tft.load_backbone("tiny", head="multiple-choice")
    pre_state = st.encoder_state(pre.model)
    moved = [k for k in pre_state if not torch.equal(pre_state[k], inter.state[k])]
    assert moved, "the intermediate phase trains the encoder"
    target = tft.load_backbone("tiny", num_labels=2, seed=5)
    fresh_head = {k: v.clone() for k, v in target.model.classifier.state_dict().items()}
    plug = st.FromIntermediate(inter)
    plug.prepare(target.model, target.blocks)
    for k, v in st.encoder_state(target.model).items():
        assert torch.equal(v, inter.state[k]), k
    for k, v in target.model.classifier.state_dict().items():
        assert torch.equal(v, fresh_head[k])  # the head is the target's own fresh one
    out = st.stilts("tiny", None, toy_task, cfg, intermediate=inter, store=None)
    assert out.result.tags["intermediate"] == inter.id and out.result.method == "from-intermediate+full"
    # the pooler ablation keeps the target's own pretrained pooler and carries the rest
    again = tft.load_backbone("tiny", num_labels=2, seed=5)
    pooler = {k: v.clone() for k, v in again.model.bert.pooler.state_dict().items()}
    ablate = st.FromIntermediate(inter, carry_pooler=False)
    ablate.prepare(again.model, again.blocks)
    now = st.encoder_state(again.model)
    assert all(torch.equal(now[f"pooler.{k}"], v) for k, v in pooler.items())
    assert torch.equal(now["encoder.layer.0.attention.self.query.weight"],
                       inter.state["encoder.layer.0.attention.self.query.weight"])
    assert "carry_pooler" not in plug.describe() and ablate.describe()["carry_pooler"] is False


def test_a_target_that_reads_by_mean_takes_an_intermediate_with_a_pooler_and_back(mc_task, toy_task, cfg):
    inter = st.train_intermediate("tiny", mc_task, cfg, store=None)  # tiny: "auto" is BERT's pooler
    assert any(k.startswith("pooler.") for k in inter.state)
    target = tft.load_backbone("tiny", num_labels=2, seed=5, readout="mean")
    st.FromIntermediate(inter).prepare(target.model, target.blocks)  # the unused pooler is left behind
    now = st.encoder_state(target.model)
    assert not any(k.startswith("pooler.") for k in now)
    assert all(torch.equal(v, inter.state[k]) for k, v in now.items())
    out = st.stilts("tiny", None, toy_task, cfg.replace(readout="mean"), intermediate=inter, store=None)
    assert out.result.config.readout == "mean" and out.result.status == "finished"
    # the other way: an intermediate encoder without a pooler; a pooler target keeps its pretrained one
    no_pooler = st.train_intermediate("tiny", mc_task, cfg.replace(readout="mean"), store=None)
    assert not any(k.startswith("pooler.") for k in no_pooler.state)
    again = tft.load_backbone("tiny", num_labels=2, seed=5)
    pretrained = {k: v.clone() for k, v in again.model.bert.pooler.state_dict().items()}
    st.FromIntermediate(no_pooler).prepare(again.model, again.blocks)
    now = st.encoder_state(again.model)
    assert all(torch.equal(now[f"pooler.{k}"], v) for k, v in pretrained.items())
    assert torch.equal(now["encoder.layer.0.attention.self.query.weight"],
                       no_pooler.state["encoder.layer.0.attention.self.query.weight"])


def test_stilts_recipe_records_both_phases(tmp_path, mc_task, toy_task, cfg):
    recipe = tft.recipes.get("stilts")
    out = recipe("tiny", mc_task, toy_task, cfg, store=tmp_path, study="s")
    recs = tft.results.load_records(tmp_path)
    phases = sorted((r["tags"]["phase"], r["task"]) for r in recs)
    assert phases == [("intermediate", "toy-mc"), ("target", toy_task.name)]
    assert out.intermediate.meta["kind"] == "multiple-choice" and out.intermediate.head is None
    assert np.isfinite(out.intermediate.dev_accuracy())


def test_target_phase_composes_with_adapters_and_schedules(mc_task, toy_task, cfg):
    inter = st.train_intermediate("tiny", mc_task, cfg, store=None)
    out = st.stilts("tiny", None, toy_task, cfg, intermediate=inter, methods=["adapter"], store=None)
    # with a task adapter the carried encoder stays frozen: exactly the intermediate weights (the pooler
    # belongs to the head, which trains)
    now = st.encoder_state(out.backbone.model)
    for k, v in inter.state.items():
        if not k.startswith("pooler"):
            assert torch.equal(now[k], v), k
    out = st.stilts("tiny", None, toy_task, cfg, intermediate=inter, methods=[("gu", {"k": 2})], store=None)
    units = out.result.history["trainable_units"].str.split(",").map(len)
    assert units.iloc[0] == 1 and units.iloc[-1] == 3 and units.is_monotonic_increasing  # top-down from the carried model


def test_intermediate_phases_that_carry_nothing_are_refused(mc_task, cfg):
    for m in ("adapter", "linear-probe"):
        with pytest.raises(st.STILTsError, match="carry the pretrained encoder unchanged"):
            st.train_intermediate("tiny", mc_task, cfg, methods=[m], store=None)


def test_other_target_backbone_is_refused(mc_task, toy_task, cfg):
    inter = st.train_intermediate("tiny", mc_task, cfg, store=None)
    with pytest.raises(st.STILTsError, match="trained from backbone 'tiny', but the target backbone is 'minilm'"):
        st.stilts("minilm", None, toy_task, cfg, intermediate=inter, store=None)
    other = tft.load_backbone("tiny", num_labels=2, tiny_layers=3)
    with pytest.raises(st.STILTsError, match="3 blocks"):
        st.FromIntermediate(inter).prepare(other.model, other.blocks)


def test_carry_head_needs_the_same_labels(mc_task, toy_task, cfg):
    mc_inter = st.train_intermediate("tiny", mc_task, cfg, store=None)
    target = tft.load_backbone("tiny", num_labels=2)
    with pytest.raises(st.STILTsError, match="multiple-choice head"):
        st.FromIntermediate(mc_inter, carry_head=True).prepare(target.model, target.blocks)
    dom = st.domain_task(tft.load_task("reviews"), per_domain=12)
    dom_inter = st.train_intermediate("tiny", dom, cfg, store=None)
    with pytest.raises(st.STILTsError, match="same labels"):
        st.stilts("tiny", None, toy_task, cfg, intermediate=dom_inter, carry_head=True, store=None)
    # same labels: the head is carried too
    same = st.train_intermediate("tiny", toy_task, cfg, store=None)
    out = st.stilts("tiny", None, toy_task, cfg.replace(max_steps=1, lr=1e-9), intermediate=same, carry_head=True,
                    store=None)
    w = out.backbone.model.classifier.weight.detach()
    assert torch.allclose(w, same.head["classifier.weight"], atol=1e-6)


def test_save_load_and_cache(tmp_path, mc_task, cfg):
    store = tmp_path / "runs"
    a = st.cached_intermediate("tiny", mc_task, cfg, tmp_path / "inter", store=store)
    b = st.cached_intermediate("tiny", mc_task, cfg, tmp_path / "inter", store=store)
    assert a.id == b.id and all(torch.equal(a.state[k], b.state[k]) for k in a.state)
    assert len(tft.results.load_records(store)) == 1  # the second call loaded, it did not train
    other = multiple_choice_task(mc_frame(seed=1), "toy-mc")  # same name, other data
    c = st.cached_intermediate("tiny", other, cfg, tmp_path / "inter", store=store)
    assert c.id != a.id and len(tft.results.load_records(store)) == 2
    folder = next((tmp_path / "inter").glob("toy-mc-*"))
    (folder / "encoder.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(st.STILTsError, match="delete the folder"):
        st.Intermediate.load(folder)
    with pytest.raises(st.STILTsError, match="not an intermediate model"):
        st.Intermediate.load(tmp_path)


def test_intermediate_id_is_part_of_the_target_fingerprint(tmp_path, mc_task, toy_task, cfg):
    inter_a = st.train_intermediate("tiny", mc_task, cfg, store=None)
    inter_b = st.train_intermediate("tiny", mc_task, cfg.replace(lr=2e-3), store=None)
    assert inter_a.id != inter_b.id
    runs = []
    for inter in (inter_a, inter_b, inter_a):
        runs.append(tft.studies.sweep("tiny", toy_task, cfg.replace(max_steps=2), seeds=[0],
                                    methods=[st.FromIntermediate(inter)], store=tmp_path, study="fp"))
    assert runs[0].run_id.iloc[0] != runs[1].run_id.iloc[0]  # another intermediate model: trained again
    assert runs[0].run_id.iloc[0] == runs[2].run_id.iloc[0]  # the same one: reused


def test_domain_task_uses_unlabelled_text_only():
    rev = tft.load_task("reviews")
    dom = st.domain_task(rev, seed=0)
    assert dom.label_names == sorted(rev.unlabelled.query("lang == 'en'")["domain"].unique())
    assert set(dom.frame.text) <= set(rev.unlabelled.text)
    counts = dom.frame.groupby(["split", "label"]).size().unstack()
    assert counts.loc["dev"].nunique() == 1  # stratified dev split
    with pytest.raises(TaskError, match="at least two domains"):
        st.domain_task(rev, domains=["hotels"])
    with pytest.raises(TaskError, match="available"):
        st.domain_task(rev, domains=["hotels", "cars"])
    with pytest.raises(TaskError, match="no unlabelled text"):
        st.domain_task(_no_text())


def _no_text():
    from tutorfinetune.data import Task

    return Task(name="x", frame=pd.DataFrame({"text": ["a"], "label": [0], "split": ["train"]}), label_names=["a", "b"])


def test_rte_as_user_intermediate_task(cfg, toy_task):
    rte = tft.load_task(realdata("rte"), text_column="sentence1", text_pair_column="sentence2")
    rte = rte.subsample_train(64, seed=0)
    out = st.stilts("tiny", rte, toy_task, cfg, intermediate_config=cfg.replace(max_eval_examples=32), store=None)
    assert out.intermediate.meta["kind"] == "classification" and out.intermediate.task == "rte"
    assert "dev" in out.intermediate.meta["metrics"]


def test_intermediate_phase_takes_plugins_that_update_the_encoder(mc_task, toy_task, cfg):
    inter = st.train_intermediate("tiny", mc_task, cfg, methods=["full", ("graddrop", {"p": 0.3})], store=None)
    assert inter.meta["methods"][1]["name"] == "graddrop"
    pre = st.encoder_state(tft.load_backbone("tiny", head="multiple-choice").model)
    assert any(not torch.equal(pre[k], v) for k, v in inter.state.items())
    out = st.stilts("tiny", None, toy_task, cfg, intermediate=inter, methods=[("guided-dropout", {"scores": {
        s.name: float(i + 1) for i, s in enumerate(tft.fisher.dropout_sites(
            tft.load_backbone("tiny").model, tft.load_backbone("tiny").blocks))}})], store=None)
    assert out.result.artifacts["guided-dropout"]["map"]


def test_train_intermediates_keeps_the_best_dev_step_under_the_protocol(tmp_path, mc_task):
    common = dict(lr=3e-3, max_steps=12, batch_size=8, max_length=32, eval_every=3, store=tmp_path / "runs")
    last = st.train_intermediates("tiny", {"mc": mc_task}, tmp_path / "a", **common)["mc"]
    best = st.train_intermediates("tiny", {"mc": mc_task}, tmp_path / "b", select_best=True, **common)["mc"]
    assert best.id != last.id  # the choice is part of the model's identity (cache key)
    rec = {r["run_id"]: r for r in tft.results.load_records(tmp_path / "runs")}
    r_best, r_last = rec[best.meta["run_id"]], rec[last.meta["run_id"]]
    assert r_last.get("best_step") is None and r_best["best_step"] in {3, 6, 9, 12}
    curve = {h["step"]: h["dev_accuracy"] for h in r_best["history"] if h.get("dev_accuracy") is not None}
    assert r_best["best_dev"] == pytest.approx(max(curve.values()))
    # the same seed and data: the two runs follow the same path, so the kept encoders differ only if the
    # best dev step is not the last one
    same = all(torch.equal(best.state[k], last.state[k]) for k in best.state)
    assert same == (r_best["best_step"] == 12)
