"""The results store (atomic, robust to junk) and the seed aggregation."""

import json
import math
import os

import numpy as np
import pandas as pd
import pytest

from tutorfinetune import analysis, results


def _record(run_id, method="full", seed=0, acc=0.9, status="finished"):
    return {"run_id": run_id, "method": method, "seed": seed, "status": status, "task": "t", "backbone": "tiny",
            "config": {"lr": 1e-4, "seed": seed}, "metrics": {"test": {"accuracy": acc, "loss": 0.3}},
            "started_at": f"2026-01-01T00:00:0{seed}"}


def test_store_round_trip_and_tidy_frame(tmp_path):
    store = results.RunStore(tmp_path)
    for s, a in enumerate([0.8, 0.9]):
        store.write(_record(f"r{s}", seed=s, acc=a))
    df = results.load(tmp_path)
    assert len(df) == 4 and set(df.metric) == {"accuracy", "loss"}
    assert df[df.metric == "accuracy"].value.tolist() == [0.8, 0.9]
    assert not list(tmp_path.glob(".*.tmp"))  # temporary files are renamed away


def test_junk_and_partial_files_are_skipped(tmp_path):
    results.RunStore(tmp_path).write(_record("ok"))
    (tmp_path / "broken.json").write_text('{"run_id": "x", "metr')  # what a torn write would look like
    (tmp_path / "other.json").write_text("[1, 2]")
    with pytest.warns(UserWarning, match="Skipping"):
        df = results.load(tmp_path)
    assert set(df.run_id) == {"ok"}


def test_running_record_of_a_dead_process_reads_as_interrupted(tmp_path):
    rec = _record("dead", status="running")
    rec["pid"] = 2 ** 22 + 12345  # no such process
    results.RunStore(tmp_path).write(rec)
    mine = _record("alive", status="running")
    mine["pid"] = os.getpid()
    results.RunStore(tmp_path).write(mine)
    status = {r["run_id"]: r["status"] for r in results.load_records(tmp_path)}
    assert status == {"dead": "interrupted", "alive": "running"}
    assert results.load(tmp_path).empty


def test_aggregate_matches_the_t_interval():
    df = pd.DataFrame({"method": "m", "eval_set": "e", "metric": "accuracy", "value": [0.80, 0.84, 0.82, 0.86]})
    row = analysis.aggregate(df).iloc[0]
    sd = np.std([0.80, 0.84, 0.82, 0.86], ddof=1)
    assert row["n"] == 4 and math.isclose(row["mean"], 0.83)
    assert math.isclose(row["ci95"], 3.182 * sd / 2, rel_tol=1e-9)
    single = analysis.aggregate(df.iloc[:1]).iloc[0]
    assert math.isnan(single["ci95"]) and analysis.format_ci(single["mean"], single["ci95"]) == "80.0"


def test_t_critical_values():
    assert analysis.t_critical(1) == 12.706 and analysis.t_critical(30) == 2.042
    assert 1.96 < analysis.t_critical(100) < 1.99


def test_compare_sentence_reports_overlap():
    a = pd.Series({"mean": 0.90, "ci95": 0.01, "lo": 0.89, "hi": 0.91})
    b = pd.Series({"mean": 0.80, "ci95": 0.02, "lo": 0.78, "hi": 0.82})
    c = pd.Series({"mean": 0.895, "ci95": 0.02, "lo": 0.875, "hi": 0.915})
    assert "10.0 points higher" in analysis.compare_sentence(a, b, "A", "B")
    assert "do not overlap" in analysis.compare_sentence(a, b, "A", "B")
    overlap = analysis.compare_sentence(a, c, "A", "C")
    assert "overlap" in overlap and "does not show that the difference is noise" in overlap
    assert "within seed noise" not in overlap  # overlapping intervals do not show equality


