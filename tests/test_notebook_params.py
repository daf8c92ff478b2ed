"""Logic the notebooks share, in the package (issue 17, item 4): typed papermill parameters from the
parameters cell's own annotations, eval-set names read from the task, one claims table."""

import pandas as pd
import pytest

import tutorfinetune as tft
from tutorfinetune import analysis as an
from tutorfinetune import notebook as nb


def test_typed_parameters_coerce_papermill_text_from_the_annotations():
    from IPython.core.interactiveshell import InteractiveShell

    sh = InteractiveShell.instance()
    # the parameters cell, then what papermill injects after it (text from the command line)
    sh.run_cell('mode: str = "ci"\nseeds: list[int] = [0, 1, 2]\nlr: float = 1e-4\nk: int | None = None\n'
                'ps: list[float] = [0.1, 0.3]')
    sh.run_cell('seeds = "[3, 4]"\nlr = "3e-4"\nk = "none"\nps = "0.5, 0.7"')
    sh.run_cell("from tutorfinetune import notebook as nb\nP = nb.typed_parameters(globals())")
    ns = sh.user_ns
    assert ns["P"] == {"mode": "ci", "seeds": [3, 4], "lr": 3e-4, "k": None, "ps": [0.5, 0.7]}
    assert ns["seeds"] == [3, 4] and ns["lr"] == 3e-4  # written back
    sh.run_cell('lr = "fast"')
    res = sh.run_cell("nb.typed_parameters(globals())")
    assert isinstance(res.error_in_exec, tft.ConfigError) and "lr" in str(res.error_in_exec)
    InteractiveShell.clear_instance()


def test_typed_parameters_needs_annotations():
    with pytest.raises(tft.ConfigError, match="name: type = value"):
        nb.typed_parameters({"seeds": [0]})


def test_eval_set_names_come_from_the_task():
    task = tft.load_task("reviews")
    assert task.eval_set_names("dev") == ["dev"]
    assert task.eval_set_names("in-distribution") == ["in-distribution"]
    assert task.eval_set_names("domains") == [f"shift:{d}" for d in task.meta["target_domains"]]
    assert task.eval_set_names("languages") == ["shift:de", "shift:es", "shift:fr"]
    assert task.eval_set_names("held-out") == task.eval_set_names("domains") + task.eval_set_names("languages")
    assert "dev" not in task.eval_set_names("test")
    with pytest.raises(tft.TaskError, match="Unknown eval-set kind"):
        task.eval_set_names("shifted")


def _frame(diffs_by_claim):
    rows = []
    for (a, b), diffs in diffs_by_claim.items():
        for seed, d in enumerate(diffs):
            rows += [{"method": a, "seed": seed, "eval_set": "x", "metric": "accuracy", "value": 0.8 + d},
                     {"method": b, "seed": seed, "eval_set": "x", "metric": "accuracy", "value": 0.8}]
    return pd.DataFrame(rows)


def test_claims_table_verdicts_mde_and_holm():
    df = _frame({("up", "base"): [0.03, 0.04, 0.05, 0.03, 0.04], ("noise", "base"): [0.03, -0.04, 0.05, -0.03, 0.01],
                 ("close", "base"): [-0.002, -0.001, -0.003, -0.002, -0.001]})
    claims = [an.Claim("P1", "up helps", "up", "base", "greater", paper_number="+4"),
              an.Claim("P2", "noise helps", "noise", "base", "greater"),
              an.Claim("P3", "close is as good", "close", "base", "at least"),
              an.Claim("P4", "missing helps", "missing", "base")]
    t = an.claims_table(df, claims)
    assert list(t["paper"]) == ["P1", "P2", "P3"]  # the claim without data is skipped
    assert list(t["verdict"][:1]) == ["reproduced"] and t["verdict"][1].startswith("inconclusive (could detect ≥")
    assert t["verdict"][2] == "reproduced" and t["verdict basis"][2] == "95% CI vs margin"
    assert (t["p (Holm)"][:2] >= t["p"][:2]).all() and t["paper's number"][0] == "+4"
    assert t["MDE (points)"].notna().all() and (t["n"] == 5).all()
