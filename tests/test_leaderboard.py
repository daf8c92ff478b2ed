"""The common-protocol leaderboard: entries, reuse of finished runs, costs, the table."""

import pandas as pd
import pytest

import tutorfinetune as tft
from tutorfinetune import analysis, results
from tutorfinetune.studies import leaderboard as lb


def test_entries_by_name_and_family():
    assert len(lb.entries("all")) == len(lb.ENTRIES) >= 15
    fams = {e.family for e in lb.ENTRIES}
    assert {"baseline", "adapters", "unfreezing", "graddrop", "dropout", "sparse", "stilts"} <= fams
    gd = lb.entries(["graddrop"])
    assert gd and all(e.family == "graddrop" for e in gd)
    assert [e.name for e in lb.entries(["linear probe", "full fine-tuning"])] == ["linear probe", "full fine-tuning"]
    with pytest.raises(lb.LeaderboardError, match="Did you mean 'linear probe'"):
        lb.entries(["linear prob"])


def test_run_reuse_costs_and_table(tmp_path, toy_task):
    store = tmp_path / "runs"
    chosen = lb.entries(["full fine-tuning", "linear probe", "LT-SFT K=2%"])
    regimes = [lb.Regime("low-data", 40, 3)]
    base = tft.TrainConfig(batch_size=8, max_length=32, eval_sets=["dev", "test"])
    df = lb.run_leaderboard("tiny", toy_task, chosen, regimes, [0, 1], base=base, store=store, study="lb")
    assert set(df.entry) == {e.name for e in chosen} and df.run_id.nunique() == 6
    n_records = len(results.load_records(store))
    assert n_records == 8  # LT-SFT trains twice (dense + sparse) per seed
    again = lb.run_leaderboard("tiny", toy_task, chosen, regimes, [0, 1], base=base, store=store, study="lb")
    assert len(results.load_records(store)) == n_records  # everything reused
    assert set(again.run_id) == set(df.run_id)
    read = lb.run_leaderboard("tiny", toy_task, chosen, regimes, [0, 1, 2], base=base, store=store, study="lb",
                              run_missing=False)
    assert set(read.run_id) == set(df.run_id) and len(results.load_records(store)) == n_records
    bb = tft.load_backbone("tiny")
    head = sum(p.numel() for p in bb.blocks.parameters("head"))
    cost = lb.costs(store, df.run_id.unique(), head).set_index(["entry", "seed"])
    assert cost.loc[("linear probe", 0), "trainable"] == head
    assert cost.loc[("linear probe", 0), "stored_mib"] == pytest.approx(4 * head / 2 ** 20)
    k = int(df[df.entry == "LT-SFT K=2%"]["k"].dropna().iloc[0])
    assert cost.loc[("LT-SFT K=2%", 0), "trainable"] == k + head
    assert cost.loc[("LT-SFT K=2%", 0), "stored_mib"] == pytest.approx((8 * k + 4 * head) / 2 ** 20)
    assert cost.loc[("LT-SFT K=2%", 0), "steps"] == 6  # both phases counted
    full = sum(p.numel() for p in bb.model.parameters())
    assert cost.loc[("full fine-tuning", 0), "trainable"] == full
    table = analysis.leaderboard_table(df, cost.reset_index(), ["test"], ["dev"], "low-data")
    assert list(table.columns[:4]) == ["entry", "family", "seeds", "test"]
    assert "vs full FT (held-out, paired)" in table and table.seeds.eq(2).all()
    assert analysis.leaderboard_table(df, cost.reset_index(), ["test"], ["dev"], "no-such-regime").empty


def test_entries_that_need_context_say_so(tmp_path, toy_task):
    base = tft.TrainConfig(batch_size=8, max_length=32, eval_sets=["test"])
    for name, match in (("guided dropout", "Fisher scores"), ("STILTs: domain", "intermediate model")):
        with pytest.raises(lb.LeaderboardError, match=match):
            lb.run_leaderboard("tiny", toy_task, lb.entries([name]), [lb.Regime("r", 40, 2)], [0], base=base,
                               store=tmp_path)


def test_random_mask_entry_trains_once_per_seed_with_a_random_mask(tmp_path, toy_task):
    base = tft.TrainConfig(batch_size=8, max_length=32, eval_sets=["test"])
    df = lb.run_leaderboard("tiny", toy_task, lb.entries(["random-mask SFT K=2%"]), [lb.Regime("r", 40, 2)], [0],
                            base=base, store=tmp_path, study="lb")
    recs = results.load_records(tmp_path)
    assert len(recs) == 1 and recs[0]["method"] == "random-sft" and recs[0]["tags"]["selection"] == "random"
    assert df.run_id.nunique() == 1