def test_ci_table_and_plots(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    rows = [{"method": m, "eval_set": e, "metric": "accuracy", "value": v, "run_id": f"{m}{s}"}
            for m in ("a", "b") for e in ("x", "y") for s, v in enumerate([0.7, 0.75, 0.8])]
    df = pd.DataFrame(rows)
    table = analysis.ci_table(df)
    assert table.loc["a", "x"].startswith("75.0 ± ") and table.shape == (2, 2)
    ax = analysis.plot_comparison(df)
    assert len(ax.patches) == 4
    hist = analysis.histories([{"run_id": "r", "method": "a", "seed": 0,
                                "history": [{"step": i, "loss": 1 / i, "dev_accuracy": 0.5} for i in range(1, 5)]}])
    axes = analysis.plot_learning_curves(hist)
    assert len(axes) == 2


def test_record_json_has_no_nan_tokens(tmp_path):
    results.RunStore(tmp_path).write(_record("n", acc=0.5))
    json.loads((tmp_path / "n.json").read_text())


def test_paired_difference_pairs_by_seed_and_averages_eval_sets():
    rows = []
    for seed, (a, b) in enumerate([(0.80, 0.78), (0.70, 0.66), (0.90, 0.90)]):
        for es, shift in (("x", 0.0), ("y", 0.02)):  # the second eval set moves both methods alike
            rows += [{"method": "a", "seed": seed, "eval_set": es, "metric": "accuracy", "value": a + shift},
                     {"method": "b", "seed": seed, "eval_set": es, "metric": "accuracy", "value": b + shift}]
    df = pd.DataFrame(rows)
    d = analysis.paired_difference(df, "a", "b")
    diffs = np.array([0.02, 0.04, 0.0])
    assert d["n"] == 3 and d["mean"] == pytest.approx(diffs.mean())
    assert d["ci95"] == pytest.approx(analysis.t_critical(2) * diffs.std(ddof=1) / math.sqrt(3))
    # unpaired CIs of the two methods would be far wider than the paired one
    assert d["ci95"] < analysis.aggregate(df, by=("method",)).ci95.min()
    with pytest.raises(KeyError, match="'c'"):
        analysis.paired_difference(df, "a", "c")


def test_unfreeze_orders_reads_events_and_the_top_down_reference():
    rec = {"run_id": "r", "seed": 3, "method": "adapter+fun", "tags": {"body": "adapter"},
           "artifacts": {"fun": {"units": ["adapter0", "adapter1", "adapter2"],
                                 "events": [{"step": 0, "units": ["adapter2"]}, {"step": 5, "units": ["adapter0"]},
                                            {"step": 10, "units": ["adapter1"]}]}}}
    o = analysis.unfreeze_orders([rec, {"run_id": "other", "artifacts": {}}], "fun")
    assert o.unit_index.tolist() == [2, 0, 1] and o.top_down_index.tolist() == [2, 1, 0]
    assert o.event.tolist() == [0, 1, 2] and set(o.body) == {"adapter"} and set(o.run_id) == {"r"}


def _rows(settings, seeds, sets, value):
    return pd.DataFrame([{"setting": s, "seed": k, "eval_set": e, "metric": "accuracy", "value": value(s, k, e)}
                         for s in settings for k in seeds for e in sets])


def test_held_out_mean_averages_the_named_sets_per_run_and_verdicts_follow_the_interval():
    df = _rows(["a", "b"], [0, 1, 2], ["in", "x", "y"],
               lambda s, k, e: {"in": 0.9, "x": 0.6, "y": 0.8}[e] + (0.05 + 0.001 * k if s == "b" else 0))
    h = analysis.held_out_mean(df, ["x", "y"], by=["setting"])
    assert set(h.eval_set) == {"held-out (mean)"} and len(h) == 6
    assert h[(h.setting == "a")].value.tolist() == pytest.approx([0.7, 0.7, 0.7])
    d = analysis.paired_difference(h, "b", "a", by="setting")
    assert d["mean"] == pytest.approx(0.051) and analysis.verdict(d) == "reproduced"
    assert analysis.verdict(analysis.paired_difference(h, "a", "b", by="setting")) == "contradicted"
    assert analysis.verdict(analysis.paired_difference(h, "a", "b", by="setting"), "at least").startswith("contradicted")
    one = analysis.paired_difference(h[h.seed == 0], "b", "a", by="setting")
    assert analysis.verdict(one) == "inconclusive (one seed)"
    assert not analysis.verdict(analysis.paired_difference(h, "a", "a", by="setting")).startswith("not reproduced")
    with pytest.raises(KeyError, match="No 'accuracy' rows"):
        analysis.held_out_mean(df, ["nope"], by=["setting"])


def test_plot_vs_param_and_plot_masks_draw():
    import matplotlib

    matplotlib.use("Agg")
    import torch

    df = _rows(["e1", "e2"], [0, 1], ["in", "held"], lambda s, k, e: 0.8 + 0.01 * k)
    df["p"] = df.setting.map({"e1": 0.1, "e2": 0.5})
    base = _rows(["full"], [0, 1], ["in", "held"], lambda s, k, e: 0.82)
    ax = analysis.plot_vs_param(df, x="p", baselines={"full": base})
    assert len(ax.lines) >= 2 and ax.get_xlabel() == "p"
    ax = analysis.plot_masks(torch.ones(3, 4, 4, dtype=torch.bool))
    assert len(ax.get_xticks()) == 3
    ax = analysis.plot_masks(torch.zeros(7, 10, dtype=torch.bool), ylabels=[str(i) for i in range(7)])
    assert len(ax.get_yticks()) == 7
    with pytest.raises(ValueError, match="shape"):
        analysis.plot_masks(torch.zeros(3))


def test_paired_table_rows_verdicts_and_skips_missing_pairs():
    rows = []
    for seed in range(4):
        for method, acc in (("a", 0.80 + 0.01 * seed), ("b", 0.70 + 0.01 * seed + 0.002 * (seed % 2)), ("c", 0.80 + 0.01 * seed)):
            rows.append({"method": method, "seed": seed, "metric": "accuracy", "eval_set": "x", "value": acc})
    df = pd.DataFrame(rows)
    t = analysis.paired_table(df, [("a", "b"), ("a", "c"), ("a", "missing")])
    assert list(t.a + t.b) == ["ab", "ac"]
    ab = t.iloc[0]
    assert ab["mean"] == pytest.approx(0.099, abs=1e-9) and ab["n"] == 4
    assert ab["verdict (a > b)"] == "reproduced"
    assert t.iloc[1]["verdict (a > b)"] != "reproduced"  # identical runs: no gain
    t2 = analysis.paired_table(df, [("b", "a")], claim="at least")
    assert t2.iloc[0]["verdict (a ≥ b)"].startswith("contradicted")


def _grid(spread_a: float, spread_b: float, n: int = 12):
    rng = np.random.default_rng(0)
    rows = []
    for cell in range(n):
        z = rng.standard_normal()
        for name, sd, mu in (("a", spread_a, 0.80), ("b", spread_b, 0.75)):
            rows.append({"setting": name, "cell": cell, "metric": "accuracy", "value": mu + sd * z})
    return pd.DataFrame(rows)


def test_spread_table_and_paired_spread():
    df = _grid(0.01, 0.05)
    t = analysis.spread_table(df, by=["setting"]).set_index("setting")
    assert t.loc["a", "n"] == 12 and t.loc["a", "best"] == pytest.approx(100 * df[df.setting == "a"].value.max(), abs=0.05)
    assert t.loc["a", "std"] < t.loc["b", "std"]
    sp = analysis.paired_spread(df, "a", "b", by="setting", pair_on="cell")
    assert sp["diff"] < 0 and sp["hi"] < 0  # a is clearly more stable
    assert sp["mean_diff"] == pytest.approx(0.05, abs=0.02)
    same = analysis.paired_spread(_grid(0.03, 0.03), "a", "b", by="setting", pair_on="cell")
    assert abs(same["diff"]) < 1e-12 and same["lo"] <= 0 <= same["hi"]
    assert np.isnan(analysis.paired_spread(df[df.cell == 0], "a", "b", by="setting", pair_on="cell")["diff"])
    with pytest.raises(KeyError, match="Need rows"):
        analysis.paired_spread(df, "a", "zzz", by="setting", pair_on="cell")


def test_plot_distributions_draws_one_violin_per_setting():
    import matplotlib

    matplotlib.use("Agg")
    df = _grid(0.01, 0.05).assign(lr=lambda d: d.cell % 3)
    ax = analysis.plot_distributions(df, x="setting", order=["b", "a"], chance=0.5)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["b", "a"]
    ax = analysis.plot_distributions(df, x="setting", hue="lr")
    assert ax.get_legend() is not None


def test_best_steps_reports_the_median_peak_and_runs_still_rising():
    frame = pd.DataFrame({"run_id": ["a", "b", "c", "d"], "entry": ["x", "x", "y", "y"], "value": [1, 1, 1, 1]})

    def rec(rid, best, final=100):
        hist = [{"step": s, "loss": 1.0, "dev_accuracy": 0.5} for s in (25, 50, 75, 100)]
        return {"run_id": rid, "best_step": best, "final_step": final, "history": hist}

    records = [rec("a", 50), rec("b", 75), rec("c", 100), rec("d", 100), {"run_id": "e", "best_step": 10},
               {"run_id": "c2", "best_step": None}]
    t = analysis.best_steps(frame, records, "entry").set_index("entry")
    assert t.loc["x", "best dev step"] == 62.5 and t.loc["x", "still rising (share)"] == 0.0
    assert t.loc["y", "still rising (share)"] == 1.0 and t.loc["y", "runs"] == 2  # "e" is not in the frame
    assert analysis.best_steps(frame, [], "entry").empty
