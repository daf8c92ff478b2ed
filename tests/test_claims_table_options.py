"""claims_table's two options the notebooks need: a claim about one part of the frame (``Claim.where``,
notebook 04's best setting per regime) and pairing on a column other than the seed (``pair_on``, notebook
07's learning-rate x seed cells)."""

import pandas as pd

from tutorfinetune import analysis as an


def _rows(group, values, **extra):
    return [{"setting": group, "seed": s, "eval_set": "x", "metric": "accuracy", "value": v, **extra}
            for s, v in enumerate(values)]


def test_where_restricts_a_claim_to_its_rows():
    df = pd.DataFrame(_rows("a", [0.9, 0.91, 0.92], regime="low") + _rows("b", [0.8, 0.8, 0.8], regime="low")
                      + _rows("a", [0.7, 0.7, 0.7], regime="high") + _rows("b", [0.8, 0.8, 0.8], regime="high"))
    claims = [an.Claim("P", "a helps", "a", "b", where={"regime": "low"})]
    t = an.claims_table(df, claims, by="setting", split="regime")
    assert list(t["regime"]) == ["low"] and t["verdict"].iloc[0] == "reproduced"
    every = an.claims_table(df, [an.Claim("P", "a helps", "a", "b")], by="setting", split="regime")
    assert list(every["regime"]) == ["low", "high"] and every["verdict"].iloc[1] == "contradicted"


def test_pair_on_pairs_runs_by_another_column():
    rows = []
    for cell, (a, b) in enumerate([(0.80, 0.79), (0.70, 0.68), (0.90, 0.89), (0.60, 0.59)]):
        rows += [{"setting": "a", "cell": cell, "seed": 0, "metric": "accuracy", "eval_set": "x", "value": a},
                 {"setting": "b", "cell": cell, "seed": 0, "metric": "accuracy", "eval_set": "x", "value": b}]
    df = pd.DataFrame(rows)
    by_cell = an.claims_table(df, [an.Claim("P", "a helps", "a", "b")], by="setting", pair_on="cell")
    assert by_cell["n"].iloc[0] == 4 and by_cell["verdict"].iloc[0] == "reproduced"
    by_seed = an.claims_table(df, [an.Claim("P", "a helps", "a", "b")], by="setting")
    assert by_seed["n"].iloc[0] == 1 and by_seed["verdict"].iloc[0] == "inconclusive (one seed)"