def test_leaderboard_under_the_protocol_chooses_each_entrys_lr_on_dev(tmp_path, toy_task):
    from tutorfinetune.studies.protocol import Protocol

    store = tmp_path / "runs"
    chosen = lb.entries(["full fine-tuning", "linear probe", "LT-SFT K=2%"])
    assert [e.grid for e in chosen] == ["full", "light", "full"]
    proto = Protocol(seeds=(0, 1), lr_seeds=(0,), evaluations=2,
                     lr_grids={"full": (1e-4, 1e-3), "light": (1e-3, 1e-2)})
    regimes = [lb.Regime("low-data", 40, 4)]
    base = tft.TrainConfig(batch_size=8, max_length=32, eval_sets=["dev", "test"])
    df = lb.run_leaderboard("tiny", toy_task, chosen, regimes, [0, 1], base=base, store=store, study="lb",
                            protocol=proto)
    recs = results.load_records(store)
    # per entry: 2 candidates on seed 0, then seed 1 at the chosen lr (LT-SFT: each run is two phases)
    assert len(recs) == 3 + 3 + 6
    assert all(r["config"]["select_best"] and r["config"]["eval_every"] == 2 for r in recs)
    table = pd.DataFrame(df.attrs["lr_table"])
    pd.concat([df, df])  # attrs stay plain data that pandas can compare
    assert len(table) == 6 and table.groupby("entry")["chosen"].sum().eq(1).all()
    for entry, rows in table.groupby("entry"):
        best = rows["dev accuracy"].max()
        want = rows.loc[rows["dev accuracy"] == best, "lr"].min()  # dev decides; ties to the smaller rate
        got = df[df.entry == entry]
        assert set(got.chosen_lr) == {want} and set(got.seed) == {0, 1} and set(got.lr) == {want}
    assert df.run_id.nunique() == 6  # one final run per entry and seed (the LT-SFT sparse phase)
    # a second call reuses every run; a read-only call finds the same ones
    again = lb.run_leaderboard("tiny", toy_task, chosen, regimes, [0, 1], base=base, store=store, study="lb",
                               protocol=proto)
    assert len(results.load_records(store)) == len(recs) and set(again.run_id) == set(df.run_id)
    read = lb.run_leaderboard("tiny", toy_task, chosen, regimes, [0, 1], base=base, store=store, study="lb",
                              protocol=proto, run_missing=False)
    assert set(read.run_id) == set(df.run_id)
    board = analysis.leaderboard_table(df, lb.costs(store, df.run_id.unique(), 0), ["test"], ["dev"], "low-data")
    assert list(board.columns[:4]) == ["entry", "family", "seeds", "lr (dev)"]
    assert dict(zip(board.entry, board["lr (dev)"])) == dict(zip(df.entry, df.chosen_lr))


def test_schedule_entries_follow_the_protocols_k_when_the_budget_allows():
    gu, fun = lb.entries(["adapter + GU", "full + FUN"])
    ctx = {"steps": 600, "units_adapter": 6, "units_full": 7, "warmup_steps": 30}
    k_of = {m[0]: m[1]["k"] for e in (gu, fun) for m in e.methods({**ctx, "protocol": True}) if isinstance(m, tuple)}
    # the first unit joins after the warm-up; the last one by half the run, so each trains half of it
    assert k_of == {"gu": 300 // 6, "fun": 300 // 7} and all(k > 30 for k in k_of.values())
    legacy = {m[0]: m[1]["k"] for e in (gu, fun) for m in e.methods({**ctx, "protocol": False}) if isinstance(m, tuple)}
    assert legacy == {"gu": 200 // 6, "fun": 200 // 7}  # without the protocol: all units in after a third
    short = {m[0]: m[1]["k"] for m in gu.methods({**ctx, "steps": 200, "protocol": True}) if isinstance(m, tuple)}
    assert short == {"gu": 66 // 6}  # too short for the protocol's rule (ci mode): the short-run rule


def test_schedule_entries_train_without_warm_up_so_the_protocols_k_exists():
    base = tft.TrainConfig(warmup=0.1)
    regime = lb.Regime("full-data", None, 600)
    schedules = [e for e in lb.ENTRIES if e.family == "unfreezing" or "GU" in e.name]
    assert schedules and all(lb._config(regime, e, base).warmup == 0.0 for e in schedules)
    assert lb._config(regime, lb.entries(["full fine-tuning"])[0], base).warmup == 0.1  # others keep the regime's
    # with 10% warm-up and 6 units no interval satisfies the protocol; without warm-up one does
    from tutorfinetune.methods.base import MethodError
    from tutorfinetune.methods.unfreezing import protocol_k
    with pytest.raises(MethodError):
        protocol_k(600, 6, 60)
    assert protocol_k(600, 6, 0) >= 50
